// Per-sample augmentation and normalization of the data pipeline, on the CPU: a random crop
// from the image zero-padded by crop_pad pixels on each side, a random horizontal flip, then
// (x/255 - mean) / std per channel into float CHW. The random choices of a sample are a pure
// function of (seed, epoch, record index) (stream DP_IO_RNG_AUGMENT), so they do not depend on
// the rank or thread that processes it. Colour jitter, scaling and resizing are not done here.
#ifndef DP_IO_AUGMENT_H
#define DP_IO_AUGMENT_H

#include <stdint.h>

// The random choices for one sample.
typedef struct dp_augment_draw {
    int dy, dx;  // crop offset in the padded image, each in [0, 2 * crop_pad]
    int flipped; // 1: mirror left-right
} dp_augment_draw;

// Draws the crop offset (only if crop_pad > 0; else dy = dx = crop_pad = 0) and the flip (only
// if flip != 0) of record in epoch, from stream (seed; epoch, record, DP_IO_RNG_AUGMENT).
dp_augment_draw dp_augment_sample(uint64_t seed, int64_t epoch, int64_t record, int crop_pad,
                                  int flip);

// Per-channel affine map of the normalization: out = pixel * scale[c] + bias[c] with
// scale = 1 / (255 std), bias = -mean / std. mean, std, scale, bias: [c].
void dp_augment_norm_coeffs(float *scale, float *bias, const float *mean, const float *std,
                            int64_t c);

// Writes out (C, H, W) float, the normalized crop of in (H, W, C) uint8 zero-padded by crop_pad
// on each side, taken at (d.dy, d.dx) in the padded image and mirrored if d.flipped. Padding
// pixels are 0 before normalization (so they become bias[c]).
void dp_augment_apply(float *out, const uint8_t *in, int64_t h, int64_t w, int64_t c,
                      int crop_pad, dp_augment_draw d, const float *scale, const float *bias);

#endif
