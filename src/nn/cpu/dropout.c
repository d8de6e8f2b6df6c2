// Dropout on the CPU (see dropout.h): one Philox stream per sample, word i deciding element i,
// regenerated in backward.
#include "nn/cpu/dropout.h"

#include <math.h>

#include "core/error.h"
#include "core/rng.h"
#include "nn/cpu/activation.h"
#include "nn/cpu/cpu_internal.h"

// y = scale x + shift for a kept element, y = dropped for a dropped one; d y / d x = scale.
typedef struct affine {
    float scale, shift, dropped;
} affine;

static dp_status check_params(const dp_dropout_params *p, const char *kernel, affine *out)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: params are NULL", kernel);
    }
    if (!(p->p >= 0.0f && p->p < 1.0f)) {
        return dp_error_set(DP_ERR_ARG, "%s: drop probability %g outside [0, 1)", kernel,
                            (double)p->p);
    }
    if (p->N < 0) {
        return dp_error_set(DP_ERR_ARG, "%s: N = %d", kernel, p->N);
    }
    const double q = 1.0 - p->p;
    if (p->kind == DP_DROPOUT_STANDARD) {
        *out = (affine){(float)(1.0 / q), 0.0f, 0.0f};
    } else if (p->kind == DP_DROPOUT_ALPHA) {
        const double alpha_p = -(double)DP_SELU_LAMBDA * DP_SELU_ALPHA;
        const double a = 1.0 / sqrt(q * (1.0 + p->p * alpha_p * alpha_p));
        const double b = -a * alpha_p * p->p;
        *out = (affine){(float)a, (float)b, (float)(a * alpha_p + b)};
    } else {
        return dp_error_set(DP_ERR_ARG, "%s: unknown dropout kind %d", kernel, (int)p->kind);
    }
    return DP_OK;
}

// keep[i] for elements [first, first + count) of one sample (first a multiple of 4): word i of the
// stream (seed; step, sample, layer) as dp_rng_uniform reads it (block i / 4 of Philox, word i %
// 4), kept when >= p. Whole blocks at a time, without a call per element.
static void sample_mask_at(uint8_t *keep, size_t first, size_t count, const dp_dropout_params *p,
                           uint32_t sample)
{
    const uint32_t key[2] = {(uint32_t)p->seed, (uint32_t)(p->seed >> 32)};
    uint32_t ctr[4] = {0, p->step, sample, p->layer}, block[4];
    for (size_t i = 0; i < count; i += 4) {
        ctr[0] = (uint32_t)((first + i) / 4);
        dp_philox4x32_10(block, ctr, key);
        for (size_t j = 0; j < 4 && i + j < count; j++) {
            keep[i + j] = dp_rng_bits_to_unit(block[j]) >= p->p;
        }
    }
}

// Elements of a sample handled per mask chunk (a stack buffer; a multiple of 4).
enum { MASK_CHUNK = 1024 };

dp_status dp_cpu_dropout_forward(float *y, const float *x, const dp_dropout_params *p)
{
    affine f;
    DP_TRY(check_params(p, "dropout forward", &f));
    DP_CPU_NEED(y, "dropout forward");
    DP_CPU_NEED(x, "dropout forward");
    uint8_t keep[MASK_CHUNK];
    for (int n = 0; n < p->N; n++) {
        const size_t off = (size_t)n * p->sample_size;
        for (size_t i0 = 0; i0 < p->sample_size; i0 += MASK_CHUNK) {
            size_t len = p->sample_size - i0 < MASK_CHUNK ? p->sample_size - i0 : MASK_CHUNK;
            sample_mask_at(keep, i0, len, p, p->first_sample + (uint32_t)n);
            for (size_t i = 0; i < len; i++) {
                y[off + i0 + i] = keep[i] ? f.scale * x[off + i0 + i] + f.shift : f.dropped;
            }
        }
    }
    return DP_OK;
}

dp_status dp_cpu_dropout_backward(float *dx, const float *dy, const dp_dropout_params *p,
                                  int accumulate)
{
    affine f;
    DP_TRY(check_params(p, "dropout backward", &f));
    DP_CPU_NEED(dx, "dropout backward");
    DP_CPU_NEED(dy, "dropout backward");
    uint8_t keep[MASK_CHUNK];
    for (int n = 0; n < p->N; n++) {
        const size_t off = (size_t)n * p->sample_size;
        for (size_t i0 = 0; i0 < p->sample_size; i0 += MASK_CHUNK) {
            size_t len = p->sample_size - i0 < MASK_CHUNK ? p->sample_size - i0 : MASK_CHUNK;
            sample_mask_at(keep, i0, len, p, p->first_sample + (uint32_t)n);
            for (size_t i = 0; i < len; i++) {
                float g = keep[i] ? f.scale * dy[off + i0 + i] : 0.0f;
                dx[off + i0 + i] = accumulate ? dx[off + i0 + i] + g : g;
            }
        }
    }
    return DP_OK;
}
