// The CUDA backend's own element-wise, normalization and pooling kernels: the device versions of
// src/nn/cpu/{activation,batchnorm,bn_act,pool,elementwise}.h, each named after the CPU function
// it mirrors (dp_cpu_x -> dp_cuda_x), plus storage casts and NCHW <-> NHWC transposes. Not here:
// convolutions and GEMMs (dnn/), loss, dropout and optimizers (step/). C ABI, no CUDA types.
//
// Conventions (cuda_ctx.h): ctx comes first, then the CPU function's arguments with device
// pointers, then `layout` where channels matter and `dtype`, the storage type of activations and
// their gradients (void * below; float math everywhere). Parameters and statistics (gamma, beta,
// running mean and variance, PReLU slopes, their gradients, save_mean/save_inv_std, coef) are
// float32 in every mode. Every launcher checks its arguments on the host (DP_ERR_ARG or
// DP_ERR_SHAPE with the CPU's messages) before it enqueues anything on ctx's compute stream, and
// returns without synchronizing the host (DP_ERR_CUDA for a failed launch).
//
// Determinism: no atomics anywhere. Per-channel sums (batch-norm statistics and gradients, PReLU
// slope gradients) go through a fixed two-level tree: float partial sums per thread over a fixed
// chunk of the channel, double across threads and chunks, the chunking a function of the shape
// only. So the same call gives the same bits run after run, on any GPU. Pooling backward gathers
// into each input element in the CPU's order, so it is exact too.
//
// Accuracy against the CPU on the same float32 inputs: pooling, shortcut, channel copy, crop,
// PReLU forward, batch-norm eval and the casts give the CPU's bits; activations agree to a few
// ulp (the device's expf, tanhf, erfcf); batch-norm statistics and gradients to about 1e-6
// relative (another summation order).
#ifndef DP_NN_CUDA_OPS_H
#define DP_NN_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/cpu/activation.h"
#include "nn/cpu/batchnorm.h"
#include "nn/cpu/bn_act.h"
#include "nn/cpu/elementwise.h"
#include "nn/cpu/pool.h"
#include "nn/cuda/cuda_ctx.h"

DP_EXTERN_C_BEGIN

// --- activations (cpu/activation.h) ---

// y[i] = f(x[i]), the CPU's formulas and thresholds. y may equal x. DP_ACT_PRELU is refused
// (dp_cuda_prelu_forward), as on the CPU.
//   y, x (n) dtype, device, any layout
DP_MUST_CHECK dp_status dp_cuda_act_forward(dp_cuda_ctx *ctx, void *y, const void *x, size_t n,
                                            dp_act act, float slope, dp_cuda_dtype dtype);

// dx[i] = dy[i] f'(x or y) as dp_cpu_act_backward (x when dp_act_backward_needs_input(act), else
// y; the other may be NULL). dx may equal dy.
//   dx, dy, x, y (n) dtype, device
DP_MUST_CHECK dp_status dp_cuda_act_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                             const void *x, const void *y, size_t n, dp_act act,
                                             float slope, dp_cuda_dtype dtype);

// PReLU: y = x > 0 ? x : slope[c] x.
//   y, x  (N, C, hw) in layout, dtype, device; y may equal x
//   slope (C) float, device
DP_MUST_CHECK dp_status dp_cuda_prelu_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                              const float *slope, int N, int C, size_t hw,
                                              dp_cuda_layout layout, dp_cuda_dtype dtype);

// Scratch of dp_cuda_prelu_backward (bytes, device): the per-chunk partial sums.
size_t dp_cuda_prelu_workspace_bytes(int N, int C, size_t hw, dp_cuda_layout layout);

// dx (+)= dy (x > 0 ? 1 : slope[c]); dslope[c] (+)= sum over x <= 0 of dy x (accum as the CPU:
// DP_ACCUM_DX, DP_ACCUM_DPARAMS).
//   dx        (N, C, hw) dtype, device, or NULL; may equal dy unless accumulating
//   dslope    (C) float, device
//   dy, x     (N, C, hw) dtype, device;  slope (C) float, device
//   workspace dp_cuda_prelu_workspace_bytes(...) bytes, device
DP_MUST_CHECK dp_status dp_cuda_prelu_backward(dp_cuda_ctx *ctx, void *dx, float *dslope,
                                               const void *dy, const void *x, const float *slope,
                                               int N, int C, size_t hw, unsigned accum,
                                               dp_cuda_layout layout, dp_cuda_dtype dtype,
                                               void *workspace);

// --- batch norm (cpu/batchnorm.h and cpu/bn_act.h) ---
// p->N, C, H, W are the dims of x in `layout`; ghost batch norm calls these once per micro-batch
// slice (pointers at the slice's first sample: contiguous in both layouts).

// Scratch of the training forward and of every backward below (bytes, device).
size_t dp_cuda_bn_workspace_bytes(const dp_bn_params *p, dp_cuda_layout layout);

// Batch statistics, the device form of dp_cpu_bn_plane_stats + dp_cpu_bn_stats_finish: mean and
// biased variance per channel (Welford per thread, Chan's combination in double by the fixed
// tree), save_inv_std = 1 / sqrt(var + eps), the running statistics updated with momentum and
// the unbiased variance as the CPU (NULL to skip), and scale[c] = gamma[c] save_inv_std[c] in
// float when scale is not NULL (gamma is then required): the input of dp_cuda_bn_act_forward.
//   save_mean, save_inv_std (C) float, device, written
//   running_mean, running_var (C) float, device, updated, or NULL
//   scale (C) float, device, written, or NULL;  gamma (C) float, device, or NULL
//   z (N, C, H, W) in layout, dtype, device
// DP_ERR_SHAPE when N H W < 2, as the CPU.
DP_MUST_CHECK dp_status dp_cuda_bn_stats(dp_cuda_ctx *ctx, float *save_mean, float *save_inv_std,
                                         float *running_mean, float *running_var, float *scale,
                                         const void *z, const float *gamma, const dp_bn_params *p,
                                         dp_cuda_layout layout, dp_cuda_dtype dtype,
                                         void *workspace);

// scale[c] = gamma[c] / sqrt(running_var[c] + eps) in double, as the CPU's evaluation: with
// mean = running_mean and shift = beta, dp_cuda_bn_act_forward is then the eval forward.
//   scale (C) float, device, written;  gamma, running_var (C) float, device
DP_MUST_CHECK dp_status dp_cuda_bn_eval_scale(dp_cuda_ctx *ctx, float *scale, const float *gamma,
                                              const float *running_var, int C, float eps);

// dp_cpu_bn_act_forward: y = act(a), a = (z - mean[c]) scale[c] + shift[c] (any activation but
// prelu). a: the activation's input, written when not NULL (may not equal z); y may equal z.
//   y, a, z (N, C, H, W) in layout, dtype, device;  mean, scale, shift (C) float, device
DP_MUST_CHECK dp_status dp_cuda_bn_act_forward(dp_cuda_ctx *ctx, void *y, void *a, const void *z,
                                               const float *mean, const float *scale,
                                               const float *shift, dp_act act, float slope,
                                               const dp_bn_params *p, dp_cuda_layout layout,
                                               dp_cuda_dtype dtype);

// dp_cpu_bn_act_backward_coef: g = dy act'(y) (act linear, relu or leaky: dp_bn_act_fusable;
// y may be NULL for linear); dbeta (+)= sum g, dgamma (+)= sum g xhat (DP_ACCUM_DPARAMS adds),
// and coef (C, 4) of the map dz = coef[4c] g + coef[4c+1] (z - coef[4c+3]) + coef[4c+2].
//   coef (C, 4) float, device, written;  dgamma, dbeta (C) float, device
//   dy, y, z (N, C, H, W) in layout, dtype, device
//   gamma, save_mean, save_inv_std (C) float, device
DP_MUST_CHECK dp_status dp_cuda_bn_act_backward_coef(
    dp_cuda_ctx *ctx, float *coef, float *dgamma, float *dbeta, const void *dy, const void *y,
    const void *z, const float *gamma, const float *save_mean, const float *save_inv_std,
    dp_act act, float slope, const dp_bn_params *p, unsigned accum, dp_cuda_layout layout,
    dp_cuda_dtype dtype, void *workspace);

// dp_cpu_bn_act_backward_apply: dz (+)= the map above (accumulate: add into dz). dz may equal dy
// when not accumulating.
//   dz, dy, y, z (N, C, H, W) in layout, dtype, device;  coef (C, 4) float, device
DP_MUST_CHECK dp_status dp_cuda_bn_act_backward_apply(dp_cuda_ctx *ctx, void *dz, const void *dy,
                                                      const void *y, const void *z,
                                                      const float *coef, dp_act act, float slope,
                                                      const dp_bn_params *p, int accumulate,
                                                      dp_cuda_layout layout, dp_cuda_dtype dtype);

// The unfused kernels of cpu/batchnorm.h, built from the ones above (the reference the layers
// need not call): training forward (statistics, running update, normalize), eval forward with
// the running statistics, and backward (dx, dgamma, dbeta with accum as the CPU). The eval
// forward needs no workspace; it computes the per-channel scale itself.
//   y, x, dx, dy (N, C, H, W) in layout, dtype, device (y may equal x; dx may be NULL)
//   the rest (C) float, device
DP_MUST_CHECK dp_status dp_cuda_bn_forward_train(dp_cuda_ctx *ctx, void *y, float *save_mean,
                                                 float *save_inv_std, float *running_mean,
                                                 float *running_var, const void *x,
                                                 const float *gamma, const float *beta,
                                                 const dp_bn_params *p, dp_cuda_layout layout,
                                                 dp_cuda_dtype dtype, void *workspace);
DP_MUST_CHECK dp_status dp_cuda_bn_forward_eval(dp_cuda_ctx *ctx, void *y, const void *x,
                                                const float *gamma, const float *beta,
                                                const float *running_mean, const float *running_var,
                                                const dp_bn_params *p, dp_cuda_layout layout,
                                                dp_cuda_dtype dtype);
DP_MUST_CHECK dp_status dp_cuda_bn_backward(dp_cuda_ctx *ctx, void *dx, float *dgamma, float *dbeta,
                                            const void *dy, const void *x, const float *gamma,
                                            const float *save_mean, const float *save_inv_std,
                                            const dp_bn_params *p, unsigned accum,
                                            dp_cuda_layout layout, dp_cuda_dtype dtype,
                                            void *workspace);

// --- pooling (cpu/pool.h): p resolved by dp_pool_params_resolve ---

// Max pooling, Darknet's padding, the first maximum in window scan order, NaN propagates.
//   y      (N, C, out_h, out_w) in layout, dtype, device, written
//   argmax (N, C, out_h, out_w) int32 in layout, device, written: h W + w inside the input plane
//          (the same values in both layouts, as the CPU's)
//   x      (N, C, H, W) in layout, dtype, device
DP_MUST_CHECK dp_status dp_cuda_maxpool_forward(dp_cuda_ctx *ctx, void *y, int32_t *argmax,
                                                const void *x, const dp_pool_params *p,
                                                dp_cuda_layout layout, dp_cuda_dtype dtype);

// dx = 0 (unless accumulate), then dx[argmax] += dy: each input element gathers the outputs of
// the windows covering it, in the CPU's order (no atomics). An argmax outside its window (it
// cannot come from the forward) is ignored rather than reported: the device cannot stop.
//   dx (N, C, H, W), dy (N, C, out_h, out_w) in layout, dtype, device; argmax as above
DP_MUST_CHECK dp_status dp_cuda_maxpool_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                                 const int32_t *argmax, const dp_pool_params *p,
                                                 int accumulate, dp_cuda_layout layout,
                                                 dp_cuda_dtype dtype);

// Average pooling (count_include_pad as the CPU), forward and backward (gather, CPU order).
//   y, dy (N, C, out_h, out_w);  x, dx (N, C, H, W); in layout, dtype, device
DP_MUST_CHECK dp_status dp_cuda_avgpool_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                                const dp_pool_params *p, dp_cuda_layout layout,
                                                dp_cuda_dtype dtype);
DP_MUST_CHECK dp_status dp_cuda_avgpool_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                                 const dp_pool_params *p, int accumulate,
                                                 dp_cuda_layout layout, dp_cuda_dtype dtype);

// Global average pooling: y[n, c] = mean of plane (n, c), summed as the CPU's dp__sum (float
// lanes per block of 256, blocks in double), one thread per plane.
//   y (N, C) dtype, device, written (the same in both layouts);  x (N, C, hw) in layout, dtype
DP_MUST_CHECK dp_status dp_cuda_global_avgpool_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                                       int N, int C, size_t hw,
                                                       dp_cuda_layout layout, dp_cuda_dtype dtype);
// dx[n, c, i] (+)= dy[n, c] / hw.
//   dx (N, C, hw) in layout, dtype, device;  dy (N, C) dtype, device
DP_MUST_CHECK dp_status dp_cuda_global_avgpool_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                                        int N, int C, size_t hw, int accumulate,
                                                        dp_cuda_layout layout, dp_cuda_dtype dtype);

// --- shortcut, route, crop (cpu/elementwise.h) ---

// Darknet's shortcut with the different-shape rule of dp_cpu_shortcut_forward.
//   y, x (N, C, H, W), from (N, from_C, from_H, from_W); in layout, dtype, device; y may equal x
DP_MUST_CHECK dp_status dp_cuda_shortcut_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                                 const void *from, const dp_shortcut_params *p,
                                                 dp_cuda_layout layout, dp_cuda_dtype dtype);
// dx (+)= alpha dy; dfrom (+)= beta dy at the sampled positions, 0 elsewhere unless accumulating.
//   dx, dfrom: device or NULL when not needed
DP_MUST_CHECK dp_status dp_cuda_shortcut_backward(dp_cuda_ctx *ctx, void *dx, void *dfrom,
                                                  const void *dy, const dp_shortcut_params *p,
                                                  int accumulate_dx, int accumulate_dfrom,
                                                  dp_cuda_layout layout, dp_cuda_dtype dtype);

// Same-shape shortcut with its activation (linear, relu, leaky): y = act(alpha x + beta from).
// Element-wise, so any layout (x, from and y share it).
//   y, x, from (N, C, H, W) dtype, device; y may equal x
DP_MUST_CHECK dp_status dp_cuda_shortcut_act_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                                     const void *from, const dp_shortcut_params *p,
                                                     dp_act act, float slope, dp_cuda_dtype dtype);
// g = dy act'(y); dx (+)= alpha g, dfrom (+)= beta g (either may be NULL).
DP_MUST_CHECK dp_status dp_cuda_shortcut_act_backward(dp_cuda_ctx *ctx, void *dx, void *dfrom,
                                                      const void *dy, const void *y,
                                                      const dp_shortcut_params *p, dp_act act,
                                                      float slope, int accumulate_dx,
                                                      int accumulate_dfrom, dp_cuda_dtype dtype);

// dst[n, dst_c0 + c, :] (+)= src[n, src_c0 + c, :] for c < count (route forward and backward).
//   dst (N, dst_C, hw), src (N, src_C, hw) in layout, dtype, device
DP_MUST_CHECK dp_status dp_cuda_channel_copy(dp_cuda_ctx *ctx, void *dst, int dst_C, int dst_c0,
                                             const void *src, int src_C, int src_c0, int count,
                                             int N, size_t hw, int accumulate,
                                             dp_cuda_layout layout, dp_cuda_dtype dtype);

// Crop forward and backward (dx = 0 outside the window unless accumulate).
//   y, dy (N, C, out_h, out_w);  x, dx (N, C, H, W); in layout, dtype, device
DP_MUST_CHECK dp_status dp_cuda_crop_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                             const dp_crop_params *p, dp_cuda_layout layout,
                                             dp_cuda_dtype dtype);
DP_MUST_CHECK dp_status dp_cuda_crop_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                              const dp_crop_params *p, int accumulate,
                                              dp_cuda_layout layout, dp_cuda_dtype dtype);

// --- storage conversions ---

// dst[i] = src[i] converted (round to nearest even into bf16/fp16; fp16 overflows to inf as a
// cast does). dst may equal src when both types have the same size.
//   dst (n) dst_type, device;  src (n) src_type, device
DP_MUST_CHECK dp_status dp_cuda_cast(dp_cuda_ctx *ctx, void *dst, dp_cuda_dtype dst_type,
                                     const void *src, dp_cuda_dtype src_type, size_t n);

// Layout change with an optional cast in the same pass (e.g. the float NCHW input batch into
// the network's bf16 NHWC), tiled through shared memory so both sides are coalesced. With
// dst_layout == src_layout it is dp_cuda_cast. dst may not overlap src.
//   dst (N, C, hw) in dst_layout, dst_type, device;  src (N, C, hw) in src_layout, src_type
DP_MUST_CHECK dp_status dp_cuda_convert(dp_cuda_ctx *ctx, void *dst, dp_cuda_layout dst_layout,
                                        dp_cuda_dtype dst_type, const void *src,
                                        dp_cuda_layout src_layout, dp_cuda_dtype src_type, int N,
                                        int C, size_t hw);

DP_EXTERN_C_END

#endif
