// Helpers of the dnn GPU tests: see dnn_test.h.
#include "dnn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"

const dt_config dt_configs[] = {
    {DP_CUDA_PREC_FP32, 1, 2e-4, "fp32 deterministic"},
    {DP_CUDA_PREC_FP32, 0, 2e-4, "fp32"},
    {DP_CUDA_PREC_TF32, 0, 5e-3, "tf32"},
    {DP_CUDA_PREC_BF16, 0, 1e-2, "bf16"},
    {DP_CUDA_PREC_BF16, 1, 1e-2, "bf16 deterministic"},
    {DP_CUDA_PREC_FP16, 0, 3e-3, "fp16"},
};
const int dt_n_configs = (int)(sizeof dt_configs / sizeof dt_configs[0]);

void dt_skip_without_gpu(void)
{
    if (!dp_backend_have_cuda()) {
        printf("SKIP: this build has no CUDA backend (-Dcuda=disabled or no toolkit)\n");
        exit(DT_EXIT_SKIP);
    }
    dp_cuda_info info;
    if (dp_backend_cuda_query(&info) != DP_OK) {
        printf("SKIP: no CUDA device: %s\n", dp_error_message());
        exit(DT_EXIT_SKIP);
    }
    if (info.device_count < 1) {
        printf("SKIP: no CUDA device\n");
        exit(DT_EXIT_SKIP);
    }
    printf("device 0: %s, cc %d.%d\n", info.devices[0].name, info.devices[0].cc_major,
           info.devices[0].cc_minor);
}

dp_cuda_ctx *dt_ctx_create(const dt_config *c)
{
    dp_cuda_ctx_params p = {
        .device = 0, .precision = c->precision, .deterministic = c->deterministic, .nhwc = 1};
    dp_cuda_ctx *ctx = NULL;
    if (dp_cuda_ctx_create(&ctx, &p) != DP_OK) {
        fprintf(stderr, "FAIL: context %s: %s\n", c->name, dp_error_message());
        return NULL;
    }
    return ctx;
}

void *dt_malloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (p == NULL) {
        fprintf(stderr, "FAIL: out of host memory (%zu bytes)\n", bytes);
    }
    return p;
}

void dt_fill(float *x, size_t n, uint64_t *state, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        const float u = (float)(z >> 40) * (1.0f / 16777216.0f); // [0, 1), 24 bits
        x[i] = lo + (hi - lo) * u;
    }
}

// --- host bf16 / fp16, round to nearest even (what __float2bfloat16_rn / __float2half_rn do) ---

static uint16_t f2bf(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40u); // quiet NaN
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf2f(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t f2h(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) {
        return (uint16_t)(sign | 0x7e00u);
    }
    if (ax >= 0x477ff000u) { // >= 65520 rounds past the largest half (65504)
        return (uint16_t)(sign | 0x7c00u);
    }
    if (ax < 0x38800000u) { // below 2^-14: a multiple of 2^-24 (subnormal), exact scaling
        float a;
        memcpy(&a, &ax, sizeof a);
        return (uint16_t)(sign | (uint32_t)nearbyintf(a * 16777216.0f));
    }
    uint32_t m = ax + 0xfffu + ((ax >> 13) & 1u); // round 23 mantissa bits to 10
    m -= 0x38000000u;                             // exponent bias 127 -> 15
    return (uint16_t)(sign | (m >> 13));
}

static float h2f(uint16_t h)
{
    const unsigned e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    float f;
    if (e == 0) {
        f = ldexpf((float)m, -24);
    } else if (e == 31) {
        f = m ? NAN : INFINITY;
    } else {
        f = ldexpf((float)(m | 0x400u), (int)e - 25);
    }
    return (h & 0x8000u) ? -f : f;
}

void dt_quantize(float *x, size_t n, dp_cuda_dtype t)
{
    for (size_t i = 0; i < n && t != DP_CUDA_F32; i++) {
        x[i] = t == DP_CUDA_BF16 ? bf2f(f2bf(x[i])) : h2f(f2h(x[i]));
    }
}

// --- transfers ---

// Element i of the device tensor in layout l is element src_index(i) of the NCHW tensor.
static size_t nchw_index(size_t i, int C, int HW, dp_cuda_layout l)
{
    if (l == DP_CUDA_NCHW) {
        return i;
    }
    const size_t c = i % (size_t)C, t = i / (size_t)C; // t = n HW + pixel
    const size_t pix = t % (size_t)HW, n = t / (size_t)HW;
    return (n * (size_t)C + c) * (size_t)HW + pix;
}

int dt_upload(dp_cuda_ctx *ctx, void *dev, const float *nchw, int N, int C, int HW, dp_cuda_dtype t,
              dp_cuda_layout l)
{
    const size_t n = (size_t)N * (size_t)C * (size_t)HW;
    const size_t bytes = n * dp_cuda_dtype_size(t);
    unsigned char *buf = dt_malloc(bytes);
    if (buf == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const float v = nchw[nchw_index(i, C, HW, l)];
        if (t == DP_CUDA_F32) {
            memcpy(buf + 4 * i, &v, 4);
        } else {
            const uint16_t h = t == DP_CUDA_BF16 ? f2bf(v) : f2h(v);
            memcpy(buf + 2 * i, &h, 2);
        }
    }
    const dp_status st = dp_cuda_h2d_sync(ctx, dev, buf, bytes);
    free(buf);
    if (st != DP_OK) {
        fprintf(stderr, "FAIL: upload: %s\n", dp_error_message());
        return 0;
    }
    return 1;
}

int dt_download(dp_cuda_ctx *ctx, float *nchw, const void *dev, int N, int C, int HW,
                dp_cuda_dtype t, dp_cuda_layout l)
{
    const size_t n = (size_t)N * (size_t)C * (size_t)HW;
    const size_t bytes = n * dp_cuda_dtype_size(t);
    unsigned char *buf = dt_malloc(bytes);
    if (buf == NULL) {
        return 0;
    }
    if (!dt_download_raw(ctx, buf, dev, bytes)) {
        free(buf);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        float v;
        if (t == DP_CUDA_F32) {
            memcpy(&v, buf + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, buf + 2 * i, 2);
            v = t == DP_CUDA_BF16 ? bf2f(h) : h2f(h);
        }
        nchw[nchw_index(i, C, HW, l)] = v;
    }
    free(buf);
    return 1;
}

int dt_download_raw(dp_cuda_ctx *ctx, void *host, const void *dev, size_t bytes)
{
    if (dp_cuda_d2h_sync(ctx, host, dev, bytes) != DP_OK) {
        fprintf(stderr, "FAIL: download: %s\n", dp_error_message());
        return 0;
    }
    return 1;
}

double dt_rel_err(const float *got, const float *ref, size_t n, size_t *at)
{
    double scale = 0.0, worst = 0.0;
    size_t where = 0;
    for (size_t i = 0; i < n; i++) {
        const double r = fabs((double)ref[i]);
        scale = r > scale ? r : scale;
    }
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - (double)ref[i]);
        if (isnan(d)) { // a NaN or infinity on either side fails whatever the tolerance
            *at = i;
            return INFINITY;
        }
        if (d > worst) {
            worst = d;
            where = i;
        }
    }
    *at = where;
    return worst / (scale > 0.0 ? scale : 1.0);
}

const char *dt_dtype_name(dp_cuda_dtype t)
{
    return t == DP_CUDA_F32 ? "f32" : t == DP_CUDA_BF16 ? "bf16" : "f16";
}

const char *dt_layout_name(dp_cuda_layout l)
{
    return l == DP_CUDA_NHWC ? "NHWC" : "NCHW";
}
