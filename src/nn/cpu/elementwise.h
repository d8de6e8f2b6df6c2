// Data-movement kernels on the CPU for the graph layers, float32 NCHW: Darknet's shortcut
// (residual add, with strided sampling when the spatial sizes differ), channel copies for route
// (concatenation and its backward, channel groups), and crop. Need no workspace.
#ifndef DP_NN_CPU_ELEMENTWISE_H
#define DP_NN_CPU_ELEMENTWISE_H

#include <stddef.h>

#include "core/status.h"
#include "core/threadpool.h"
#include "nn/cpu/activation.h"

DP_EXTERN_C_BEGIN

// y = alpha x + beta sample(from), Darknet's shortcut_cpu: when from is larger, every
// stride-th element of it is read (stride = from_W / W); when smaller, it is added at every
// sample-th position of y (sample = W / from_W); only the first min(C, from_C) channels and the
// overlapping min(H, from_H) x min(W, from_W) positions take part. Darknet requires the same
// ratio along H and W. Unlike Darknet, alpha scales every element of x (Darknet skips the
// positions from does not reach); with Darknet's defaults alpha = beta = 1 both agree.
typedef struct dp_shortcut_params {
    int N;
    int C, H, W;                // x and y: (N, C, H, W) NCHW
    int from_C, from_H, from_W; // from: (N, from_C, from_H, from_W) NCHW
    float alpha, beta;
} dp_shortcut_params;

// Returns DP_ERR_ARG for a dim < 1 and DP_ERR_SHAPE when the H and W ratios differ.
DP_MUST_CHECK dp_status dp_shortcut_params_check(const dp_shortcut_params *p);

//   y    (N, C, H, W) NCHW, host, written (may equal x)
//   x    (N, C, H, W) NCHW, host
//   from (N, from_C, from_H, from_W) NCHW, host
DP_MUST_CHECK dp_status dp_cpu_shortcut_forward(float *y, const float *x, const float *from,
                                                const dp_shortcut_params *p);

// dx (+)= alpha dy; dfrom (+)= beta dy at the sampled positions (0 elsewhere unless
// accumulating). accumulate_dx / accumulate_dfrom: add instead of overwrite.
//   dx    (N, C, H, W), host, or NULL when not needed
//   dfrom (N, from_C, from_H, from_W), host, or NULL when not needed
//   dy    (N, C, H, W), host
DP_MUST_CHECK dp_status dp_cpu_shortcut_backward(float *dx, float *dfrom, const float *dy,
                                                 const dp_shortcut_params *p, int accumulate_dx,
                                                 int accumulate_dfrom);

// Shortcut of two tensors of one shape (from_C, from_H, from_W = C, H, W) with its activation,
// one task per image of pool (NULL: the caller alone): y = act(alpha x + beta from), the same
// operations as dp_cpu_shortcut_forward followed by dp_cpu_act_forward. act: linear, relu or
// leaky (dp_bn_act_fusable). Returns DP_ERR_ARG for other shapes or activations.
//   y (N, C, H, W), host, written (may equal x); x, from (N, C, H, W), host
DP_MUST_CHECK dp_status dp_cpu_shortcut_act_forward(float *y, const float *x, const float *from,
                                                    const dp_shortcut_params *p, dp_act act,
                                                    float slope, dp_threadpool *pool);

// Its backward: g = dy act'(y); dx (+)= alpha g, dfrom (+)= beta g.
//   dx, dfrom (N, C, H, W), host, or NULL when not needed
//   dy, y     (N, C, H, W), host: the output gradient and the output
DP_MUST_CHECK dp_status dp_cpu_shortcut_act_backward(float *dx, float *dfrom, const float *dy,
                                                     const float *y, const dp_shortcut_params *p,
                                                     dp_act act, float slope, int accumulate_dx,
                                                     int accumulate_dfrom, dp_threadpool *pool);

// dst[n, dst_c0 + c, :] (+)= src[n, src_c0 + c, :] for c in [0, count), n in [0, N). Route's
// forward (each input into its channel range of the output), backward (the output's gradient
// back to each input, accumulating when the input feeds other layers too), and channel groups.
//   dst (N, dst_C, hw) NCHW with hw = H W, host
//   src (N, src_C, hw) NCHW, host
// Returns DP_ERR_ARG when a channel range falls outside its tensor.
DP_MUST_CHECK dp_status dp_cpu_channel_copy(float *dst, int dst_C, int dst_c0, const float *src,
                                            int src_C, int src_c0, int count, int N, size_t hw,
                                            int accumulate);

// The window of a crop: output (N, C, out_h, out_w) from rows [off_h, off_h + out_h) and
// columns [off_w, off_w + out_w) of an (N, C, H, W) input.
typedef struct dp_crop_params {
    int N, C, H, W;
    int out_h, out_w;
    int off_h, off_w; // dp_crop_params_center: (H - out_h) / 2, (W - out_w) / 2
} dp_crop_params;

// Sets the offsets of a centred crop (Darknet's crop layer in evaluation).
static inline void dp_crop_params_center(dp_crop_params *p)
{
    p->off_h = (p->H - p->out_h) / 2;
    p->off_w = (p->W - p->out_w) / 2;
}

//   y (N, C, out_h, out_w) NCHW, host, written
//   x (N, C, H, W) NCHW, host
// Returns DP_ERR_ARG when the window does not lie inside the input.
DP_MUST_CHECK dp_status dp_cpu_crop_forward(float *y, const float *x, const dp_crop_params *p);

// dx = 0 outside the window (unless accumulate), dx (+)= dy inside it.
//   dx (N, C, H, W), host
//   dy (N, C, out_h, out_w), host
DP_MUST_CHECK dp_status dp_cpu_crop_backward(float *dx, const float *dy, const dp_crop_params *p,
                                             int accumulate);

DP_EXTERN_C_END

#endif
