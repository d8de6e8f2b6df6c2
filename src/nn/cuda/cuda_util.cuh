// Shared by the .cu files of the CUDA backend (never included from C): turning CUDA, cuBLAS
// and cuDNN errors into dp_status with the failing call named, launch checks, grid sizing and
// float conversions of the storage types.
#ifndef DP_NN_CUDA_CUDA_UTIL_CUH
#define DP_NN_CUDA_CUDA_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "core/error.h"
#include "nn/cuda/cuda_ctx.h"

// DP_CUDA_TRY(cudaMemcpyAsync(...)): returns DP_ERR_CUDA naming the call and the error.
#define DP_CUDA_TRY(call)                                                                          \
    do {                                                                                           \
        cudaError_t dp__e = (call);                                                                \
        if (dp__e != cudaSuccess) {                                                                \
            return dp_error_set(DP_ERR_CUDA, "%s: %s (%s)", #call, cudaGetErrorString(dp__e),      \
                                cudaGetErrorName(dp__e));                                          \
        }                                                                                          \
    } while (0)

// After a <<<...>>> launch: a bad configuration shows up here, not at the next sync.
#define DP_CUDA_LAUNCHED(what)                                                                     \
    do {                                                                                           \
        cudaError_t dp__e = cudaGetLastError();                                                    \
        if (dp__e != cudaSuccess) {                                                                \
            return dp_error_set(DP_ERR_CUDA, "launch of %s: %s (%s)", (what),                      \
                                cudaGetErrorString(dp__e), cudaGetErrorName(dp__e));               \
        }                                                                                          \
    } while (0)

// Blocks for a grid-stride loop over n elements: enough to fill the device, never 0.
static inline unsigned dp__cuda_blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    if (b > 65535u * 8u) {
        b = 65535u * 8u;
    }
    return b ? (unsigned)b : 1u;
}

static inline cudaStream_t dp__stream(dp_cuda_ctx *ctx)
{
    return (cudaStream_t)dp_cuda_ctx_compute_stream(ctx);
}

// Loads and stores of the storage types with float math.
__device__ __forceinline__ float dp__ld(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float dp__ld(const __nv_bfloat16 *p, size_t i)
{
    return __bfloat162float(p[i]);
}
__device__ __forceinline__ float dp__ld(const __half *p, size_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void dp__st(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void dp__st(__nv_bfloat16 *p, size_t i, float v)
{
    p[i] = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void dp__st(__half *p, size_t i, float v) { p[i] = __float2half_rn(v); }

#endif
