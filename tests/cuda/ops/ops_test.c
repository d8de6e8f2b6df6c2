// Helpers of the GPU tests of ops.h (see ops_test.h).
#include "ops_test.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

int ot_failures;

dp_cuda_ctx *ot_ctx_or_skip(void)
{
    ct_skip_without_gpu();
    dp_cuda_ctx_params p = {
        .device = 0, .precision = DP_CUDA_PREC_FP32, .deterministic = 1, .nhwc = 0};
    dp_cuda_ctx *ctx = NULL;
    if (dp_cuda_ctx_create(&ctx, &p) != DP_OK) {
        printf("SKIP: no usable CUDA device: %s\n", dp_error_message());
        exit(CT_EXIT_SKIP);
    }
    return ctx;
}

int ot_finish(dp_cuda_ctx *ctx, const char *test)
{
    if (ctx != NULL && dp_cuda_check(ctx, test) != DP_OK) {
        fprintf(stderr, "FAIL: %s: device error at the end: %s\n", test, dp_error_message());
        ot_failures++;
    }
    dp_cuda_ctx_destroy(ctx);
    printf("%s: %s (%d failed check(s))\n", ot_failures ? "FAIL" : "PASS", test, ot_failures);
    return ot_failures ? 1 : 0;
}

void ot_check(int ok, const char *fmt, ...)
{
    if (ok) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    ot_failures++;
}

void ot_ok(dp_status st, const char *what)
{
    ot_check(st == DP_OK, "%s: %s: %s", what, dp_status_name(st), dp_error_message());
}

// --- storage types on the host ---

void ot_round_all(float *x, size_t n, dp_cuda_dtype t)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = ct_round(x[i], t);
    }
}

void ot_fill(float *x, size_t n, float lo, float hi, uint32_t seed)
{
    dp_rng_fill_uniform(x, n, lo, hi, 0x6f7073u, seed, 1, 2);
}

float *ot_alloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (p == NULL) {
        fprintf(stderr, "FAIL: out of host memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}

void *ot_dev_bytes(dp_cuda_ctx *ctx, const void *host, size_t bytes)
{
    void *d = NULL;
    if (dp_cuda_malloc(ctx, &d, bytes) != DP_OK) {
        fprintf(stderr, "FAIL: device allocation of %zu bytes: %s\n", bytes, dp_error_message());
        exit(1);
    }
    if (host != NULL) {
        ot_ok(dp_cuda_h2d_sync(ctx, d, host, bytes), "upload");
    } else {
        ot_ok(dp_cuda_memset_async(ctx, d, 0, bytes), "zero");
    }
    return d;
}

void *ot_dev(dp_cuda_ctx *ctx, const float *host, size_t n, dp_cuda_dtype t)
{
    if (t == DP_CUDA_F32 || host == NULL) {
        return ot_dev_bytes(ctx, host, n * dp_cuda_dtype_size(t));
    }
    uint16_t *h = malloc((n ? n : 1) * sizeof *h);
    if (h == NULL) {
        fprintf(stderr, "FAIL: out of host memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        h[i] = t == DP_CUDA_BF16 ? ct_f32_to_bf16(host[i]) : ct_f32_to_f16(host[i]);
    }
    void *d = ot_dev_bytes(ctx, h, n * 2);
    free(h);
    return d;
}

void ot_get_bytes(dp_cuda_ctx *ctx, void *host, const void *dev, size_t bytes)
{
    ot_ok(dp_cuda_d2h_sync(ctx, host, dev, bytes), "download");
}

void ot_get(dp_cuda_ctx *ctx, float *host, const void *dev, size_t n, dp_cuda_dtype t)
{
    if (t == DP_CUDA_F32) {
        ot_get_bytes(ctx, host, dev, n * sizeof(float));
        return;
    }
    uint16_t *h = malloc((n ? n : 1) * sizeof *h);
    if (h == NULL) {
        fprintf(stderr, "FAIL: out of host memory\n");
        exit(1);
    }
    ot_get_bytes(ctx, h, dev, n * 2);
    for (size_t i = 0; i < n; i++) {
        host[i] = t == DP_CUDA_BF16 ? ct_bf16_to_f32(h[i]) : ct_f16_to_f32(h[i]);
    }
    free(h);
}

// --- layouts ---

void ot_to_layout(float *dst, const float *nchw, int N, int C, size_t hw, dp_cuda_layout l)
{
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            for (size_t s = 0; s < hw; s++) {
                size_t from = ((size_t)n * C + c) * hw + s;
                size_t to = l == DP_CUDA_NHWC ? ((size_t)n * hw + s) * C + c : from;
                dst[to] = nchw[from];
            }
        }
    }
}

void ot_from_layout(float *nchw, const float *src, int N, int C, size_t hw, dp_cuda_layout l)
{
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            for (size_t s = 0; s < hw; s++) {
                size_t to = ((size_t)n * C + c) * hw + s;
                size_t from = l == DP_CUDA_NHWC ? ((size_t)n * hw + s) * C + c : to;
                nchw[to] = src[from];
            }
        }
    }
}

// --- comparisons ---

void ot_same(const char *what, const float *got, const float *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int both_nan = isnan(got[i]) && isnan(ref[i]);
        if (!both_nan && memcmp(&got[i], &ref[i], sizeof(float)) != 0) {
            ot_check(0, "%s: element %zu of %zu: got %.9g, want %.9g (bitwise)", what, i, n,
                     (double)got[i], (double)ref[i]);
            return;
        }
    }
}

void ot_close(const char *what, const float *got, const float *ref, size_t n, double atol,
              double rtol)
{
    size_t worst = 0;
    double worst_excess = 0.0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]), tol = atol + rtol * fabs((double)ref[i]);
        if (isnan(got[i]) != isnan(ref[i]) || d > tol) {
            double excess = isnan(d) ? INFINITY : d - tol;
            if (!bad || excess > worst_excess) {
                worst = i;
                worst_excess = excess;
            }
            bad++;
        }
    }
    ot_check(!bad, "%s: %d of %zu elements off; worst %zu: got %.9g, want %.9g (atol %g, rtol %g)",
             what, bad, n, worst, (double)got[worst], (double)ref[worst], atol, rtol);
}

double ot_rtol(dp_cuda_dtype t)
{
    return t == DP_CUDA_BF16 ? 1.0 / 128 : t == DP_CUDA_F16 ? 1.0 / 1024 : 4e-6;
}
