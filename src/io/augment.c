// Random crop (zero padding), horizontal flip and normalization of one HWC uint8 sample into
// CHW float. Plain loops; the pipeline runs them on its worker threads.
#include "io/augment.h"

#include "core/rng.h"
#include "io/rng_streams.h"

// Uniform in [0, range) for small ranges (multiply-shift; the bias is below range / 2^32).
static int draw_below(dp_rng *r, uint32_t range)
{
    return (int)(((uint64_t)dp_rng_u32(r) * range) >> 32);
}

dp_augment_draw dp_augment_sample(uint64_t seed, int64_t epoch, int64_t record, int crop_pad,
                                  int flip)
{
    dp_augment_draw d = {0, 0, 0};
    dp_rng r;
    dp_rng_init(&r, seed, (uint32_t)epoch, (uint32_t)record, DP_IO_RNG_AUGMENT);
    // Always draw three words in this order, so that turning one option off leaves the others.
    int dy = draw_below(&r, 2u * (uint32_t)crop_pad + 1u);
    int dx = draw_below(&r, 2u * (uint32_t)crop_pad + 1u);
    int flipped = (int)(dp_rng_u32(&r) >> 31);
    if (crop_pad > 0) {
        d.dy = dy;
        d.dx = dx;
    }
    d.flipped = flip ? flipped : 0;
    return d;
}

void dp_augment_norm_coeffs(float *scale, float *bias, const float *mean, const float *std,
                            int64_t c)
{
    for (int64_t ch = 0; ch < c; ch++) {
        scale[ch] = 1.0f / (255.0f * std[ch]);
        bias[ch] = -mean[ch] / std[ch];
    }
}

void dp_augment_apply(float *out, const uint8_t *in, int64_t h, int64_t w, int64_t c,
                      int crop_pad, dp_augment_draw d, const float *scale, const float *bias)
{
    for (int64_t ch = 0; ch < c; ch++) {
        float *plane = out + ch * h * w;
        for (int64_t y = 0; y < h; y++) {
            int64_t sy = y + d.dy - crop_pad; // row in the unpadded image
            for (int64_t x = 0; x < w; x++) {
                int64_t ox = d.flipped ? w - 1 - x : x;
                int64_t sx = x + d.dx - crop_pad;
                float v = 0.0f;
                if (sy >= 0 && sy < h && sx >= 0 && sx < w) {
                    v = (float)in[(sy * w + sx) * c + ch];
                }
                plane[y * w + ox] = v * scale[ch] + bias[ch];
            }
        }
    }
}
