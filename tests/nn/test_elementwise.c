// Shortcut against Darknet's shortcut_cpu (transcribed) and finite differences for equal,
// larger, smaller and channel-mismatched sources; route's channel copies; crop forward and
// backward.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "grad_check.h"
#include "nn/cpu/activation.h"
#include "nn/cpu/elementwise.h"

typedef struct sc_case {
    const char *name;
    dp_shortcut_params p;
} sc_case;

#define SC(c, h, w, fc, fh, fw, a, b)                                                              \
    {                                                                                              \
        .N = 2, .C = c, .H = h, .W = w, .from_C = fc, .from_H = fh, .from_W = fw, .alpha = a,      \
        .beta = b                                                                                  \
    }

static const sc_case sc_cases[] = {
    {"same", SC(3, 4, 5, 3, 4, 5, 1.0f, 1.0f)},
    {"from_larger_stride2", SC(3, 4, 4, 3, 8, 8, 0.5f, 2.0f)},
    {"from_smaller_sample2", SC(2, 6, 6, 2, 3, 3, 1.0f, 0.7f)},
    {"from_more_channels", SC(2, 4, 4, 5, 4, 4, 1.5f, 1.0f)},
    {"from_fewer_channels", SC(5, 4, 4, 2, 4, 4, 1.0f, -1.0f)},
};
enum { N_SC = sizeof sc_cases / sizeof sc_cases[0] };

// Darknet's shortcut_cpu (src/blas.c).
static void darknet_shortcut(int batch, int w1, int h1, int c1, const float *add, int w2, int h2,
                             int c2, float s1, float s2, float *out)
{
    int stride = w1 / w2, sample = w2 / w1;
    if (stride < 1) {
        stride = 1;
    }
    if (sample < 1) {
        sample = 1;
    }
    int minw = (w1 < w2) ? w1 : w2, minh = (h1 < h2) ? h1 : h2, minc = (c1 < c2) ? c1 : c2;
    for (int b = 0; b < batch; ++b) {
        for (int k = 0; k < minc; ++k) {
            for (int j = 0; j < minh; ++j) {
                for (int i = 0; i < minw; ++i) {
                    int out_index = i * sample + w2 * (j * sample + h2 * (k + c2 * b));
                    int add_index = i * stride + w1 * (j * stride + h1 * (k + c1 * b));
                    out[out_index] = s1 * out[out_index] + s2 * add[add_index];
                }
            }
        }
    }
}

typedef struct sc_fix {
    dp_shortcut_params p;
    size_t nx, nf;
    float *x, *from, *y, *dy;
} sc_fix;

static void sc_init(sc_fix *f, const dp_shortcut_params *p)
{
    f->p = *p;
    f->nx = (size_t)p->N * p->C * p->H * p->W;
    f->nf = (size_t)p->N * p->from_C * p->from_H * p->from_W;
    f->x = malloc(f->nx * sizeof(float));
    f->from = malloc(f->nf * sizeof(float));
    f->y = malloc(f->nx * sizeof(float));
    f->dy = malloc(f->nx * sizeof(float));
    cr_assert(f->x && f->from && f->y && f->dy);
    gc_fill(f->x, f->nx, -1.0f, 1.0f, 71);
    gc_fill(f->from, f->nf, -1.0f, 1.0f, 72);
    gc_fill(f->dy, f->nx, -1.0f, 1.0f, 73);
}

static void sc_fini(sc_fix *f)
{
    free(f->x);
    free(f->from);
    free(f->y);
    free(f->dy);
}

static double sc_loss(void *ctx)
{
    sc_fix *f = ctx;
    cr_assert_eq(dp_cpu_shortcut_forward(f->y, f->x, f->from, &f->p), DP_OK);
    return gc_dot(f->dy, f->y, f->nx);
}

Test(elementwise, shortcut_matches_darknet_with_unit_alpha)
{
    for (int i = 0; i < N_SC; i++) {
        sc_fix f;
        dp_shortcut_params p = sc_cases[i].p;
        p.alpha = 1.0f;
        sc_init(&f, &p);
        cr_assert_eq(dp_cpu_shortcut_forward(f.y, f.x, f.from, &f.p), DP_OK);
        float *ref = malloc(f.nx * sizeof(float));
        cr_assert_not_null(ref);
        memcpy(ref, f.x, f.nx * sizeof(float));
        darknet_shortcut(p.N, p.from_W, p.from_H, p.from_C, f.from, p.W, p.H, p.C, 1.0f, p.beta,
                         ref);
        cr_expect_eq(memcmp(ref, f.y, f.nx * sizeof(float)), 0, "%s differs (bitwise)",
                     sc_cases[i].name);
        free(ref);
        sc_fini(&f);
    }
}

Test(elementwise, shortcut_backward_matches_finite_differences)
{
    for (int i = 0; i < N_SC; i++) {
        sc_fix f;
        sc_init(&f, &sc_cases[i].p);
        float *dx = malloc(f.nx * sizeof(float)), *dfrom = malloc(f.nf * sizeof(float));
        cr_assert(dx && dfrom);
        cr_assert_eq(dp_cpu_shortcut_backward(dx, dfrom, f.dy, &f.p, 0, 0), DP_OK);
        char what[64];
        snprintf(what, sizeof what, "shortcut %s dx", sc_cases[i].name);
        gc_err e = gc_check(what, dx, f.x, f.nx, 0.1, sc_loss, &f);
        cr_expect_lt(e.max_rel, 1e-4, "%s: %g at %zu", what, e.max_rel, e.index);
        snprintf(what, sizeof what, "shortcut %s dfrom", sc_cases[i].name);
        e = gc_check(what, dfrom, f.from, f.nf, 0.1, sc_loss, &f);
        cr_expect_lt(e.max_rel, 1e-4, "%s: %g at %zu", what, e.max_rel, e.index);
        free(dx);
        free(dfrom);
        sc_fini(&f);
    }
}

// The fused same-shape shortcut + activation against dp_cpu_shortcut_* and the activation
// kernels one after the other: equal values (==; a relu zero may differ in sign), for every
// accumulation flag, without a pool and on 3 threads.
Test(elementwise, fused_shortcut_activation_matches_the_separate_kernels)
{
    dp_shortcut_params p = SC(4, 5, 6, 4, 5, 6, 0.5f, 2.0f);
    p.N = 3;
    size_t n = (size_t)p.N * p.C * p.H * p.W;
    float *x = malloc(n * sizeof(float)), *from = malloc(n * sizeof(float));
    float *dy = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float));
    float *y = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
    float *dx = malloc(2 * n * sizeof(float)), *rdx = malloc(2 * n * sizeof(float));
    cr_assert(x && from && dy && ref && y && g && dx && rdx);
    gc_fill(x, n, -1.0f, 1.0f, 61);
    gc_fill(from, n, -1.0f, 1.0f, 62);
    gc_fill(dy, n, -1.0f, 1.0f, 63);
    dp_threadpool *pool;
    cr_assert_eq(dp_threadpool_create(&pool, 3), DP_OK);
    const dp_act acts[] = {DP_ACT_LINEAR, DP_ACT_RELU, DP_ACT_LEAKY};
    for (int a = 0; a < 3; a++) {
        for (int threads = 0; threads < 2; threads++) {
            dp_threadpool *use = threads ? pool : NULL;
            cr_assert_eq(dp_cpu_shortcut_forward(ref, x, from, &p), DP_OK);
            cr_assert_eq(dp_cpu_act_forward(ref, ref, n, acts[a], 0.1f), DP_OK);
            cr_assert_eq(dp_cpu_shortcut_act_forward(y, x, from, &p, acts[a], 0.1f, use), DP_OK);
            for (size_t i = 0; i < n; i++) {
                cr_assert(y[i] == ref[i], "%s forward at %zu: %g vs %g", dp_act_name(acts[a]), i,
                          (double)y[i], (double)ref[i]);
            }
            cr_assert_eq(dp_cpu_act_backward(g, dy, NULL, y, n, acts[a], 0.1f), DP_OK);
            for (int acc = 0; acc < 4; acc++) {
                gc_fill(rdx, 2 * n, -1.0f, 1.0f, 64 + (uint32_t)acc);
                memcpy(dx, rdx, 2 * n * sizeof(float));
                cr_assert_eq(dp_cpu_shortcut_backward(rdx, rdx + n, g, &p, acc & 1, acc >> 1),
                             DP_OK);
                cr_assert_eq(dp_cpu_shortcut_act_backward(dx, dx + n, dy, y, &p, acts[a], 0.1f,
                                                          acc & 1, acc >> 1, use),
                             DP_OK);
                for (size_t i = 0; i < 2 * n; i++) {
                    cr_assert(dx[i] == rdx[i], "%s backward (accumulate %d) at %zu: %g vs %g",
                              dp_act_name(acts[a]), acc, i, (double)dx[i], (double)rdx[i]);
                }
            }
        }
    }
    dp_shortcut_params strided = SC(4, 4, 4, 2, 8, 8, 1.0f, 1.0f);
    cr_expect_eq(dp_cpu_shortcut_act_forward(y, x, from, &strided, DP_ACT_RELU, 0, NULL),
                 DP_ERR_ARG);
    cr_expect_eq(dp_cpu_shortcut_act_forward(y, x, from, &p, DP_ACT_TANH, 0, NULL), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "tanh"), "%s", dp_error_message());
    dp_threadpool_destroy(pool);
    free(x);
    free(from);
    free(dy);
    free(ref);
    free(y);
    free(g);
    free(dx);
    free(rdx);
}

Test(elementwise, shortcut_rejects_unequal_ratios)
{
    dp_shortcut_params p = SC(2, 4, 4, 2, 8, 4, 1.0f, 1.0f);
    cr_expect_eq(dp_shortcut_params_check(&p), DP_ERR_SHAPE);
    cr_expect_not_null(strstr(dp_error_message(), "8x4"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_origin(), "elementwise.c:"), "%s", dp_error_origin());
}

Test(elementwise, route_concatenation_and_its_backward)
{
    enum { N = 2, HW = 6, CA = 2, CB = 3, CT = CA + CB };
    float a[N * CA * HW], b[N * CB * HW], y[N * CT * HW], da[N * CA * HW], db[N * CB * HW];
    gc_fill(a, sizeof a / sizeof a[0], -1.0f, 1.0f, 74);
    gc_fill(b, sizeof b / sizeof b[0], -1.0f, 1.0f, 75);
    cr_assert_eq(dp_cpu_channel_copy(y, CT, 0, a, CA, 0, CA, N, HW, 0), DP_OK);
    cr_assert_eq(dp_cpu_channel_copy(y, CT, CA, b, CB, 0, CB, N, HW, 0), DP_OK);
    for (int n = 0; n < N; n++) {
        cr_expect_eq(memcmp(y + n * CT * HW, a + n * CA * HW, CA * HW * sizeof(float)), 0);
        cr_expect_eq(memcmp(y + (n * CT + CA) * HW, b + n * CB * HW, CB * HW * sizeof(float)), 0);
    }
    cr_assert_eq(dp_cpu_channel_copy(da, CA, 0, y, CT, 0, CA, N, HW, 0), DP_OK);
    cr_assert_eq(dp_cpu_channel_copy(db, CB, 0, y, CT, CA, CB, N, HW, 0), DP_OK);
    cr_expect_eq(memcmp(da, a, sizeof a), 0, "backward to a");
    cr_expect_eq(memcmp(db, b, sizeof b), 0, "backward to b");
    cr_assert_eq(dp_cpu_channel_copy(db, CB, 0, y, CT, CA, CB, N, HW, 1), DP_OK);
    cr_expect_float_eq(db[7], 2.0f * b[7], 1e-7, "accumulated");
    cr_expect_eq(dp_cpu_channel_copy(db, CB, 1, y, CT, CA, CB, N, HW, 0), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "channel copy"), "%s", dp_error_message());
}

typedef struct crop_fix {
    dp_crop_params p;
    float x[2 * 2 * 7 * 6], y[2 * 2 * 4 * 3], dy[2 * 2 * 4 * 3];
} crop_fix;

static double crop_loss(void *ctx)
{
    crop_fix *f = ctx;
    cr_assert_eq(dp_cpu_crop_forward(f->y, f->x, &f->p), DP_OK);
    return gc_dot(f->dy, f->y, 48);
}

Test(elementwise, crop_forward_and_backward)
{
    crop_fix f = {.p = {.N = 2, .C = 2, .H = 7, .W = 6, .out_h = 4, .out_w = 3}};
    dp_crop_params_center(&f.p);
    cr_expect_eq(f.p.off_h, 1);
    cr_expect_eq(f.p.off_w, 1);
    gc_fill(f.x, 168, -1.0f, 1.0f, 76);
    gc_fill(f.dy, 48, -1.0f, 1.0f, 77);
    cr_assert_eq(crop_loss(&f) == crop_loss(&f), 1);
    for (int plane = 0; plane < 4; plane++) {
        for (int h = 0; h < 4; h++) {
            for (int w = 0; w < 3; w++) {
                cr_expect_eq(f.y[(plane * 4 + h) * 3 + w], f.x[(plane * 7 + h + 1) * 6 + w + 1]);
            }
        }
    }
    float dx[168];
    cr_assert_eq(dp_cpu_crop_backward(dx, f.dy, &f.p, 0), DP_OK);
    gc_err e = gc_check("crop dx", dx, f.x, 168, 0.1, crop_loss, &f);
    cr_expect_lt(e.max_rel, 1e-4, "crop dx: %g at %zu", e.max_rel, e.index);
    f.p.off_w = 4;
    cr_expect_eq(dp_cpu_crop_forward(f.y, f.x, &f.p), DP_ERR_ARG);
}
