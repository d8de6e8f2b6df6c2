// Random crop (zero padding), horizontal flip, normalization and cutout of one HWC uint8 sample
// into CHW float; mixup and cutmix of two such samples; the Beta draws and the partner
// permutation they need. Plain loops; the pipeline runs them on its worker threads.
#include "io/augment.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "io/rng_streams.h"

// Uniform in [0, range) for small ranges (multiply-shift; the bias is below range / 2^32).
static int draw_below(dp_rng *r, uint32_t range)
{
    return (int)(((uint64_t)dp_rng_u32(r) * range) >> 32);
}

// Uniform in [0, range) without bias (Lemire's multiply-shift with rejection).
static uint32_t draw_below_exact(dp_rng *r, uint32_t range)
{
    uint64_t m = (uint64_t)dp_rng_u32(r) * range;
    if ((uint32_t)m < range) {
        uint32_t threshold = (uint32_t)(0u - range) % range;
        while ((uint32_t)m < threshold) {
            m = (uint64_t)dp_rng_u32(r) * range;
        }
    }
    return (uint32_t)(m >> 32);
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

// --- crop, flip, normalization, cutout ---

dp_augment_draw dp_augment_sample(uint64_t seed, int64_t epoch, int64_t record,
                                  const dp_augment_config *cfg, int64_t h, int64_t w)
{
    dp_augment_draw d = {0, 0, 0, 0, 0, 0};
    dp_rng r;
    dp_rng_init(&r, seed, (uint32_t)epoch, (uint32_t)record, DP_IO_RNG_AUGMENT);
    // Always draw five words in this order, so that turning one option off leaves the others.
    int dy = draw_below(&r, 2u * (uint32_t)cfg->crop_pad + 1u);
    int dx = draw_below(&r, 2u * (uint32_t)cfg->crop_pad + 1u);
    int flipped = (int)(dp_rng_u32(&r) >> 31);
    int cy = draw_below(&r, (uint32_t)h);
    int cx = draw_below(&r, (uint32_t)w);
    if (cfg->crop_pad > 0) {
        d.dy = dy;
        d.dx = dx;
    }
    d.flipped = cfg->flip ? flipped : 0;
    if (cfg->cutout > 0) {
        d.cut_size = cfg->cutout;
        d.cut_y = cy - cfg->cutout / 2;
        d.cut_x = cx - cfg->cutout / 2;
    }
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

// Sets the cutout square of d, clipped to the image, to 0 in every channel of out (C, H, W).
static void cut_out(float *out, int64_t h, int64_t w, int64_t c, dp_augment_draw d)
{
    int64_t y0 = clamp64(d.cut_y, 0, h), y1 = clamp64((int64_t)d.cut_y + d.cut_size, 0, h);
    int64_t x0 = clamp64(d.cut_x, 0, w), x1 = clamp64((int64_t)d.cut_x + d.cut_size, 0, w);
    for (int64_t ch = 0; ch < c; ch++) {
        for (int64_t y = y0; y < y1; y++) {
            float *row = out + (ch * h + y) * w;
            for (int64_t x = x0; x < x1; x++) {
                row[x] = 0.0f;
            }
        }
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
    if (d.cut_size > 0) {
        cut_out(out, h, w, c, d);
    }
}

// --- Beta draws ---

// Uniform in (0, 1): 24 random bits, centred in their interval, so that log() is finite.
static double unit_open(dp_rng *r)
{
    return ((double)(dp_rng_u32(r) >> 8) + 0.5) * (1.0 / 16777216.0);
}

// The log of a Gamma(alpha, 1) draw, alpha > 0 (Marsaglia & Tsang 2000; for alpha < 1 a
// Gamma(alpha + 1) draw times U^(1/alpha), kept in logs since it underflows for small alpha).
static double log_gamma_draw(dp_rng *r, double alpha)
{
    double boost = 0.0;
    if (alpha < 1.0) {
        boost = log(unit_open(r)) / alpha;
        alpha += 1.0;
    }
    double d = alpha - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = (double)dp_rng_normal(r);
        double v = 1.0 + c * x;
        if (v <= 0.0) {
            continue;
        }
        v = v * v * v;
        double u = unit_open(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) {
            return log(d * v) + boost;
        }
    }
}

// Beta(alpha, alpha) as X / (X + Y) for X, Y ~ Gamma(alpha), in logs.
static double beta_draw(dp_rng *r, double alpha)
{
    double lx = log_gamma_draw(r, alpha);
    double ly = log_gamma_draw(r, alpha);
    return 1.0 / (1.0 + exp(ly - lx));
}

// --- mixup and cutmix ---

dp_augment_mix dp_augment_mix_sample(uint64_t seed, int64_t epoch, int64_t record,
                                     const dp_augment_config *cfg, int64_t h, int64_t w)
{
    dp_augment_mix m = {.kind = DP_AUGMENT_MIX_NONE, .lambda = 1.0f};
    if (!dp_augment_mixes(cfg)) {
        return m;
    }
    dp_rng r;
    dp_rng_init(&r, seed, (uint32_t)epoch, (uint32_t)record, DP_IO_RNG_MIX);
    // Words 0-3 in a fixed order; the Beta draw takes a variable number after them.
    float apply = dp_rng_uniform(&r);
    uint32_t kind_word = dp_rng_u32(&r);
    int64_t cy = draw_below(&r, (uint32_t)h);
    int64_t cx = draw_below(&r, (uint32_t)w);
    if (!(apply < cfg->mix_prob)) {
        return m;
    }
    int cutmix = cfg->cutmix_alpha > 0.0f && (cfg->mixup_alpha <= 0.0f || (kind_word >> 31));
    double lambda = beta_draw(&r, cutmix ? cfg->cutmix_alpha : cfg->mixup_alpha);
    if (!cutmix) {
        m.kind = DP_AUGMENT_MIX_MIXUP;
        m.lambda = (float)lambda;
        return m;
    }
    double ratio = sqrt(1.0 - lambda);
    int64_t bh = (int64_t)((double)h * ratio), bw = (int64_t)((double)w * ratio);
    m.kind = DP_AUGMENT_MIX_CUTMIX;
    m.y0 = (int)clamp64(cy - bh / 2, 0, h);
    m.y1 = (int)clamp64(cy - bh / 2 + bh, 0, h);
    m.x0 = (int)clamp64(cx - bw / 2, 0, w);
    m.x1 = (int)clamp64(cx - bw / 2 + bw, 0, w);
    double pasted = (double)(m.y1 - m.y0) * (double)(m.x1 - m.x0);
    m.lambda = (float)(1.0 - pasted / ((double)h * (double)w));
    return m;
}

void dp_augment_mix_apply(float *out, const float *partner, int64_t h, int64_t w, int64_t c,
                          dp_augment_mix m)
{
    if (m.kind == DP_AUGMENT_MIX_MIXUP) {
        float a = m.lambda, b = 1.0f - m.lambda;
        for (int64_t i = 0; i < c * h * w; i++) {
            out[i] = out[i] * a + partner[i] * b;
        }
    } else if (m.kind == DP_AUGMENT_MIX_CUTMIX && m.x1 > m.x0) {
        size_t row_bytes = (size_t)(m.x1 - m.x0) * sizeof *out;
        for (int64_t ch = 0; ch < c; ch++) {
            for (int64_t y = m.y0; y < m.y1; y++) {
                int64_t at = (ch * h + y) * w + m.x0;
                memcpy(out + at, partner + at, row_bytes);
            }
        }
    }
}

void dp_augment_mix_partners(int32_t *partner, int64_t global_batch, uint64_t seed,
                             int64_t epoch, int64_t t)
{
    for (int64_t i = 0; i < global_batch; i++) {
        partner[i] = (int32_t)i;
    }
    dp_rng r;
    dp_rng_init(&r, seed, (uint32_t)epoch, (uint32_t)t, DP_IO_RNG_MIX_PAIR);
    for (int64_t i = global_batch - 1; i > 0; i--) {
        int64_t j = draw_below_exact(&r, (uint32_t)(i + 1));
        int32_t tmp = partner[i];
        partner[i] = partner[j];
        partner[j] = tmp;
    }
}
