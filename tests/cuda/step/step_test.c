// Helpers of the step kernels' GPU tests (see step_test.h).
#include "step_test.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"

int st_failures;

dp_cuda_ctx *st_ctx_or_skip(void)
{
    if (!dp_backend_have_cuda()) {
        printf("SKIP: this build has no CUDA backend (-Dcuda=disabled or no toolkit)\n");
        exit(ST_EXIT_SKIP);
    }
    dp_cuda_info info;
    if (dp_backend_cuda_query(&info) != DP_OK) {
        printf("SKIP: no CUDA device: %s\n", dp_error_message());
        exit(ST_EXIT_SKIP);
    }
    dp_cuda_ctx_params p = {.device = 0, .precision = DP_CUDA_PREC_FP32, .deterministic = 1, .nhwc = 0};
    dp_cuda_ctx *ctx = NULL;
    if (dp_cuda_ctx_create(&ctx, &p) != DP_OK) {
        // A device is there but unusable (driver too old for the runtime, busy, ...).
        printf("SKIP: no usable CUDA device: %s\n", dp_error_message());
        exit(ST_EXIT_SKIP);
    }
    printf("device 0: %s, cc %d.%d\n", info.devices[0].name, info.devices[0].cc_major,
           info.devices[0].cc_minor);
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

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t st_f32_to_bf16(float f)
{
    uint32_t u = bits_of(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40u); // quiet NaN
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float st_bf16_to_f32(uint16_t h)
{
    return float_of((uint32_t)h << 16);
}

uint16_t st_f32_to_f16(float f)
{
    const uint32_t u = bits_of(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return (uint16_t)(sign | 0x7e00u);
    }
    if (a >= 0x477ff000u) { // 65520 and up round to infinity
        return (uint16_t)(sign | 0x7c00u);
    }
    if (a < 0x38800000u) { // below 2^-14: a multiple of 2^-24 (subnormal or zero)
        // a * 2^24 is exact; nearbyintf rounds to nearest even in the default mode
        return (uint16_t)(sign | (uint32_t)nearbyintf(float_of(a) * 16777216.0f));
    }
    uint32_t h = ((((a >> 23) - 127u + 15u) << 10) | ((a & 0x7fffffu) >> 13));
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) {
        h++; // a carry into the exponent is the right encoding
    }
    return (uint16_t)(sign | h);
}

float st_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        const float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31) {
        return float_of(sign | 0x7f800000u | (m << 13));
    }
    return float_of(sign | ((e - 15u + 127u) << 23) | (m << 13));
}

void st_round_through(float *x, size_t n, dp_cuda_dtype dtype)
{
    for (size_t i = 0; i < n; i++) {
        if (dtype == DP_CUDA_F16) {
            x[i] = st_f16_to_f32(st_f32_to_f16(x[i]));
        } else if (dtype != DP_CUDA_F32) {
            x[i] = st_bf16_to_f32(st_f32_to_bf16(x[i]));
        }
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
        h[i] = dtype == DP_CUDA_F16 ? st_f32_to_f16(x[i]) : st_f32_to_bf16(x[i]);
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
        out[i] = dtype == DP_CUDA_F16 ? st_f16_to_f32(h[i]) : st_bf16_to_f32(h[i]);
    }
}

const char *st_dtype_name(dp_cuda_dtype dtype)
{
    return dtype == DP_CUDA_F32 ? "f32" : dtype == DP_CUDA_F16 ? "f16" : "bf16";
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
