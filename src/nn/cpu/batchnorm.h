// Batch normalization on the CPU, per channel over (N, H, W), float32 NCHW: training forward
// with batch statistics (and the running-statistics update), eval forward, backward. Ghost
// batch norm is these kernels called once per micro-batch slice: N is the slice's size and the
// pointers start at its first sample (NCHW keeps a slice contiguous). Needs no workspace.
#ifndef DP_NN_CPU_BATCHNORM_H
#define DP_NN_CPU_BATCHNORM_H

#include <stddef.h>

#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef struct dp_bn_params {
    int N, C, H, W; // x and y are (N, C, H, W) NCHW
    float eps;      // added to the variance; PyTorch's default 1e-5
    float momentum; // running = (1 - momentum) running + momentum batch; PyTorch's default 0.1
} dp_bn_params;

#define DP_BN_PARAMS_INIT                                                                          \
    {                                                                                              \
        .eps = 1e-5f, .momentum = 0.1f                                                             \
    }

// Batch norm needs no scratch: the statistics are outputs the caller keeps for backward.
static inline size_t dp_cpu_bn_workspace_bytes(const dp_bn_params *p)
{
    (void)p;
    return 0;
}

// Training forward: per channel c, mean and biased variance over the N * H * W values (two
// passes in double, in a fixed order), y = gamma (x - mean) / sqrt(var + eps) + beta.
//   y            (N, C, H, W) NCHW, host, written (may equal x)
//   save_mean    (C), host, written: the batch mean, for dp_cpu_bn_backward
//   save_inv_std (C), host, written: 1 / sqrt(var + eps), for dp_cpu_bn_backward
//   running_mean (C), host, updated with momentum; NULL to skip the update
//   running_var  (C), host, updated with momentum and the unbiased variance (var M / (M - 1),
//                M = N H W) as PyTorch does; NULL to skip the update
//   x            (N, C, H, W) NCHW, host
//   gamma, beta  (C), host
// Returns DP_ERR_SHAPE when N H W < 2 (no variance to take), DP_ERR_ARG for a NULL tensor or
// a dim < 1.
DP_MUST_CHECK dp_status dp_cpu_bn_forward_train(float *y, float *save_mean, float *save_inv_std,
                                                float *running_mean, float *running_var,
                                                const float *x, const float *gamma,
                                                const float *beta, const dp_bn_params *p);

// Eval forward with the running statistics: y = gamma (x - rmean) / sqrt(rvar + eps) + beta.
//   y                  (N, C, H, W) NCHW, host, written (may equal x)
//   x                  (N, C, H, W) NCHW, host
//   gamma, beta        (C), host
//   running_mean, running_var (C), host
DP_MUST_CHECK dp_status dp_cpu_bn_forward_eval(float *y, const float *x, const float *gamma,
                                               const float *beta, const float *running_mean,
                                               const float *running_var, const dp_bn_params *p);

// Backward of the training forward, with xhat = (x - mean) inv_std and M = N H W:
// dbeta = sum dy, dgamma = sum dy xhat, dx = gamma inv_std (dy - dbeta / M - xhat dgamma / M).
// Sums in double, in a fixed order. accum (DP_ACCUM_* of accum.h): DP_ACCUM_DX adds to dx,
// DP_ACCUM_DPARAMS adds to dgamma and dbeta; dx uses this call's sums either way.
//   dx                     (N, C, H, W) NCHW, host, or NULL when not needed
//   dgamma, dbeta          (C), host
//   dy, x                  (N, C, H, W) NCHW, host (x: the forward input)
//   gamma                  (C), host
//   save_mean, save_inv_std (C), host: from dp_cpu_bn_forward_train on the same x
DP_MUST_CHECK dp_status dp_cpu_bn_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                           const float *x, const float *gamma,
                                           const float *save_mean, const float *save_inv_std,
                                           const dp_bn_params *p, unsigned accum);

DP_EXTERN_C_END

#endif
