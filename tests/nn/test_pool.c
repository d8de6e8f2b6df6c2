// Pooling: max pooling against Darknet's own loop (forward_maxpool_layer, transcribed), with and
// without Darknet's padding; backward of max, average (both divisor rules) and global average
// pooling against finite differences; output dims and parameter errors.
#include <criterion/criterion.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "grad_check.h"
#include "nn/cpu/pool.h"

typedef struct pool_case {
    const char *name;
    int N, C, H, W, size, stride, padding; // padding < 0: Darknet's default size - 1
} pool_case;

static const pool_case max_cases[] = {
    {"2x2_s2_darknet_pad_odd", 2, 2, 7, 7, 2, 2, -1},
    {"3x3_s1_darknet_pad", 1, 3, 6, 5, 3, 1, -1},
    {"3x3_s2_nopad", 2, 2, 9, 8, 3, 2, 0},
    {"2x2_s2_nopad_even", 1, 2, 8, 8, 2, 2, 0},
    {"5x5_s2_pad4", 1, 2, 9, 11, 5, 2, 4},
};
enum { N_MAX_CASES = sizeof max_cases / sizeof max_cases[0] };

// Distinct values 0.01 apart in a scrambled order, so max pooling has no ties and a step of
// 1e-3 never changes a window's winner.
static void fill_distinct(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = 0.01f * (float)((i * 7919u) % n) - 0.005f * (float)n;
    }
}

typedef struct pool_fix {
    dp_pool_params p;
    size_t nx, ny;
    float *x, *y, *dy;
    int32_t *argmax;
    int avg;
} pool_fix;

static void fix_init(pool_fix *f, const pool_case *c, int avg, int include_pad)
{
    cr_assert_eq(
        dp_pool_params_darknet(&f->p, c->N, c->C, c->H, c->W, c->size, c->stride, c->padding),
        DP_OK, "%s: %s", c->name, dp_error_message());
    f->p.count_include_pad = include_pad;
    f->avg = avg;
    f->nx = (size_t)c->N * c->C * c->H * c->W;
    f->ny = (size_t)c->N * c->C * f->p.out_h * f->p.out_w;
    f->x = malloc(f->nx * sizeof(float));
    f->y = malloc(f->ny * sizeof(float));
    f->dy = malloc(f->ny * sizeof(float));
    f->argmax = malloc(f->ny * sizeof(int32_t));
    cr_assert(f->x && f->y && f->dy && f->argmax);
    fill_distinct(f->x, f->nx);
    gc_fill(f->dy, f->ny, -1.0f, 1.0f, 31);
}

static void fix_fini(pool_fix *f)
{
    free(f->x);
    free(f->y);
    free(f->dy);
    free(f->argmax);
}

static double pool_loss(void *ctx)
{
    pool_fix *f = ctx;
    if (f->avg) {
        cr_assert_eq(dp_cpu_avgpool_forward(f->y, f->x, &f->p), DP_OK);
    } else {
        cr_assert_eq(dp_cpu_maxpool_forward(f->y, f->argmax, f->x, &f->p), DP_OK);
    }
    return gc_dot(f->dy, f->y, f->ny);
}

// Darknet's forward_maxpool_layer (src/maxpool_layer.c), with its batch-wide index turned into
// an index inside the plane.
static void darknet_maxpool(float *out, int32_t *idx, const float *in, const dp_pool_params *p)
{
    int w_offset = -p->pad_w / 2, h_offset = -p->pad_h / 2;
    for (int b = 0; b < p->N; ++b) {
        for (int k = 0; k < p->C; ++k) {
            for (int i = 0; i < p->out_h; ++i) {
                for (int j = 0; j < p->out_w; ++j) {
                    int out_index = j + p->out_w * (i + p->out_h * (k + p->C * b));
                    float max = -FLT_MAX;
                    int max_i = -1;
                    for (int n = 0; n < p->size_h; ++n) {
                        for (int m = 0; m < p->size_w; ++m) {
                            int cur_h = h_offset + i * p->stride_h + n;
                            int cur_w = w_offset + j * p->stride_w + m;
                            int index = cur_w + p->W * (cur_h + p->H * (k + b * p->C));
                            int valid = (cur_h >= 0 && cur_h < p->H && cur_w >= 0 && cur_w < p->W);
                            float val = (valid != 0) ? in[index] : -FLT_MAX;
                            max_i = (val > max) ? index : max_i;
                            max = (val > max) ? val : max;
                        }
                    }
                    out[out_index] = max;
                    idx[out_index] = max_i - p->H * p->W * (k + b * p->C);
                }
            }
        }
    }
}

Test(pool, maxpool_forward_matches_darknet)
{
    for (int i = 0; i < N_MAX_CASES; i++) {
        pool_fix f;
        fix_init(&f, &max_cases[i], 0, 1);
        gc_fill(f.x, f.nx, -1.0f, 1.0f, 32);
        f.x[3] = f.x[4]; // a tie: the first in scan order must win, as in Darknet
        cr_assert_eq(dp_cpu_maxpool_forward(f.y, f.argmax, f.x, &f.p), DP_OK);
        float *ref = malloc(f.ny * sizeof(float));
        int32_t *ref_idx = malloc(f.ny * sizeof(int32_t));
        cr_assert(ref && ref_idx);
        darknet_maxpool(ref, ref_idx, f.x, &f.p);
        cr_expect_eq(memcmp(ref, f.y, f.ny * sizeof(float)), 0, "%s: values differ (bitwise)",
                     max_cases[i].name);
        cr_expect_eq(memcmp(ref_idx, f.argmax, f.ny * sizeof(int32_t)), 0, "%s: argmax differs",
                     max_cases[i].name);
        free(ref);
        free(ref_idx);
        fix_fini(&f);
    }
}

Test(pool, maxpool_backward_matches_finite_differences)
{
    for (int i = 0; i < N_MAX_CASES; i++) {
        pool_fix f;
        fix_init(&f, &max_cases[i], 0, 1);
        float *dx = malloc(f.nx * sizeof(float));
        cr_assert_not_null(dx);
        cr_assert_eq(pool_loss(&f) == pool_loss(&f), 1);
        cr_assert_eq(dp_cpu_maxpool_backward(dx, f.dy, f.argmax, &f.p, 0), DP_OK);
        char what[64];
        snprintf(what, sizeof what, "maxpool %s dx", max_cases[i].name);
        gc_err e = gc_check(what, dx, f.x, f.nx, 1e-3, pool_loss, &f);
        cr_expect_lt(e.max_rel, 1e-3, "%s: %g at %zu", what, e.max_rel, e.index);
        free(dx);
        fix_fini(&f);
    }
}

Test(pool, avgpool_backward_matches_finite_differences_for_both_divisors)
{
    const pool_case cases[] = {
        {"avg_3x3_s1_pad2", 2, 2, 5, 6, 3, 1, 2},
        {"avg_2x2_s2_pad1", 1, 3, 7, 7, 2, 2, 1},
        {"avg_3x3_s2_nopad", 2, 1, 7, 9, 3, 2, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int include_pad = 0; include_pad < 2; include_pad++) {
            pool_fix f;
            fix_init(&f, &cases[i], 1, include_pad);
            float *dx = malloc(f.nx * sizeof(float));
            cr_assert_not_null(dx);
            cr_assert_eq(dp_cpu_avgpool_backward(dx, f.dy, &f.p, 0), DP_OK);
            char what[80];
            snprintf(what, sizeof what, "%s include_pad=%d dx", cases[i].name, include_pad);
            gc_err e = gc_check(what, dx, f.x, f.nx, 0.1, pool_loss, &f);
            cr_expect_lt(e.max_rel, 1e-3, "%s: %g at %zu", what, e.max_rel, e.index);
            free(dx);
            fix_fini(&f);
        }
    }
}

Test(pool, avgpool_divisor_counts_padding_only_when_asked)
{
    // 3x3 ones, window 3, stride 1, symmetric padding 1 (total 2): the corner sees 4 taps.
    dp_pool_params p = {.N = 1, .C = 1, .H = 3, .W = 3, .size_h = 3, .size_w = 3};
    p.stride_h = p.stride_w = 1, p.pad_h = p.pad_w = 2, p.count_include_pad = 1;
    cr_assert_eq(dp_pool_params_resolve(&p), DP_OK);
    cr_assert_eq(p.out_h, 3);
    float x[9], y[9];
    for (int i = 0; i < 9; i++) {
        x[i] = 1.0f;
    }
    cr_assert_eq(dp_cpu_avgpool_forward(y, x, &p), DP_OK);
    cr_expect_float_eq(y[0], 4.0f / 9.0f, 1e-7, "include_pad corner %g", (double)y[0]);
    cr_expect_float_eq(y[4], 1.0f, 1e-7, "include_pad centre");
    p.count_include_pad = 0;
    cr_assert_eq(dp_cpu_avgpool_forward(y, x, &p), DP_OK);
    cr_expect_float_eq(y[0], 1.0f, 1e-7, "exclude_pad corner %g", (double)y[0]);
}

typedef struct gap_fix {
    float x[2 * 3 * 5 * 4], y[6], dy[6];
} gap_fix;

static double gap_loss(void *ctx)
{
    gap_fix *f = ctx;
    cr_assert_eq(dp_cpu_global_avgpool_forward(f->y, f->x, 2, 3, 20), DP_OK);
    return gc_dot(f->dy, f->y, 6);
}

Test(pool, global_avgpool_forward_and_backward)
{
    gap_fix f;
    gc_fill(f.x, 120, -1.0f, 1.0f, 33);
    gc_fill(f.dy, 6, -1.0f, 1.0f, 34);
    cr_assert_eq(gap_loss(&f) == gap_loss(&f), 1);
    for (int plane = 0; plane < 6; plane++) {
        double mean = 0.0;
        for (int i = 0; i < 20; i++) {
            mean += f.x[plane * 20 + i] / 20.0;
        }
        cr_expect_float_eq(f.y[plane], mean, 1e-6, "plane %d: %g vs %g", plane, (double)f.y[plane],
                           mean);
    }
    float dx[120];
    cr_assert_eq(dp_cpu_global_avgpool_backward(dx, f.dy, 2, 3, 20, 0), DP_OK);
    gc_err e = gc_check("global_avgpool dx", dx, f.x, 120, 0.1, gap_loss, &f);
    cr_expect_lt(e.max_rel, 1e-3, "global avgpool dx: %g at %zu", e.max_rel, e.index);
    cr_assert_eq(dp_cpu_global_avgpool_backward(dx, f.dy, 2, 3, 20, 1), DP_OK);
    cr_expect_float_eq(dx[25], 2.0f * f.dy[1] / 20.0f, 1e-7, "accumulated");
}

Test(pool, darknet_output_dims)
{
    dp_pool_params p;
    cr_assert_eq(dp_pool_params_darknet(&p, 1, 1, 28, 28, 2, 2, -1), DP_OK);
    cr_expect_eq(p.out_h, 14);
    cr_assert_eq(dp_pool_params_darknet(&p, 1, 1, 7, 7, 2, 2, -1), DP_OK);
    cr_expect_eq(p.out_h, 4); // Darknet rounds up with its default padding
    cr_assert_eq(dp_pool_params_darknet(&p, 1, 1, 13, 13, 2, 1, -1), DP_OK);
    cr_expect_eq(p.out_w, 13); // yolov3-tiny's size=2 stride=1 keeps the size
    cr_assert_eq(dp_pool_params_darknet(&p, 1, 1, 7, 7, 2, 2, 0), DP_OK);
    cr_expect_eq(p.out_h, 3);
}

Test(pool, bad_params_are_errors_naming_the_field)
{
    dp_pool_params p;
    cr_expect_eq(dp_pool_params_darknet(&p, 1, 1, 8, 8, 2, 0, -1), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "stride_h = 0"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_origin(), "pool.c:"), "%s", dp_error_origin());
    cr_expect_eq(dp_pool_params_darknet(&p, 1, 1, 8, 8, 2, 2, 4), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "padding 4x4"), "%s", dp_error_message());
    cr_expect_eq(dp_pool_params_darknet(&p, 1, 1, 2, 2, 5, 1, 0), DP_ERR_SHAPE);
}
