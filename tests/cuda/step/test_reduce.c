// GPU passes over the flat gradient buffer: the deterministic norm (bitwise repeatable run to
// run, within rtol 1e-12 of the CPU's index-order sum, the clip factor as dp_optim_step's),
// finite checks and fp16 unscaling (count and index range of the non-finite elements), and the
// element-wise sums of deterministic accumulation, bitwise equal to the CPU's tree
// (dp_comm_tree_sum_local) and to plain float loops.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "core/error.h"
#include "nn/cuda/step/step_ops.h"
#include "nn/optim.h"
#include "step_test.h"

static void check_norm(dp_cuda_ctx *ctx, size_t n)
{
    float *g = st_alloc(n * sizeof(float));
    st_fill_normal(g, n, 0.001f, 0.05f, 5u + n);
    float *d_g = st_dev_from(ctx, g, n * sizeof(float));
    void *ws = st_dev_from(ctx, NULL, dp_cuda_grad_norm_workspace_bytes(n));
    dp_cuda_guard *d_guard = st_dev_from(ctx, NULL, sizeof(dp_cuda_guard));
    dp_cuda_guard first = {0}, again = {0};
    const double clip = 1.5;
    for (int run = 0; run < 3; run++) {
        st_ok(dp_cuda_guard_reset(ctx, d_guard), "guard reset");
        st_ok(dp_cuda_grad_norm(ctx, d_guard, d_g, n, clip, ws), "dp_cuda_grad_norm");
        st_ok(dp_cuda_guard_read(ctx, run == 0 ? &first : &again, d_guard), "guard read");
        if (run > 0) {
            st_check(memcmp(&first.norm, &again.norm, sizeof(double)) == 0 &&
                         first.clip_scale == again.clip_scale,
                     "norm of %zu elements: run %d gives %.17g, run 0 %.17g (bitwise expected)", n,
                     run, again.norm, first.norm);
        }
    }
    const double want = dp_optim_grad_norm(g, n);
    st_check(fabs(first.norm - want) <= 1e-12 * want, "norm of %zu elements: %.17g, want %.17g", n,
             first.norm, want);
    const double coef = clip / (first.norm + 1e-6);
    const float want_scale = coef < 1.0 ? (float)coef : 1.0f;
    st_check(first.clip_scale == want_scale && !first.norm_bad,
             "clip scale of %zu elements: %g, want %g", n, (double)first.clip_scale,
             (double)want_scale);
    if (n > 100) { // a non-finite norm marks the guard
        const float inf = INFINITY;
        st_dev_set(ctx, d_g + n / 2, &inf, sizeof inf);
        st_ok(dp_cuda_guard_reset(ctx, d_guard), "guard reset");
        st_ok(dp_cuda_grad_norm(ctx, d_guard, d_g, n, clip, ws), "dp_cuda_grad_norm (inf)");
        st_ok(dp_cuda_guard_read(ctx, &again, d_guard), "guard read");
        st_check(again.norm_bad == 1 && dp_cuda_guard_skips(&again) &&
                     dp_cuda_guard_check(&again) == DP_ERR_DATA,
                 "an infinite gradient must make the norm bad");
    }
    st_dev_free(ctx, d_g), st_dev_free(ctx, ws), st_dev_free(ctx, d_guard);
    free(g);
}

static void check_finite_and_unscale(dp_cuda_ctx *ctx)
{
    enum { N = 100000 };
    float *g = st_alloc(N * sizeof(float)), *got = st_alloc(N * sizeof(float));
    st_fill_normal(g, N, 0.0f, 1000.0f, 8);
    float *d_g = st_dev_from(ctx, g, N * sizeof(float));
    dp_cuda_guard *d_guard = st_dev_from(ctx, NULL, sizeof(dp_cuda_guard));
    dp_cuda_guard h;
    st_ok(dp_cuda_guard_reset(ctx, d_guard), "guard reset");
    st_ok(dp_cuda_check_finite(ctx, d_guard, d_g, N, 0), "check finite (clean)");
    st_ok(dp_cuda_unscale_check(ctx, d_guard, d_g, N, 1.0f / 1024.0f, 0), "unscale (clean)");
    st_ok(dp_cuda_guard_read(ctx, &h, d_guard), "guard read");
    st_check(!dp_cuda_guard_skips(&h) && h.first_bad == UINT64_MAX && h.last_bad == 0 &&
                 dp_cuda_guard_check(&h) == DP_OK,
             "clean buffer: n_bad %llu", (unsigned long long)h.n_bad);
    st_dev_to(ctx, got, d_g, N * sizeof(float));
    for (size_t i = 0; i < N; i++) {
        g[i] = g[i] * (1.0f / 1024.0f);
    }
    st_bitwise("unscaled gradients", got, g, N);
    // NaN, +Inf, -Inf at 17, 900, 99999, and an overflow made by the multiply at 5000.
    g[17] = NAN, g[900] = INFINITY, g[99999] = -INFINITY, g[5000] = 3e38f;
    st_dev_set(ctx, d_g, g, N * sizeof(float));
    st_ok(dp_cuda_guard_reset(ctx, d_guard), "guard reset");
    st_ok(dp_cuda_check_finite(ctx, d_guard, d_g, N, 500), "check finite");
    st_ok(dp_cuda_guard_read(ctx, &h, d_guard), "guard read");
    st_check(h.n_bad == 3 && h.first_bad == 517 && h.last_bad == 100499,
             "finite check: n_bad %llu in [%llu, %llu], want 3 in [517, 100499]",
             (unsigned long long)h.n_bad, (unsigned long long)h.first_bad,
             (unsigned long long)h.last_bad);
    st_ok(dp_cuda_guard_reset(ctx, d_guard), "guard reset");
    st_ok(dp_cuda_unscale_check(ctx, d_guard, d_g, N, 2.0f, 0), "unscale by 2 (scale 0.5)");
    st_ok(dp_cuda_guard_read(ctx, &h, d_guard), "guard read");
    st_check(h.n_bad == 4 && h.first_bad == 17 && h.last_bad == 99999,
             "unscale check: n_bad %llu in [%llu, %llu], want 4 in [17, 99999]",
             (unsigned long long)h.n_bad, (unsigned long long)h.first_bad,
             (unsigned long long)h.last_bad);
    dp_status st = dp_cuda_guard_check(&h);
    st_check(st == DP_ERR_DATA && strstr(dp_error_message(), "4 non-finite") != NULL &&
                 strstr(dp_error_message(), "17 and 99999") != NULL,
             "guard check message: '%s'", dp_error_message());
    st_dev_free(ctx, d_g), st_dev_free(ctx, d_guard);
    free(g), free(got);
}

static void check_elementwise(dp_cuda_ctx *ctx)
{
    enum { COUNT = 1001, M = 8, LEVELS = 4 };
    float *parts[M], *d_parts[M], *d_levels[LEVELS];
    for (int i = 0; i < M; i++) {
        parts[i] = st_alloc(COUNT * sizeof(float));
        st_fill_normal(parts[i], COUNT, 0.0f, 1.0f, 40u + (uint64_t)i);
        d_parts[i] = st_dev_from(ctx, parts[i], COUNT * sizeof(float));
    }
    for (int l = 0; l < LEVELS; l++) {
        d_levels[l] = st_dev_from(ctx, NULL, COUNT * sizeof(float));
    }
    float *want = st_alloc(COUNT * sizeof(float)), *got = st_alloc(COUNT * sizeof(float));
    st_ok(dp_comm_tree_sum_local(parts, M, COUNT, want), "dp_comm_tree_sum_local");
    dp_cuda_tree_acc acc;
    st_ok(dp_cuda_tree_acc_init(&acc, d_levels, LEVELS, COUNT), "tree init");
    float *res = NULL;
    st_check(dp_cuda_tree_acc_result(&acc, &res) == DP_ERR_ARG, "empty tree has no result");
    for (int i = 0; i < M; i++) {
        st_ok(dp_cuda_tree_acc_push(ctx, &acc, d_parts[i]), "tree push");
    }
    st_check(dp_cuda_tree_acc_push(ctx, &acc, d_parts[0]) == DP_ERR_ARG,
             "a ninth part must be refused by a tree of 8");
    st_ok(dp_cuda_tree_acc_result(&acc, &res), "tree result");
    if (res != NULL) {
        st_dev_to(ctx, got, res, COUNT * sizeof(float));
        st_bitwise("device tree of 8 parts vs dp_comm_tree_sum_local", got, want, COUNT);
    }
    // a + b into a, and x *= s, against plain float loops.
    st_ok(dp_cuda_add(ctx, d_parts[0], d_parts[0], d_parts[1], COUNT), "dp_cuda_add");
    st_ok(dp_cuda_scale(ctx, d_parts[0], COUNT, 0.125f), "dp_cuda_scale");
    st_ok(dp_cuda_copy(ctx, d_parts[2], d_parts[0], COUNT), "dp_cuda_copy");
    for (size_t i = 0; i < COUNT; i++) {
        want[i] = (parts[0][i] + parts[1][i]) * 0.125f;
    }
    st_dev_to(ctx, got, d_parts[2], COUNT * sizeof(float));
    st_bitwise("add, scale, copy", got, want, COUNT);
    for (int i = 0; i < M; i++) {
        st_dev_free(ctx, d_parts[i]);
        free(parts[i]);
    }
    for (int l = 0; l < LEVELS; l++) {
        st_dev_free(ctx, d_levels[l]);
    }
    free(want), free(got);
}

// In bf16/fp16 storage: the sum of the two stored values in float, rounded once (bitwise); the
// copy bit for bit.
static void check_elementwise_dtype(dp_cuda_ctx *ctx, dp_cuda_dtype dtype)
{
    enum { COUNT = 999 };
    const size_t es = dp_cuda_dtype_size(dtype);
    float *a = st_alloc(COUNT * 4), *b = st_alloc(COUNT * 4), *want = st_alloc(COUNT * 4);
    float *got = st_alloc(COUNT * 4);
    void *packed = st_alloc(COUNT * es);
    st_fill_normal(a, COUNT, 0.0f, 3.0f, 61);
    st_fill_normal(b, COUNT, 0.0f, 3.0f, 62);
    st_round_through(a, COUNT, dtype);
    st_round_through(b, COUNT, dtype);
    for (size_t i = 0; i < COUNT; i++) {
        want[i] = a[i] + b[i];
    }
    st_round_through(want, COUNT, dtype);
    st_pack(packed, a, COUNT, dtype);
    void *d_a = st_dev_from(ctx, packed, COUNT * es), *d_c = st_dev_from(ctx, NULL, COUNT * es);
    st_pack(packed, b, COUNT, dtype);
    void *d_b = st_dev_from(ctx, packed, COUNT * es);
    st_ok(dp_cuda_add_dtype(ctx, d_a, d_a, d_b, COUNT, dtype), "dp_cuda_add_dtype");
    st_ok(dp_cuda_copy_dtype(ctx, d_c, d_a, COUNT, dtype), "dp_cuda_copy_dtype");
    st_dev_to(ctx, packed, d_c, COUNT * es);
    st_unpack(got, packed, COUNT, dtype);
    char what[64];
    snprintf(what, sizeof what, "add and copy in %s", ct_dtype_name(dtype));
    st_bitwise(what, got, want, COUNT);
    st_dev_free(ctx, d_a), st_dev_free(ctx, d_b), st_dev_free(ctx, d_c);
    free(a), free(b), free(want), free(got), free(packed);
}

int main(void)
{
    dp_cuda_ctx *ctx = st_ctx_or_skip();
    const size_t sizes[] = {0, 5, 8192, 8193, 1000003, 25557032};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_norm(ctx, sizes[i]);
    }
    check_finite_and_unscale(ctx);
    check_elementwise(ctx);
    check_elementwise_dtype(ctx, DP_CUDA_BF16);
    check_elementwise_dtype(ctx, DP_CUDA_F16);
    return st_finish(ctx, "test_cuda_step_reduce");
}
