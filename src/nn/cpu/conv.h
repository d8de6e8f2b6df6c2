// 2-D convolution on the CPU, float32 NCHW: forward, backward-data, backward-filter (+ bias) for
// any kernel, stride, zero padding, dilation and groups; the reference of the CUDA kernels. No
// allocation: the im2col scratch is the caller's (dp_cpu_conv_workspace_bytes). im2col + one
// cblas_sgemm per image and group; 1x1 stride-1 unpadded convolutions multiply the input
// directly; depthwise-style groups (one input channel each) run direct loops, since their GEMMs
// would have one row. Per-image beat batched im2col here: see benchmarks/bench_conv.c.
#ifndef DP_NN_CPU_CONV_H
#define DP_NN_CPU_CONV_H

#include <stddef.h>

#include "core/status.h"
#include "core/threadpool.h"
#include "nn/cpu/activation.h"

DP_EXTERN_C_BEGIN

// Dims of one convolution. Input x (N, C, H, W) NCHW; weights (K, C / groups, R, S) as PyTorch;
// output y (N, K, out_h, out_w) NCHW. Padding is zero padding of pad_h rows above and below and
// pad_w columns left and right. out_h and out_w are set by dp_conv_params_resolve.
typedef struct dp_conv_params {
    int N, C, H, W;         // input dims
    int K, R, S;            // filters, window rows, window columns
    int stride_h, stride_w; // >= 1
    int pad_h, pad_w;       // >= 0, each side
    int dil_h, dil_w;       // >= 1 (1: dense window)
    int groups;             // >= 1, divides C and K; groups == C == K is depthwise
    int out_h, out_w;       // output dims, derived
} dp_conv_params;

// Defaults that make an unset field detectable (N = 0 is rejected) and leave stride, dilation
// and groups at 1.
#define DP_CONV_PARAMS_INIT                                                                        \
    {                                                                                              \
        .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1, .groups = 1                          \
    }

// Checks every dim and sets p->out_h = (H + 2 pad_h - dil_h (R - 1) - 1) / stride_h + 1 (and
// likewise out_w). Returns DP_ERR_ARG for a dim out of range (N, C, H, W, K, R, S, strides and
// dilations < 1, negative padding) and DP_ERR_SHAPE when groups does not divide C and K or the
// dilated window is larger than the padded input; the message names the field and its value.
DP_MUST_CHECK dp_status dp_conv_params_resolve(dp_conv_params *p);

// Bytes of scratch the three kernels need for p (resolved): the im2col columns of one image and
// group, (C / groups * R * S, out_h * out_w) floats; 0 for the 1x1 stride-1 unpadded case and
// the depthwise path.
size_t dp_cpu_conv_workspace_bytes(const dp_conv_params *p);

// y = conv(x, w) + bias.
//   y    (N, K, out_h, out_w) NCHW, host, written
//   x    (N, C, H, W) NCHW, host
//   w    (K, C / groups, R, S), host
//   bias (K), host, or NULL for no bias
//   ws   host scratch of ws_bytes >= dp_cpu_conv_workspace_bytes(p) (may be NULL if that is 0)
// Returns DP_ERR_ARG for a NULL tensor, unresolved params or a workspace too small.
DP_MUST_CHECK dp_status dp_cpu_conv_forward(float *y, const float *x, const float *w,
                                            const float *bias, const dp_conv_params *p, float *ws,
                                            size_t ws_bytes);

// dx = conv^T(dy, w), or dx += that when accumulate != 0 (several consumers of x).
//   dx (N, C, H, W) NCHW, host
//   dy (N, K, out_h, out_w) NCHW, host
//   w  (K, C / groups, R, S), host
//   ws as for dp_cpu_conv_forward
DP_MUST_CHECK dp_status dp_cpu_conv_backward_data(float *dx, const float *dy, const float *w,
                                                  const dp_conv_params *p, int accumulate,
                                                  float *ws, size_t ws_bytes);

// dw = sum over the batch of dy (x)^T in im2col form, db[k] = sum of dy over n, h, w; or both
// added to the existing values when accumulate != 0 (micro-batch gradient accumulation). The
// sum over images runs in image order inside the GEMM (beta = 1), so it is deterministic.
//   dw (K, C / groups, R, S), host
//   db (K), host, or NULL when the convolution has no bias
//   dy (N, K, out_h, out_w) NCHW, host
//   x  (N, C, H, W) NCHW, host: the forward input
//   ws as for dp_cpu_conv_forward
DP_MUST_CHECK dp_status dp_cpu_conv_backward_filter(float *dw, float *db, const float *dy,
                                                    const float *x, const dp_conv_params *p,
                                                    int accumulate, float *ws, size_t ws_bytes);

// --- batch kernels on a thread pool (the layers' path) ---
// The same operations over the batch, split across the threads of pool (NULL: the caller
// alone): one task per image forward, one per chunk of images backward with a partial filter
// gradient per chunk, added in chunk order. Chunks depend on N and the weight count only, so
// every result is bitwise the same for any thread count and schedule. Where the build has
// AVX2/FMA (-Dnative), stride 1 and groups 1 (with pad <= dil (window - 1)) run direct kernels
// on padded planes, and other groups-1 convolutions feed im2col columns to the same
// micro-kernels; grouped ones, and builds without AVX2/FMA, run the per-image kernels above.
// OpenBLAS must run 1 thread (the pool is the parallelism; dp_blas_set_threads sees to that).

// What the forward pass does to each image's output while it is in cache (bn_act.h), in
// this order: batch-norm plane statistics of the raw output; the affine map
// y = (y - mean[k]) scale[k] + shift[k] (evaluation-mode batch norm); the activation.
typedef struct dp_conv_epilogue {
    double *plane_stats;        // (N, K, 2), host, or NULL: dp_cpu_bn_plane_stats of each image
    const float *mean;          // (K), host, or NULL (then scale and shift are not used)
    const float *scale, *shift; // (K), host
    dp_act act;                 // DP_ACT_LINEAR: none; not DP_ACT_PRELU
    float slope;                // leaky's
} dp_conv_epilogue;

// The gradient the backward pass convolves, when it is a map of the layer's output gradient
// dy rather than dy itself (batch norm + activation, bn_act.h): per output channel k,
// dz = coef[4k] g + coef[4k+1] (z - coef[4k+3]) + coef[4k+2] with g = dy act'(y). dz is
// formed image by image while dy is packed, and never stored.
typedef struct dp_conv_dy_map {
    const float *y, *z; // (N, K, out_h, out_w), host: the layer's output and raw output
    const float *coef;  // (K, 4), host (dp_cpu_bn_act_backward_coef)
    dp_act act;         // linear, relu or leaky (dp_bn_act_fusable)
    float slope;
} dp_conv_dy_map;

// Workspace bytes of both pool kernels for p (resolved, N included) on `threads` threads.
size_t dp_cpu_conv_pool_workspace_bytes(const dp_conv_params *p, int threads);

// y = conv(x, w) + bias, as dp_cpu_conv_forward, then the epilogue ep (NULL: none).
//   ws  host scratch of ws_bytes >= dp_cpu_conv_pool_workspace_bytes(p, size of pool)
// Returns DP_ERR_ARG for a NULL tensor, unresolved params, a bad epilogue activation or a
// workspace too small.
DP_MUST_CHECK dp_status dp_cpu_conv_forward_pool(float *y, const float *x, const float *w,
                                                 const float *bias, const dp_conv_params *p,
                                                 const dp_conv_epilogue *ep, dp_threadpool *pool,
                                                 void *ws, size_t ws_bytes);

// Backward data and filter (and bias) in one pass over the batch:
//   dx  (N, C, H, W): conv^T(dz, w), added when accum has DP_ACCUM_DX; NULL: not computed
//   dw  (K, C / groups, R, S), db (K) or NULL: added when accum has DP_ACCUM_DPARAMS
//   dy  (N, K, out_h, out_w): dz itself (map NULL), or what map turns into dz
//   x   (N, C, H, W): the forward input; w (K, C / groups, R, S)
//   map NULL, or the map from dy to dz (then db must be NULL)
//   ws  as for dp_cpu_conv_forward_pool
DP_MUST_CHECK dp_status dp_cpu_conv_backward_pool(float *dx, float *dw, float *db, const float *dy,
                                                  const float *x, const float *w,
                                                  const dp_conv_params *p,
                                                  const dp_conv_dy_map *map, unsigned accum,
                                                  dp_threadpool *pool, void *ws, size_t ws_bytes);

// --- building blocks (exported for the benchmarks and the tests) ---

// Unfolds channels [0, C) of one image into columns.
//   col (C * R * S, out_h * out_w) row-major with row stride ldcol >= out_h * out_w floats
//       (larger to place several images side by side), host, written; row (c * R + r) * S + s
//   x   (C, H, W), host: one image (or one group of its channels)
// The window dims, strides, padding and dilation come from p; p->C is not used.
void dp_cpu_conv_im2col(float *col, size_t ldcol, const float *x, int C, const dp_conv_params *p);

// Folds columns back: x += col2im(col), the adjoint of dp_cpu_conv_im2col.
//   x   (C, H, W), host, accumulated into
//   col (C * R * S, out_h * out_w) row-major with row stride ldcol, host
void dp_cpu_conv_col2im(float *x, const float *col, size_t ldcol, int C, const dp_conv_params *p);

DP_EXTERN_C_END

#endif
