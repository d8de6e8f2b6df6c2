// Shared by the .cu files of src/nn/cuda/dnn/ (never included from C): cuDNN and cuBLAS error
// conversion, the launchers' argument checks, and the small kernels both plans use around
// the library calls (bias add, the deterministic bias gradient, weight casts).
#ifndef DP_NN_CUDA_DNN_DNN_INTERNAL_CUH
#define DP_NN_CUDA_DNN_DNN_INTERNAL_CUH

#include <cublas_v2.h>
#include <cudnn.h>
#include <stdint.h>

#include "core/error.h"
#include "nn/cuda/cuda_util.cuh"
#include "nn/cuda/dnn/dnn.h"

// DP_CUDNN_TRY(cudnnConvolutionForward(...)): returns DP_ERR_CUDA naming the call, cuDNN's
// status and its last detailed message (cuDNN 9 keeps one per thread).
#ifndef DP_CUDNN_TRY
#define DP_CUDNN_TRY(call)                                                                         \
    do {                                                                                           \
        cudnnStatus_t dp__s = (call);                                                              \
        if (dp__s != CUDNN_STATUS_SUCCESS) {                                                       \
            char dp__m[256];                                                                       \
            cudnnGetLastErrorString(dp__m, sizeof dp__m);                                          \
            return dp_error_set(DP_ERR_CUDA, "%s: %s (%s)", #call, cudnnGetErrorString(dp__s),     \
                                dp__m);                                                            \
        }                                                                                          \
    } while (0)
#endif

// DP_CUBLAS_TRY(cublasGemmEx(...)): returns DP_ERR_CUDA naming the call and cuBLAS's status.
#ifndef DP_CUBLAS_TRY
#define DP_CUBLAS_TRY(call)                                                                        \
    do {                                                                                           \
        cublasStatus_t dp__s = (call);                                                             \
        if (dp__s != CUBLAS_STATUS_SUCCESS) {                                                      \
            return dp_error_set(DP_ERR_CUDA, "%s: %s (%s)", #call, cublasGetStatusString(dp__s),   \
                                cublasGetStatusName(dp__s));                                       \
        }                                                                                          \
    } while (0)
#endif

// Returns DP_ERR_ARG from the calling launcher, naming it and the argument, when ptr is NULL.
#define DP__DNN_NEED(ptr, what)                                                                    \
    do {                                                                                           \
        if ((ptr) == NULL) {                                                                       \
            return dp_error_set(DP_ERR_ARG, "%s: argument '%s' is NULL", (what), #ptr);            \
        }                                                                                          \
    } while (0)

static inline size_t dp__dnn_align(size_t bytes)
{
    return (bytes + DP_CUDA_WS_ALIGN - 1) / DP_CUDA_WS_ALIGN * DP_CUDA_WS_ALIGN;
}

// DP_ERR_ARG unless ws is non-NULL (when need > 0), aligned, and at least need bytes.
dp_status dp__dnn_check_ws(const char *what, const void *ws, size_t ws_bytes, size_t need);

// cuDNN's and cuBLAS's names of a storage type.
cudnnDataType_t dp__dnn_cudnn_type(dp_cuda_dtype t);
cudaDataType_t dp__dnn_cuda_type(dp_cuda_dtype t);

// --- bias ---

// Channel geometry of an activation: N images of K channels of HW pixels, in layout.
typedef struct dp__dnn_chan {
    int N, K, HW;
    dp_cuda_layout layout;
} dp__dnn_chan;

// y[n, k, i] += bias[k] for every element, in float, stored back rounded to dtype.
//   y (N, K, HW) in g's layout, dtype, device;  bias (K) float32, device
dp_status dp__dnn_bias_add(dp_cuda_ctx *ctx, void *y, dp_cuda_dtype dtype, const float *bias,
                           const dp__dnn_chan *g);

// Scratch bytes of dp__dnn_bias_grad for g (partial sums of a fixed number of row blocks).
size_t dp__dnn_bias_grad_ws_bytes(const dp__dnn_chan *g);

// db[k] (+)= sum over n and i of dy[n, k, i]: every thread sums a fixed set of elements in
// float, the block combines its threads by a fixed tree, and a second kernel adds the blocks'
// partials per channel in block order in double. Nothing depends on timing: deterministic.
//   db (K) float32, device;  dy (N, K, HW) in g's layout, dtype, device
//   ws device scratch of >= dp__dnn_bias_grad_ws_bytes(g) bytes
dp_status dp__dnn_bias_grad(dp_cuda_ctx *ctx, float *db, const void *dy, dp_cuda_dtype dtype,
                            const dp__dnn_chan *g, int accumulate, void *ws);

// --- weights ---

// Filter geometry: K filters of Cg channels of RS taps; layout NHWC means KRSC in memory.
typedef struct dp__dnn_filter {
    int K, Cg, RS;
    dp_cuda_layout layout;
} dp__dnn_filter;

// dst = (dtype) src, transposed from KCRS to the filter layout f (a plain cast for NCHW).
//   dst (K, Cg, RS) in f's layout, dtype, device;  src (K, Cg, RS) float32 KCRS, device
dp_status dp__dnn_weights_cast(dp_cuda_ctx *ctx, void *dst, dp_cuda_dtype dtype, const float *src,
                               const dp__dnn_filter *f);

// dw (+)= (float) g, transposed from the filter layout f back to KCRS.
//   dw (K, Cg, RS) float32 KCRS, device;  g (K, Cg, RS) in f's layout, dtype, device
dp_status dp__dnn_grad_add(dp_cuda_ctx *ctx, float *dw, const void *g, dp_cuda_dtype dtype,
                           const dp__dnn_filter *f, int accumulate);

#endif
