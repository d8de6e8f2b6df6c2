// Batch norm fused with the activation (bn_act.h) against the reference kernels of batchnorm.c
// and activation.c run one after the other (which test_batchnorm.c and test_activation.c check
// against double statistics and finite differences); the convolution's epilogue and dy map
// against the convolution followed or preceded by those kernels; bitwise results for 1-3
// threads; argument errors.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "grad_check.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/batchnorm.h"
#include "nn/cpu/bn_act.h"
#include "nn/cpu/conv.h"

typedef struct fix {
    dp_bn_params p;
    size_t n;
    int C;
    float *z, *dy, *gamma, *beta, *mean, *inv_std, *rmean, *rvar, *scale;
    double *stats;
} fix;

static void fix_init(fix *f, int N, int C, int H, int W, float offset)
{
    dp_bn_params p = DP_BN_PARAMS_INIT;
    p.N = N, p.C = C, p.H = H, p.W = W;
    f->p = p;
    f->C = C;
    f->n = (size_t)N * C * H * W;
    f->z = malloc(f->n * sizeof(float));
    f->dy = malloc(f->n * sizeof(float));
    f->gamma = malloc((size_t)C * 7 * sizeof(float));
    f->stats = malloc((size_t)N * C * 2 * sizeof(double));
    cr_assert(f->z && f->dy && f->gamma && f->stats);
    f->beta = f->gamma + C, f->mean = f->beta + C, f->inv_std = f->mean + C;
    f->rmean = f->inv_std + C, f->rvar = f->rmean + C, f->scale = f->rvar + C;
    gc_fill(f->z, f->n, offset - 1.0f, offset + 1.0f, 21);
    gc_fill(f->dy, f->n, -1.0f, 1.0f, 22);
    gc_fill(f->gamma, (size_t)C, 0.5f, 1.5f, 23);
    gc_fill(f->beta, (size_t)C, -0.5f, 0.5f, 24);
    for (int c = 0; c < C; c++) {
        f->rmean[c] = 0.25f * c, f->rvar[c] = 1.0f + c;
    }
}

static void fix_fini(fix *f)
{
    free(f->z);
    free(f->dy);
    free(f->gamma);
    free(f->stats);
}

static float *alloc_n(size_t n)
{
    float *v = malloc(n * sizeof(float));
    cr_assert_not_null(v);
    return v;
}

static void expect_close(const char *what, const float *got, const float *ref, size_t n, double tol)
{
    gc_err e = gc_compare_f(what, got, ref, n, 1e-2);
    cr_expect_lt(e.max_rel, tol, "%s: rel err %g at %zu (%g vs %g)", what, e.max_rel, e.index,
                 e.got, e.expect);
}

// Batch statistics from plane statistics against dp_cpu_bn_forward_train's, with a mean far
// from 0 (the plane means keep the variance accurate).
Test(bn_act, plane_statistics_give_the_batch_statistics)
{
    fix f;
    fix_init(&f, 7, 3, 9, 5, 30.0f);
    float *y = alloc_n(f.n), ref[12];
    memcpy(ref + 6, f.rmean, 3 * sizeof(float));
    memcpy(ref + 9, f.rvar, 3 * sizeof(float));
    cr_assert_eq(
        dp_cpu_bn_forward_train(y, ref, ref + 3, ref + 6, ref + 9, f.z, f.gamma, f.beta, &f.p),
        DP_OK);
    dp_cpu_bn_plane_stats_pool(f.stats, f.z, &f.p, NULL);
    cr_assert_eq(dp_cpu_bn_stats_finish(f.mean, f.inv_std, f.rmean, f.rvar, f.stats, &f.p), DP_OK);
    for (int c = 0; c < 3; c++) {
        cr_expect_float_eq(f.mean[c], ref[c], 1e-6f * fabsf(ref[c]), "mean[%d]", c);
        cr_expect_float_eq(f.inv_std[c], ref[3 + c], 1e-5f * ref[3 + c], "inv_std[%d] %g vs %g", c,
                           (double)f.inv_std[c], (double)ref[3 + c]);
        cr_expect_float_eq(f.rmean[c], ref[6 + c], 1e-6f * fabsf(ref[6 + c]), "running_mean");
        cr_expect_float_eq(f.rvar[c], ref[9 + c], 1e-5f * ref[9 + c], "running_var");
    }
    dp_bn_params one = f.p;
    one.N = 1, one.H = 1, one.W = 1;
    cr_expect_eq(dp_cpu_bn_stats_finish(f.mean, f.inv_std, NULL, NULL, f.stats, &one),
                 DP_ERR_SHAPE);
    free(y);
    fix_fini(&f);
}

static const dp_act acts[] = {DP_ACT_LINEAR, DP_ACT_RELU, DP_ACT_LEAKY, DP_ACT_TANH, DP_ACT_SWISH};

// Forward with batch statistics: the reference batch norm, then the reference activation.
Test(bn_act, forward_matches_batchnorm_then_activation)
{
    fix f;
    fix_init(&f, 5, 4, 6, 7, 0.3f);
    float *ref_bn = alloc_n(f.n), *ref_y = alloc_n(f.n), *y = alloc_n(f.n), *a = alloc_n(f.n);
    float m[4], is[4];
    cr_assert_eq(dp_cpu_bn_forward_train(ref_bn, m, is, NULL, NULL, f.z, f.gamma, f.beta, &f.p),
                 DP_OK);
    dp_cpu_bn_plane_stats_pool(f.stats, f.z, &f.p, NULL);
    cr_assert_eq(dp_cpu_bn_stats_finish(f.mean, f.inv_std, NULL, NULL, f.stats, &f.p), DP_OK);
    for (int c = 0; c < 4; c++) {
        f.scale[c] = f.gamma[c] * f.inv_std[c];
    }
    for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
        dp_act act = acts[k];
        cr_assert_eq(dp_cpu_act_forward(ref_y, ref_bn, f.n, act, 0.1f), DP_OK);
        int keep_a = dp_act_backward_needs_input(act);
        cr_assert_eq(dp_cpu_bn_act_forward(y, keep_a ? a : NULL, f.z, f.mean, f.scale, f.beta, act,
                                           0.1f, &f.p, NULL),
                     DP_OK, "%s", dp_error_message());
        char what[64];
        snprintf(what, sizeof what, "bn+%s forward y", dp_act_name(act));
        expect_close(what, y, ref_y, f.n, 1e-5);
        if (keep_a) {
            snprintf(what, sizeof what, "bn+%s forward a", dp_act_name(act));
            expect_close(what, a, ref_bn, f.n, 1e-5);
        }
    }
    free(ref_bn);
    free(ref_y);
    free(y);
    free(a);
    fix_fini(&f);
}

// Backward: the reference activation backward (from y), then the reference batch-norm
// backward; with every accumulation flag.
Test(bn_act, backward_matches_activation_then_batchnorm_backward)
{
    fix f;
    fix_init(&f, 4, 3, 5, 6, -0.2f);
    const size_t n = f.n, C = 3;
    float *y = alloc_n(n), *g = alloc_n(n), *ref_dx = alloc_n(n), *dx = alloc_n(n);
    float *bn = alloc_n(n), coef[12], ref_dp[6], dp[6], start[6];
    cr_assert_eq(
        dp_cpu_bn_forward_train(bn, f.mean, f.inv_std, NULL, NULL, f.z, f.gamma, f.beta, &f.p),
        DP_OK);
    const dp_act fused[] = {DP_ACT_LINEAR, DP_ACT_RELU, DP_ACT_LEAKY};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(dp_cpu_act_forward(y, bn, n, fused[k], 0.1f), DP_OK);
        cr_assert_eq(dp_cpu_act_backward(g, f.dy, NULL, y, n, fused[k], 0.1f), DP_OK);
        for (unsigned accum = 0; accum <= DP_ACCUM_ALL; accum++) {
            gc_fill(start, 6, -1.0f, 1.0f, 30 + accum);
            gc_fill(ref_dx, n, -1.0f, 1.0f, 40 + accum);
            memcpy(dx, ref_dx, n * sizeof(float));
            memcpy(ref_dp, start, sizeof ref_dp);
            memcpy(dp, start, sizeof dp);
            cr_assert_eq(dp_cpu_bn_backward(ref_dx, ref_dp, ref_dp + C, g, f.z, f.gamma, f.mean,
                                            f.inv_std, &f.p, accum),
                         DP_OK);
            cr_assert_eq(dp_cpu_bn_act_backward_coef(coef, dp, dp + C, f.dy, y, f.z, f.gamma,
                                                     f.mean, f.inv_std, fused[k], 0.1f, &f.p, accum,
                                                     NULL),
                         DP_OK, "%s", dp_error_message());
            cr_assert_eq(dp_cpu_bn_act_backward_apply(dx, f.dy, y, f.z, coef, fused[k], 0.1f, &f.p,
                                                      (accum & DP_ACCUM_DX) != 0, NULL),
                         DP_OK);
            char what[64];
            snprintf(what, sizeof what, "bn+%s backward dx (accum %u)", dp_act_name(fused[k]),
                     accum);
            expect_close(what, dx, ref_dx, n, 1e-4);
            snprintf(what, sizeof what, "bn+%s backward dgamma, dbeta (accum %u)",
                     dp_act_name(fused[k]), accum);
            expect_close(what, dp, ref_dp, 6, 1e-5);
        }
    }
    cr_expect_eq(dp_cpu_bn_act_backward_coef(coef, dp, dp + C, f.dy, y, f.z, f.gamma, f.mean,
                                             f.inv_std, DP_ACT_TANH, 0.1f, &f.p, 0, NULL),
                 DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "tanh"), "%s", dp_error_message());
    free(y);
    free(g);
    free(ref_dx);
    free(dx);
    free(bn);
    fix_fini(&f);
}

// Every kernel on 1, 2 and 3 threads: bitwise the same as without a pool.
Test(bn_act, results_are_bitwise_the_same_for_any_thread_count, .timeout = 60)
{
    fix f;
    fix_init(&f, 9, 5, 7, 7, 1.0f);
    const size_t n = f.n;
    float *y0 = alloc_n(n), *dz0 = alloc_n(n), *y = alloc_n(n), *dz = alloc_n(n), coef0[20];
    float coef[20], dp0[10], dpar[10];
    for (int threads = 0; threads <= 3; threads++) {
        dp_threadpool *pool = NULL;
        if (threads > 0) {
            cr_assert_eq(dp_threadpool_create(&pool, threads), DP_OK);
        }
        dp_cpu_bn_plane_stats_pool(f.stats, f.z, &f.p, pool);
        cr_assert_eq(dp_cpu_bn_stats_finish(f.mean, f.inv_std, NULL, NULL, f.stats, &f.p), DP_OK);
        for (int c = 0; c < 5; c++) {
            f.scale[c] = f.gamma[c] * f.inv_std[c];
        }
        float *yt = threads == 0 ? y0 : y, *dzt = threads == 0 ? dz0 : dz;
        float *ct = threads == 0 ? coef0 : coef, *pt = threads == 0 ? dp0 : dpar;
        cr_assert_eq(dp_cpu_bn_act_forward(yt, NULL, f.z, f.mean, f.scale, f.beta, DP_ACT_RELU,
                                           0.0f, &f.p, pool),
                     DP_OK);
        cr_assert_eq(dp_cpu_bn_act_backward_coef(ct, pt, pt + 5, f.dy, yt, f.z, f.gamma, f.mean,
                                                 f.inv_std, DP_ACT_RELU, 0.0f, &f.p, 0, pool),
                     DP_OK);
        cr_assert_eq(
            dp_cpu_bn_act_backward_apply(dzt, f.dy, yt, f.z, ct, DP_ACT_RELU, 0.0f, &f.p, 0, pool),
            DP_OK);
        if (threads > 0) {
            cr_expect(memcmp(y, y0, n * sizeof(float)) == 0, "y, %d threads", threads);
            cr_expect(memcmp(dz, dz0, n * sizeof(float)) == 0, "dz, %d threads", threads);
            cr_expect(memcmp(coef, coef0, sizeof coef) == 0, "coef, %d threads", threads);
            cr_expect(memcmp(dpar, dp0, sizeof dpar) == 0, "dgamma, dbeta, %d threads", threads);
        }
        dp_threadpool_destroy(pool);
    }
    free(y0);
    free(dz0);
    free(y);
    free(dz);
    fix_fini(&f);
}

// --- the convolution's epilogue and dy map ---

typedef struct conv_fix {
    dp_conv_params p;
    size_t nx, ny, nw, ws_bytes;
    float *x, *w, *z, *y, *dy;
    void *ws;
} conv_fix;

static void conv_init(conv_fix *c, int stride)
{
    dp_conv_params p = DP_CONV_PARAMS_INIT;
    p.N = 6, p.C = 5, p.H = p.W = 10, p.K = 7, p.R = p.S = 3, p.pad_h = p.pad_w = 1;
    p.stride_h = p.stride_w = stride;
    cr_assert_eq(dp_conv_params_resolve(&p), DP_OK);
    c->p = p;
    c->nx = (size_t)p.N * p.C * p.H * p.W;
    c->ny = (size_t)p.N * p.K * p.out_h * p.out_w;
    c->nw = (size_t)p.K * p.C * 9;
    c->ws_bytes = dp_cpu_conv_pool_workspace_bytes(&p, 1);
    c->x = alloc_n(c->nx), c->w = alloc_n(c->nw), c->z = alloc_n(c->ny), c->y = alloc_n(c->ny);
    c->dy = alloc_n(c->ny);
    c->ws = malloc(c->ws_bytes);
    cr_assert_not_null(c->ws);
    gc_fill(c->x, c->nx, -1.0f, 1.0f, 51);
    gc_fill(c->w, c->nw, -0.3f, 0.3f, 52);
    gc_fill(c->dy, c->ny, -1.0f, 1.0f, 53);
}

static void conv_fini(conv_fix *c)
{
    free(c->x);
    free(c->w);
    free(c->z);
    free(c->y);
    free(c->dy);
    free(c->ws);
}

static dp_bn_params bn_of(const dp_conv_params *p)
{
    dp_bn_params b = DP_BN_PARAMS_INIT;
    b.N = p->N, b.C = p->K, b.H = p->out_h, b.W = p->out_w;
    return b;
}

// Plane statistics in the epilogue equal those taken afterwards; the evaluation epilogue
// equals the convolution followed by dp_cpu_bn_act_forward. Bitwise: the same functions run.
Test(bn_act, conv_epilogue_equals_the_separate_passes)
{
    for (int stride = 1; stride <= 2; stride++) {
        conv_fix c;
        conv_init(&c, stride);
        dp_bn_params b = bn_of(&c.p);
        size_t nst = (size_t)c.p.N * c.p.K * 2;
        double *st = malloc(nst * sizeof(double)), *ref_st = malloc(nst * sizeof(double));
        float mean[7], scale[7], shift[7];
        cr_assert(st && ref_st);
        gc_fill(mean, 7, -0.2f, 0.2f, 54);
        gc_fill(scale, 7, 0.5f, 2.0f, 55);
        gc_fill(shift, 7, -0.5f, 0.5f, 56);
        cr_assert_eq(
            dp_cpu_conv_forward_pool(c.z, c.x, c.w, NULL, &c.p, NULL, NULL, c.ws, c.ws_bytes),
            DP_OK);
        dp_cpu_bn_plane_stats_pool(ref_st, c.z, &b, NULL);
        dp_conv_epilogue ep = {.plane_stats = st, .act = DP_ACT_LINEAR};
        cr_assert_eq(
            dp_cpu_conv_forward_pool(c.y, c.x, c.w, NULL, &c.p, &ep, NULL, c.ws, c.ws_bytes),
            DP_OK);
        cr_expect(memcmp(c.y, c.z, c.ny * sizeof(float)) == 0, "stride %d: y", stride);
        cr_expect(memcmp(st, ref_st, nst * sizeof(double)) == 0, "stride %d: plane stats", stride);
        const dp_act eval_acts[] = {DP_ACT_RELU, DP_ACT_LEAKY, DP_ACT_MISH};
        for (int k = 0; k < 3; k++) {
            float *ref = alloc_n(c.ny);
            cr_assert_eq(dp_cpu_bn_act_forward(ref, NULL, c.z, mean, scale, shift, eval_acts[k],
                                               0.1f, &b, NULL),
                         DP_OK);
            dp_conv_epilogue ev = {
                .mean = mean, .scale = scale, .shift = shift, .act = eval_acts[k], .slope = 0.1f};
            cr_assert_eq(
                dp_cpu_conv_forward_pool(c.y, c.x, c.w, NULL, &c.p, &ev, NULL, c.ws, c.ws_bytes),
                DP_OK);
            cr_expect(memcmp(c.y, ref, c.ny * sizeof(float)) == 0, "stride %d: eval %s", stride,
                      dp_act_name(eval_acts[k]));
            free(ref);
        }
        dp_conv_epilogue bad = {.act = DP_ACT_PRELU};
        cr_expect_eq(
            dp_cpu_conv_forward_pool(c.y, c.x, c.w, NULL, &c.p, &bad, NULL, c.ws, c.ws_bytes),
            DP_ERR_ARG);
        free(st);
        free(ref_st);
        conv_fini(&c);
    }
}

// The backward pass with a dy map equals the backward pass of the materialized dz.
Test(bn_act, conv_dy_map_equals_the_materialized_gradient)
{
    for (int stride = 1; stride <= 2; stride++) {
        conv_fix c;
        conv_init(&c, stride);
        dp_bn_params b = bn_of(&c.p);
        float coef[28], dg[14];
        gc_fill(c.z, c.ny, -1.0f, 1.0f, 57);
        gc_fill(c.y, c.ny, -1.0f, 1.0f, 58);
        float *g = malloc(7 * sizeof(float)), *mean = alloc_n(7), *is = alloc_n(7);
        cr_assert_not_null(g);
        gc_fill(g, 7, 0.5f, 1.5f, 59);
        gc_fill(mean, 7, -0.1f, 0.1f, 60);
        gc_fill(is, 7, 0.5f, 2.0f, 61);
        cr_assert_eq(dp_cpu_bn_act_backward_coef(coef, dg, dg + 7, c.dy, c.y, c.z, g, mean, is,
                                                 DP_ACT_RELU, 0.0f, &b, 0, NULL),
                     DP_OK);
        float *dz = alloc_n(c.ny);
        cr_assert_eq(
            dp_cpu_bn_act_backward_apply(dz, c.dy, c.y, c.z, coef, DP_ACT_RELU, 0.0f, &b, 0, NULL),
            DP_OK);
        float *ref = alloc_n(c.nx + c.nw), *got = alloc_n(c.nx + c.nw);
        cr_assert_eq(dp_cpu_conv_backward_pool(ref, ref + c.nx, NULL, dz, c.x, c.w, &c.p, NULL, 0,
                                               NULL, c.ws, c.ws_bytes),
                     DP_OK);
        dp_conv_dy_map map = {.y = c.y, .z = c.z, .coef = coef, .act = DP_ACT_RELU};
        cr_assert_eq(dp_cpu_conv_backward_pool(got, got + c.nx, NULL, c.dy, c.x, c.w, &c.p, &map, 0,
                                               NULL, c.ws, c.ws_bytes),
                     DP_OK);
        cr_expect(memcmp(got, ref, (c.nx + c.nw) * sizeof(float)) == 0, "stride %d", stride);
        float db[7];
        cr_expect_eq(dp_cpu_conv_backward_pool(got, got + c.nx, db, c.dy, c.x, c.w, &c.p, &map, 0,
                                               NULL, c.ws, c.ws_bytes),
                     DP_ERR_ARG, "a bias gradient cannot come from a map");
        free(g);
        free(mean);
        free(is);
        free(dz);
        free(ref);
        free(got);
        conv_fini(&c);
    }
}
