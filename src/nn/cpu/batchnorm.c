// Batch normalization on the CPU (see batchnorm.h). Statistics and gradient sums are taken in
// double, channel by channel, samples in order, so results do not depend on threads or
// slicing. Not here: NHWC, fused activation, frozen-statistics backward.
#include "nn/cpu/batchnorm.h"

#include <math.h>

#include "core/error.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/cpu_internal.h"

// Shared by the batch-norm kernels here and the fused ones of bn_act.c.
dp_status dp__bn_params_check(const dp_bn_params *p, const char *kernel)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: params are NULL", kernel);
    }
    if (p->N < 1 || p->C < 1 || p->H < 1 || p->W < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: dims (%d, %d, %d, %d) must be >= 1", kernel, p->N,
                            p->C, p->H, p->W);
    }
    if (!(p->eps > 0.0f)) {
        return dp_error_set(DP_ERR_ARG, "%s: eps = %g, must be > 0", kernel, (double)p->eps);
    }
    return DP_OK;
}

// Mean and biased variance of channel c: two passes, plane sums blocked (reduce.c), planes
// added in double in sample order.
static void channel_stats(const float *x, const dp_bn_params *p, int c, double *mean, double *var)
{
    const size_t hw = (size_t)p->H * p->W;
    const double m = (double)p->N * (double)hw;
    double sum = 0.0;
    for (int n = 0; n < p->N; n++) {
        sum += dp__sum(x + ((size_t)n * p->C + c) * hw, hw);
    }
    const double mu = sum / m;
    const float shift = (float)mu;
    double sq = 0.0;
    for (int n = 0; n < p->N; n++) {
        sq += dp__sum_sq_dev(x + ((size_t)n * p->C + c) * hw, hw, shift);
    }
    // sum (x - shift)^2 = sum (x - mu)^2 + m (mu - shift)^2
    double d = mu - (double)shift, v = sq / m - d * d;
    *mean = mu;
    *var = v > 0.0 ? v : 0.0;
}

// y = (x - mean) scale + shift over channel c.
static void normalize_channel(float *y, const float *x, const dp_bn_params *p, int c, float mean,
                              float scale, float shift)
{
    const size_t hw = (size_t)p->H * p->W;
    for (int n = 0; n < p->N; n++) {
        const float *xc = x + ((size_t)n * p->C + c) * hw;
        float *yc = y + ((size_t)n * p->C + c) * hw;
        for (size_t i = 0; i < hw; i++) {
            yc[i] = (xc[i] - mean) * scale + shift;
        }
    }
}

dp_status dp_cpu_bn_forward_train(float *y, float *save_mean, float *save_inv_std,
                                  float *running_mean, float *running_var, const float *x,
                                  const float *gamma, const float *beta, const dp_bn_params *p)
{
    static const char kernel[] = "batchnorm forward_train";
    DP_TRY(dp__bn_params_check(p, kernel));
    DP_CPU_NEED(y, kernel);
    DP_CPU_NEED(save_mean, kernel);
    DP_CPU_NEED(save_inv_std, kernel);
    DP_CPU_NEED(x, kernel);
    DP_CPU_NEED(gamma, kernel);
    DP_CPU_NEED(beta, kernel);
    const double m = (double)p->N * p->H * p->W;
    if (m < 2.0) {
        return dp_error_set(DP_ERR_SHAPE,
                            "%s: %d value(s) per channel (N %d x H %d x W %d); training needs at "
                            "least 2",
                            kernel, (int)m, p->N, p->H, p->W);
    }
    for (int c = 0; c < p->C; c++) {
        double mean, var;
        channel_stats(x, p, c, &mean, &var);
        double inv_std = 1.0 / sqrt(var + (double)p->eps);
        save_mean[c] = (float)mean;
        save_inv_std[c] = (float)inv_std;
        if (running_mean != NULL) {
            running_mean[c] = (float)((1.0 - p->momentum) * running_mean[c] + p->momentum * mean);
        }
        if (running_var != NULL) {
            double unbiased = var * m / (m - 1.0);
            running_var[c] = (float)((1.0 - p->momentum) * running_var[c] + p->momentum * unbiased);
        }
        normalize_channel(y, x, p, c, (float)mean, (float)(gamma[c] * inv_std), beta[c]);
    }
    return DP_OK;
}

dp_status dp_cpu_bn_forward_eval(float *y, const float *x, const float *gamma, const float *beta,
                                 const float *running_mean, const float *running_var,
                                 const dp_bn_params *p)
{
    static const char kernel[] = "batchnorm forward_eval";
    DP_TRY(dp__bn_params_check(p, kernel));
    DP_CPU_NEED(y, kernel);
    DP_CPU_NEED(x, kernel);
    DP_CPU_NEED(gamma, kernel);
    DP_CPU_NEED(beta, kernel);
    DP_CPU_NEED(running_mean, kernel);
    DP_CPU_NEED(running_var, kernel);
    for (int c = 0; c < p->C; c++) {
        double inv_std = 1.0 / sqrt((double)running_var[c] + (double)p->eps);
        normalize_channel(y, x, p, c, running_mean[c], (float)(gamma[c] * inv_std), beta[c]);
    }
    return DP_OK;
}

dp_status dp_cpu_bn_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                             const float *x, const float *gamma, const float *save_mean,
                             const float *save_inv_std, const dp_bn_params *p, unsigned accum)
{
    static const char kernel[] = "batchnorm backward";
    DP_TRY(dp__bn_params_check(p, kernel));
    DP_CPU_NEED(dgamma, kernel);
    DP_CPU_NEED(dbeta, kernel);
    DP_CPU_NEED(dy, kernel);
    DP_CPU_NEED(x, kernel);
    DP_CPU_NEED(gamma, kernel);
    DP_CPU_NEED(save_mean, kernel);
    DP_CPU_NEED(save_inv_std, kernel);
    const size_t hw = (size_t)p->H * p->W;
    const double m = (double)p->N * (double)hw;
    for (int c = 0; c < p->C; c++) {
        const float mean = save_mean[c], inv_std = save_inv_std[c];
        double sum_dy = 0.0, sum_dy_dev = 0.0;
        for (int n = 0; n < p->N; n++) {
            const size_t off = ((size_t)n * p->C + c) * hw;
            dp__sum_dot_dev(dy + off, x + off, hw, mean, &sum_dy, &sum_dy_dev);
        }
        const double sum_dy_xhat = sum_dy_dev * inv_std;
        int add = (accum & DP_ACCUM_DPARAMS) != 0;
        dbeta[c] = add ? (float)(dbeta[c] + sum_dy) : (float)sum_dy;
        dgamma[c] = add ? (float)(dgamma[c] + sum_dy_xhat) : (float)sum_dy_xhat;
        if (dx == NULL) {
            continue;
        }
        const float k = gamma[c] * inv_std, mean_dy = (float)(sum_dy / m);
        const float mean_dy_xhat = (float)(sum_dy_xhat / m);
        const int add_dx = (accum & DP_ACCUM_DX) != 0;
        for (int n = 0; n < p->N; n++) {
            const size_t off = ((size_t)n * p->C + c) * hw;
            for (size_t i = 0; i < hw; i++) {
                float xhat = (x[off + i] - mean) * inv_std;
                float g = k * (dy[off + i] - mean_dy - xhat * mean_dy_xhat);
                dx[off + i] = add_dx ? dx[off + i] + g : g;
            }
        }
    }
    return DP_OK;
}
