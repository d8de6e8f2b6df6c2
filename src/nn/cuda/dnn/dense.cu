// Fully connected layers on cuBLAS (cublasGemmEx): the row-major products of cpu/dense.c seen
// as column-major ones, plus the bias kernels of dnn_kernels.cu. See dnn.h for the contracts.
//
// Row-major (R, C) is column-major (C, R) with leading dimension C, so with x (N, in),
// W (out, in), y (N, out) row-major:
//   y^T  (out, N)  = W_cm^T (out, in) x_cm (in, N)        -> gemm(T, N, out, N, in)
//   dx^T (in, N)   = W_cm (in, out) dy_cm (out, N)        -> gemm(N, N, in, N, out)
//   dW^T (in, out) = x_cm (in, N) dy_cm^T (N, out)        -> gemm(N, T, in, out, N)
#include <stdlib.h>

#include "nn/cuda/dnn/dnn_internal.cuh"

struct dp_cuda_dense_plan {
    dp_cuda_ctx *ctx; // borrowed
    dp_dense_params p;
    dp_cuda_dtype dtype;
    cublasComputeType_t compute;
    dp__dnn_chan ychan; // y as (N, out, 1): one channel per output feature
    void *wc;           // (out, in) row-major in dtype, device; NULL: kernels read the master
    size_t ws_bytes;
};

extern "C" dp_status dp_cuda_dense_plan_create(dp_cuda_dense_plan **out, dp_cuda_ctx *ctx,
                                               const dp_dense_params *p, dp_cuda_dtype dtype)
{
    static const char what[] = "dp_cuda_dense_plan_create";
    DP__DNN_NEED(out, what);
    *out = NULL;
    DP__DNN_NEED(ctx, what);
    DP__DNN_NEED(p, what);
    if (p->N < 1 || p->in < 1 || p->out < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: dims N %d, in %d, out %d must be >= 1", what, p->N,
                            p->in, p->out);
    }
    if (dtype != DP_CUDA_F32 && dtype != DP_CUDA_BF16 && dtype != DP_CUDA_F16) {
        return dp_error_set(DP_ERR_ARG, "%s: unknown dtype %d", what, (int)dtype);
    }
    dp_cuda_dense_plan *pl = (dp_cuda_dense_plan *)calloc(1, sizeof *pl);
    if (pl == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "%s: out of host memory", what);
    }
    pl->ctx = ctx;
    pl->p = *p;
    pl->dtype = dtype;
    const dp_cuda_precision prec = dp_cuda_ctx_params_of(ctx)->precision;
    // Strict float32 must not depend on the handle's math mode (TF32 or BF16x9 emulation may be
    // on for other GEMMs): the pedantic compute type forbids both.
    pl->compute = dtype != DP_CUDA_F32        ? CUBLAS_COMPUTE_32F
                  : prec == DP_CUDA_PREC_FP32 ? CUBLAS_COMPUTE_32F_PEDANTIC
                                              : CUBLAS_COMPUTE_32F_FAST_TF32;
    pl->ychan = dp__dnn_chan{p->N, p->out, 1, DP_CUDA_NHWC};
    pl->ws_bytes = dp__dnn_bias_grad_ws_bytes(&pl->ychan); // cuBLAS has the context's own
    if (dtype != DP_CUDA_F32) {
        const size_t bytes = (size_t)p->out * (size_t)p->in * dp_cuda_dtype_size(dtype);
        dp_status st = dp_cuda_malloc(ctx, &pl->wc, bytes);
        if (st != DP_OK) {
            free(pl);
            return dp_error_context(st, "%s (in %d, out %d)", what, p->in, p->out);
        }
    }
    *out = pl;
    return DP_OK;
}

extern "C" void dp_cuda_dense_plan_destroy(dp_cuda_dense_plan *plan)
{
    if (plan == NULL) {
        return;
    }
    dp_cuda_free(plan->ctx, plan->wc);
    free(plan);
}

extern "C" size_t dp_cuda_dense_plan_workspace_bytes(const dp_cuda_dense_plan *plan)
{
    return plan->ws_bytes;
}

extern "C" dp_status dp_cuda_dense_plan_cast_weights(dp_cuda_dense_plan *plan, const float *w)
{
    DP__DNN_NEED(plan, "dp_cuda_dense_plan_cast_weights");
    DP__DNN_NEED(w, "dp_cuda_dense_plan_cast_weights");
    if (plan->wc == NULL) {
        return DP_OK;
    }
    const dp__dnn_filter f = {plan->p.out, plan->p.in, 1, DP_CUDA_NCHW};
    return dp__dnn_weights_cast(plan->ctx, plan->wc, plan->dtype, w, &f);
}

// The handle is the context's, shared with other kernels: it keeps the fixed workspace the
// context gave it (so cuBLAS picks the same kernels on every run); the scalars here are host
// floats, whatever mode another user left the handle in.
static dp_status gemm_setup(cublasHandle_t h)
{
    DP_CUBLAS_TRY(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
    return DP_OK;
}

extern "C" dp_status dp_cuda_dense_forward(dp_cuda_dense_plan *plan, void *y, const void *x,
                                           const float *w, const float *b, void *ws,
                                           size_t ws_bytes)
{
    static const char what[] = "dp_cuda_dense_forward";
    DP__DNN_NEED(plan, what);
    DP__DNN_NEED(y, what);
    DP__DNN_NEED(x, what);
    DP__DNN_NEED(w, what);
    DP_TRY(dp__dnn_check_ws(what, ws, ws_bytes, plan->ws_bytes));
    cublasHandle_t h = (cublasHandle_t)dp_cuda_ctx_cublas(plan->ctx);
    DP_TRY(gemm_setup(h));
    const dp_dense_params *p = &plan->p;
    const cudaDataType_t t = dp__dnn_cuda_type(plan->dtype);
    const void *wp = plan->wc != NULL ? plan->wc : (const void *)w;
    const float one = 1.0f, zero = 0.0f;
    DP_CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, p->out, p->N, p->in, &one, wp, t, p->in,
                               x, t, p->in, &zero, y, t, p->out, plan->compute,
                               CUBLAS_GEMM_DEFAULT));
    if (b != NULL) {
        DP_TRY(dp__dnn_bias_add(plan->ctx, y, plan->dtype, b, &plan->ychan));
    }
    return DP_OK;
}

extern "C" dp_status dp_cuda_dense_backward(dp_cuda_dense_plan *plan, void *dx, float *dw,
                                            float *db, const void *dy, const void *x,
                                            const float *w, unsigned accum, void *ws,
                                            size_t ws_bytes)
{
    static const char what[] = "dp_cuda_dense_backward";
    DP__DNN_NEED(plan, what);
    DP__DNN_NEED(dw, what);
    DP__DNN_NEED(dy, what);
    DP__DNN_NEED(x, what);
    DP__DNN_NEED(w, what);
    DP_TRY(dp__dnn_check_ws(what, ws, ws_bytes, plan->ws_bytes));
    cublasHandle_t h = (cublasHandle_t)dp_cuda_ctx_cublas(plan->ctx);
    DP_TRY(gemm_setup(h));
    const dp_dense_params *p = &plan->p;
    const cudaDataType_t t = dp__dnn_cuda_type(plan->dtype);
    const void *wp = plan->wc != NULL ? plan->wc : (const void *)w;
    const float one = 1.0f;
    const float beta_x = (accum & DP_ACCUM_DX) ? 1.0f : 0.0f;
    const float beta_p = (accum & DP_ACCUM_DPARAMS) ? 1.0f : 0.0f;
    if (dx != NULL) {
        DP_CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, p->in, p->N, p->out, &one, wp, t,
                                   p->in, dy, t, p->out, &beta_x, dx, t, p->in, plan->compute,
                                   CUBLAS_GEMM_DEFAULT));
    }
    // dW in float32 straight from the GEMM: cuBLAS takes bf16/fp16 A and B with a float32 C.
    DP_CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, p->in, p->out, p->N, &one, x, t, p->in,
                               dy, t, p->out, &beta_p, dw, CUDA_R_32F, p->in, plan->compute,
                               CUBLAS_GEMM_DEFAULT));
    if (db != NULL) {
        DP_TRY(dp__dnn_bias_grad(plan->ctx, db, dy, plan->dtype, &plan->ychan,
                                 (accum & DP_ACCUM_DPARAMS) != 0, ws));
    }
    return DP_OK;
}
