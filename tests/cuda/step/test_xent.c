// GPU softmax cross-entropy and softmax against the CPU reference (src/nn/cpu/softmax_xent.c) on
// the same random logits, in float32, bfloat16 and float16 storage: per-sample loss, gradient,
// stats, label smoothing, the mixed-target form of layer_softmax.c, bad labels, in-place
// gradients and run-to-run bitwise repeatability.
// Tolerances (the GPU and the CPU both work in double and round once, so they differ only by the
// double sums' order): gradient and probabilities within 2 float ulp (rtol 2.4e-7) plus 1e-9 x
// grad_scale in float32; 1 ulp of the storage type in bf16 (rtol 2^-7) and fp16 (rtol 2^-10,
// atol 2^-24); the float32 loss rtol 1e-6; loss sums rtol 1e-12; top-1/top-5 exact.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "nn/cpu/softmax_xent.h"
#include "nn/cuda/step/step_ops.h"
#include "step_test.h"

typedef struct tol {
    double atol, rtol;
} tol;

static tol grad_tol(dp_cuda_dtype dtype, float grad_scale)
{
    if (dtype == DP_CUDA_F32) {
        return (tol){1e-9 * fabs(grad_scale), 2.4e-7};
    }
    if (dtype == DP_CUDA_F16) {
        return (tol){1.0 / 16777216.0, 1.0 / 1024.0};
    }
    return (tol){1e-30, 1.0 / 128.0};
}

// Logits ~ N(0, 3) rounded through dtype, with a few exact ties against the label (the tie rule)
// and labels in [0, k).
static void make_batch(float *z, int32_t *labels, int32_t *labels_b, float *lambda, int N, int k,
                       dp_cuda_dtype dtype, uint64_t seed)
{
    st_fill_normal(z, (size_t)N * k, 0.0f, 3.0f, seed);
    dp_rng r;
    dp_rng_init(&r, seed, 1, 2, 3);
    for (int n = 0; n < N; n++) {
        labels[n] = (int32_t)(dp_rng_u32(&r) % (uint32_t)k);
        labels_b[n] = (int32_t)(dp_rng_u32(&r) % (uint32_t)k);
        lambda[n] = dp_rng_uniform(&r);
        if (n % 7 == 3 && k > 1) { // tie: another class with the label's logit
            int j = (labels[n] + 1 + (int)(dp_rng_u32(&r) % (uint32_t)(k - 1))) % k;
            z[(size_t)n * k + j] = z[(size_t)n * k + labels[n]];
        }
    }
    st_round_through(z, (size_t)N * k, dtype);
}

// layer_softmax.c's mixed_loss on the CPU: two cross-entropies mixed per sample.
static dp_status cpu_mixed(float *d, float *loss, dp_xent_stats *stats, const float *z,
                           const int32_t *la, const int32_t *lb, const float *lambda,
                           const dp_xent_params *xp)
{
    size_t n = (size_t)xp->N, k = (size_t)xp->classes;
    float *db = st_alloc(n * k * sizeof(float)), *lsa = st_alloc(n * sizeof(float));
    float *lsb = st_alloc(n * sizeof(float));
    dp_status st = dp_cpu_softmax_xent(d, lsa, stats, z, la, xp);
    if (st == DP_OK) {
        st = dp_cpu_softmax_xent(db, lsb, NULL, z, lb, xp);
    }
    double sum = 0;
    for (size_t i = 0; st == DP_OK && i < n; i++) {
        float lam = lambda[i];
        double l = (double)lam * lsa[i] + (1.0 - (double)lam) * lsb[i];
        sum += l;
        loss[i] = (float)l;
        for (size_t j = 0; j < k; j++) {
            d[i * k + j] = lam * d[i * k + j] + (1.0f - lam) * db[i * k + j];
        }
    }
    stats->loss_sum = sum;
    free(db);
    free(lsa);
    free(lsb);
    return st;
}

// One case: GPU against CPU, and the GPU twice for bitwise repeatability.
static void check_case(dp_cuda_ctx *ctx, int N, int k, float eps, int mixed, dp_cuda_dtype dtype)
{
    char name[128];
    snprintf(name, sizeof name, "xent %s N=%d k=%d eps=%g%s", ct_dtype_name(dtype), N, k,
             (double)eps, mixed ? " mixed" : "");
    const size_t nk = (size_t)N * k, es = dp_cuda_dtype_size(dtype);
    float *z = st_alloc(nk * 4), *lambda = st_alloc((size_t)N * 4), *ref = st_alloc(nk * 4);
    float *ref_loss = st_alloc((size_t)N * 4), *got = st_alloc(nk * 4);
    float *got_loss = st_alloc((size_t)N * 4);
    int32_t *la = st_alloc((size_t)N * 4), *lb = st_alloc((size_t)N * 4);
    void *packed = st_alloc(nk * es), *packed2 = st_alloc(nk * es);
    make_batch(z, la, lb, lambda, N, k, dtype, 1000u + (uint64_t)N * 31u + (uint64_t)k);
    const dp_xent_params xp = {N, k, eps, 1.0f / (float)N};
    dp_xent_stats ref_stats, got_stats;
    if (mixed) {
        st_ok(cpu_mixed(ref, ref_loss, &ref_stats, z, la, lb, lambda, &xp), "cpu mixed xent");
    } else {
        st_ok(dp_cpu_softmax_xent(ref, ref_loss, &ref_stats, z, la, &xp), "cpu xent");
    }
    st_pack(packed, z, nk, dtype);
    void *d_z = st_dev_from(ctx, packed, nk * es), *d_g = st_dev_from(ctx, NULL, nk * es);
    float *d_loss = st_dev_from(ctx, NULL, (size_t)N * 4);
    int32_t *d_la = st_dev_from(ctx, la, (size_t)N * 4),
            *d_lb = st_dev_from(ctx, lb, (size_t)N * 4);
    float *d_lam = st_dev_from(ctx, lambda, (size_t)N * 4);
    dp_cuda_xent_result *d_res = st_dev_from(ctx, NULL, sizeof(dp_cuda_xent_result));
    void *ws = st_dev_from(ctx, NULL, dp_cuda_softmax_xent_workspace_bytes(&xp));
    for (int run = 0; run < 2; run++) {
        dp_status st =
            mixed ? dp_cuda_softmax_xent_mixed(ctx, d_g, d_loss, d_res, d_z, d_la, d_lb, d_lam, &xp,
                                               dtype, ws)
                  : dp_cuda_softmax_xent(ctx, d_g, d_loss, d_res, d_z, d_la, &xp, dtype, ws);
        st_ok(st, name);
        dp_xent_stats s;
        st_ok(dp_cuda_xent_result_read(ctx, &s, d_res, k), name);
        st_dev_to(ctx, run == 0 ? packed : packed2, d_g, nk * es);
        if (run == 0) {
            got_stats = s;
            st_dev_to(ctx, got_loss, d_loss, (size_t)N * 4);
            continue;
        }
        st_check(memcmp(&s, &got_stats, sizeof s) == 0 && memcmp(packed, packed2, nk * es) == 0,
                 "%s: second run not bitwise equal to the first", name);
    }
    st_unpack(got, packed, nk, dtype);
    st_round_through(ref, nk, dtype);
    const tol t = grad_tol(dtype, xp.grad_scale);
    char what[192];
    snprintf(what, sizeof what, "%s: dlogits", name);
    st_close(what, got, ref, nk, t.atol, t.rtol);
    snprintf(what, sizeof what, "%s: loss", name);
    st_close(what, got_loss, ref_loss, (size_t)N, 1e-7, 1e-6);
    st_check(fabs(got_stats.loss_sum - ref_stats.loss_sum) <= 1e-12 * fabs(ref_stats.loss_sum),
             "%s: loss_sum %.17g, want %.17g", name, got_stats.loss_sum, ref_stats.loss_sum);
    st_check(got_stats.top1 == ref_stats.top1 && got_stats.top5 == ref_stats.top5,
             "%s: top1/top5 %lld/%lld, want %lld/%lld", name, (long long)got_stats.top1,
             (long long)got_stats.top5, (long long)ref_stats.top1, (long long)ref_stats.top5);
    void *bufs[] = {d_z, d_g, d_loss, d_la, d_lb, d_lam, d_res, ws};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        st_dev_free(ctx, bufs[i]);
    }
    free(z), free(lambda), free(ref), free(ref_loss), free(got), free(got_loss);
    free(la), free(lb), free(packed), free(packed2);
}

// In evaluation (no dlogits) the stats are the same; dlogits may overwrite the logits.
static void check_eval_and_in_place(dp_cuda_ctx *ctx)
{
    const int N = 40, k = 10;
    const size_t nk = (size_t)N * k;
    float *z = st_alloc(nk * 4), *lam = st_alloc((size_t)N * 4), *a = st_alloc(nk * 4);
    float *b = st_alloc(nk * 4);
    int32_t *la = st_alloc((size_t)N * 4), *lb = st_alloc((size_t)N * 4);
    make_batch(z, la, lb, lam, N, k, DP_CUDA_F32, 77);
    const dp_xent_params xp = {N, k, 0.1f, 0.5f};
    float *d_z = st_dev_from(ctx, z, nk * 4), *d_g = st_dev_from(ctx, NULL, nk * 4);
    int32_t *d_la = st_dev_from(ctx, la, (size_t)N * 4);
    dp_cuda_xent_result *d_res = st_dev_from(ctx, NULL, sizeof *d_res);
    void *ws = st_dev_from(ctx, NULL, dp_cuda_softmax_xent_workspace_bytes(&xp));
    dp_xent_stats s_train, s_eval;
    st_ok(dp_cuda_softmax_xent(ctx, d_g, NULL, d_res, d_z, d_la, &xp, DP_CUDA_F32, ws), "train");
    st_ok(dp_cuda_xent_result_read(ctx, &s_train, d_res, k), "train stats");
    st_ok(dp_cuda_softmax_xent(ctx, NULL, NULL, d_res, d_z, d_la, &xp, DP_CUDA_F32, ws), "eval");
    st_ok(dp_cuda_xent_result_read(ctx, &s_eval, d_res, k), "eval stats");
    st_check(memcmp(&s_train, &s_eval, sizeof s_eval) == 0, "eval stats differ from train's");
    st_ok(dp_cuda_softmax_xent(ctx, d_z, NULL, d_res, d_z, d_la, &xp, DP_CUDA_F32, ws), "in place");
    st_dev_to(ctx, a, d_g, nk * 4);
    st_dev_to(ctx, b, d_z, nk * 4);
    st_bitwise("xent in place (dlogits == logits)", b, a, nk);
    st_dev_free(ctx, d_z), st_dev_free(ctx, d_g), st_dev_free(ctx, d_la);
    st_dev_free(ctx, d_res), st_dev_free(ctx, ws);
    free(z), free(lam), free(a), free(b), free(la), free(lb);
}

// A label outside [0, classes) gives the CPU's DP_ERR_DATA naming the sample, from the read.
static void check_bad_labels(dp_cuda_ctx *ctx)
{
    const int N = 16, k = 10;
    float z[16 * 10], lam[16];
    int32_t la[16], lb[16];
    make_batch(z, la, lb, lam, N, k, DP_CUDA_F32, 5);
    la[9] = k; // the CPU names this one (labels are checked before labels_b)
    lb[3] = -1;
    const dp_xent_params xp = {N, k, 0.0f, 1.0f};
    float *d_z = st_dev_from(ctx, z, sizeof z), *d_g = st_dev_from(ctx, NULL, sizeof z);
    int32_t *d_la = st_dev_from(ctx, la, sizeof la), *d_lb = st_dev_from(ctx, lb, sizeof lb);
    float *d_lam = st_dev_from(ctx, lam, sizeof lam);
    dp_cuda_xent_result *d_res = st_dev_from(ctx, NULL, sizeof *d_res);
    void *ws = st_dev_from(ctx, NULL, dp_cuda_softmax_xent_workspace_bytes(&xp));
    dp_xent_stats s;
    st_ok(dp_cuda_softmax_xent_mixed(ctx, d_g, NULL, d_res, d_z, d_la, d_lb, d_lam, &xp,
                                     DP_CUDA_F32, ws),
          "mixed xent with bad labels (launch)");
    dp_status st = dp_cuda_xent_result_read(ctx, &s, d_res, k);
    st_check(st == DP_ERR_DATA && strstr(dp_error_message(), "sample 9 of the batch: label 10 "
                                                             "outside [0, 10)") != NULL,
             "bad label: status %s, message '%s'", dp_status_name(st), dp_error_message());
    la[9] = 2;
    st_dev_set(ctx, d_la, la, sizeof la);
    st_ok(dp_cuda_softmax_xent_mixed(ctx, d_g, NULL, d_res, d_z, d_la, d_lb, d_lam, &xp,
                                     DP_CUDA_F32, ws),
          "mixed xent with a bad label_b (launch)");
    st = dp_cuda_xent_result_read(ctx, &s, d_res, k);
    st_check(st == DP_ERR_DATA &&
                 strstr(dp_error_message(), "sample 3 of the batch: label -1") != NULL,
             "bad label_b: status %s, message '%s'", dp_status_name(st), dp_error_message());
    dp_xent_params bad = xp;
    bad.smoothing = 1.0f;
    st = dp_cuda_softmax_xent(ctx, d_g, NULL, d_res, d_z, d_la, &bad, DP_CUDA_F32, ws);
    st_check(st == DP_ERR_ARG, "smoothing 1: status %s", dp_status_name(st));
    st_dev_free(ctx, d_z), st_dev_free(ctx, d_g), st_dev_free(ctx, d_la), st_dev_free(ctx, d_lb);
    st_dev_free(ctx, d_lam), st_dev_free(ctx, d_res), st_dev_free(ctx, ws);
}

static void check_softmax(dp_cuda_ctx *ctx, int N, int k, dp_cuda_dtype dtype)
{
    const size_t nk = (size_t)N * k, es = dp_cuda_dtype_size(dtype);
    float *x = st_alloc(nk * 4), *ref = st_alloc(nk * 4), *got = st_alloc(nk * 4);
    void *packed = st_alloc(nk * es);
    st_fill_normal(x, nk, 0.5f, 4.0f, 99u + (uint64_t)k);
    st_round_through(x, nk, dtype);
    st_ok(dp_cpu_softmax_forward(ref, x, N, k), "cpu softmax");
    st_round_through(ref, nk, dtype);
    st_pack(packed, x, nk, dtype);
    void *d_x = st_dev_from(ctx, packed, nk * es);
    st_ok(dp_cuda_softmax_forward(ctx, d_x, d_x, N, k, dtype), "cuda softmax (in place)");
    st_dev_to(ctx, packed, d_x, nk * es);
    st_unpack(got, packed, nk, dtype);
    char what[96];
    snprintf(what, sizeof what, "softmax %s N=%d k=%d", ct_dtype_name(dtype), N, k);
    const tol t = grad_tol(dtype, 1.0f);
    st_close(what, got, ref, nk, dtype == DP_CUDA_F32 ? 1e-30 : t.atol, t.rtol);
    st_dev_free(ctx, d_x);
    free(x), free(ref), free(got), free(packed);
}

int main(void)
{
    dp_cuda_ctx *ctx = st_ctx_or_skip();
    const dp_cuda_dtype dtypes[] = {DP_CUDA_F32, DP_CUDA_BF16, DP_CUDA_F16};
    const int shapes[][2] = {{67, 10}, {33, 3}, {256, 1000}, {5, 1}};
    for (size_t d = 0; d < 3; d++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            for (int mixed = 0; mixed < 2; mixed++) {
                check_case(ctx, shapes[s][0], shapes[s][1], 0.0f, mixed, dtypes[d]);
                check_case(ctx, shapes[s][0], shapes[s][1], 0.1f, mixed, dtypes[d]);
            }
            check_softmax(ctx, shapes[s][0], shapes[s][1], dtypes[d]);
        }
    }
    check_eval_and_in_place(ctx);
    check_bad_labels(ctx);
    return st_finish(ctx, "test_cuda_step_xent");
}
