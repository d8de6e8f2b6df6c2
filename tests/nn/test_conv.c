// Convolution: forward against direct loops in double, backward (data, filter, bias) against
// finite differences, for 3x3 s1/s2, 1x1 s1/s2, 5x5 dilated, grouped, depthwise, no bias and
// non-square configurations; accumulation; argument errors.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "grad_check.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/conv.h"

typedef struct conv_case {
    const char *name;
    dp_conv_params p;
    int has_bias;
} conv_case;

#define CP(n, c, h, w, k, r, s, sh, sw, ph, pw, dh, dw, g)                                         \
    {                                                                                              \
        .N = n, .C = c, .H = h, .W = w, .K = k, .R = r, .S = s, .stride_h = sh, .stride_w = sw,    \
        .pad_h = ph, .pad_w = pw, .dil_h = dh, .dil_w = dw, .groups = g                            \
    }

static const conv_case cases[] = {
    {"3x3_s1_p1", CP(2, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1},
    {"3x3_s2_p1", CP(2, 3, 8, 8, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1), 1},
    {"1x1_s1_p0", CP(2, 4, 5, 5, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1), 1},
    {"1x1_s2", CP(2, 4, 6, 6, 3, 1, 1, 2, 2, 0, 0, 1, 1, 1), 1},
    {"5x5_dil2", CP(1, 2, 11, 10, 3, 5, 5, 1, 1, 4, 3, 2, 2, 1), 1},
    {"groups2", CP(2, 4, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2), 1},
    {"depthwise", CP(2, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4), 1},
    {"depthwise_x2_s2", CP(1, 3, 7, 7, 6, 3, 3, 2, 2, 1, 1, 1, 1, 3), 1},
    {"no_bias_p0", CP(2, 3, 6, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1), 0},
    {"nonsquare", CP(2, 2, 5, 9, 3, 3, 2, 1, 2, 1, 0, 1, 1, 1), 1},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

typedef struct conv_fix {
    dp_conv_params p;
    size_t nx, nw, ny, ws_bytes;
    float *x, *w, *b, *y, *dy, *ws;
} conv_fix;

static void fix_init(conv_fix *f, const conv_case *c)
{
    f->p = c->p;
    cr_assert_eq(dp_conv_params_resolve(&f->p), DP_OK, "%s: %s", c->name, dp_error_message());
    const dp_conv_params *p = &f->p;
    f->nx = (size_t)p->N * p->C * p->H * p->W;
    f->nw = (size_t)p->K * (p->C / p->groups) * p->R * p->S;
    f->ny = (size_t)p->N * p->K * p->out_h * p->out_w;
    f->ws_bytes = dp_cpu_conv_workspace_bytes(p);
    f->x = malloc(f->nx * sizeof(float));
    f->w = malloc(f->nw * sizeof(float));
    f->b = c->has_bias ? malloc((size_t)p->K * sizeof(float)) : NULL;
    f->y = malloc(f->ny * sizeof(float));
    f->dy = malloc(f->ny * sizeof(float));
    f->ws = f->ws_bytes > 0 ? malloc(f->ws_bytes) : NULL;
    cr_assert(f->x && f->w && f->y && f->dy && (f->b || !c->has_bias));
    gc_fill(f->x, f->nx, -1.0f, 1.0f, 1);
    gc_fill(f->w, f->nw, -0.5f, 0.5f, 2);
    if (f->b != NULL) {
        gc_fill(f->b, (size_t)p->K, -0.5f, 0.5f, 3);
    }
    gc_fill(f->dy, f->ny, -1.0f, 1.0f, 4);
}

static void fix_fini(conv_fix *f)
{
    free(f->x);
    free(f->w);
    free(f->b);
    free(f->y);
    free(f->dy);
    free(f->ws);
}

static double conv_loss(void *ctx)
{
    conv_fix *f = ctx;
    cr_assert_eq(dp_cpu_conv_forward(f->y, f->x, f->w, f->b, &f->p, f->ws, f->ws_bytes), DP_OK);
    return gc_dot(f->dy, f->y, f->ny);
}

// Direct convolution in double: the oracle of the forward pass.
static void conv_direct(double *y, const conv_fix *f)
{
    const dp_conv_params *p = &f->p;
    int Cg = p->C / p->groups, Kg = p->K / p->groups;
    for (int n = 0; n < p->N; n++) {
        for (int k = 0; k < p->K; k++) {
            int g = k / Kg;
            for (int oh = 0; oh < p->out_h; oh++) {
                for (int ow = 0; ow < p->out_w; ow++) {
                    double acc = f->b != NULL ? f->b[k] : 0.0;
                    for (int c = 0; c < Cg; c++) {
                        for (int r = 0; r < p->R; r++) {
                            for (int s = 0; s < p->S; s++) {
                                int ih = oh * p->stride_h - p->pad_h + r * p->dil_h;
                                int iw = ow * p->stride_w - p->pad_w + s * p->dil_w;
                                if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) {
                                    continue;
                                }
                                size_t xi =
                                    (((size_t)n * p->C + g * Cg + c) * p->H + ih) * p->W + iw;
                                size_t wi = (((size_t)k * Cg + c) * p->R + r) * p->S + s;
                                acc += (double)f->x[xi] * f->w[wi];
                            }
                        }
                    }
                    y[(((size_t)n * p->K + k) * p->out_h + oh) * p->out_w + ow] = acc;
                }
            }
        }
    }
}

Test(conv, forward_matches_direct_loops)
{
    for (int i = 0; i < N_CASES; i++) {
        conv_fix f;
        fix_init(&f, &cases[i]);
        cr_assert_eq(dp_cpu_conv_forward(f.y, f.x, f.w, f.b, &f.p, f.ws, f.ws_bytes), DP_OK);
        double *ref = malloc(f.ny * sizeof(double));
        cr_assert_not_null(ref);
        conv_direct(ref, &f);
        char what[64];
        snprintf(what, sizeof what, "conv %s forward", cases[i].name);
        gc_err e = gc_compare(what, f.y, ref, f.ny, 1e-2);
        cr_expect_lt(e.max_rel, 1e-4, "%s: rel err %g at %zu (%g vs %g)", what, e.max_rel, e.index,
                     e.got, e.expect);
        free(ref);
        fix_fini(&f);
    }
}

Test(conv, backward_matches_finite_differences)
{
    for (int i = 0; i < N_CASES; i++) {
        conv_fix f;
        fix_init(&f, &cases[i]);
        const dp_conv_params *p = &f.p;
        float *dx = malloc(f.nx * sizeof(float)), *dw = malloc(f.nw * sizeof(float));
        float *db = malloc((size_t)p->K * sizeof(float));
        cr_assert(dx && dw && db);
        cr_assert_eq(dp_cpu_conv_backward_data(dx, f.dy, f.w, p, 0, f.ws, f.ws_bytes), DP_OK);
        cr_assert_eq(dp_cpu_conv_backward_filter(dw, f.b != NULL ? db : NULL, f.dy, f.x, p, 0, f.ws,
                                                 f.ws_bytes),
                     DP_OK);
        char what[64];
        snprintf(what, sizeof what, "conv %s dx", cases[i].name);
        gc_err e = gc_check(what, dx, f.x, f.nx, 0.1, conv_loss, &f);
        cr_expect_lt(e.max_rel, 1e-3, "%s: %g at %zu", what, e.max_rel, e.index);
        snprintf(what, sizeof what, "conv %s dw", cases[i].name);
        e = gc_check(what, dw, f.w, f.nw, 0.1, conv_loss, &f);
        cr_expect_lt(e.max_rel, 1e-3, "%s: %g at %zu", what, e.max_rel, e.index);
        if (f.b != NULL) {
            snprintf(what, sizeof what, "conv %s db", cases[i].name);
            e = gc_check(what, db, f.b, (size_t)p->K, 0.1, conv_loss, &f);
            cr_expect_lt(e.max_rel, 1e-3, "%s: %g at %zu", what, e.max_rel, e.index);
        }
        free(dx);
        free(dw);
        free(db);
        fix_fini(&f);
    }
}

Test(conv, accumulate_adds_to_existing_gradients)
{
    for (int i = 0; i < N_CASES; i++) {
        conv_fix f;
        fix_init(&f, &cases[i]);
        const dp_conv_params *p = &f.p;
        size_t nb = (size_t)p->K;
        float *g1 = malloc((f.nx + f.nw + nb) * sizeof(float));
        float *g2 = malloc((f.nx + f.nw + nb) * sizeof(float));
        cr_assert(g1 && g2);
        cr_assert_eq(dp_cpu_conv_backward_data(g1, f.dy, f.w, p, 0, f.ws, f.ws_bytes), DP_OK);
        cr_assert_eq(dp_cpu_conv_backward_filter(g1 + f.nx, g1 + f.nx + f.nw, f.dy, f.x, p, 0, f.ws,
                                                 f.ws_bytes),
                     DP_OK);
        gc_fill(g2, f.nx + f.nw + nb, -1.0f, 1.0f, 9);
        float *base = malloc((f.nx + f.nw + nb) * sizeof(float));
        cr_assert_not_null(base);
        memcpy(base, g2, (f.nx + f.nw + nb) * sizeof(float));
        cr_assert_eq(dp_cpu_conv_backward_data(g2, f.dy, f.w, p, 1, f.ws, f.ws_bytes), DP_OK);
        cr_assert_eq(dp_cpu_conv_backward_filter(g2 + f.nx, g2 + f.nx + f.nw, f.dy, f.x, p, 1, f.ws,
                                                 f.ws_bytes),
                     DP_OK);
        for (size_t j = 0; j < f.nx + f.nw + nb; j++) {
            base[j] += g1[j];
        }
        char what[64];
        snprintf(what, sizeof what, "conv %s accumulate", cases[i].name);
        gc_err e = gc_compare_f(what, g2, base, f.nx + f.nw + nb, 1e-3);
        cr_expect_lt(e.max_rel, 1e-5, "%s: %g at %zu", what, e.max_rel, e.index);
        free(g1);
        free(g2);
        free(base);
        fix_fini(&f);
    }
}

Test(conv, resolve_computes_output_dims)
{
    dp_conv_params p = DP_CONV_PARAMS_INIT;
    p.N = 1, p.C = 3, p.H = 28, p.W = 30, p.K = 8, p.R = 3, p.S = 5;
    p.stride_h = 2, p.stride_w = 1, p.pad_h = 1, p.pad_w = 2, p.dil_w = 2;
    cr_assert_eq(dp_conv_params_resolve(&p), DP_OK);
    cr_expect_eq(p.out_h, (28 + 2 - 3) / 2 + 1);
    cr_expect_eq(p.out_w, (30 + 4 - 9) / 1 + 1);
}

Test(conv, bad_params_are_rejected_with_the_field_and_origin)
{
    dp_conv_params p = DP_CONV_PARAMS_INIT;
    p.N = 1, p.C = 6, p.H = 8, p.W = 8, p.K = 8, p.R = 3, p.S = 3, p.groups = 4;
    cr_expect_eq(dp_conv_params_resolve(&p), DP_ERR_SHAPE);
    cr_expect_not_null(strstr(dp_error_message(), "groups = 4"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_origin(), "conv.c:"), "%s", dp_error_origin());
    p.groups = 1, p.R = 11;
    cr_expect_eq(dp_conv_params_resolve(&p), DP_ERR_SHAPE);
    cr_expect_not_null(strstr(dp_error_message(), "larger than the input"), "%s",
                       dp_error_message());
    p.R = 3, p.stride_w = 0;
    cr_expect_eq(dp_conv_params_resolve(&p), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "stride_w = 0"), "%s", dp_error_message());
}

Test(conv, small_workspace_and_unresolved_params_are_errors)
{
    conv_fix f;
    fix_init(&f, &cases[0]);
    cr_expect_eq(dp_cpu_conv_forward(f.y, f.x, f.w, f.b, &f.p, f.ws, f.ws_bytes - 4), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "workspace"), "%s", dp_error_message());
    dp_conv_params q = f.p;
    q.out_h = 0;
    cr_expect_eq(dp_cpu_conv_forward(f.y, f.x, f.w, f.b, &q, f.ws, f.ws_bytes), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "not resolved"), "%s", dp_error_message());
    cr_expect_eq(dp_cpu_conv_forward(f.y, NULL, f.w, f.b, &f.p, f.ws, f.ws_bytes), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "'x'"), "%s", dp_error_message());
    fix_fini(&f);
}

// --- batch kernels on the thread pool ---

// Shapes for the pool kernels: the cases above plus larger ones that take the direct kernels
// with several tiles, channel counts that are not multiples of 4, 1x1 and unpadded windows,
// small images grouped for the filter gradient, more images than partial chunks, small planes
// with channels in multiples of 16 (the channel-vectorized kernel), and strided ones (columns).
static const conv_case pool_cases[] = {
    {"direct_3x3_c5_k6_13x13", CP(5, 5, 13, 13, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1), 0},
    {"direct_3x3_c16_k16_28x28", CP(3, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1), 0},
    {"direct_3x3_c8_k12_7x7", CP(37, 8, 7, 7, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1), 0},
    {"direct_1x1_c7_k9", CP(3, 7, 9, 11, 9, 1, 1, 1, 1, 0, 0, 1, 1, 1), 1},
    {"direct_5x3_pad21_dil", CP(2, 3, 12, 10, 5, 5, 3, 1, 1, 2, 1, 2, 1, 1), 1},
    {"direct_1x28_stem", CP(4, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1), 0},
    {"pixels_3x3_c32_k16_7x7", CP(9, 32, 7, 7, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1), 1},
    {"direct_3x3_c16_k32_14x14", CP(3, 16, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1), 0},
    {"pixels_5x3_c16_k16_9x6", CP(2, 16, 9, 6, 16, 5, 3, 1, 1, 2, 1, 1, 1, 1), 1},
    {"im2col_pad_too_large", CP(2, 3, 6, 6, 4, 3, 3, 1, 1, 3, 3, 1, 1, 1), 1},
    {"im2col_3x3_s2_c16", CP(19, 16, 14, 14, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1), 0},
};
enum { N_POOL_CASES = sizeof pool_cases / sizeof pool_cases[0] };

typedef struct pool_out {
    float *y, *dx, *dw, *db;
} pool_out;

// Runs both pool kernels on f with `threads` threads (0: NULL pool); dx/dw/db start from
// `start` (accumulate) or garbage.
static pool_out run_pool(conv_fix *f, int threads, unsigned accum, const float *start)
{
    const dp_conv_params *p = &f->p;
    dp_threadpool *pool = NULL;
    if (threads > 0) {
        cr_assert_eq(dp_threadpool_create(&pool, threads), DP_OK);
    }
    size_t ws_bytes = dp_cpu_conv_pool_workspace_bytes(p, threads > 0 ? threads : 1);
    void *ws = malloc(ws_bytes);
    pool_out o = {malloc(f->ny * sizeof(float)), malloc(f->nx * sizeof(float)),
                  malloc(f->nw * sizeof(float)), malloc((size_t)p->K * sizeof(float))};
    cr_assert(ws && o.y && o.dx && o.dw && o.db);
    memset(ws, 0xff, ws_bytes); // NaN garbage: every float read must be written first
    if (start != NULL) {
        memcpy(o.dx, start, f->nx * sizeof(float));
        memcpy(o.dw, start + f->nx, f->nw * sizeof(float));
        memcpy(o.db, start + f->nx + f->nw, (size_t)p->K * sizeof(float));
    } else {
        memset(o.dx, 0xff, f->nx * sizeof(float));
        memset(o.dw, 0xff, f->nw * sizeof(float));
        memset(o.db, 0xff, (size_t)p->K * sizeof(float));
    }
    cr_assert_eq(dp_cpu_conv_forward_pool(o.y, f->x, f->w, f->b, p, NULL, pool, ws, ws_bytes),
                 DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_cpu_conv_backward_pool(o.dx, o.dw, f->b != NULL ? o.db : NULL, f->dy, f->x,
                                           f->w, p, NULL, accum, pool, ws, ws_bytes),
                 DP_OK, "%s", dp_error_message());
    free(ws);
    dp_threadpool_destroy(pool);
    return o;
}

static void pool_out_free(pool_out *o)
{
    free(o->y);
    free(o->dx);
    free(o->dw);
    free(o->db);
}

static void expect_close(const char *name, const char *what, const float *got, const float *ref,
                         size_t n)
{
    char label[96];
    snprintf(label, sizeof label, "conv pool %s %s", name, what);
    gc_err e = gc_compare_f(label, got, ref, n, 1e-2);
    cr_expect_lt(e.max_rel, 1e-4, "%s: rel err %g at %zu (%g vs %g)", label, e.max_rel, e.index,
                 e.got, e.expect);
}

// The pool kernels against the per-image reference kernels (which the tests above check
// against direct loops and finite differences), for every case and 1-3 threads.
static void check_pool_case(const conv_case *c)
{
    conv_fix f;
    fix_init(&f, c);
    const dp_conv_params *p = &f.p;
    float *dx = malloc(f.nx * sizeof(float)), *dw = malloc(f.nw * sizeof(float));
    float *db = malloc((size_t)p->K * sizeof(float));
    cr_assert(dx && dw && db);
    cr_assert_eq(dp_cpu_conv_forward(f.y, f.x, f.w, f.b, p, f.ws, f.ws_bytes), DP_OK);
    cr_assert_eq(dp_cpu_conv_backward_data(dx, f.dy, f.w, p, 0, f.ws, f.ws_bytes), DP_OK);
    cr_assert_eq(dp_cpu_conv_backward_filter(dw, db, f.dy, f.x, p, 0, f.ws, f.ws_bytes), DP_OK);
    pool_out one = run_pool(&f, 0, DP_ACCUM_NONE, NULL);
    expect_close(c->name, "y", one.y, f.y, f.ny);
    expect_close(c->name, "dx", one.dx, dx, f.nx);
    expect_close(c->name, "dw", one.dw, dw, f.nw);
    if (f.b != NULL) {
        expect_close(c->name, "db", one.db, db, (size_t)p->K);
    }
    for (int threads = 1; threads <= 3; threads++) {
        pool_out o = run_pool(&f, threads, DP_ACCUM_NONE, NULL);
        cr_expect(memcmp(o.y, one.y, f.ny * sizeof(float)) == 0, "%s y: %d threads", c->name,
                  threads);
        cr_expect(memcmp(o.dx, one.dx, f.nx * sizeof(float)) == 0, "%s dx: %d threads", c->name,
                  threads);
        cr_expect(memcmp(o.dw, one.dw, f.nw * sizeof(float)) == 0, "%s dw: %d threads", c->name,
                  threads);
        if (f.b != NULL) {
            cr_expect(memcmp(o.db, one.db, (size_t)p->K * sizeof(float)) == 0, "%s db: %d threads",
                      c->name, threads);
        }
        pool_out_free(&o);
    }
    // Accumulation: start + the gradients (dx and the parameters separately).
    size_t total = f.nx + f.nw + (size_t)p->K;
    float *start = malloc(total * sizeof(float)), *sum = malloc(total * sizeof(float));
    cr_assert(start && sum);
    gc_fill(start, total, -1.0f, 1.0f, 11);
    const unsigned modes[] = {DP_ACCUM_DX, DP_ACCUM_DPARAMS, DP_ACCUM_ALL};
    for (int m = 0; m < 3; m++) {
        pool_out o = run_pool(&f, 2, modes[m], start);
        int add_dx = (modes[m] & DP_ACCUM_DX) != 0, add_dp = (modes[m] & DP_ACCUM_DPARAMS) != 0;
        for (size_t i = 0; i < f.nx; i++) {
            sum[i] = add_dx ? start[i] + one.dx[i] : one.dx[i];
        }
        for (size_t i = 0; i < f.nw; i++) {
            sum[f.nx + i] = add_dp ? start[f.nx + i] + one.dw[i] : one.dw[i];
        }
        for (int k = 0; k < p->K; k++) {
            sum[f.nx + f.nw + k] = add_dp ? start[f.nx + f.nw + k] + one.db[k] : one.db[k];
        }
        expect_close(c->name, "accumulated dx", o.dx, sum, f.nx);
        expect_close(c->name, "accumulated dw", o.dw, sum + f.nx, f.nw);
        if (f.b != NULL) {
            expect_close(c->name, "accumulated db", o.db, sum + f.nx + f.nw, (size_t)p->K);
        }
        pool_out_free(&o);
    }
    free(start);
    free(sum);
    pool_out_free(&one);
    free(dx);
    free(dw);
    free(db);
    fix_fini(&f);
}

Test(conv, pool_kernels_match_the_reference_and_repeat_bitwise_across_threads, .timeout = 120)
{
    for (int i = 0; i < N_CASES; i++) {
        check_pool_case(&cases[i]);
    }
    for (int i = 0; i < N_POOL_CASES; i++) {
        check_pool_case(&pool_cases[i]);
    }
}

Test(conv, pool_kernels_reject_a_small_workspace)
{
    conv_fix f;
    fix_init(&f, &pool_cases[0]);
    size_t need = dp_cpu_conv_pool_workspace_bytes(&f.p, 1);
    void *ws = malloc(need);
    cr_assert_not_null(ws);
    cr_expect_eq(dp_cpu_conv_forward_pool(f.y, f.x, f.w, NULL, &f.p, NULL, NULL, ws, need - 1),
                 DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "workspace"), "%s", dp_error_message());
    float *g = malloc((f.nx + f.nw) * sizeof(float));
    cr_assert_not_null(g);
    cr_expect_eq(dp_cpu_conv_backward_pool(g, g + f.nx, NULL, f.dy, f.x, f.w, &f.p, NULL, 0, NULL,
                                           ws, need / 2),
                 DP_ERR_ARG);
    cr_expect_eq(
        dp_cpu_conv_backward_pool(g, NULL, NULL, f.dy, f.x, f.w, &f.p, NULL, 0, NULL, ws, need),
        DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "'dw'"), "%s", dp_error_message());
    free(g);
    free(ws);
    fix_fini(&f);
}
