// Convolutions through cuDNN and fully connected layers through cuBLAS, the CUDA twins of
// src/nn/cpu/conv.h and src/nn/cpu/dense.h (same parameters, same weight layout, same results
// within the tolerance of the precision). A plan per layer and shape is built once when the
// network is planned: descriptors, algorithms and workspace needs are fixed there, so the step
// loop only enqueues work. Not here: batch norm, activations, pooling (ops.h); casts of the
// activations between precisions (ops.h). C ABI, no CUDA types.
//
// Conventions (cuda_ctx.h): pointers marked "device" are device memory of the plan's device;
// launchers enqueue on the context's compute stream and return without synchronizing the host.
// Activations and their gradients are stored in the plan's dtype (float32, bfloat16 or float16)
// and layout (NCHW or NHWC); weights, biases and their gradients are float32 master copies in
// the CPU's layout, the flat parameter and gradient buffers of the network. All math
// accumulates in float32. Every launcher returns DP_ERR_ARG for a NULL tensor or a workspace
// that is too small or not 256-byte aligned (checked before anything is enqueued), and
// DP_ERR_CUDA with the library's message and the failing call otherwise. A plan is used by one
// thread at a time and lives no longer than its context.
#ifndef DP_NN_CUDA_DNN_DNN_H
#define DP_NN_CUDA_DNN_DNN_H

#include <stddef.h>

#include "core/status.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/conv.h"
#include "nn/cpu/dense.h"
#include "nn/cuda/cuda_ctx.h"

DP_EXTERN_C_BEGIN

// Alignment every workspace pointer given to the launchers must have (dp_cuda_malloc gives it;
// the network's arena keeps its offsets to it).
enum { DP_CUDA_WS_ALIGN = 256 };

// --- convolution (cuDNN) ---

typedef struct dp_cuda_conv_plan dp_cuda_conv_plan;

// Algorithms whose workspace exceeds this are not considered: the network shares one
// workspace of the largest need among its plans, and an FFT algorithm asking for gigabytes
// would take that memory from the activations.
#define DP_CUDA_CONV_WS_LIMIT_BYTES ((size_t)1 << 30)

// What a plan chose, for logs and tests. The algorithm numbers are cuDNN's
// (cudnnConvolutionFwdAlgo_t, ...BwdDataAlgo_t, ...BwdFilterAlgo_t) and the math types
// cudnnMathType_t (0 default, 1 tensor op, 2 tensor op with conversion, 3 FMA only).
typedef struct dp_cuda_conv_plan_info {
    int fwd_algo, bwd_data_algo, bwd_filter_algo;
    int fwd_math, bwd_data_math, bwd_filter_math;
    int deterministic;        // 1: all three algorithms are deterministic ones
    int weight_copy;          // 1: kernels read the plan's copy of the weights (cast_weights)
    size_t workspace_bytes;   // dp_cuda_conv_plan_workspace_bytes
    size_t weight_copy_bytes; // device memory the plan holds for the copy (0 without one)
} dp_cuda_conv_plan_info;

// Builds the plan of one convolution for the shape p (checked and resolved on a copy with
// dp_conv_params_resolve; N is the batch the launchers will see) with activations stored as
// dtype in layout. Chooses one algorithm for each of forward, backward data and backward
// filter among those whose workspace fits DP_CUDA_CONV_WS_LIMIT_BYTES:
//   - deterministic context: the first deterministic algorithm of cuDNN's heuristics
//     (cudnnGet*_v7), or if they offer none, the deterministic algorithm of the lowest number
//     among those cudnnFind* runs successfully: choices that do not depend on timing, so
//     every run picks the same algorithms and rounds the same way;
//   - otherwise: the fastest measured by cudnnFind* (runs every algorithm once on scratch
//     buffers cuDNN allocates itself, as large as the tensors plus each algorithm's workspace;
//     blocks the host). Build the plans before allocating the network's arena, and never
//     in the step loop.
// Math: float32 storage under precision fp32 runs FMA-only kernels (CUDNN_FMA_MATH: cuDNN's
// default math would allow TF32 on Ampere and later); float32 under any other precision allows
// TF32 tensor cores; bf16 and fp16 storage use tensor cores with float32 accumulation.
// The plan keeps a copy of the weights in dtype and the filter layout cuDNN wants (KRSC for
// NHWC) unless the master weights can be read as they are (float32, and NCHW or a 1x1
// window); that copy is allocated here and refreshed by dp_cuda_conv_plan_cast_weights.
// Returns DP_ERR_ARG/DP_ERR_SHAPE for bad params (messages of dp_conv_params_resolve),
// DP_ERR_UNSUPPORTED for a tensor over 2^31 elements or when no algorithm of cuDNN fits, and
// DP_ERR_CUDA/DP_ERR_NOMEM for library and allocation failures. *out is NULL on error.
DP_MUST_CHECK dp_status dp_cuda_conv_plan_create(dp_cuda_conv_plan **out, dp_cuda_ctx *ctx,
                                                 const dp_conv_params *p, dp_cuda_dtype dtype,
                                                 dp_cuda_layout layout);
void dp_cuda_conv_plan_destroy(dp_cuda_conv_plan *plan); // NULL is a no-op

// Bytes of device workspace the three launchers need (the max over them, own scratch
// included). The network allocates one workspace of the max over all its plans.
size_t dp_cuda_conv_plan_workspace_bytes(const dp_cuda_conv_plan *plan);
void dp_cuda_conv_plan_get_info(const dp_cuda_conv_plan *plan, dp_cuda_conv_plan_info *info);
const dp_conv_params *dp_cuda_conv_plan_params(const dp_cuda_conv_plan *plan); // resolved

// Refreshes the plan's weight copy from the master weights: call it once after every change of
// w (initialization, load, optimizer step) and before the next forward. A no-op (DP_OK)
// for plans without a copy.
//   w (K, C / groups, R, S) float32, device
DP_MUST_CHECK dp_status dp_cuda_conv_plan_cast_weights(dp_cuda_conv_plan *plan, const float *w);

// y = conv(x, w) + bias.
//   y    (N, K, out_h, out_w) in the plan's layout and dtype, device, written
//   x    (N, C, H, W) in the plan's layout and dtype, device
//   w    (K, C / groups, R, S) float32, device: the master weights (read only by plans
//        without a copy; the others read the copy made by the last cast_weights)
//   bias (K) float32, device, or NULL for no bias
//   ws   device workspace of ws_bytes >= dp_cuda_conv_plan_workspace_bytes(plan)
DP_MUST_CHECK dp_status dp_cuda_conv_forward(dp_cuda_conv_plan *plan, void *y, const void *x,
                                             const float *w, const float *bias, void *ws,
                                             size_t ws_bytes);

// dx = conv^T(dy, w), or dx += that when accumulate != 0 (cuDNN's beta = 1).
//   dx (N, C, H, W), dy (N, K, out_h, out_w): plan's layout and dtype, device
//   w  as for dp_cuda_conv_forward
DP_MUST_CHECK dp_status dp_cuda_conv_backward_data(dp_cuda_conv_plan *plan, void *dx,
                                                   const void *dy, const float *w, int accumulate,
                                                   void *ws, size_t ws_bytes);

// dw = sum over the batch of the filter gradient, db[k] = sum of dy over n, h, w; or both
// added to what is there when accumulate != 0. Plans without a weight copy have cuDNN write
// dw directly (beta = accumulate). The others have cuDNN write the gradient in the plan's
// dtype and filter layout into the workspace (cuDNN's legacy API wants the same type for x,
// dy and dw), then a kernel converts it to float32 KCRS and adds it to dw: a bf16/fp16 filter
// gradient is rounded once to that type before it reaches the float32 master gradient, as
// PyTorch's autocast does. db is a fixed two-pass reduction (float per thread, double across
// blocks), the same bits on every run.
//   dw (K, C / groups, R, S) float32, device
//   db (K) float32, device, or NULL when the convolution has no bias
//   dy (N, K, out_h, out_w), x (N, C, H, W): plan's layout and dtype, device
DP_MUST_CHECK dp_status dp_cuda_conv_backward_filter(dp_cuda_conv_plan *plan, float *dw, float *db,
                                                     const void *dy, const void *x, int accumulate,
                                                     void *ws, size_t ws_bytes);

// --- fully connected (cuBLAS) ---

typedef struct dp_cuda_dense_plan dp_cuda_dense_plan;

// Builds the plan of y = x W^T + b for the dims p with x, y, dx, dy stored as dtype. Math:
// float32 storage under precision fp32 is strict float32 (CUBLAS_COMPUTE_32F_PEDANTIC, whatever
// the handle's math mode), float32 under another precision TF32 (CUBLAS_COMPUTE_32F_FAST_TF32);
// bf16/fp16 use tensor cores with float32 accumulation (CUBLAS_COMPUTE_32F). For bf16/fp16 the
// plan allocates a copy of W in that type (dp_cuda_dense_plan_cast_weights). cuBLAS runs with
// the fixed workspace the context gave its handle, so it picks the same kernels (split-K
// included) for the same GEMM on every run: deterministic. Returns DP_ERR_ARG
// for a dim < 1, DP_ERR_NOMEM/DP_ERR_CUDA on allocation failure. *out is NULL on error.
DP_MUST_CHECK dp_status dp_cuda_dense_plan_create(dp_cuda_dense_plan **out, dp_cuda_ctx *ctx,
                                                  const dp_dense_params *p, dp_cuda_dtype dtype);
void dp_cuda_dense_plan_destroy(dp_cuda_dense_plan *plan); // NULL is a no-op
// Bytes of device workspace of the launchers (the bias gradient's partial sums).
size_t dp_cuda_dense_plan_workspace_bytes(const dp_cuda_dense_plan *plan);

// As dp_cuda_conv_plan_cast_weights. w (out, in) float32, device.
DP_MUST_CHECK dp_status dp_cuda_dense_plan_cast_weights(dp_cuda_dense_plan *plan, const float *w);

// y = x W^T + b (dp_cpu_dense_forward).
//   y (N, out) row-major, dtype, device, written
//   x (N, in) row-major, dtype, device: an activation flattened in NCHW order (C H W per
//     sample); an NHWC activation with H W > 1 must be transposed to NCHW first
//   w (out, in) row-major float32, device (master; plans with a copy read the copy)
//   b (out) float32, device, or NULL
//   ws device workspace of ws_bytes >= dp_cuda_dense_plan_workspace_bytes(plan)
DP_MUST_CHECK dp_status dp_cuda_dense_forward(dp_cuda_dense_plan *plan, void *y, const void *x,
                                              const float *w, const float *b, void *ws,
                                              size_t ws_bytes);

// dx = dy W, dW = dy^T x (float32 output straight from cuBLAS, bf16/fp16 inputs included),
// db = sum over samples of dy (the fixed reduction of dp_cuda_conv_backward_filter). accum
// (DP_ACCUM_*): DP_ACCUM_DX adds to dx, DP_ACCUM_DPARAMS adds to dw and db.
//   dx (N, in) dtype, device, or NULL when not needed (first layer)
//   dw (out, in) float32, device;  db (out) float32, device, or NULL
//   dy (N, out) dtype, device;  x (N, in) dtype, device: the forward input
//   w  (out, in) float32, device, as for dp_cuda_dense_forward
DP_MUST_CHECK dp_status dp_cuda_dense_backward(dp_cuda_dense_plan *plan, void *dx, float *dw,
                                               float *db, const void *dy, const void *x,
                                               const float *w, unsigned accum, void *ws,
                                               size_t ws_bytes);

DP_EXTERN_C_END

#endif
