// Per-sample augmentation and normalization of the data pipeline, on the CPU: a random crop
// from the image zero-padded by crop_pad pixels on each side, a random horizontal flip, then
// (x/255 - mean) / std per channel into float CHW, then cutout; and mixup / cutmix of a sample
// with a partner from the same global batch. Every random choice is a pure function of
// (seed, epoch, record index) (streams DP_IO_RNG_AUGMENT and DP_IO_RNG_MIX), or of
// (seed, epoch, global batch) for the pairing (DP_IO_RNG_MIX_PAIR), so it does not depend on
// the rank or thread that processes a sample. Colour jitter, scaling and resizing are not done
// here. Evaluation uses none of it: the pipeline then only normalizes (for a crop_pad crop the
// "center crop" is the image itself).
#ifndef DP_IO_AUGMENT_H
#define DP_IO_AUGMENT_H

#include <stdint.h>

// What augmentation a training pipeline applies (the pipeline fills it from its config).
typedef struct dp_augment_config {
    int crop_pad;       // random crop from the image zero-padded by this; 0: no crop
    int flip;           // 1: random horizontal flip
    int cutout;         // side of the square set to 0 after normalization; 0: no cutout
    float mixup_alpha;  // lambda ~ Beta(alpha, alpha) for mixup; 0: no mixup
    float cutmix_alpha; // lambda ~ Beta(alpha, alpha) for cutmix; 0: no cutmix
    float mix_prob;     // probability that a sample is mixed, when either alpha is > 0
} dp_augment_config;

#define DP_AUGMENT_CONFIG_INIT                                                                    \
    {.crop_pad = 0, .flip = 0, .cutout = 0, .mixup_alpha = 0.0f, .cutmix_alpha = 0.0f,           \
     .mix_prob = 1.0f}

// 1 if cfg mixes samples (an alpha > 0 and mix_prob > 0).
static inline int dp_augment_mixes(const dp_augment_config *cfg)
{
    return (cfg->mixup_alpha > 0.0f || cfg->cutmix_alpha > 0.0f) && cfg->mix_prob > 0.0f;
}

// --- crop, flip, normalization, cutout ---

// The random choices for one sample.
typedef struct dp_augment_draw {
    int dy, dx;       // crop offset in the padded image, each in [0, 2 * crop_pad]
    int flipped;      // 1: mirror left-right
    int cut_y, cut_x; // top-left corner of the cutout square in the output image; may be
                      // negative: the square is clipped to the image
    int cut_size;     // side of the cutout square; 0: no cutout
} dp_augment_draw;

// Draws the crop offset (only if crop_pad > 0; else dy = dx = 0), the flip (only if flip != 0)
// and the cutout square (only if cutout > 0: its center uniform over the h x w image, as in
// DeVries & Taylor 2017, so part of it may fall outside) of record in epoch, from stream
// (seed; epoch, record, DP_IO_RNG_AUGMENT). Words 0-4 of the stream are always drawn in one
// order, so that turning one option on or off leaves the draws of the others unchanged.
dp_augment_draw dp_augment_sample(uint64_t seed, int64_t epoch, int64_t record,
                                  const dp_augment_config *cfg, int64_t h, int64_t w);

// Per-channel affine map of the normalization: out = pixel * scale[c] + bias[c] with
// scale = 1 / (255 std), bias = -mean / std. mean, std, scale, bias: [c].
void dp_augment_norm_coeffs(float *scale, float *bias, const float *mean, const float *std,
                            int64_t c);

// Writes out (C, H, W) float, the normalized crop of in (H, W, C) uint8 zero-padded by crop_pad
// on each side, taken at (d.dy, d.dx) in the padded image and mirrored if d.flipped. Padding
// pixels are 0 before normalization (so they become bias[c]). Then, if d.cut_size > 0, the
// square of d (clipped to the image) is set to 0 in every channel, after normalization: 0 is
// the dataset mean, as in the cutout paper's code, which masks the normalized tensor.
void dp_augment_apply(float *out, const uint8_t *in, int64_t h, int64_t w, int64_t c,
                      int crop_pad, dp_augment_draw d, const float *scale, const float *bias);

// --- mixup and cutmix ---

typedef enum dp_augment_mix_kind {
    DP_AUGMENT_MIX_NONE = 0,
    DP_AUGMENT_MIX_MIXUP = 1,  // out = lambda * own + (1 - lambda) * partner, every pixel
    DP_AUGMENT_MIX_CUTMIX = 2, // the partner's box [y0, y1) x [x0, x1) pasted onto own
} dp_augment_mix_kind;

// How one sample is mixed with its partner. The training loss of the sample is then
// lambda * xent(own label) + (1 - lambda) * xent(partner's label).
typedef struct dp_augment_mix {
    dp_augment_mix_kind kind;
    float lambda;       // weight of the sample's own label, in [0, 1]; 1 when kind is NONE
    int y0, y1, x0, x1; // CUTMIX: rows [y0, y1), columns [x0, x1), inside the image
} dp_augment_mix;

// Draws the mixing of record in epoch from stream (seed; epoch, record, DP_IO_RNG_MIX): mixed
// with probability cfg->mix_prob; cutmix or mixup with probability 1/2 each when both alphas
// are > 0, else the one that is; lambda ~ Beta(alpha, alpha) (two Gamma draws, Marsaglia-Tsang,
// in double). Cutmix's box, as in the CutMix paper: side ratio sqrt(1 - lambda), center uniform
// over the image, clipped to it; lambda is then set to 1 - box area / image area, the share of
// the sample's own pixels. Returns kind NONE and lambda 1 when not mixed (or cfg mixes nothing).
dp_augment_mix dp_augment_mix_sample(uint64_t seed, int64_t epoch, int64_t record,
                                     const dp_augment_config *cfg, int64_t h, int64_t w);

// Mixes partner into out, both (C, H, W) float, already augmented and normalized (mixing is
// affine, so mixing normalized images equals normalizing the mixed ones, up to rounding).
// Does nothing for kind NONE.
void dp_augment_mix_apply(float *out, const float *partner, int64_t h, int64_t w, int64_t c,
                          dp_augment_mix m);

// The partners of global batch t of epoch: partner[i] (i in [0, global_batch)) is the position
// in the global batch of the sample that sample i is mixed with, a permutation of
// [0, global_batch) drawn by Fisher-Yates from stream (seed; epoch, t, DP_IO_RNG_MIX_PAIR)
// without modulo bias. Positions are those of the global batch, not of a rank's slice, so a
// sample gets the same partner whatever the number of ranks. A sample may be its own partner
// (then mixing leaves it as it is, with both labels equal).
void dp_augment_mix_partners(int32_t *partner, int64_t global_batch, uint64_t seed,
                             int64_t epoch, int64_t t);

#endif
