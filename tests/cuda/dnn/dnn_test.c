// Helpers of the dnn GPU tests: see dnn_test.h.
#include "dnn_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void dt_quantize(float *x, size_t n, dp_cuda_dtype t)
{
    for (size_t i = 0; i < n && t != DP_CUDA_F32; i++) {
        x[i] = ct_round(x[i], t);
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
            const uint16_t h = t == DP_CUDA_BF16 ? ct_f32_to_bf16(v) : ct_f32_to_f16(v);
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
            v = t == DP_CUDA_BF16 ? ct_bf16_to_f32(h) : ct_f16_to_f32(h);
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
