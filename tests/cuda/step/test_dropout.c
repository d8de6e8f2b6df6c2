// GPU dropout against the CPU reference (src/nn/cpu/dropout.c): the mask comes from the same
// Philox words, so in float32 forward and backward (overwrite and accumulate) must equal the
// CPU's bit for bit, in NCHW and in NHWC (transposed back), for standard and alpha dropout, with
// a sample size that is not a multiple of 4. In bf16/fp16 storage the GPU rounds the CPU's float
// result of the same (rounded) inputs once, so the packed outputs must equal the CPU's rounded
// through the type, bit for bit, too.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cpu/dropout.h"
#include "nn/cuda/step/step_ops.h"
#include "step_test.h"

enum { N = 9, C = 3, H = 7, W = 7, S = C * H * W };

// (N, C, H, W) -> (N, H, W, C) and back.
static void to_nhwc(float *out, const float *in)
{
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            for (int hw = 0; hw < H * W; hw++) {
                out[(size_t)n * S + (size_t)hw * C + c] =
                    in[(size_t)n * S + (size_t)c * H * W + hw];
            }
        }
    }
}

static void to_nchw(float *out, const float *in)
{
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            for (int hw = 0; hw < H * W; hw++) {
                out[(size_t)n * S + (size_t)c * H * W + hw] =
                    in[(size_t)n * S + (size_t)hw * C + c];
            }
        }
    }
}

// Runs one GPU op on host data in the given layout and dtype: out = op(in) (and out's previous
// value acc when accumulating); everything in NCHW floats on the host.
static void gpu_op(dp_cuda_ctx *ctx, float *out, const float *in, const float *acc,
                   const dp_dropout_params *p, int backward, int accumulate, dp_cuda_layout layout,
                   dp_cuda_dtype dtype)
{
    const size_t n = (size_t)N * S, es = dp_cuda_dtype_size(dtype);
    float *tmp = st_alloc(n * 4);
    void *packed = st_alloc(n * es);
    if (layout == DP_CUDA_NHWC) {
        to_nhwc(tmp, in);
    } else {
        memcpy(tmp, in, n * 4);
    }
    st_pack(packed, tmp, n, dtype);
    void *d_in = st_dev_from(ctx, packed, n * es);
    if (layout == DP_CUDA_NHWC) {
        to_nhwc(tmp, acc);
    } else {
        memcpy(tmp, acc, n * 4);
    }
    st_pack(packed, tmp, n, dtype);
    void *d_out = st_dev_from(ctx, packed, n * es);
    dp_status st = backward
                       ? dp_cuda_dropout_backward(ctx, d_out, d_in, p, accumulate, layout, C, dtype)
                       : dp_cuda_dropout_forward(ctx, d_out, d_in, p, layout, C, dtype);
    st_ok(st, backward ? "cuda dropout backward" : "cuda dropout forward");
    st_dev_to(ctx, packed, d_out, n * es);
    st_unpack(tmp, packed, n, dtype);
    if (layout == DP_CUDA_NHWC) {
        to_nchw(out, tmp);
    } else {
        memcpy(out, tmp, n * 4);
    }
    st_dev_free(ctx, d_in);
    st_dev_free(ctx, d_out);
    free(tmp);
    free(packed);
}

static void check_case(dp_cuda_ctx *ctx, dp_dropout_kind kind, dp_cuda_layout layout,
                       dp_cuda_dtype dtype)
{
    const size_t n = (size_t)N * S;
    const dp_dropout_params p = {.N = N,
                                 .sample_size = S,
                                 .p = 0.3f,
                                 .kind = kind,
                                 .seed = 0x1234567890abcdefull,
                                 .step = 12,
                                 .first_sample = 100,
                                 .layer = 4};
    float *x = st_alloc(n * 4), *dy = st_alloc(n * 4), *dx0 = st_alloc(n * 4);
    float *ref = st_alloc(n * 4), *got = st_alloc(n * 4);
    st_fill_normal(x, n, 0.0f, 1.0f, 11);
    st_fill_normal(dy, n, 0.0f, 1.0f, 12);
    st_fill_normal(dx0, n, 0.0f, 1.0f, 13);
    st_round_through(x, n, dtype);
    st_round_through(dy, n, dtype);
    st_round_through(dx0, n, dtype);
    char what[128];
    const char *kname = kind == DP_DROPOUT_ALPHA ? "alpha" : "standard";
    const char *lname = layout == DP_CUDA_NHWC ? "NHWC" : "NCHW";

    st_ok(dp_cpu_dropout_forward(ref, x, &p), "cpu dropout forward");
    st_round_through(ref, n, dtype);
    gpu_op(ctx, got, x, x, &p, 0, 0, layout, dtype);
    snprintf(what, sizeof what, "dropout %s %s %s forward", kname, lname, ct_dtype_name(dtype));
    st_bitwise(what, got, ref, n);
    if (kind == DP_DROPOUT_STANDARD && dtype == DP_CUDA_F32) {
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            kept += got[i] != 0.0f;
        }
        st_check(fabs((double)kept / n - 0.7) < 0.05, "dropout keeps %zu of %zu (p = 0.3)", kept,
                 n);
    }

    st_ok(dp_cpu_dropout_backward(ref, dy, &p, 0), "cpu dropout backward");
    st_round_through(ref, n, dtype);
    gpu_op(ctx, got, dy, dx0, &p, 1, 0, layout, dtype);
    snprintf(what, sizeof what, "dropout %s %s %s backward", kname, lname, ct_dtype_name(dtype));
    st_bitwise(what, got, ref, n);

    memcpy(ref, dx0, n * 4);
    st_ok(dp_cpu_dropout_backward(ref, dy, &p, 1), "cpu dropout backward (accumulate)");
    st_round_through(ref, n, dtype);
    gpu_op(ctx, got, dy, dx0, &p, 1, 1, layout, dtype);
    snprintf(what, sizeof what, "dropout %s %s %s backward accumulate", kname, lname,
             ct_dtype_name(dtype));
    st_bitwise(what, got, ref, n);
    free(x), free(dy), free(dx0), free(ref), free(got);
}

// y may equal x; bad arguments are refused before anything runs.
static void check_in_place_and_args(dp_cuda_ctx *ctx)
{
    const size_t n = (size_t)N * S;
    const dp_dropout_params p = {.N = N, .sample_size = S, .p = 0.5f, .seed = 3, .step = 1};
    float *x = st_alloc(n * 4), *ref = st_alloc(n * 4), *got = st_alloc(n * 4);
    st_fill_normal(x, n, 0.0f, 1.0f, 21);
    st_ok(dp_cpu_dropout_forward(ref, x, &p), "cpu dropout forward");
    float *d = st_dev_from(ctx, x, n * 4);
    st_ok(dp_cuda_dropout_forward(ctx, d, d, &p, DP_CUDA_NCHW, 0, DP_CUDA_F32), "in place");
    st_dev_to(ctx, got, d, n * 4);
    st_bitwise("dropout in place", got, ref, n);
    dp_dropout_params bad = p;
    bad.p = 1.0f;
    st_check(dp_cuda_dropout_forward(ctx, d, d, &bad, DP_CUDA_NCHW, 0, DP_CUDA_F32) == DP_ERR_ARG,
             "p = 1 must be refused");
    st_check(dp_cuda_dropout_forward(ctx, d, d, &p, DP_CUDA_NHWC, 2, DP_CUDA_F32) == DP_ERR_ARG,
             "NHWC with C not dividing the sample must be refused");
    st_dev_free(ctx, d);
    free(x), free(ref), free(got);
}

int main(void)
{
    dp_cuda_ctx *ctx = st_ctx_or_skip();
    const dp_cuda_dtype dtypes[] = {DP_CUDA_F32, DP_CUDA_BF16, DP_CUDA_F16};
    for (int d = 0; d < 3; d++) {
        for (int kind = 0; kind < 2; kind++) {
            check_case(ctx, (dp_dropout_kind)kind, DP_CUDA_NCHW, dtypes[d]);
            check_case(ctx, (dp_dropout_kind)kind, DP_CUDA_NHWC, dtypes[d]);
        }
    }
    check_in_place_and_args(ctx);
    return st_finish(ctx, "test_cuda_step_dropout");
}
