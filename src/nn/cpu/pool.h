// Pooling on the CPU, float32 NCHW: max pooling with argmax indices (Darknet's padding rule),
// average pooling with size, stride and padding, and global average pooling; forward and
// backward. Needs no workspace (the argmax indices are an output the caller keeps).
#ifndef DP_NN_CPU_POOL_H
#define DP_NN_CPU_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

DP_EXTERN_C_BEGIN

// Dims of a max or average pooling. Input (N, C, H, W), output (N, C, out_h, out_w), NCHW.
// Padding follows Darknet's maxpool: pad_h is the TOTAL padding of a column (Darknet's
// `padding`), the first window starts at row -pad_h / 2, and out_h = (H + pad_h - size_h) /
// stride_h + 1 (likewise for w). PyTorch's symmetric padding p is pad = 2 p; Darknet's default
// is pad = size - 1 (dp_pool_params_darknet). Taps outside the input are ignored by max
// pooling; for average pooling see count_include_pad.
typedef struct dp_pool_params {
    int N, C, H, W;
    int size_h, size_w;     // window, >= 1
    int stride_h, stride_w; // >= 1
    int pad_h, pad_w;       // total padding, 0 <= ceil(pad / 2) <= size - 1
    int count_include_pad;  // average pooling only: 1 divides by size_h size_w (PyTorch's
                            // default), 0 by the number of taps inside the input
    int out_h, out_w;       // derived by dp_pool_params_resolve
} dp_pool_params;

// Checks the dims and sets out_h and out_w. Returns DP_ERR_ARG for a dim out of range (naming
// it) and DP_ERR_SHAPE when the window does not fit the padded input.
DP_MUST_CHECK dp_status dp_pool_params_resolve(dp_pool_params *p);

// Fills *p for Darknet's [maxpool] (size, stride, padding = size - 1 when padding < 0) on an
// (N, C, H, W) input and resolves it.
DP_MUST_CHECK dp_status dp_pool_params_darknet(dp_pool_params *p, int N, int C, int H, int W,
                                               int size, int stride, int padding);

// Pooling needs no scratch.
static inline size_t dp_cpu_pool_workspace_bytes(const dp_pool_params *p)
{
    (void)p;
    return 0;
}

// Max pooling. The first maximum in window scan order (rows, then columns) wins, as in Darknet;
// a NaN tap propagates.
//   y      (N, C, out_h, out_w) NCHW, host, written
//   argmax (N, C, out_h, out_w), host, written: the index h * W + w of the maximum inside its
//          (H, W) input plane (so a micro-batch slice keeps valid indices)
//   x      (N, C, H, W) NCHW, host
DP_MUST_CHECK dp_status dp_cpu_maxpool_forward(float *y, int32_t *argmax, const float *x,
                                               const dp_pool_params *p);

// dx = 0 (unless accumulate), then dx[argmax] += dy.
//   dx     (N, C, H, W) NCHW, host
//   dy     (N, C, out_h, out_w) NCHW, host
//   argmax (N, C, out_h, out_w), host: from dp_cpu_maxpool_forward
DP_MUST_CHECK dp_status dp_cpu_maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                                                const dp_pool_params *p, int accumulate);

// Average pooling (see count_include_pad).
//   y (N, C, out_h, out_w) NCHW, host, written
//   x (N, C, H, W) NCHW, host
DP_MUST_CHECK dp_status dp_cpu_avgpool_forward(float *y, const float *x, const dp_pool_params *p);

// dx = 0 (unless accumulate), then every tap of a window gets dy / divisor.
//   dx (N, C, H, W) NCHW, host
//   dy (N, C, out_h, out_w) NCHW, host
DP_MUST_CHECK dp_status dp_cpu_avgpool_backward(float *dx, const float *dy, const dp_pool_params *p,
                                                int accumulate);

// Global average pooling (Darknet's [avgpool]): y[n, c] = mean of x[n, c, :, :].
//   y (N, C), host, written
//   x (N, C, hw) NCHW with hw = H W, host
DP_MUST_CHECK dp_status dp_cpu_global_avgpool_forward(float *y, const float *x, int N, int C,
                                                      size_t hw);

// dx[n, c, i] (+)= dy[n, c] / hw.
//   dx (N, C, hw), host
//   dy (N, C), host
DP_MUST_CHECK dp_status dp_cpu_global_avgpool_backward(float *dx, const float *dy, int N, int C,
                                                       size_t hw, int accumulate);

DP_EXTERN_C_END

#endif
