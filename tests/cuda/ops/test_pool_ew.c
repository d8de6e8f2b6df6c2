// GPU test of the pooling and data-movement kernels of ops.h against the CPU kernels: max and
// average pooling (Darknet padding, overlapping and asymmetric windows, ties, count_include_pad),
// global average pooling, shortcut (same shape, from larger, from smaller, alpha and beta),
// shortcut with activation, route's channel copy, crop, casts and layout conversion, in both
// layouts, every storage type, with the accumulate flags. Every result here is one float
// computation per element in the CPU's order, so the test is bitwise: the device must equal the
// CPU run on the same (rounded) inputs, with its output rounded to the storage type. Exits 77
// without a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cpu/elementwise.h"
#include "nn/cpu/pool.h"
#include "nn/cuda/ops.h"
#include "ops_test.h"

static dp_cuda_ctx *ctx;

static const dp_cuda_dtype dtypes[] = {DP_CUDA_F32, DP_CUDA_BF16, DP_CUDA_F16};
static const dp_cuda_layout layouts[] = {DP_CUDA_NCHW, DP_CUDA_NHWC};

// Uploads an (N, C, hw) NCHW host tensor in layout l and type t.
static void *up(const float *nchw, int N, int C, size_t hw, dp_cuda_layout l, dp_cuda_dtype t)
{
    size_t n = (size_t)N * C * hw;
    float *tmp = ot_alloc(n);
    ot_to_layout(tmp, nchw, N, C, hw, l);
    void *d = ot_dev(ctx, tmp, n, t);
    free(tmp);
    return d;
}

// Downloads into NCHW.
static void down(float *nchw, const void *dev, int N, int C, size_t hw, dp_cuda_layout l,
                 dp_cuda_dtype t)
{
    size_t n = (size_t)N * C * hw;
    float *tmp = ot_alloc(n);
    ot_get(ctx, tmp, dev, n, t);
    ot_from_layout(nchw, tmp, N, C, hw, l);
    free(tmp);
}

// Compares a device tensor (layout l, type t) with the CPU's float result rounded to t.
static void expect(const char *what, const void *dev, float *ref, int N, int C, size_t hw,
                   dp_cuda_layout l, dp_cuda_dtype t)
{
    size_t n = (size_t)N * C * hw;
    float *got = ot_alloc(n);
    down(got, dev, N, C, hw, l, t);
    ot_round_all(ref, n, t);
    ot_same(what, got, ref, n);
    free(got);
}

static float *random_rounded(size_t n, float lo, float hi, uint32_t seed, dp_cuda_dtype t,
                             int integers)
{
    float *x = ot_alloc(n);
    ot_fill(x, n, lo, hi, seed);
    for (size_t i = 0; i < n; i++) {
        x[i] = ct_round(integers ? floorf(x[i]) : x[i], t);
    }
    return x;
}

// --- pooling ---

typedef struct pool_case {
    int N, C, H, W, kh, kw, sh, sw, ph, pw;
} pool_case;

static void pool_case_run(pool_case pc, int include_pad, dp_cuda_layout l, dp_cuda_dtype t,
                          int accumulate, int ties)
{
    char what[200];
    dp_pool_params p = {.N = pc.N,
                        .C = pc.C,
                        .H = pc.H,
                        .W = pc.W,
                        .size_h = pc.kh,
                        .size_w = pc.kw,
                        .stride_h = pc.sh,
                        .stride_w = pc.sw,
                        .pad_h = pc.ph,
                        .pad_w = pc.pw,
                        .count_include_pad = include_pad};
    ot_ok(dp_pool_params_resolve(&p), "pool params");
    const int N = p.N, C = p.C;
    const size_t hw = (size_t)p.H * p.W, ohw = (size_t)p.out_h * p.out_w;
    const size_t n_in = (size_t)N * C * hw, n_out = (size_t)N * C * ohw;
    snprintf(what, sizeof what,
             "pool %dx%dx%dx%d k%dx%d s%dx%d p%dx%d incl %d %s %s acc %d ties %d", N, C, p.H, p.W,
             p.size_h, p.size_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w, include_pad,
             ct_layout_name(l), ct_dtype_name(t), accumulate, ties);
    float *x =
        random_rounded(n_in, ties ? 0.0f : -3.0f, ties ? 4.0f : 3.0f, 41 + (uint32_t)n_in, t, ties);
    float *dy = random_rounded(n_out, -1.0f, 1.0f, 42, t, 0);
    float *dx = random_rounded(n_in, -1.0f, 1.0f, 43, t, 0);
    float *y = ot_alloc(n_out), *ref_dx = ot_alloc(n_in);
    int32_t *am = malloc(n_out * sizeof *am), *am_nchw = malloc(n_out * sizeof *am);
    float *am_f = ot_alloc(n_out), *am_ref = ot_alloc(n_out);
    void *d_x = up(x, N, C, hw, l, t), *d_dy = up(dy, N, C, ohw, l, t);
    void *d_dx = up(dx, N, C, hw, l, t), *d_y = ot_dev(ctx, NULL, n_out, t);
    int32_t *d_am = ot_dev_bytes(ctx, NULL, n_out * sizeof(int32_t));

    // max
    ot_ok(dp_cpu_maxpool_forward(y, am, x, &p), "cpu maxpool forward");
    ot_ok(dp_cuda_maxpool_forward(ctx, d_y, d_am, d_x, &p, l, t), what);
    expect("maxpool y", d_y, y, N, C, ohw, l, t);
    int32_t *am_got = malloc(n_out * sizeof *am_got);
    ot_get_bytes(ctx, am_got, d_am, n_out * sizeof(int32_t));
    for (size_t i = 0; i < n_out; i++) { // compare the indices through the float helpers
        am_f[i] = (float)am_got[i];
        am_ref[i] = (float)am[i];
    }
    float *am_back = ot_alloc(n_out);
    ot_from_layout(am_back, am_f, N, C, ohw, l);
    ot_same("maxpool argmax", am_back, am_ref, n_out);
    memcpy(ref_dx, dx, n_in * sizeof(float));
    ot_ok(dp_cpu_maxpool_backward(ref_dx, dy, am, &p, accumulate), "cpu maxpool backward");
    ot_ok(dp_cuda_maxpool_backward(ctx, d_dx, d_dy, d_am, &p, accumulate, l, t), what);
    expect("maxpool dx", d_dx, ref_dx, N, C, hw, l, t);

    // average
    ot_ok(dp_cpu_avgpool_forward(y, x, &p), "cpu avgpool forward");
    ot_ok(dp_cuda_avgpool_forward(ctx, d_y, d_x, &p, l, t), what);
    expect("avgpool y", d_y, y, N, C, ohw, l, t);
    dp_cuda_free(ctx, d_dx);
    d_dx = up(dx, N, C, hw, l, t);
    memcpy(ref_dx, dx, n_in * sizeof(float));
    ot_ok(dp_cpu_avgpool_backward(ref_dx, dy, &p, accumulate), "cpu avgpool backward");
    ot_ok(dp_cuda_avgpool_backward(ctx, d_dx, d_dy, &p, accumulate, l, t), what);
    expect("avgpool dx", d_dx, ref_dx, N, C, hw, l, t);

    dp_cuda_free(ctx, d_x);
    dp_cuda_free(ctx, d_dy);
    dp_cuda_free(ctx, d_dx);
    dp_cuda_free(ctx, d_y);
    dp_cuda_free(ctx, d_am);
    free(x), free(dy), free(dx), free(y), free(ref_dx), free(am), free(am_nchw), free(am_f);
    free(am_ref), free(am_got), free(am_back);
}

static void global_case(int N, int C, size_t hw, dp_cuda_layout l, dp_cuda_dtype t, int accumulate)
{
    char what[120];
    snprintf(what, sizeof what, "global avgpool %dx%dx%zu %s %s acc %d", N, C, hw,
             ct_layout_name(l), ct_dtype_name(t), accumulate);
    const size_t n = (size_t)N * C * hw, planes = (size_t)N * C;
    float *x = random_rounded(n, -2.0f, 2.0f, 51 + (uint32_t)n, t, 0);
    float *dy = random_rounded(planes, -1.0f, 1.0f, 52, t, 0);
    float *dx = random_rounded(n, -1.0f, 1.0f, 53, t, 0);
    float *y = ot_alloc(planes), *got = ot_alloc(planes);
    void *d_x = up(x, N, C, hw, l, t), *d_dx = up(dx, N, C, hw, l, t);
    void *d_dy = ot_dev(ctx, dy, planes, t), *d_y = ot_dev(ctx, NULL, planes, t);
    ot_ok(dp_cpu_global_avgpool_forward(y, x, N, C, hw), "cpu global avgpool");
    ot_ok(dp_cuda_global_avgpool_forward(ctx, d_y, d_x, N, C, hw, l, t), what);
    ot_get(ctx, got, d_y, planes, t);
    ot_round_all(y, planes, t);
    ot_same(what, got, y, planes);
    ot_ok(dp_cpu_global_avgpool_backward(dx, dy, N, C, hw, accumulate), "cpu global backward");
    ot_ok(dp_cuda_global_avgpool_backward(ctx, d_dx, d_dy, N, C, hw, accumulate, l, t), what);
    expect(what, d_dx, dx, N, C, hw, l, t);
    dp_cuda_free(ctx, d_x);
    dp_cuda_free(ctx, d_dx);
    dp_cuda_free(ctx, d_dy);
    dp_cuda_free(ctx, d_y);
    free(x), free(dy), free(dx), free(y), free(got);
}

static void test_pooling(void)
{
    const pool_case cases[] = {
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, {2, 3, 7, 9, 2, 2, 2, 2, 1, 1},
        {3, 5, 8, 8, 3, 3, 2, 2, 2, 2}, {2, 4, 6, 7, 3, 3, 1, 1, 2, 2},
        {1, 6, 5, 5, 2, 2, 1, 1, 0, 0}, {2, 33, 10, 10, 3, 3, 3, 3, 0, 0},
        {2, 3, 9, 8, 3, 2, 2, 1, 2, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int l = 0; l < 2; l++) {
            for (int t = 0; t < 3; t++) {
                pool_case_run(cases[i], (int)(i % 2), layouts[l], dtypes[t], (int)(i % 2), 0);
                pool_case_run(cases[i], (int)(1 - i % 2), layouts[l], dtypes[t], (int)(1 - i % 2),
                              1);
            }
        }
    }
    const size_t hws[] = {1, 49, 7 * 9, 300}; // 300: more than one block of the CPU's sum
    for (int l = 0; l < 2; l++) {
        for (int t = 0; t < 3; t++) {
            for (int h = 0; h < 4; h++) {
                global_case(h == 0 ? 1 : 3, 5 + 30 * (h % 2), hws[h], layouts[l], dtypes[t], h % 2);
            }
        }
    }
    dp_pool_params bad = {
        .N = 1, .C = 1, .H = 4, .W = 4, .size_h = 2, .size_w = 2, .stride_h = 2, .stride_w = 2};
    void *d = ot_dev(ctx, NULL, 64, DP_CUDA_F32);
    ot_check(dp_cuda_maxpool_forward(ctx, d, d, d, &bad, DP_CUDA_NCHW, DP_CUDA_F32) == DP_ERR_ARG,
             "maxpool refuses unresolved params");
    dp_cuda_free(ctx, d);
}

// --- shortcut ---

static void shortcut_case(dp_shortcut_params p, dp_cuda_layout l, dp_cuda_dtype t, int acc_dx,
                          int acc_from)
{
    char what[200];
    snprintf(what, sizeof what, "shortcut %dx%dx%dx%d from %dx%dx%d a %g b %g %s %s acc %d %d", p.N,
             p.C, p.H, p.W, p.from_C, p.from_H, p.from_W, (double)p.alpha, (double)p.beta,
             ct_layout_name(l), ct_dtype_name(t), acc_dx, acc_from);
    const size_t hw = (size_t)p.H * p.W, fhw = (size_t)p.from_H * p.from_W;
    const size_t n = (size_t)p.N * p.C * hw, nf = (size_t)p.N * p.from_C * fhw;
    float *x = random_rounded(n, -2.0f, 2.0f, 61, t, 0),
          *f = random_rounded(nf, -2.0f, 2.0f, 62, t, 0);
    float *dy = random_rounded(n, -1.0f, 1.0f, 63, t, 0),
          *dx = random_rounded(n, -1.0f, 1.0f, 64, t, 0);
    float *df = random_rounded(nf, -1.0f, 1.0f, 65, t, 0), *y = ot_alloc(n);
    void *d_x = up(x, p.N, p.C, hw, l, t), *d_f = up(f, p.N, p.from_C, fhw, l, t);
    void *d_dy = up(dy, p.N, p.C, hw, l, t), *d_dx = up(dx, p.N, p.C, hw, l, t);
    void *d_df = up(df, p.N, p.from_C, fhw, l, t), *d_y = ot_dev(ctx, NULL, n, t);
    ot_ok(dp_cpu_shortcut_forward(y, x, f, &p), "cpu shortcut forward");
    ot_ok(dp_cuda_shortcut_forward(ctx, d_y, d_x, d_f, &p, l, t), what);
    expect(what, d_y, y, p.N, p.C, hw, l, t);
    ot_ok(dp_cpu_shortcut_backward(dx, df, dy, &p, acc_dx, acc_from), "cpu shortcut backward");
    ot_ok(dp_cuda_shortcut_backward(ctx, d_dx, d_df, d_dy, &p, acc_dx, acc_from, l, t), what);
    expect("shortcut dx", d_dx, dx, p.N, p.C, hw, l, t);
    expect("shortcut dfrom", d_df, df, p.N, p.from_C, fhw, l, t);
    // in place, as the layers run it
    ot_ok(dp_cpu_shortcut_forward(x, x, f, &p), "cpu shortcut in place");
    ot_ok(dp_cuda_shortcut_forward(ctx, d_x, d_x, d_f, &p, l, t), what);
    expect("shortcut in place", d_x, x, p.N, p.C, hw, l, t);
    dp_cuda_free(ctx, d_x), dp_cuda_free(ctx, d_f), dp_cuda_free(ctx, d_dy);
    dp_cuda_free(ctx, d_dx), dp_cuda_free(ctx, d_df), dp_cuda_free(ctx, d_y);
    free(x), free(f), free(dy), free(dx), free(df), free(y);
}

static void shortcut_act_case(dp_act act, dp_cuda_dtype t, int acc_dx, int acc_from)
{
    char what[120];
    dp_shortcut_params p = {.N = 3,
                            .C = 5,
                            .H = 7,
                            .W = 6,
                            .from_C = 5,
                            .from_H = 7,
                            .from_W = 6,
                            .alpha = 0.75f,
                            .beta = 1.5f};
    snprintf(what, sizeof what, "shortcut+%s %s acc %d %d", dp_act_name(act), ct_dtype_name(t),
             acc_dx, acc_from);
    const size_t n = (size_t)p.N * p.C * p.H * p.W;
    const float slope = 0.1f;
    float *x = random_rounded(n, -2.0f, 2.0f, 71, t, 0),
          *f = random_rounded(n, -2.0f, 2.0f, 72, t, 0);
    float *dy = random_rounded(n, -1.0f, 1.0f, 73, t, 0),
          *dx = random_rounded(n, -1.0f, 1.0f, 74, t, 0);
    float *df = random_rounded(n, -1.0f, 1.0f, 75, t, 0), *y = ot_alloc(n), *got = ot_alloc(n);
    void *d_x = ot_dev(ctx, x, n, t), *d_f = ot_dev(ctx, f, n, t), *d_dy = ot_dev(ctx, dy, n, t);
    void *d_dx = ot_dev(ctx, dx, n, t), *d_df = ot_dev(ctx, df, n, t),
         *d_y = ot_dev(ctx, NULL, n, t);
    ot_ok(dp_cpu_shortcut_act_forward(y, x, f, &p, act, slope, NULL), "cpu shortcut act");
    ot_ok(dp_cuda_shortcut_act_forward(ctx, d_y, d_x, d_f, &p, act, slope, t), what);
    ot_round_all(y, n, t);
    ot_get(ctx, got, d_y, n, t);
    ot_same(what, got, y, n);
    ot_ok(dp_cpu_shortcut_act_backward(dx, df, dy, y, &p, act, slope, acc_dx, acc_from, NULL),
          "cpu shortcut act backward");
    ot_ok(dp_cuda_shortcut_act_backward(ctx, d_dx, d_df, d_dy, d_y, &p, act, slope, acc_dx,
                                        acc_from, t),
          what);
    ot_round_all(dx, n, t);
    ot_round_all(df, n, t);
    ot_get(ctx, got, d_dx, n, t);
    ot_same("shortcut+act dx", got, dx, n);
    ot_get(ctx, got, d_df, n, t);
    ot_same("shortcut+act dfrom", got, df, n);
    dp_cuda_free(ctx, d_x), dp_cuda_free(ctx, d_f), dp_cuda_free(ctx, d_dy);
    dp_cuda_free(ctx, d_dx), dp_cuda_free(ctx, d_df), dp_cuda_free(ctx, d_y);
    free(x), free(f), free(dy), free(dx), free(df), free(y), free(got);
}

static void test_shortcut(void)
{
    const dp_shortcut_params cases[] = {
        {.N = 2,
         .C = 4,
         .H = 6,
         .W = 6,
         .from_C = 4,
         .from_H = 6,
         .from_W = 6,
         .alpha = 1,
         .beta = 1},
        {.N = 2,
         .C = 4,
         .H = 6,
         .W = 6,
         .from_C = 6,
         .from_H = 12,
         .from_W = 12,
         .alpha = 0.5f,
         .beta = 2},
        {.N = 2,
         .C = 4,
         .H = 6,
         .W = 6,
         .from_C = 2,
         .from_H = 3,
         .from_W = 3,
         .alpha = 1,
         .beta = 0.25f},
        {.N = 1,
         .C = 3,
         .H = 5,
         .W = 5,
         .from_C = 5,
         .from_H = 5,
         .from_W = 5,
         .alpha = -1,
         .beta = 1},
    };
    for (int i = 0; i < 4; i++) {
        for (int l = 0; l < 2; l++) {
            for (int t = 0; t < 3; t++) {
                shortcut_case(cases[i], layouts[l], dtypes[t], i % 2, (i / 2) % 2);
            }
        }
    }
    const dp_act acts[] = {DP_ACT_LINEAR, DP_ACT_RELU, DP_ACT_LEAKY};
    for (int a = 0; a < 3; a++) {
        for (int t = 0; t < 3; t++) {
            shortcut_act_case(acts[a], dtypes[t], a % 2, 1 - a % 2);
            shortcut_act_case(acts[a], dtypes[t], 1, 1);
        }
    }
    void *d = ot_dev(ctx, NULL, 1024, DP_CUDA_F32);
    ot_check(dp_cuda_shortcut_act_forward(ctx, d, d, d, &cases[1], DP_ACT_RELU, 0.0f,
                                          DP_CUDA_F32) == DP_ERR_ARG,
             "shortcut+act refuses two shapes");
    dp_cuda_free(ctx, d);
}

// --- route, crop ---

static void copy_case(dp_cuda_layout l, dp_cuda_dtype t, int accumulate)
{
    char what[80];
    snprintf(what, sizeof what, "channel copy %s %s acc %d", ct_layout_name(l), ct_dtype_name(t),
             accumulate);
    const int N = 3, dst_C = 7, src_C = 5;
    const size_t hw = 13;
    float *dst = random_rounded((size_t)N * dst_C * hw, -1.0f, 1.0f, 81, t, 0);
    float *src = random_rounded((size_t)N * src_C * hw, -1.0f, 1.0f, 82, t, 0);
    void *d_dst = up(dst, N, dst_C, hw, l, t), *d_src = up(src, N, src_C, hw, l, t);
    ot_ok(dp_cpu_channel_copy(dst, dst_C, 2, src, src_C, 1, 3, N, hw, accumulate), "cpu copy");
    ot_ok(dp_cuda_channel_copy(ctx, d_dst, dst_C, 2, d_src, src_C, 1, 3, N, hw, accumulate, l, t),
          what);
    expect(what, d_dst, dst, N, dst_C, hw, l, t);
    ot_check(dp_cuda_channel_copy(ctx, d_dst, dst_C, 5, d_src, src_C, 0, 3, N, hw, 0, l, t) ==
                 DP_ERR_ARG,
             "%s: a range outside dst is refused", what);
    dp_cuda_free(ctx, d_dst), dp_cuda_free(ctx, d_src);
    free(dst), free(src);
}

static void crop_case(dp_cuda_layout l, dp_cuda_dtype t, int accumulate)
{
    char what[80];
    snprintf(what, sizeof what, "crop %s %s acc %d", ct_layout_name(l), ct_dtype_name(t),
             accumulate);
    dp_crop_params p = {
        .N = 2, .C = 3, .H = 9, .W = 8, .out_h = 5, .out_w = 4, .off_h = 2, .off_w = 3};
    const size_t hw = 72, ohw = 20;
    float *x = random_rounded(2 * 3 * hw, -1.0f, 1.0f, 91, t, 0), *y = ot_alloc(2 * 3 * ohw);
    float *dx = random_rounded(2 * 3 * hw, -1.0f, 1.0f, 92, t, 0);
    float *dy = random_rounded(2 * 3 * ohw, -1.0f, 1.0f, 93, t, 0);
    void *d_x = up(x, 2, 3, hw, l, t), *d_dx = up(dx, 2, 3, hw, l, t),
         *d_dy = up(dy, 2, 3, ohw, l, t);
    void *d_y = ot_dev(ctx, NULL, 2 * 3 * ohw, t);
    ot_ok(dp_cpu_crop_forward(y, x, &p), "cpu crop");
    ot_ok(dp_cuda_crop_forward(ctx, d_y, d_x, &p, l, t), what);
    expect(what, d_y, y, 2, 3, ohw, l, t);
    ot_ok(dp_cpu_crop_backward(dx, dy, &p, accumulate), "cpu crop backward");
    ot_ok(dp_cuda_crop_backward(ctx, d_dx, d_dy, &p, accumulate, l, t), what);
    expect("crop dx", d_dx, dx, 2, 3, hw, l, t);
    dp_cuda_free(ctx, d_x), dp_cuda_free(ctx, d_dx), dp_cuda_free(ctx, d_dy),
        dp_cuda_free(ctx, d_y);
    free(x), free(y), free(dx), free(dy);
}

// --- casts and layout conversion ---

static void test_casts(void)
{
    const size_t n = 100003;
    float *x = ot_alloc(n), *ref = ot_alloc(n), *got = ot_alloc(n);
    ot_fill(x, n, -1.0f, 1.0f, 101);
    for (size_t i = 0; i < n; i++) { // magnitudes from 1e-9 to 1e6: subnormal halfs, fp16 overflow
        x[i] *= powf(10.0f, (float)(i % 16) - 9.0f);
    }
    for (int s = 0; s < 3; s++) {
        for (int d = 0; d < 3; d++) {
            char what[64];
            snprintf(what, sizeof what, "cast %s -> %s", ct_dtype_name(dtypes[s]),
                     ct_dtype_name(dtypes[d]));
            void *d_src = ot_dev(ctx, x, n, dtypes[s]), *d_dst = ot_dev(ctx, NULL, n, dtypes[d]);
            ot_ok(dp_cuda_cast(ctx, d_dst, dtypes[d], d_src, dtypes[s], n), what);
            for (size_t i = 0; i < n; i++) {
                ref[i] = ct_round(ct_round(x[i], dtypes[s]), dtypes[d]);
            }
            ot_get(ctx, got, d_dst, n, dtypes[d]);
            ot_same(what, got, ref, n);
            if (dp_cuda_dtype_size(dtypes[s]) == dp_cuda_dtype_size(dtypes[d])) {
                ot_ok(dp_cuda_cast(ctx, d_src, dtypes[d], d_src, dtypes[s], n), what);
                ot_get(ctx, got, d_src, n, dtypes[d]);
                ot_same("cast in place", got, ref, n);
            }
            dp_cuda_free(ctx, d_src), dp_cuda_free(ctx, d_dst);
        }
    }
    free(x), free(ref), free(got);
}

static void convert_case(int N, int C, size_t hw, dp_cuda_layout from, dp_cuda_dtype from_t,
                         dp_cuda_layout to, dp_cuda_dtype to_t)
{
    char what[120];
    snprintf(what, sizeof what, "convert %dx%dx%zu %s %s -> %s %s", N, C, hw, ct_layout_name(from),
             ct_dtype_name(from_t), ct_layout_name(to), ct_dtype_name(to_t));
    const size_t n = (size_t)N * C * hw;
    float *x = random_rounded(n, -3.0f, 3.0f, 111 + (uint32_t)n, from_t, 0);
    void *d_src = up(x, N, C, hw, from, from_t), *d_dst = ot_dev(ctx, NULL, n, to_t);
    ot_ok(dp_cuda_convert(ctx, d_dst, to, to_t, d_src, from, from_t, N, C, hw), what);
    expect(what, d_dst, x, N, C, hw, to, to_t);
    dp_cuda_free(ctx, d_src), dp_cuda_free(ctx, d_dst);
    free(x);
}

static void test_convert(void)
{
    for (int s = 0; s < 3; s++) {
        for (int d = 0; d < 3; d++) {
            for (int lf = 0; lf < 2; lf++) {
                for (int lt = 0; lt < 2; lt++) {
                    convert_case(2, 37, 45, layouts[lf], dtypes[s], layouts[lt], dtypes[d]);
                    convert_case(1, 1, 1, layouts[lf], dtypes[s], layouts[lt], dtypes[d]);
                }
            }
        }
    }
    convert_case(4, 3, 224 * 224, DP_CUDA_NCHW, DP_CUDA_F32, DP_CUDA_NHWC, DP_CUDA_BF16);
    convert_case(3, 64, 33 * 31, DP_CUDA_NHWC, DP_CUDA_BF16, DP_CUDA_NCHW, DP_CUDA_F32);
}

int main(void)
{
    ctx = ot_ctx_or_skip();
    test_pooling();
    test_shortcut();
    for (int l = 0; l < 2; l++) {
        for (int t = 0; t < 3; t++) {
            copy_case(layouts[l], dtypes[t], t % 2);
            copy_case(layouts[l], dtypes[t], 1 - t % 2);
            crop_case(layouts[l], dtypes[t], t % 2);
            crop_case(layouts[l], dtypes[t], 1 - t % 2);
        }
    }
    test_casts();
    test_convert();
    return ot_finish(ctx, "cuda ops: pooling, shortcut, route, crop, casts, layouts");
}
