// The per-rank CUDA context (cuda_ctx.h): device selection, the three non-blocking streams, the
// cuBLAS, cuBLASLt and cuDNN handles bound to the compute stream, memory, copies and event slots.
// Runtime API only (never the driver library), so a binary built with CUDA starts on machines
// without a GPU and fails here with a message instead. No kernels in this file.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/cuda/cuda_ctx.h"
#include "nn/cuda/cuda_util.cuh"

// cuBLAS takes this workspace instead of allocating its own on first use per stream: no
// allocation in the step loop, and one workspace keeps its results deterministic (cuBLAS
// documents run-to-run reproducibility for a fixed workspace and stream). 32 MiB is what NVIDIA
// recommends for Hopper; smaller GPUs simply do not use all of it.
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)

struct dp_cuda_ctx {
    dp_cuda_ctx_params params;
    cudaStream_t streams[3]; // indexed by dp_cuda_stream_id
    cublasHandle_t cublas;
    cublasLtHandle_t cublaslt;
    cudnnHandle_t cudnn;
    void *cublas_workspace;                 // CUBLAS_WORKSPACE_BYTES, device
    cudaEvent_t events[DP_CUDA_MAX_EVENTS]; // created on first record
};

// --- error conversion of the libraries ---

#define CUBLAS_TRY(call)                                                                           \
    do {                                                                                           \
        cublasStatus_t e_ = (call);                                                                \
        if (e_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            return dp_error_set(DP_ERR_CUDA, "%s: %s (%s)", #call, cublasGetStatusString(e_),      \
                                cublasGetStatusName(e_));                                          \
        }                                                                                          \
    } while (0)

#define CUDNN_TRY(call)                                                                            \
    do {                                                                                           \
        cudnnStatus_t e_ = (call);                                                                 \
        if (e_ != CUDNN_STATUS_SUCCESS) {                                                          \
            return dp_error_set(DP_ERR_CUDA, "%s: %s", #call, cudnnGetErrorString(e_));            \
        }                                                                                          \
    } while (0)

static dp_status check_stream_id(dp_cuda_stream_id s, const char *what)
{
    if ((int)s < 0 || (int)s > (int)DP_CUDA_COMM) {
        return dp_error_set(DP_ERR_ARG, "%s: unknown stream %d", what, (int)s);
    }
    return DP_OK;
}

static dp_status check_event(int ev, const char *what)
{
    if (ev < 0 || ev >= DP_CUDA_MAX_EVENTS) {
        return dp_error_set(DP_ERR_ARG, "%s: event slot %d outside [0, %d)", what, ev,
                            (int)DP_CUDA_MAX_EVENTS);
    }
    return DP_OK;
}

// --- create / destroy ---

static dp_status check_params(const dp_cuda_ctx_params *p)
{
    if (p->precision < DP_CUDA_PREC_FP32 || p->precision > DP_CUDA_PREC_FP16) {
        return dp_error_set(DP_ERR_ARG, "cuda context: unknown precision %d", (int)p->precision);
    }
    int count = 0;
    DP_CUDA_TRY(cudaGetDeviceCount(&count));
    if (p->device < 0 || p->device >= count) {
        return dp_error_set(DP_ERR_ARG, "cuda context: device %d does not exist (%d device%s)",
                            p->device, count, count == 1 ? "" : "s");
    }
    return DP_OK;
}

// The streams: all non-blocking, so that nothing synchronizes with the legacy default stream
// (which cuDNN or a library might use behind our back). The communication stream gets the
// highest priority: NCCL's kernels for a finished bucket should start as soon as an SM is free
// rather than queue behind the rest of backward, which is the whole point of the overlap.
static dp_status create_streams(dp_cuda_ctx *c)
{
    int least = 0, greatest = 0;
    DP_CUDA_TRY(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    DP_CUDA_TRY(
        cudaStreamCreateWithPriority(&c->streams[DP_CUDA_COMPUTE], cudaStreamNonBlocking, least));
    DP_CUDA_TRY(
        cudaStreamCreateWithPriority(&c->streams[DP_CUDA_H2D], cudaStreamNonBlocking, least));
    DP_CUDA_TRY(
        cudaStreamCreateWithPriority(&c->streams[DP_CUDA_COMM], cudaStreamNonBlocking, greatest));
    return DP_OK;
}

// cuBLAS math: FP32 keeps true float32 GEMMs (CUBLAS_DEFAULT_MATH never uses TF32 unless
// NVIDIA_TF32_OVERRIDE says so); TF32 allows the tensor-core TF32 path; BF16/FP16 GEMMs use
// tensor cores under the default mode anyway, with float accumulation chosen per call.
static dp_status create_handles(dp_cuda_ctx *c)
{
    cudaStream_t compute = c->streams[DP_CUDA_COMPUTE];
    CUBLAS_TRY(cublasCreate(&c->cublas));
    CUBLAS_TRY(cublasSetStream(c->cublas, compute));
    DP_CUDA_TRY(cudaMalloc(&c->cublas_workspace, CUBLAS_WORKSPACE_BYTES));
    CUBLAS_TRY(cublasSetWorkspace(c->cublas, c->cublas_workspace, CUBLAS_WORKSPACE_BYTES));
    cublasMath_t math =
        c->params.precision == DP_CUDA_PREC_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
    CUBLAS_TRY(cublasSetMathMode(c->cublas, math));
    CUBLAS_TRY(cublasLtCreate(&c->cublaslt));
    CUDNN_TRY(cudnnCreate(&c->cudnn));
    CUDNN_TRY(cudnnSetStream(c->cudnn, compute));
    return DP_OK;
}

extern "C" dp_status dp_cuda_ctx_create(dp_cuda_ctx **out, const dp_cuda_ctx_params *p)
{
    if (out == NULL || p == NULL) {
        return dp_error_set(DP_ERR_ARG, "cuda context: out or params is NULL");
    }
    *out = NULL;
    DP_TRY(check_params(p));
    // Every later runtime call of this thread goes to this device; the trainer creates the
    // context on the thread that runs the step.
    DP_CUDA_TRY(cudaSetDevice(p->device));
    dp_cuda_ctx *c = (dp_cuda_ctx *)calloc(1, sizeof *c);
    if (c == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "cuda context: out of host memory");
    }
    c->params = *p;
    dp_status st = create_streams(c);
    if (st == DP_OK) {
        st = create_handles(c);
    }
    if (st != DP_OK) {
        dp_error_context(st, "cuda context on device %d", p->device);
        dp_cuda_ctx_destroy(c);
        return st;
    }
    *out = c;
    return DP_OK;
}

// Waits for the streams (their work may still use memory or handles), then releases everything
// that was created; errors here can only be reported, not acted on, so they are ignored (a
// sticky device error has been reported by the step that hit it).
extern "C" void dp_cuda_ctx_destroy(dp_cuda_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    cudaSetDevice(ctx->params.device);
    for (int s = 0; s < 3; s++) {
        if (ctx->streams[s] != NULL) {
            cudaStreamSynchronize(ctx->streams[s]);
        }
    }
    for (int e = 0; e < DP_CUDA_MAX_EVENTS; e++) {
        if (ctx->events[e] != NULL) {
            cudaEventDestroy(ctx->events[e]);
        }
    }
    if (ctx->cudnn != NULL) {
        cudnnDestroy(ctx->cudnn);
    }
    if (ctx->cublaslt != NULL) {
        cublasLtDestroy(ctx->cublaslt);
    }
    if (ctx->cublas != NULL) {
        cublasDestroy(ctx->cublas);
    }
    if (ctx->cublas_workspace != NULL) {
        cudaFree(ctx->cublas_workspace);
    }
    for (int s = 0; s < 3; s++) {
        if (ctx->streams[s] != NULL) {
            cudaStreamDestroy(ctx->streams[s]);
        }
    }
    free(ctx);
}

extern "C" const dp_cuda_ctx_params *dp_cuda_ctx_params_of(const dp_cuda_ctx *ctx)
{
    return &ctx->params;
}

// --- handles ---

extern "C" void *dp_cuda_ctx_compute_stream(dp_cuda_ctx *ctx)
{
    return (void *)ctx->streams[DP_CUDA_COMPUTE];
}

extern "C" void *dp_cuda_ctx_h2d_stream(dp_cuda_ctx *ctx)
{
    return (void *)ctx->streams[DP_CUDA_H2D];
}

extern "C" void *dp_cuda_ctx_comm_stream(dp_cuda_ctx *ctx)
{
    return (void *)ctx->streams[DP_CUDA_COMM];
}

extern "C" void *dp_cuda_ctx_cublas(dp_cuda_ctx *ctx)
{
    return (void *)ctx->cublas;
}

extern "C" void *dp_cuda_ctx_cublaslt(dp_cuda_ctx *ctx)
{
    return (void *)ctx->cublaslt;
}

extern "C" void *dp_cuda_ctx_cudnn(dp_cuda_ctx *ctx)
{
    return (void *)ctx->cudnn;
}

// --- memory ---

extern "C" dp_status dp_cuda_malloc(dp_cuda_ctx *ctx, void **ptr, size_t bytes)
{
    if (ctx == NULL || ptr == NULL) {
        return dp_error_set(DP_ERR_ARG, "cuda malloc: ctx or ptr is NULL");
    }
    *ptr = NULL;
    // The planner may run on another thread than the one that created the context.
    DP_CUDA_TRY(cudaSetDevice(ctx->params.device));
    cudaError_t e = cudaMalloc(ptr, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        *ptr = NULL;
        size_t free_b = 0, total_b = 0;
        cudaGetLastError(); // an out-of-memory error is not sticky; clear it for what follows
        cudaMemGetInfo(&free_b, &total_b);
        return dp_error_set(e == cudaErrorMemoryAllocation ? DP_ERR_NOMEM : DP_ERR_CUDA,
                            "cudaMalloc of %zu MiB on device %d: %s (%zu of %zu MiB free)",
                            bytes >> 20, ctx->params.device, cudaGetErrorString(e), free_b >> 20,
                            total_b >> 20);
    }
    return DP_OK;
}

extern "C" void dp_cuda_free(dp_cuda_ctx *ctx, void *ptr)
{
    if (ctx == NULL || ptr == NULL) {
        return;
    }
    cudaSetDevice(ctx->params.device);
    cudaFree(ptr); // synchronizes the device, so no kernel still reads it
}

// Portable: the data pipeline's threads and any context may copy from it as pinned memory.
extern "C" dp_status dp_cuda_host_alloc(void **ptr, size_t bytes)
{
    if (ptr == NULL) {
        return dp_error_set(DP_ERR_ARG, "cuda host alloc: ptr is NULL");
    }
    *ptr = NULL;
    cudaError_t e = cudaHostAlloc(ptr, bytes ? bytes : 1, cudaHostAllocPortable);
    if (e != cudaSuccess) {
        *ptr = NULL;
        cudaGetLastError();
        return dp_error_set(e == cudaErrorMemoryAllocation ? DP_ERR_NOMEM : DP_ERR_CUDA,
                            "cudaHostAlloc of %zu MiB: %s (%s)", bytes >> 20, cudaGetErrorString(e),
                            cudaGetErrorName(e));
    }
    return DP_OK;
}

extern "C" void dp_cuda_host_free(void *ptr)
{
    if (ptr != NULL) {
        cudaFreeHost(ptr);
    }
}

// --- copies ---

static dp_status check_copy(dp_cuda_ctx *ctx, void *dst, const void *src, size_t bytes,
                            const char *what)
{
    if (ctx == NULL || ((dst == NULL || src == NULL) && bytes > 0)) {
        return dp_error_set(DP_ERR_ARG, "%s: ctx, dst or src is NULL", what);
    }
    return DP_OK;
}

extern "C" dp_status dp_cuda_h2d_async(dp_cuda_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    DP_TRY(check_copy(ctx, dst, src, bytes, "h2d copy"));
    if (bytes == 0) {
        return DP_OK;
    }
    DP_CUDA_TRY(
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->streams[DP_CUDA_H2D]));
    return DP_OK;
}

// On the compute stream, so the copy sees what the kernels before it wrote.
extern "C" dp_status dp_cuda_d2h_sync(dp_cuda_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    DP_TRY(check_copy(ctx, dst, src, bytes, "d2h copy"));
    if (bytes == 0) {
        return DP_OK;
    }
    cudaStream_t s = ctx->streams[DP_CUDA_COMPUTE];
    DP_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    DP_CUDA_TRY(cudaStreamSynchronize(s));
    return DP_OK;
}

// On the compute stream as well: kernels enqueued before it that still read dst finish first,
// and those enqueued after it see the new contents.
extern "C" dp_status dp_cuda_h2d_sync(dp_cuda_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    DP_TRY(check_copy(ctx, dst, src, bytes, "h2d copy"));
    if (bytes == 0) {
        return DP_OK;
    }
    cudaStream_t s = ctx->streams[DP_CUDA_COMPUTE];
    DP_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
    DP_CUDA_TRY(cudaStreamSynchronize(s));
    return DP_OK;
}

extern "C" dp_status dp_cuda_memset_async(dp_cuda_ctx *ctx, void *dst, int value, size_t bytes)
{
    if (ctx == NULL || (dst == NULL && bytes > 0)) {
        return dp_error_set(DP_ERR_ARG, "cuda memset: ctx or dst is NULL");
    }
    if (bytes == 0) {
        return DP_OK;
    }
    DP_CUDA_TRY(cudaMemsetAsync(dst, value, bytes, ctx->streams[DP_CUDA_COMPUTE]));
    return DP_OK;
}

// --- events and synchronization ---

extern "C" dp_status dp_cuda_event_record(dp_cuda_ctx *ctx, int ev, dp_cuda_stream_id on)
{
    DP_TRY(check_event(ev, "cuda event record"));
    DP_TRY(check_stream_id(on, "cuda event record"));
    if (ctx->events[ev] == NULL) {
        // No timing: lighter events, and what cudaStreamWaitEvent needs.
        DP_CUDA_TRY(cudaEventCreateWithFlags(&ctx->events[ev], cudaEventDisableTiming));
    }
    DP_CUDA_TRY(cudaEventRecord(ctx->events[ev], ctx->streams[on]));
    return DP_OK;
}

// A slot never recorded has nothing to wait for (as cudaStreamWaitEvent on a fresh event).
extern "C" dp_status dp_cuda_stream_wait(dp_cuda_ctx *ctx, dp_cuda_stream_id who, int ev)
{
    DP_TRY(check_event(ev, "cuda stream wait"));
    DP_TRY(check_stream_id(who, "cuda stream wait"));
    if (ctx->events[ev] == NULL) {
        return DP_OK;
    }
    DP_CUDA_TRY(cudaStreamWaitEvent(ctx->streams[who], ctx->events[ev], 0));
    return DP_OK;
}

extern "C" void *dp_cuda_event_handle(dp_cuda_ctx *ctx, int ev)
{
    if (ctx == NULL || ev < 0 || ev >= DP_CUDA_MAX_EVENTS) {
        return NULL;
    }
    return ctx->events[ev];
}

extern "C" dp_status dp_cuda_event_sync(dp_cuda_ctx *ctx, int ev)
{
    DP_TRY(check_event(ev, "cuda event sync"));
    if (ctx->events[ev] == NULL) {
        return DP_OK;
    }
    DP_CUDA_TRY(cudaEventSynchronize(ctx->events[ev]));
    return DP_OK;
}

extern "C" dp_status dp_cuda_stream_sync(dp_cuda_ctx *ctx, dp_cuda_stream_id which)
{
    DP_TRY(check_stream_id(which, "cuda stream sync"));
    DP_CUDA_TRY(cudaStreamSynchronize(ctx->streams[which]));
    return DP_OK;
}

// cudaGetLastError returns (and clears) a launch error; a stream query returns a sticky error of
// the context (an illegal address in a kernel that already ran), and cudaErrorNotReady only
// says that work is still in flight.
extern "C" dp_status dp_cuda_check(dp_cuda_ctx *ctx, const char *what)
{
    const char *w = what != NULL ? what : "cuda check";
    cudaError_t e = cudaGetLastError();
    for (int s = 0; e == cudaSuccess && s < 3; s++) {
        e = cudaStreamQuery(ctx->streams[s]);
        if (e == cudaErrorNotReady) {
            e = cudaSuccess;
        }
    }
    if (e != cudaSuccess) {
        return dp_error_set(DP_ERR_CUDA, "%s: device %d: %s (%s)", w, ctx->params.device,
                            cudaGetErrorString(e), cudaGetErrorName(e));
    }
    return DP_OK;
}
