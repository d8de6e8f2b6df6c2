// GPU test of the activation, PReLU and batch-norm kernels of ops.h against the CPU kernels on
// the same inputs (rounded to the storage type first): every activation forward and backward,
// PReLU, batch norm fused and unfused in NCHW and NHWC, accumulate flags, odd shapes and N = 1,
// and batch-norm reductions run twice bitwise. Tolerances: float32 a few ulp of float math
// (4e-6 relative) for element-wise results, 1e-5 of the summed magnitudes for sums; bf16 and
// fp16 one rounding of their own (2^-7, 2^-10 relative) on top. Exits 77 without a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cpu/accum.h"
#include "nn/cpu/activation.h"
#include "nn/cpu/batchnorm.h"
#include "nn/cpu/bn_act.h"
#include "nn/cuda/ops.h"
#include "ops_test.h"

static dp_cuda_ctx *ctx;

static const dp_cuda_dtype dtypes[] = {DP_CUDA_F32, DP_CUDA_BF16, DP_CUDA_F16};
static const dp_cuda_layout layouts[] = {DP_CUDA_NCHW, DP_CUDA_NHWC};

// --- activations ---

static void act_case(dp_act act, size_t n, dp_cuda_dtype t)
{
    char what[128];
    const float slope = 0.1f;
    float *x = ot_alloc(n), *y = ot_alloc(n), *dy = ot_alloc(n), *dx = ot_alloc(n);
    float *got = ot_alloc(n);
    ot_fill(x, n, -7.0f, 7.0f, (uint32_t)act * 7 + (uint32_t)n);
    ot_fill(dy, n, -1.0f, 1.0f, (uint32_t)act * 11 + 3);
    ot_round_all(x, n, t);
    ot_round_all(dy, n, t);
    ot_ok(dp_cpu_act_forward(y, x, n, act, slope), "cpu act forward");
    void *d_x = ot_dev(ctx, x, n, t), *d_y = ot_dev(ctx, NULL, n, t);
    ot_ok(dp_cuda_act_forward(ctx, d_y, d_x, n, act, slope, t), "act forward");
    ot_get(ctx, got, d_y, n, t);
    snprintf(what, sizeof what, "act %s forward %s n=%zu", dp_act_name(act), ct_dtype_name(t), n);
    // mish and the gelus go through expf/erfcf of large arguments: a little more slack
    ot_close(what, got, y, n, 1e-6, ot_rtol(t) + 4e-6);
    // backward from the same y (the CPU's, rounded) on both sides
    ot_round_all(y, n, t);
    void *d_yr = ot_dev(ctx, y, n, t), *d_dy = ot_dev(ctx, dy, n, t);
    ot_ok(dp_cpu_act_backward(dx, dy, x, y, n, act, slope), "cpu act backward");
    ot_ok(dp_cuda_act_backward(ctx, d_dy, d_dy, d_x, d_yr, n, act, slope, t), "act backward");
    ot_get(ctx, got, d_dy, n, t);
    snprintf(what, sizeof what, "act %s backward %s n=%zu (in place)", dp_act_name(act),
             ct_dtype_name(t), n);
    ot_close(what, got, dx, n, 1e-6, ot_rtol(t) + 4e-6);
    dp_cuda_free(ctx, d_x);
    dp_cuda_free(ctx, d_y);
    dp_cuda_free(ctx, d_yr);
    dp_cuda_free(ctx, d_dy);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(got);
}

static void test_activations(void)
{
    const size_t sizes[] = {1, 1000, 100003};
    for (int a = 0; a < DP_ACT_COUNT_; a++) {
        if (a == DP_ACT_PRELU) {
            continue;
        }
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            for (int t = 0; t < 3; t++) {
                act_case((dp_act)a, sizes[s], dtypes[t]);
            }
        }
    }
    // the CPU's refusals
    void *d = ot_dev(ctx, NULL, 4, DP_CUDA_F32);
    ot_check(dp_cuda_act_forward(ctx, d, d, 4, DP_ACT_PRELU, 0.0f, DP_CUDA_F32) == DP_ERR_ARG,
             "act forward refuses prelu");
    ot_check(dp_cuda_act_forward(ctx, d, d, 4, DP_ACT_LEAKY, -1.0f, DP_CUDA_F32) == DP_ERR_ARG,
             "act forward refuses a negative leaky slope");
    ot_check(dp_cuda_act_backward(ctx, d, d, NULL, d, 4, DP_ACT_SWISH, 0.0f, DP_CUDA_F32) ==
                 DP_ERR_ARG,
             "act backward needs x for swish");
    dp_cuda_free(ctx, d);
}

// --- PReLU ---

static void prelu_case(int N, int C, size_t hw, dp_cuda_layout l, dp_cuda_dtype t, unsigned accum)
{
    char what[160];
    const size_t n = (size_t)N * C * hw;
    float *x = ot_alloc(n), *dy = ot_alloc(n), *y = ot_alloc(n), *dx = ot_alloc(n);
    float *slope = ot_alloc(C), *ds = ot_alloc(C), *ds_got = ot_alloc(C), *got = ot_alloc(n);
    float *tmp = ot_alloc(n), *mag = ot_alloc(C);
    ot_fill(x, n, -2.0f, 2.0f, 5 + (uint32_t)n);
    ot_fill(dy, n, -1.0f, 1.0f, 6 + (uint32_t)n);
    ot_fill(slope, C, 0.0f, 0.5f, 7);
    ot_fill(dx, n, -1.0f, 1.0f, 8); // the accumulated-into values
    ot_fill(ds, C, -1.0f, 1.0f, 9);
    ot_round_all(x, n, t);
    ot_round_all(dy, n, t);
    ot_round_all(dx, n, t);
    snprintf(what, sizeof what, "prelu %dx%dx%zu %s %s accum %u", N, C, hw, ct_layout_name(l),
             ct_dtype_name(t), accum);
    ot_to_layout(tmp, x, N, C, hw, l);
    void *d_x = ot_dev(ctx, tmp, n, t), *d_y = ot_dev(ctx, NULL, n, t);
    ot_to_layout(tmp, dy, N, C, hw, l);
    void *d_dy = ot_dev(ctx, tmp, n, t);
    ot_to_layout(tmp, dx, N, C, hw, l);
    void *d_dx = ot_dev(ctx, tmp, n, t);
    float *d_slope = ot_dev(ctx, slope, C, DP_CUDA_F32), *d_ds = ot_dev(ctx, ds, C, DP_CUDA_F32);
    size_t ws_bytes = dp_cuda_prelu_workspace_bytes(N, C, hw, l);
    void *ws = ot_dev_bytes(ctx, NULL, ws_bytes ? ws_bytes : 1);

    ot_ok(dp_cpu_prelu_forward(y, x, slope, N, C, hw), "cpu prelu forward");
    ot_ok(dp_cuda_prelu_forward(ctx, d_y, d_x, d_slope, N, C, hw, l, t), what);
    ot_get(ctx, tmp, d_y, n, t);
    ot_from_layout(got, tmp, N, C, hw, l);
    ot_round_all(y, n, t);
    ot_same(what, got, y, n); // one product, one rounding: the CPU's bits in every type

    for (int c = 0; c < C; c++) { // sum of |terms| of each slope gradient
        for (int b = 0; b < N; b++) {
            for (size_t s = 0; s < hw; s++) {
                size_t i = ((size_t)b * C + c) * hw + s;
                mag[c] += x[i] > 0.0f ? 0.0f : fabsf(dy[i] * x[i]);
            }
        }
    }
    ot_ok(dp_cpu_prelu_backward(dx, ds, dy, x, slope, N, C, hw, accum), "cpu prelu backward");
    ot_ok(dp_cuda_prelu_backward(ctx, d_dx, d_ds, d_dy, d_x, d_slope, N, C, hw, accum, l, t, ws),
          what);
    ot_get(ctx, tmp, d_dx, n, t);
    ot_from_layout(got, tmp, N, C, hw, l);
    ot_round_all(dx, n, t);
    ot_close(what, got, dx, n, 0.0, t == DP_CUDA_F32 ? 0.0 : ot_rtol(t));
    ot_get(ctx, ds_got, d_ds, C, DP_CUDA_F32);
    for (int c = 0; c < C; c++) {
        ot_check(fabs((double)ds_got[c] - ds[c]) <= 1e-5 * mag[c] + 1e-6 * fabs((double)ds[c]),
                 "%s: dslope[%d] got %.9g want %.9g", what, c, (double)ds_got[c], (double)ds[c]);
    }
    dp_cuda_free(ctx, d_x);
    dp_cuda_free(ctx, d_y);
    dp_cuda_free(ctx, d_dy);
    dp_cuda_free(ctx, d_dx);
    dp_cuda_free(ctx, d_slope);
    dp_cuda_free(ctx, d_ds);
    dp_cuda_free(ctx, ws);
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(slope);
    free(ds);
    free(ds_got);
    free(got);
    free(tmp);
    free(mag);
}

static void test_prelu(void)
{
    for (int l = 0; l < 2; l++) {
        for (int t = 0; t < 3; t++) {
            prelu_case(1, 3, 7, layouts[l], dtypes[t], DP_ACCUM_NONE);
            prelu_case(4, 37, 9 * 11, layouts[l], dtypes[t], DP_ACCUM_ALL);
            prelu_case(16, 8, 32 * 32, layouts[l], dtypes[t], DP_ACCUM_DPARAMS);
        }
    }
}

// --- batch norm ---

typedef struct bn_case {
    int N, C, H, W;
} bn_case;

// Per-channel sums of |a| (and of |a b| when b is given), NCHW: the scale of a sum's error.
static void channel_mag(double *out, const float *a, const float *b, const dp_bn_params *p)
{
    size_t hw = (size_t)p->H * p->W;
    for (int c = 0; c < p->C; c++) {
        out[c] = 0.0;
        for (int n = 0; n < p->N; n++) {
            for (size_t s = 0; s < hw; s++) {
                size_t i = ((size_t)n * p->C + c) * hw + s;
                out[c] += fabs((double)a[i] * (b != NULL ? (double)b[i] : 1.0));
            }
        }
    }
}

static void check_sums(const char *what, const float *got, const float *ref, const double *mag,
                       int C)
{
    for (int c = 0; c < C; c++) {
        double tol = 1e-5 * mag[c] + 1e-6 * fabs((double)ref[c]) + 1e-30;
        ot_check(fabs((double)got[c] - ref[c]) <= tol, "%s[%d]: got %.9g want %.9g (tol %g)", what,
                 c, (double)got[c], (double)ref[c], tol);
    }
}

// Device copies of an NCHW host tensor in layout l and type t.
static void *up(const float *nchw, const dp_bn_params *p, dp_cuda_layout l, dp_cuda_dtype t,
                float *tmp)
{
    size_t hw = (size_t)p->H * p->W;
    ot_to_layout(tmp, nchw, p->N, p->C, hw, l);
    return ot_dev(ctx, tmp, (size_t)p->N * p->C * hw, t);
}

static void down(float *nchw, const void *dev, const dp_bn_params *p, dp_cuda_layout l,
                 dp_cuda_dtype t, float *tmp)
{
    size_t hw = (size_t)p->H * p->W;
    ot_get(ctx, tmp, dev, (size_t)p->N * p->C * hw, t);
    ot_from_layout(nchw, tmp, p->N, p->C, hw, l);
}

// Unfused training forward and backward against batchnorm.c; both run twice (bitwise).
static void bn_unfused_case(bn_case bc, dp_cuda_layout l, dp_cuda_dtype t, unsigned accum)
{
    char what[160];
    dp_bn_params p = DP_BN_PARAMS_INIT;
    p.N = bc.N, p.C = bc.C, p.H = bc.H, p.W = bc.W;
    const int C = p.C;
    const size_t n = (size_t)p.N * C * p.H * p.W;
    snprintf(what, sizeof what, "bn %dx%dx%dx%d %s %s accum %u", p.N, C, p.H, p.W,
             ct_layout_name(l), ct_dtype_name(t), accum);
    float *x = ot_alloc(n), *y = ot_alloc(n), *dy = ot_alloc(n), *dx = ot_alloc(n);
    float *got = ot_alloc(n), *got2 = ot_alloc(n), *tmp = ot_alloc(n);
    float *gamma = ot_alloc(C), *beta = ot_alloc(C), *rm = ot_alloc(C), *rv = ot_alloc(C);
    float *mean = ot_alloc(C), *istd = ot_alloc(C), *dg = ot_alloc(C), *db = ot_alloc(C);
    float *c_got = ot_alloc(C), *c_got2 = ot_alloc(C);
    double *mag = calloc((size_t)C, sizeof *mag);
    ot_fill(x, n, -1.0f, 1.0f, 21 + (uint32_t)n);
    for (size_t i = 0; i < n; i++) { // a large offset per channel: the variance must not cancel
        x[i] = x[i] * 0.5f + 3.0f + (float)((i / ((size_t)p.H * p.W)) % (size_t)C) * 0.25f;
    }
    ot_fill(dy, n, -1.0f, 1.0f, 22);
    ot_fill(dx, n, -1.0f, 1.0f, 23);
    ot_fill(gamma, C, 0.5f, 1.5f, 24);
    ot_fill(beta, C, -0.5f, 0.5f, 25);
    ot_fill(rm, C, -0.1f, 0.1f, 26);
    ot_fill(rv, C, 0.5f, 2.0f, 27);
    ot_fill(dg, C, -1.0f, 1.0f, 28);
    ot_fill(db, C, -1.0f, 1.0f, 29);
    ot_round_all(x, n, t);
    ot_round_all(dy, n, t);
    ot_round_all(dx, n, t);
    void *d_x = up(x, &p, l, t, tmp), *d_dy = up(dy, &p, l, t, tmp), *d_dx = up(dx, &p, l, t, tmp);
    void *d_y = ot_dev(ctx, NULL, n, t);
    float *d_gamma = ot_dev(ctx, gamma, C, DP_CUDA_F32),
          *d_beta = ot_dev(ctx, beta, C, DP_CUDA_F32);
    float *d_rm = ot_dev(ctx, rm, C, DP_CUDA_F32), *d_rv = ot_dev(ctx, rv, C, DP_CUDA_F32);
    float *d_mean = ot_dev(ctx, NULL, C, DP_CUDA_F32), *d_istd = ot_dev(ctx, NULL, C, DP_CUDA_F32);
    float *d_dg = ot_dev(ctx, dg, C, DP_CUDA_F32), *d_db = ot_dev(ctx, db, C, DP_CUDA_F32);
    void *ws = ot_dev_bytes(ctx, NULL, dp_cuda_bn_workspace_bytes(&p, l));

    ot_ok(dp_cpu_bn_forward_train(y, mean, istd, rm, rv, x, gamma, beta, &p), "cpu bn forward");
    ot_ok(dp_cuda_bn_forward_train(ctx, d_y, d_mean, d_istd, d_rm, d_rv, d_x, d_gamma, d_beta, &p,
                                   l, t, ws),
          what);
    ot_get(ctx, c_got, d_mean, C, DP_CUDA_F32);
    for (int c = 0; c < C; c++) { // |mean| is about 3, its spread about 0.3
        ot_check(fabsf(c_got[c] - mean[c]) <= 1e-6f * (fabsf(mean[c]) + 1.0f),
                 "%s: mean[%d] got %.9g want %.9g", what, c, (double)c_got[c], (double)mean[c]);
    }
    ot_get(ctx, c_got, d_istd, C, DP_CUDA_F32);
    ot_close("bn inv_std", c_got, istd, (size_t)C, 0.0, 2e-5);
    ot_get(ctx, c_got, d_rm, C, DP_CUDA_F32);
    ot_close("bn running_mean", c_got, rm, (size_t)C, 1e-6, 1e-5);
    ot_get(ctx, c_got, d_rv, C, DP_CUDA_F32);
    ot_close("bn running_var", c_got, rv, (size_t)C, 1e-6, 2e-5);
    down(got, d_y, &p, l, t, tmp);
    ot_close(what, got, y, n, 2e-5 * 4, ot_rtol(t) + 2e-5); // |y| up to about 3
    // the statistics again: the same bits
    float *d_mean2 = ot_dev(ctx, NULL, C, DP_CUDA_F32),
          *d_istd2 = ot_dev(ctx, NULL, C, DP_CUDA_F32);
    ot_ok(dp_cuda_bn_stats(ctx, d_mean2, d_istd2, NULL, NULL, NULL, d_x, NULL, &p, l, t, ws),
          "bn stats again");
    ot_get(ctx, c_got, d_mean, C, DP_CUDA_F32);
    ot_get(ctx, c_got2, d_mean2, C, DP_CUDA_F32);
    ot_same("bn mean run to run", c_got2, c_got, (size_t)C);
    ot_get(ctx, c_got, d_istd, C, DP_CUDA_F32);
    ot_get(ctx, c_got2, d_istd2, C, DP_CUDA_F32);
    ot_same("bn inv_std run to run", c_got2, c_got, (size_t)C);

    // backward from the CPU's saved statistics on both sides
    ot_ok(dp_cuda_h2d_sync(ctx, d_mean, mean, C * sizeof(float)), "upload mean");
    ot_ok(dp_cuda_h2d_sync(ctx, d_istd, istd, C * sizeof(float)), "upload inv_std");
    float *xhat = ot_alloc(n);
    for (size_t i = 0; i < n; i++) {
        int c = (int)((i / ((size_t)p.H * p.W)) % (size_t)C);
        xhat[i] = (x[i] - mean[c]) * istd[c];
    }
    double *mag2 = calloc((size_t)C, sizeof *mag2);
    channel_mag(mag, dy, NULL, &p);
    channel_mag(mag2, dy, xhat, &p);
    float *dg_start = ot_alloc(C), *db_start = ot_alloc(C);
    memcpy(dg_start, dg, C * sizeof(float));
    memcpy(db_start, db, C * sizeof(float));
    ot_ok(dp_cpu_bn_backward(dx, dg, db, dy, x, gamma, mean, istd, &p, accum), "cpu bn backward");
    ot_ok(dp_cuda_bn_backward(ctx, d_dx, d_dg, d_db, d_dy, d_x, d_gamma, d_mean, d_istd, &p, accum,
                              l, t, ws),
          what);
    ot_get(ctx, c_got, d_db, C, DP_CUDA_F32);
    check_sums("bn dbeta", c_got, db, mag, C);
    ot_get(ctx, c_got, d_dg, C, DP_CUDA_F32);
    check_sums("bn dgamma", c_got, dg, mag2, C);
    down(got, d_dx, &p, l, t, tmp);
    double dx_max = 0.0;
    for (size_t i = 0; i < n; i++) {
        dx_max = fmax(dx_max, fabs((double)dx[i]));
    }
    ot_close("bn dx", got, dx, n, 2e-5 * dx_max, ot_rtol(t) + 1e-5);
    // twice, from the same starting gradients: bitwise
    float *dg_run1 = ot_alloc(C);
    ot_get(ctx, dg_run1, d_dg, C, DP_CUDA_F32);
    dp_cuda_free(ctx, d_dx);
    float *dx_start = ot_alloc(n);
    ot_fill(dx_start, n, -1.0f, 1.0f, 23);
    ot_round_all(dx_start, n, t);
    void *d_dx2 = up(dx_start, &p, l, t, tmp);
    ot_ok(dp_cuda_h2d_sync(ctx, d_dg, dg_start, C * sizeof(float)), "reset dgamma");
    ot_ok(dp_cuda_h2d_sync(ctx, d_db, db_start, C * sizeof(float)), "reset dbeta");
    ot_ok(dp_cuda_bn_backward(ctx, d_dx2, d_dg, d_db, d_dy, d_x, d_gamma, d_mean, d_istd, &p, accum,
                              l, t, ws),
          "bn backward again");
    down(got2, d_dx2, &p, l, t, tmp);
    ot_same("bn dx run to run", got2, got, n);
    ot_get(ctx, c_got2, d_dg, C, DP_CUDA_F32);
    ot_same("bn dgamma run to run", c_got2, dg_run1, (size_t)C);

    // eval: the CPU's bits in float32
    ot_ok(dp_cpu_bn_forward_eval(y, x, gamma, beta, rm, rv, &p), "cpu bn eval");
    ot_ok(dp_cuda_h2d_sync(ctx, d_rm, rm, C * sizeof(float)), "upload running mean");
    ot_ok(dp_cuda_h2d_sync(ctx, d_rv, rv, C * sizeof(float)), "upload running var");
    ot_ok(dp_cuda_bn_forward_eval(ctx, d_y, d_x, d_gamma, d_beta, d_rm, d_rv, &p, l, t), what);
    down(got, d_y, &p, l, t, tmp);
    ot_round_all(y, n, t);
    ot_same("bn forward_eval", got, y, n);
    float *d_scale = ot_dev(ctx, NULL, C, DP_CUDA_F32);
    ot_ok(dp_cuda_bn_eval_scale(ctx, d_scale, d_gamma, d_rv, C, p.eps), "bn eval scale");
    ot_ok(dp_cuda_bn_act_forward(ctx, d_y, NULL, d_x, d_rm, d_scale, d_beta, DP_ACT_LINEAR, 0.0f,
                                 &p, l, t),
          "bn eval by scale");
    down(got, d_y, &p, l, t, tmp);
    ot_same("bn eval by eval_scale + bn_act_forward", got, y, n);

    dp_cuda_free(ctx, d_x);
    dp_cuda_free(ctx, d_dy);
    dp_cuda_free(ctx, d_dx2);
    dp_cuda_free(ctx, d_y);
    dp_cuda_free(ctx, d_gamma);
    dp_cuda_free(ctx, d_beta);
    dp_cuda_free(ctx, d_rm);
    dp_cuda_free(ctx, d_rv);
    dp_cuda_free(ctx, d_mean);
    dp_cuda_free(ctx, d_istd);
    dp_cuda_free(ctx, d_mean2);
    dp_cuda_free(ctx, d_istd2);
    dp_cuda_free(ctx, d_dg);
    dp_cuda_free(ctx, d_db);
    dp_cuda_free(ctx, d_scale);
    dp_cuda_free(ctx, ws);
    free(x), free(y), free(dy), free(dx), free(got), free(got2), free(tmp), free(gamma);
    free(beta), free(rm), free(rv), free(mean), free(istd), free(dg), free(db), free(c_got);
    free(c_got2), free(mag), free(mag2), free(xhat), free(dg_start), free(db_start);
    free(dx_start), free(dg_run1);
}

// The fused kernels the layers run, against bn_act.c: statistics with scale, forward with the
// CPU's statistics (so float32 gives the CPU's bits for linear, relu and leaky), backward sums
// and coefficients, and the map applied with the CPU's coefficients (the CPU's bits again).
static void bn_fused_case(bn_case bc, dp_cuda_layout l, dp_cuda_dtype t, dp_act act, int accumulate)
{
    char what[160];
    dp_bn_params p = DP_BN_PARAMS_INIT;
    p.N = bc.N, p.C = bc.C, p.H = bc.H, p.W = bc.W;
    const int C = p.C;
    const size_t hw = (size_t)p.H * p.W, n = (size_t)p.N * C * hw;
    const float slope = 0.1f;
    snprintf(what, sizeof what, "bn+%s %dx%dx%dx%d %s %s", dp_act_name(act), p.N, C, p.H, p.W,
             ct_layout_name(l), ct_dtype_name(t));
    float *z = ot_alloc(n), *y = ot_alloc(n), *a = ot_alloc(n), *dy = ot_alloc(n);
    float *dz = ot_alloc(n), *got = ot_alloc(n), *tmp = ot_alloc(n);
    float *gamma = ot_alloc(C), *beta = ot_alloc(C), *mean = ot_alloc(C), *istd = ot_alloc(C);
    float *scale = ot_alloc(C), *dg = ot_alloc(C), *db = ot_alloc(C),
          *coef = ot_alloc(4 * (size_t)C);
    float *c_got = ot_alloc(4 * (size_t)C);
    double *stats = calloc(2 * n / hw, sizeof *stats), *mag = calloc((size_t)C, sizeof *mag);
    double *mag2 = calloc((size_t)C, sizeof *mag2);
    ot_fill(z, n, -2.0f, 2.0f, 31 + (uint32_t)n);
    ot_fill(dy, n, -1.0f, 1.0f, 32);
    ot_fill(dz, n, -1.0f, 1.0f, 33);
    ot_fill(gamma, C, 0.5f, 1.5f, 34);
    ot_fill(beta, C, -0.5f, 0.5f, 35);
    ot_fill(dg, C, -1.0f, 1.0f, 36);
    ot_fill(db, C, -1.0f, 1.0f, 37);
    ot_round_all(z, n, t);
    ot_round_all(dy, n, t);
    ot_round_all(dz, n, t);
    void *d_z = up(z, &p, l, t, tmp), *d_dy = up(dy, &p, l, t, tmp), *d_dz = up(dz, &p, l, t, tmp);
    void *d_y = ot_dev(ctx, NULL, n, t), *d_a = ot_dev(ctx, NULL, n, t);
    float *d_gamma = ot_dev(ctx, gamma, C, DP_CUDA_F32),
          *d_beta = ot_dev(ctx, beta, C, DP_CUDA_F32);
    float *d_mean = ot_dev(ctx, NULL, C, DP_CUDA_F32), *d_istd = ot_dev(ctx, NULL, C, DP_CUDA_F32);
    float *d_scale = ot_dev(ctx, NULL, C, DP_CUDA_F32),
          *d_coef = ot_dev(ctx, NULL, 4 * (size_t)C, DP_CUDA_F32);
    float *d_dg = ot_dev(ctx, dg, C, DP_CUDA_F32), *d_db = ot_dev(ctx, db, C, DP_CUDA_F32);
    void *ws = ot_dev_bytes(ctx, NULL, dp_cuda_bn_workspace_bytes(&p, l));

    // statistics and scale
    dp_cpu_bn_plane_stats_pool(stats, z, &p, NULL);
    ot_ok(dp_cpu_bn_stats_finish(mean, istd, NULL, NULL, stats, &p), "cpu stats");
    for (int c = 0; c < C; c++) {
        scale[c] = gamma[c] * istd[c];
    }
    ot_ok(dp_cuda_bn_stats(ctx, d_mean, d_istd, NULL, NULL, d_scale, d_z, d_gamma, &p, l, t, ws),
          what);
    ot_get(ctx, c_got, d_mean, C, DP_CUDA_F32);
    ot_close("bn_act mean", c_got, mean, (size_t)C, 2e-6, 1e-5);
    ot_get(ctx, c_got, d_scale, C, DP_CUDA_F32);
    ot_close("bn_act scale", c_got, scale, (size_t)C, 0.0, 2e-5);

    // forward with the CPU's statistics
    ot_ok(dp_cuda_h2d_sync(ctx, d_mean, mean, C * sizeof(float)), "upload mean");
    ot_ok(dp_cuda_h2d_sync(ctx, d_istd, istd, C * sizeof(float)), "upload inv_std");
    ot_ok(dp_cuda_h2d_sync(ctx, d_scale, scale, C * sizeof(float)), "upload scale");
    const int with_a = dp_act_backward_needs_input(act);
    ot_ok(dp_cpu_bn_act_forward(y, with_a ? a : NULL, z, mean, scale, beta, act, slope, &p, NULL),
          "cpu bn_act forward");
    ot_ok(dp_cuda_bn_act_forward(ctx, d_y, with_a ? d_a : NULL, d_z, d_mean, d_scale, d_beta, act,
                                 slope, &p, l, t),
          what);
    down(got, d_y, &p, l, t, tmp);
    if (dp_bn_act_fusable(act)) {
        ot_round_all(y, n, t);
        ot_same(what, got, y, n);
    } else {
        // the device activates the unrounded a; the CPU the float a
        ot_close(what, got, y, n, 1e-6, 2 * ot_rtol(t) + 4e-6);
        down(got, d_a, &p, l, t, tmp);
        ot_round_all(a, n, t);
        ot_same("bn_act forward a", got, a, n);
    }
    if (!dp_bn_act_fusable(act)) {
        goto out;
    }

    // backward: sums and coefficients from the CPU's y
    ot_round_all(y, n, t);
    dp_cuda_free(ctx, d_y);
    d_y = up(y, &p, l, t, tmp);
    for (int c = 0; c < C; c++) {
        for (int b = 0; b < p.N; b++) {
            for (size_t s = 0; s < hw; s++) {
                size_t i = ((size_t)b * C + c) * hw + s;
                float g = act == DP_ACT_LINEAR || y[i] > 0.0f
                              ? dy[i]
                              : (act == DP_ACT_RELU ? 0.0f : slope * dy[i]);
                mag[c] += fabs((double)g);
                mag2[c] += fabs((double)g * (z[i] - mean[c]));
            }
        }
    }
    const unsigned accum = accumulate ? DP_ACCUM_DPARAMS : DP_ACCUM_NONE;
    ot_ok(dp_cpu_bn_act_backward_coef(coef, dg, db, dy, y, z, gamma, mean, istd, act, slope, &p,
                                      accum, NULL),
          "cpu bn_act coef");
    ot_ok(dp_cuda_bn_act_backward_coef(ctx, d_coef, d_dg, d_db, d_dy, d_y, d_z, d_gamma, d_mean,
                                       d_istd, act, slope, &p, accum, l, t, ws),
          what);
    ot_get(ctx, c_got, d_db, C, DP_CUDA_F32);
    check_sums("bn_act dbeta", c_got, db, mag, C);
    for (int c = 0; c < C; c++) {
        mag2[c] *= istd[c];
    }
    ot_get(ctx, c_got, d_dg, C, DP_CUDA_F32);
    check_sums("bn_act dgamma", c_got, dg, mag2, C);
    ot_get(ctx, c_got, d_coef, 4 * (size_t)C, DP_CUDA_F32);
    const double m = (double)p.N * hw;
    for (int c = 0; c < C; c++) {
        const double k = fabs((double)coef[4 * c]);
        ot_check(c_got[4 * c] == coef[4 * c] && c_got[4 * c + 3] == coef[4 * c + 3],
                 "%s: coef[%d] 0 and 3 (k and the mean) are the CPU's bits", what, c);
        ot_check(fabs((double)c_got[4 * c + 1] - coef[4 * c + 1]) <=
                     1e-5 * k * istd[c] * mag2[c] / m + 1e-6 * fabs((double)coef[4 * c + 1]),
                 "%s: coef[%d][1] got %.9g want %.9g", what, c, (double)c_got[4 * c + 1],
                 (double)coef[4 * c + 1]);
        ot_check(fabs((double)c_got[4 * c + 2] - coef[4 * c + 2]) <=
                     1e-5 * k * mag[c] / m + 1e-6 * fabs((double)coef[4 * c + 2]),
                 "%s: coef[%d][2] got %.9g want %.9g", what, c, (double)c_got[4 * c + 2],
                 (double)coef[4 * c + 2]);
    }
    // the map with the CPU's coefficients
    ot_ok(dp_cuda_h2d_sync(ctx, d_coef, coef, 4 * C * sizeof(float)), "upload coef");
    ot_ok(dp_cpu_bn_act_backward_apply(dz, dy, y, z, coef, act, slope, &p, accumulate, NULL),
          "cpu bn_act apply");
    ot_ok(dp_cuda_bn_act_backward_apply(ctx, d_dz, d_dy, d_y, d_z, d_coef, act, slope, &p,
                                        accumulate, l, t),
          what);
    down(got, d_dz, &p, l, t, tmp);
    ot_round_all(dz, n, t);
    if (t == DP_CUDA_F32) {
        ot_same("bn_act apply", got, dz, n);
    } else {
        ot_close("bn_act apply", got, dz, n, 1e-6, 2 * ot_rtol(t)); // CPU's dz is rounded once more
    }
out:
    dp_cuda_free(ctx, d_z);
    dp_cuda_free(ctx, d_dy);
    dp_cuda_free(ctx, d_dz);
    dp_cuda_free(ctx, d_y);
    dp_cuda_free(ctx, d_a);
    dp_cuda_free(ctx, d_gamma);
    dp_cuda_free(ctx, d_beta);
    dp_cuda_free(ctx, d_mean);
    dp_cuda_free(ctx, d_istd);
    dp_cuda_free(ctx, d_scale);
    dp_cuda_free(ctx, d_coef);
    dp_cuda_free(ctx, d_dg);
    dp_cuda_free(ctx, d_db);
    dp_cuda_free(ctx, ws);
    free(z), free(y), free(a), free(dy), free(dz), free(got), free(tmp), free(gamma), free(beta);
    free(mean), free(istd), free(scale), free(dg), free(db), free(coef), free(c_got), free(stats);
    free(mag), free(mag2);
}

static void test_batchnorm(void)
{
    const bn_case cases[] = {
        {1, 3, 5, 7}, {4, 17, 9, 11}, {16, 8, 32, 32}, {3, 40, 1, 1}, {2, 64, 28, 28}};
    const int nc = (int)(sizeof cases / sizeof cases[0]);
    for (int l = 0; l < 2; l++) {
        for (int t = 0; t < 3; t++) {
            for (int i = 0; i < nc; i++) {
                bn_unfused_case(cases[i], layouts[l], dtypes[t],
                                i % 2 ? DP_ACCUM_ALL : DP_ACCUM_NONE);
            }
            const dp_act acts[] = {DP_ACT_LINEAR, DP_ACT_RELU, DP_ACT_LEAKY, DP_ACT_SWISH};
            for (int a = 0; a < 4; a++) {
                bn_fused_case(cases[1], layouts[l], dtypes[t], acts[a], a % 2);
                bn_fused_case(cases[4], layouts[l], dtypes[t], acts[a], 1 - a % 2);
            }
        }
    }
    // the CPU's refusals
    dp_bn_params p = DP_BN_PARAMS_INIT;
    p.N = 1, p.C = 2, p.H = 1, p.W = 1;
    void *d = ot_dev(ctx, NULL, 64, DP_CUDA_F32);
    ot_check(dp_cuda_bn_stats(ctx, d, d, NULL, NULL, NULL, d, NULL, &p, DP_CUDA_NCHW, DP_CUDA_F32,
                              d) == DP_ERR_SHAPE,
             "bn statistics of one value per channel: DP_ERR_SHAPE");
    p.W = 4;
    ot_check(dp_cuda_bn_act_backward_coef(ctx, d, d, d, d, d, d, d, d, d, DP_ACT_SWISH, 0.0f, &p, 0,
                                          DP_CUDA_NCHW, DP_CUDA_F32, d) == DP_ERR_ARG,
             "bn_act backward refuses an activation it does not fuse");
    dp_cuda_free(ctx, d);
}

int main(void)
{
    ctx = ot_ctx_or_skip();
    test_activations();
    test_prelu();
    test_batchnorm();
    return ot_finish(ctx, "cuda ops: activations, prelu, batch norm");
}
