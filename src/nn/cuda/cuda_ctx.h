// The CUDA backend's per-rank context: one device, its streams and library handles, the
// precision policy and the deterministic flag. C ABI with no CUDA types, so .c files (layers,
// trainer, tests) include it; the .cu files behind it own every CUDA call. Every function
// returns DP_ERR_CUDA with the library's message (and the call that failed) on error.
//
// Pointers called "device" below are device memory of ctx's device. Launchers enqueue on
// ctx's compute stream unless they say otherwise and do not synchronize the host.
#ifndef DP_NN_CUDA_CUDA_CTX_H
#define DP_NN_CUDA_CUDA_CTX_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef struct dp_cuda_ctx dp_cuda_ctx;

// Arithmetic of the backend ([train] precision). Parameters, gradients of parameters and
// optimizer state stay float32 in every mode (master weights); activations and their
// gradients are stored in the compute type.
typedef enum dp_cuda_precision {
    DP_CUDA_PREC_FP32 = 0, // float32 storage, float32 math (no tensor-core TF32)
    DP_CUDA_PREC_TF32,     // float32 storage, TF32 tensor-core math in convolutions and GEMMs
    DP_CUDA_PREC_BF16,     // bfloat16 activations, float32 accumulation
    DP_CUDA_PREC_FP16,     // float16 activations, float32 accumulation, dynamic loss scaling
} dp_cuda_precision;

// Storage type of activations and their gradients in a kernel call (math is float32).
typedef enum dp_cuda_dtype { DP_CUDA_F32 = 0, DP_CUDA_BF16, DP_CUDA_F16 } dp_cuda_dtype;

// Memory layout of an activation tensor: NCHW as on the CPU, or NHWC (channels last, what
// cuDNN's tensor-core convolutions want).
typedef enum dp_cuda_layout { DP_CUDA_NCHW = 0, DP_CUDA_NHWC } dp_cuda_layout;

// Storage type of the activations for a precision mode.
static inline dp_cuda_dtype dp_cuda_precision_dtype(dp_cuda_precision p)
{
    return p == DP_CUDA_PREC_BF16   ? DP_CUDA_BF16
           : p == DP_CUDA_PREC_FP16 ? DP_CUDA_F16
                                    : DP_CUDA_F32;
}

static inline size_t dp_cuda_dtype_size(dp_cuda_dtype t)
{
    return t == DP_CUDA_F32 ? 4 : 2;
}

typedef struct dp_cuda_ctx_params {
    int device;                  // ordinal; the trainer passes the MPI local rank
    dp_cuda_precision precision;
    int deterministic;           // 1: only deterministic algorithms, no atomics in reductions
    int nhwc;                    // 1: activations are NHWC (tensor cores); 0: NCHW like the CPU
} dp_cuda_ctx_params;

// Selects the device, creates the compute, H2D and communication streams (non-blocking) and
// the cuBLAS(Lt) and cuDNN handles bound to the compute stream.
DP_MUST_CHECK dp_status dp_cuda_ctx_create(dp_cuda_ctx **out, const dp_cuda_ctx_params *p);
void dp_cuda_ctx_destroy(dp_cuda_ctx *ctx); // NULL is a no-op

const dp_cuda_ctx_params *dp_cuda_ctx_params_of(const dp_cuda_ctx *ctx);

// The streams as opaque handles (cudaStream_t) for the .cu files and the NCCL communicator.
void *dp_cuda_ctx_compute_stream(dp_cuda_ctx *ctx);
void *dp_cuda_ctx_h2d_stream(dp_cuda_ctx *ctx);
void *dp_cuda_ctx_comm_stream(dp_cuda_ctx *ctx);
void *dp_cuda_ctx_cublas(dp_cuda_ctx *ctx);   // cublasHandle_t
void *dp_cuda_ctx_cublaslt(dp_cuda_ctx *ctx); // cublasLtHandle_t
void *dp_cuda_ctx_cudnn(dp_cuda_ctx *ctx);    // cudnnHandle_t

// Device memory. One arena is allocated when the network is planned; the step loop only takes
// views of it.
DP_MUST_CHECK dp_status dp_cuda_malloc(dp_cuda_ctx *ctx, void **ptr, size_t bytes);
void dp_cuda_free(dp_cuda_ctx *ctx, void *ptr);
// Page-locked host memory (the data pipeline's ring uses it through its allocator hook).
DP_MUST_CHECK dp_status dp_cuda_host_alloc(void **ptr, size_t bytes);
void dp_cuda_host_free(void *ptr);

// Copies. _async ones run on the named stream; the _sync ones wait for completion.
DP_MUST_CHECK dp_status dp_cuda_h2d_async(dp_cuda_ctx *ctx, void *dst, const void *src,
                                          size_t bytes); // on the H2D stream
DP_MUST_CHECK dp_status dp_cuda_d2h_sync(dp_cuda_ctx *ctx, void *dst, const void *src,
                                         size_t bytes);  // after the compute stream's work
DP_MUST_CHECK dp_status dp_cuda_h2d_sync(dp_cuda_ctx *ctx, void *dst, const void *src,
                                         size_t bytes);
DP_MUST_CHECK dp_status dp_cuda_memset_async(dp_cuda_ctx *ctx, void *dst, int value,
                                             size_t bytes);

// Events order the streams without a host sync: record on one stream, wait on another.
typedef enum dp_cuda_stream_id { DP_CUDA_COMPUTE = 0, DP_CUDA_H2D, DP_CUDA_COMM } dp_cuda_stream_id;
enum { DP_CUDA_MAX_EVENTS = 256 };
// Records event slot `ev` (0 <= ev < DP_CUDA_MAX_EVENTS, created on first use) on stream `on`.
DP_MUST_CHECK dp_status dp_cuda_event_record(dp_cuda_ctx *ctx, int ev, dp_cuda_stream_id on);
// Makes stream `who` wait for the last record of slot `ev`.
DP_MUST_CHECK dp_status dp_cuda_stream_wait(dp_cuda_ctx *ctx, dp_cuda_stream_id who, int ev);
DP_MUST_CHECK dp_status dp_cuda_event_sync(dp_cuda_ctx *ctx, int ev);
// The cudaEvent_t of slot `ev` for APIs that take one (the NCCL communicator's wait_event):
// NULL before its first record or for a slot out of range. It stays the slot's event: a later
// record moves it, and waits enqueued before that keep the earlier record.
void *dp_cuda_event_handle(dp_cuda_ctx *ctx, int ev);
DP_MUST_CHECK dp_status dp_cuda_stream_sync(dp_cuda_ctx *ctx, dp_cuda_stream_id which);
// Sticky or asynchronous errors of the device so far (cudaGetLastError + a stream query).
DP_MUST_CHECK dp_status dp_cuda_check(dp_cuda_ctx *ctx, const char *what);

DP_EXTERN_C_END

#endif
