// Helpers of the step kernels' GPU tests (see step_test.h).
#include "step_test.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

int st_failures;

dp_cuda_ctx *st_ctx_or_skip(void)
{
    ct_skip_without_gpu();
    dp_cuda_ctx_params p = {.device = 0, .precision = DP_CUDA_PREC_FP32, .deterministic = 1, .nhwc = 0};
    dp_cuda_ctx *ctx = NULL;
    if (dp_cuda_ctx_create(&ctx, &p) != DP_OK) {
        // A device is there but unusable (driver too old for the runtime, busy, ...).
        printf("SKIP: no usable CUDA device: %s\n", dp_error_message());
        exit(CT_EXIT_SKIP);
    }
    return ctx;
}

int st_finish(dp_cuda_ctx *ctx, const char *test)
{
    if (ctx != NULL && dp_cuda_check(ctx, test) != DP_OK) {
        fprintf(stderr, "FAIL: %s: device error at the end: %s\n", test, dp_error_message());
        st_failures++;
    }
    dp_cuda_ctx_destroy(ctx);
    printf("%s: %s (%d failed check(s))\n", st_failures ? "FAIL" : "PASS", test, st_failures);
    return st_failures ? 1 : 0;
}

void st_check(int ok, const char *fmt, ...)
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
    st_failures++;
}

void st_ok(dp_status st, const char *what)
{
    st_check(st == DP_OK, "%s: %s: %s", what, dp_status_name(st), dp_error_message());
}

static void die_on(dp_status st, const char *what)
{
    if (st != DP_OK) {
        fprintf(stderr, "FAIL: %s: %s\n", what, dp_error_message());
        exit(1);
    }
}

void *st_alloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (p == NULL) {
        fprintf(stderr, "FAIL: cannot allocate %zu bytes\n", bytes);
        exit(1);
    }
    return p;
}

void *st_dev_from(dp_cuda_ctx *ctx, const void *host, size_t bytes)
{
    void *d = NULL;
    die_on(dp_cuda_malloc(ctx, &d, bytes ? bytes : 1), "dp_cuda_malloc");
    if (host != NULL) {
        die_on(dp_cuda_h2d_sync(ctx, d, host, bytes), "dp_cuda_h2d_sync");
    } else {
        die_on(dp_cuda_memset_async(ctx, d, 0, bytes), "dp_cuda_memset_async");
        die_on(dp_cuda_stream_sync(ctx, DP_CUDA_COMPUTE), "dp_cuda_stream_sync");
    }
    return d;
}

void st_dev_to(dp_cuda_ctx *ctx, void *host, const void *dev, size_t bytes)
{
    die_on(dp_cuda_d2h_sync(ctx, host, dev, bytes), "dp_cuda_d2h_sync");
}

void st_dev_set(dp_cuda_ctx *ctx, void *dev, const void *host, size_t bytes)
{
    die_on(dp_cuda_stream_sync(ctx, DP_CUDA_COMPUTE), "dp_cuda_stream_sync");
    die_on(dp_cuda_h2d_sync(ctx, dev, host, bytes), "dp_cuda_h2d_sync");
}

void st_dev_free(dp_cuda_ctx *ctx, void *dev)
{
    dp_cuda_free(ctx, dev);
}

void st_fill_normal(float *x, size_t n, float mean, float std, uint64_t seed)
{
    dp_rng_fill_normal(x, n, mean, std, seed, 7, 7, 7);
}

// --- storage types ---

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

void st_round_through(float *x, size_t n, dp_cuda_dtype dtype)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = ct_round(x[i], dtype);
    }
}

void st_pack(void *out, const float *x, size_t n, dp_cuda_dtype dtype)
{
    if (dtype == DP_CUDA_F32) {
        memcpy(out, x, n * sizeof(float));
        return;
    }
    uint16_t *h = out;
    for (size_t i = 0; i < n; i++) {
        h[i] = dtype == DP_CUDA_F16 ? ct_f32_to_f16(x[i]) : ct_f32_to_bf16(x[i]);
    }
}

void st_unpack(float *out, const void *x, size_t n, dp_cuda_dtype dtype)
{
    if (dtype == DP_CUDA_F32) {
        memcpy(out, x, n * sizeof(float));
        return;
    }
    const uint16_t *h = x;
    for (size_t i = 0; i < n; i++) {
        out[i] = dtype == DP_CUDA_F16 ? ct_f16_to_f32(h[i]) : ct_bf16_to_f32(h[i]);
    }
}

// --- comparisons ---

int st_close(const char *what, const float *got, const float *ref, size_t n, double atol,
             double rtol)
{
    size_t worst = 0, bad = 0;
    double worst_excess = -1.0;
    for (size_t i = 0; i < n; i++) {
        const double g = got[i], r = ref[i];
        if (isnan(g) || isnan(r)) {
            if (isnan(g) != isnan(r)) {
                bad++;
                worst = i;
                worst_excess = INFINITY;
            }
            continue;
        }
        const double err = fabs(g - r), tol = atol + rtol * fabs(r);
        if (!(err <= tol)) {
            bad++;
        }
        if (err - tol > worst_excess) {
            worst_excess = err - tol;
            worst = i;
        }
    }
    st_check(bad == 0,
             "%s: %zu of %zu elements outside atol %g + rtol %g; worst at %zu: got %.9g, want "
             "%.9g",
             what, bad, n, atol, rtol, worst, n ? (double)got[worst] : 0.0,
             n ? (double)ref[worst] : 0.0);
    return bad == 0;
}

int st_bitwise(const char *what, const float *got, const float *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (bits_of(got[i]) != bits_of(ref[i])) {
            size_t diff = 0;
            for (size_t j = i; j < n; j++) {
                diff += bits_of(got[j]) != bits_of(ref[j]);
            }
            st_check(0,
                     "%s: not bitwise equal: %zu of %zu differ, first at %zu: got %.9g (%08x), "
                     "want %.9g (%08x)",
                     what, diff, n, i, (double)got[i], bits_of(got[i]), (double)ref[i],
                     bits_of(ref[i]));
            return 0;
        }
    }
    return 1;
}
