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

dp_status dp_cpu_dropout_forward(float *y, const float *x, const dp_dropout_params *p)
{
    affine f;
    DP_TRY(check_params(p, "dropout forward", &f));
    DP_CPU_NEED(y, "dropout forward");
    DP_CPU_NEED(x, "dropout forward");
    for (int n = 0; n < p->N; n++) {
        dp_rng r;
        dp_rng_init(&r, p->seed, p->step, p->first_sample + (uint32_t)n, p->layer);
        const size_t off = (size_t)n * p->sample_size;
        for (size_t i = 0; i < p->sample_size; i++) {
            int keep = dp_rng_uniform(&r) >= p->p;
            y[off + i] = keep ? f.scale * x[off + i] + f.shift : f.dropped;
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
    for (int n = 0; n < p->N; n++) {
        dp_rng r;
        dp_rng_init(&r, p->seed, p->step, p->first_sample + (uint32_t)n, p->layer);
        const size_t off = (size_t)n * p->sample_size;
        for (size_t i = 0; i < p->sample_size; i++) {
            int keep = dp_rng_uniform(&r) >= p->p;
            float g = keep ? f.scale * dy[off + i] : 0.0f;
            dx[off + i] = accumulate ? dx[off + i] + g : g;
        }
    }
    return DP_OK;
}
