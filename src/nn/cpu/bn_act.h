// Batch norm fused with the activation that follows it, on the thread pool: the forward and
// backward passes that the layers run (batchnorm.c keeps the unfused reference kernels). Batch
// statistics are gathered per plane (one image, one channel: its sum and its sum of squared
// deviations about its own mean) and combined per channel in image order in double, so they
// do not depend on the threads; the convolution can produce the plane statistics while its
// output is in cache (conv.h, dp_conv_epilogue). The backward pass reduces to one affine map
// per channel, dz = c0 g + c1 (z - c3) + c2 with g = dy act'(y), which the convolution can
// apply while it packs dy (dp_conv_dy_map), so dz is never stored.
#ifndef DP_NN_CPU_BN_ACT_H
#define DP_NN_CPU_BN_ACT_H

#include <stddef.h>

#include "core/status.h"
#include "core/threadpool.h"
#include "nn/cpu/activation.h"
#include "nn/cpu/batchnorm.h"

DP_EXTERN_C_BEGIN

// Whether the fused kernels take act directly: linear, relu and leaky, whose derivative the
// output y gives (y > 0). Other activations run their own pass between y and the batch norm.
int dp_bn_act_fusable(dp_act act);

// Plane statistics of one image: stats[2 c] = sum of plane c, stats[2 c + 1] = sum of squared
// deviations from the plane's mean (blocked float sums added in double, fixed order).
//   stats (C, 2), host, written
//   x     (C, hw), host: one image
void dp_cpu_bn_plane_stats(double *stats, const float *x, int C, size_t hw);

// The same for every image, one task per image.
//   stats (N, C, 2); x (N, C, H, W) NCHW
void dp_cpu_bn_plane_stats_pool(double *stats, const float *x, const dp_bn_params *p,
                                dp_threadpool *pool);

// Batch statistics from plane statistics (Chan et al.'s combination, in image order):
// save_mean, save_inv_std = 1 / sqrt(var + eps) with the biased variance, and the running
// statistics updated as dp_cpu_bn_forward_train does (NULL to skip).
//   stats (N, C, 2) from dp_cpu_bn_plane_stats; save_mean, save_inv_std, running_* (C)
// Returns DP_ERR_SHAPE when N H W < 2, DP_ERR_ARG for a NULL tensor or a bad dim.
DP_MUST_CHECK dp_status dp_cpu_bn_stats_finish(float *save_mean, float *save_inv_std,
                                               float *running_mean, float *running_var,
                                               const double *stats, const dp_bn_params *p);

// y = act(a), a = (z - mean[c]) scale[c] + shift[c], one task per image. With batch
// statistics scale = gamma inv_std, shift = beta; in evaluation from the running statistics.
//   y     (N, C, H, W), host, written (may equal z)
//   a     (N, C, H, W), host, written, or NULL: the activation's input, when its backward
//         needs it (may not equal z)
//   z     (N, C, H, W), host
//   mean, scale, shift (C), host
//   act   any activation but prelu; slope: leaky's
// Returns DP_ERR_ARG for NULL tensors, bad dims or activation.
DP_MUST_CHECK dp_status dp_cpu_bn_act_forward(float *y, float *a, const float *z, const float *mean,
                                              const float *scale, const float *shift, dp_act act,
                                              float slope, const dp_bn_params *p,
                                              dp_threadpool *pool);

// One image of dp_cpu_bn_act_forward with a == NULL (the building block of the convolution's
// epilogue): y = act((z - mean[c]) scale[c] + shift[c]); y may equal z. mean, scale and shift
// NULL: y = act(z).
//   y, z (C, hw), host
void dp__bn_act_image(float *y, const float *z, int C, size_t hw, const float *mean,
                      const float *scale, const float *shift, dp_act act, float slope);

// Backward sums of batch norm followed by act (dp_bn_act_fusable), one task per channel:
// g = dy act'(y); dbeta (+)= sum g, dgamma (+)= sum g xhat (DP_ACCUM_DPARAMS adds), and the
// per-channel map dz = coef[4c] g + coef[4c+1] (z - coef[4c+3]) + coef[4c+2].
//   coef         (C, 4), host, written
//   dgamma, dbeta (C), host
//   dy, y, z     (N, C, H, W), host: the output gradient, the output, the batch-norm input
//   gamma, save_mean, save_inv_std (C), host
// Returns DP_ERR_ARG for NULL tensors, bad dims or an activation that is not fusable.
DP_MUST_CHECK dp_status dp_cpu_bn_act_backward_coef(float *coef, float *dgamma, float *dbeta,
                                                    const float *dy, const float *y, const float *z,
                                                    const float *gamma, const float *save_mean,
                                                    const float *save_inv_std, dp_act act,
                                                    float slope, const dp_bn_params *p,
                                                    unsigned accum, dp_threadpool *pool);

// dz (+)= the map of one plane of n values (the building block of the next function, and of
// the convolution's dy packing).
//   coef  4 floats of this plane's channel; act, slope as above
void dp__bn_act_dz_plane(float *dz, const float *dy, const float *y, const float *z, size_t n,
                         const float coef[4], dp_act act, float slope, int accumulate);

// dz (+)= the map for the whole batch, one task per image (accumulate: add into dz).
DP_MUST_CHECK dp_status dp_cpu_bn_act_backward_apply(float *dz, const float *dy, const float *y,
                                                     const float *z, const float *coef, dp_act act,
                                                     float slope, const dp_bn_params *p,
                                                     int accumulate, dp_threadpool *pool);

DP_EXTERN_C_END

#endif
