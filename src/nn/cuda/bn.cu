// Batch norm on the device (ops.h), in both layouts: batch statistics by the deterministic
// per-channel reduction of ops_internal.cuh (Welford per thread, Chan's combination in double),
// the fused normalize + activation forward, and the backward as the CPU's bn_act.c does it: the
// two gradient sums per channel, then one affine map per channel applied element-wise. The
// unfused kernels of cpu/batchnorm.h are compositions of these. Not here: cuDNN's batch norm
// (its reductions are not specified to be deterministic, and it has no ghost-batch form).
#include <math.h>

#include "nn/cpu/accum.h"
#include "nn/cuda/ops_internal.cuh"

// Partials of 3 doubles per (chunk, channel), then room for C * 4 floats (the unfused kernels'
// scale or coef).
static size_t partial_bytes(const dp_bn_params *p, dp_cuda_layout layout)
{
    return dp__chunk_workspace_bytes(p->N, p->C, (size_t)p->H * (size_t)p->W, layout, 3);
}

extern "C" size_t dp_cuda_bn_workspace_bytes(const dp_bn_params *p, dp_cuda_layout layout)
{
    if (p == NULL || p->C < 1) {
        return 0;
    }
    return partial_bytes(p, layout) + (size_t)p->C * 4 * sizeof(float);
}

static float *workspace_floats(void *workspace, const dp_bn_params *p, dp_cuda_layout layout)
{
    return (float *)((char *)workspace + partial_bytes(p, layout));
}

static dp_status check_bn(dp_cuda_ctx *ctx, const dp_bn_params *p, dp_cuda_layout layout,
                          const char *what)
{
    DP__OPS_NEED(ctx, what);
    DP__OPS_NEED(p, what);
    DP_TRY(dp__ops_check_layout(layout, what));
    if (p->N < 1 || p->C < 1 || p->H < 1 || p->W < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: dims (%d, %d, %d, %d) must be >= 1", what, p->N, p->C,
                            p->H, p->W);
    }
    if (!(p->eps > 0.0f)) {
        return dp_error_set(DP_ERR_ARG, "%s: eps = %g, must be > 0", what, (double)p->eps);
    }
    return DP_OK;
}

static dp_status check_train(const dp_bn_params *p, const char *what)
{
    const double m = (double)p->N * p->H * p->W;
    if (m < 2.0) {
        return dp_error_set(DP_ERR_SHAPE,
                            "%s: %d value(s) per channel (N %d x H %d x W %d); training needs at "
                            "least 2",
                            what, (int)m, p->N, p->H, p->W);
    }
    return DP_OK;
}

static size_t plane_of(const dp_bn_params *p)
{
    return (size_t)p->H * (size_t)p->W;
}

// --- statistics ---

// Welford per thread in float (count, mean, M2); states merged by Chan et al.'s formula.
template <typename T> struct stats_op {
    enum { S = 3 };
    struct Acc {
        float n, mean, m2;
    };
    const T *z;

    __device__ Acc init() const
    {
        return Acc{0.0f, 0.0f, 0.0f};
    }
    __device__ void add(Acc &a, size_t off, unsigned c) const
    {
        (void)c;
        float v = dp__ld(z, off);
        a.n += 1.0f;
        float d = v - a.mean;
        a.mean += __fdividef(d, a.n);
        a.m2 += d * (v - a.mean);
    }
    __device__ static void to_double(const Acc &a, double *out)
    {
        out[0] = (double)a.n;
        out[1] = (double)a.mean;
        out[2] = (double)a.m2;
    }
    __device__ static void merge(double *a, const double *b)
    {
        const double na = a[0], nb = b[0];
        if (nb == 0.0) {
            return;
        }
        if (na == 0.0) {
            a[0] = nb;
            a[1] = b[1];
            a[2] = b[2];
            return;
        }
        const double n = na + nb, d = b[1] - a[1];
        a[1] += d * (nb / n);
        a[2] += b[2] + d * d * (na * (nb / n));
        a[0] = n;
    }
};

__global__ void stats_finish_kernel(float *save_mean, float *save_inv_std, float *running_mean,
                                    float *running_var, float *scale, const float *gamma,
                                    const double *ws, int K, unsigned C, double m, float eps,
                                    float momentum)
{
    unsigned c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) {
        return;
    }
    double st[3];
    dp__chunk_combine<stats_op<float>>(st, ws, K, C, c);
    const double mean = st[1], var = st[2] > 0.0 ? st[2] / m : 0.0;
    const double inv_std = 1.0 / sqrt(var + (double)eps), mom = (double)momentum;
    save_mean[c] = (float)mean;
    save_inv_std[c] = (float)inv_std;
    if (running_mean != NULL) {
        running_mean[c] = (float)((1.0 - mom) * running_mean[c] + mom * mean);
    }
    if (running_var != NULL) {
        double unbiased = var * m / (m - 1.0);
        running_var[c] = (float)((1.0 - mom) * running_var[c] + mom * unbiased);
    }
    if (scale != NULL) {
        scale[c] = dp__mul(gamma[c], (float)inv_std);
    }
}

template <typename T>
static dp_status bn_stats(dp_cuda_ctx *ctx, float *save_mean, float *save_inv_std,
                          float *running_mean, float *running_var, float *scale, const void *z,
                          const float *gamma, const dp_bn_params *p, dp_cuda_layout layout,
                          void *workspace)
{
    stats_op<T> op;
    op.z = (const T *)z;
    const size_t hw = plane_of(p);
    dp__chunking ch = dp__chunking_of(p->N, p->C, hw, layout);
    double *ws = (double *)workspace;
    DP_TRY(dp__chunk_reduce(ctx, ws, op, p->C, hw, ch, layout, "batchnorm statistics"));
    stats_finish_kernel<<<(p->C + 127) / 128, 128, 0, dp__stream(ctx)>>>(
        save_mean, save_inv_std, running_mean, running_var, scale, gamma, ws, ch.K, (unsigned)p->C,
        (double)ch.M, p->eps, p->momentum);
    DP_CUDA_LAUNCHED("batchnorm statistics (finish)");
    return DP_OK;
}

extern "C" dp_status dp_cuda_bn_stats(dp_cuda_ctx *ctx, float *save_mean, float *save_inv_std,
                                      float *running_mean, float *running_var, float *scale,
                                      const void *z, const float *gamma, const dp_bn_params *p,
                                      dp_cuda_layout layout, dp_cuda_dtype dtype, void *workspace)
{
    static const char what[] = "cuda batchnorm statistics";
    DP_TRY(check_bn(ctx, p, layout, what));
    DP_TRY(check_train(p, what));
    DP__OPS_NEED(save_mean, what);
    DP__OPS_NEED(save_inv_std, what);
    DP__OPS_NEED(z, what);
    DP__OPS_NEED(workspace, what);
    if (scale != NULL) {
        DP__OPS_NEED(gamma, what);
    }
    DP__OPS_DISPATCH(dtype, what, bn_stats, ctx, save_mean, save_inv_std, running_mean, running_var,
                     scale, z, gamma, p, layout, workspace);
}

// --- evaluation scale ---

__global__ void eval_scale_kernel(float *scale, const float *gamma, const float *running_var,
                                  unsigned C, float eps)
{
    unsigned c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < C) {
        scale[c] = (float)(gamma[c] * (1.0 / sqrt((double)running_var[c] + (double)eps)));
    }
}

extern "C" dp_status dp_cuda_bn_eval_scale(dp_cuda_ctx *ctx, float *scale, const float *gamma,
                                           const float *running_var, int C, float eps)
{
    static const char what[] = "cuda batchnorm eval scale";
    DP__OPS_NEED(ctx, what);
    DP__OPS_NEED(scale, what);
    DP__OPS_NEED(gamma, what);
    DP__OPS_NEED(running_var, what);
    if (C < 1 || !(eps > 0.0f)) {
        return dp_error_set(DP_ERR_ARG, "%s: C %d must be >= 1 and eps %g > 0", what, C,
                            (double)eps);
    }
    eval_scale_kernel<<<(C + 127) / 128, 128, 0, dp__stream(ctx)>>>(scale, gamma, running_var,
                                                                    (unsigned)C, eps);
    DP_CUDA_LAUNCHED(what);
    return DP_OK;
}

// --- forward: normalize and activate ---

// v = (z - mean) scale + shift rounded as the CPU; a = v when wanted; y = act(v).
template <typename T>
__global__ void bn_act_forward_kernel(T *y, T *a, const T *z, const float *mean, const float *scale,
                                      const float *shift, dp_act act, float slope, size_t n,
                                      unsigned C, size_t hw, dp_cuda_layout layout)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        unsigned c = dp__channel_of(i, C, hw, layout);
        float v = dp__add(dp__mul(dp__sub(dp__ld(z, i), mean[c]), scale[c]), shift[c]);
        if (a != NULL) {
            dp__st(a, i, v);
        }
        float out;
        if (act == DP_ACT_RELU) {
            out = v > 0.0f ? v : 0.0f;
        } else if (act == DP_ACT_LEAKY) {
            out = v > 0.0f ? v : dp__mul(slope, v);
        } else {
            out = dp__act_f(v, act, slope);
        }
        dp__st(y, i, out);
    }
}

template <typename T>
static dp_status bn_act_forward(dp_cuda_ctx *ctx, void *y, void *a, const void *z,
                                const float *mean, const float *scale, const float *shift,
                                dp_act act, float slope, const dp_bn_params *p,
                                dp_cuda_layout layout)
{
    const size_t hw = plane_of(p), n = (size_t)p->N * (size_t)p->C * hw;
    bn_act_forward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)y, (T *)a, (const T *)z, mean, scale, shift, act, slope, n, (unsigned)p->C, hw,
        layout);
    DP_CUDA_LAUNCHED("batchnorm+activation forward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_bn_act_forward(dp_cuda_ctx *ctx, void *y, void *a, const void *z,
                                            const float *mean, const float *scale,
                                            const float *shift, dp_act act, float slope,
                                            const dp_bn_params *p, dp_cuda_layout layout,
                                            dp_cuda_dtype dtype)
{
    static const char what[] = "cuda batchnorm+activation forward";
    DP_TRY(check_bn(ctx, p, layout, what));
    DP_TRY(dp__ops_check_act(act, slope, what));
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(z, what);
    DP__OPS_NEED(mean, what);
    DP__OPS_NEED(scale, what);
    DP__OPS_NEED(shift, what);
    if (a != NULL && a == z) {
        return dp_error_set(DP_ERR_ARG, "%s: a may not equal z", what);
    }
    DP__OPS_DISPATCH(dtype, what, bn_act_forward, ctx, y, a, z, mean, scale, shift, act, slope, p,
                     layout);
}

// --- backward ---

// sum g and sum g (z - mean[c]) with g = dy act'(y), float per thread.
template <typename T> struct grad_op {
    enum { S = 2 };
    typedef dp__sum2_acc Acc;
    const T *dy, *y, *z;
    const float *mean;
    dp_act act;
    float slope;

    __device__ Acc init() const
    {
        return Acc{0.0f, 0.0f};
    }
    __device__ void add(Acc &acc, size_t off, unsigned c) const
    {
        float yv = act == DP_ACT_LINEAR ? 0.0f : dp__ld(y, off);
        float g = dp__fused_grad(dp__ld(dy, off), yv, act, slope);
        acc.s0 += g;
        acc.s1 += dp__mul(g, dp__sub(dp__ld(z, off), mean[c]));
    }
    __device__ static void to_double(const Acc &a, double *out)
    {
        dp__sum2_to_double(a, out);
    }
    __device__ static void merge(double *a, const double *b)
    {
        dp__sum2_merge(a, b);
    }
};

// The CPU's coef_task from the combined sums.
__global__ void coef_finish_kernel(float *coef, float *dgamma, float *dbeta, const float *gamma,
                                   const float *save_mean, const float *save_inv_std,
                                   const double *ws, int K, unsigned C, double m, int add)
{
    unsigned c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) {
        return;
    }
    double s[2];
    dp__chunk_combine<grad_op<float>>(s, ws, K, C, c);
    const double sum = s[0], inv_std = (double)save_inv_std[c], sum_xhat = s[1] * inv_std;
    dbeta[c] = add ? (float)(dbeta[c] + sum) : (float)sum;
    dgamma[c] = add ? (float)(dgamma[c] + sum_xhat) : (float)sum_xhat;
    const double k = (double)gamma[c] * inv_std;
    float *cf = coef + 4 * (size_t)c;
    cf[0] = (float)k;
    cf[1] = (float)(-k * inv_std * (sum_xhat / m));
    cf[2] = (float)(-k * (sum / m));
    cf[3] = save_mean[c];
}

template <typename T>
static dp_status
bn_act_backward_coef(dp_cuda_ctx *ctx, float *coef, float *dgamma, float *dbeta, const void *dy,
                     const void *y, const void *z, const float *gamma, const float *save_mean,
                     const float *save_inv_std, dp_act act, float slope, const dp_bn_params *p,
                     unsigned accum, dp_cuda_layout layout, void *workspace)
{
    grad_op<T> op;
    op.dy = (const T *)dy;
    op.y = (const T *)y;
    op.z = (const T *)z;
    op.mean = save_mean;
    op.act = act;
    op.slope = slope;
    const size_t hw = plane_of(p);
    dp__chunking ch = dp__chunking_of(p->N, p->C, hw, layout);
    double *ws = (double *)workspace;
    DP_TRY(dp__chunk_reduce(ctx, ws, op, p->C, hw, ch, layout, "batchnorm backward (sums)"));
    coef_finish_kernel<<<(p->C + 127) / 128, 128, 0, dp__stream(ctx)>>>(
        coef, dgamma, dbeta, gamma, save_mean, save_inv_std, ws, ch.K, (unsigned)p->C, (double)ch.M,
        (accum & DP_ACCUM_DPARAMS) != 0);
    DP_CUDA_LAUNCHED("batchnorm backward (coefficients)");
    return DP_OK;
}

static dp_status check_fusable(dp_act act, const void *y, const char *what)
{
    if (!dp_bn_act_fusable(act)) {
        return dp_error_set(DP_ERR_ARG, "%s: activation %s is not fused with batch norm", what,
                            dp_act_name(act));
    }
    if (act != DP_ACT_LINEAR) {
        DP__OPS_NEED(y, what);
    }
    return DP_OK;
}

extern "C" dp_status dp_cuda_bn_act_backward_coef(dp_cuda_ctx *ctx, float *coef, float *dgamma,
                                                  float *dbeta, const void *dy, const void *y,
                                                  const void *z, const float *gamma,
                                                  const float *save_mean, const float *save_inv_std,
                                                  dp_act act, float slope, const dp_bn_params *p,
                                                  unsigned accum, dp_cuda_layout layout,
                                                  dp_cuda_dtype dtype, void *workspace)
{
    static const char what[] = "cuda batchnorm+activation backward";
    DP_TRY(check_bn(ctx, p, layout, what));
    DP_TRY(check_fusable(act, y, what));
    DP__OPS_NEED(coef, what);
    DP__OPS_NEED(dgamma, what);
    DP__OPS_NEED(dbeta, what);
    DP__OPS_NEED(dy, what);
    DP__OPS_NEED(z, what);
    DP__OPS_NEED(gamma, what);
    DP__OPS_NEED(save_mean, what);
    DP__OPS_NEED(save_inv_std, what);
    DP__OPS_NEED(workspace, what);
    DP__OPS_DISPATCH(dtype, what, bn_act_backward_coef, ctx, coef, dgamma, dbeta, dy, y, z, gamma,
                     save_mean, save_inv_std, act, slope, p, accum, layout, workspace);
}

// dz (+)= c0 g + c1 (z - c3) + c2, every product and sum rounded as the CPU's.
template <typename T>
__global__ void bn_act_apply_kernel(T *dz, const T *dy, const T *y, const T *z, const float *coef,
                                    dp_act act, float slope, int accumulate, size_t n, unsigned C,
                                    size_t hw, dp_cuda_layout layout)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float *cf = coef + 4 * (size_t)dp__channel_of(i, C, hw, layout);
        float yv = act == DP_ACT_LINEAR ? 0.0f : dp__ld(y, i);
        float g = dp__fused_grad(dp__ld(dy, i), yv, act, slope);
        float v = dp__add(dp__add(dp__mul(cf[0], g), dp__mul(cf[1], dp__sub(dp__ld(z, i), cf[3]))),
                          cf[2]);
        dp__st(dz, i, accumulate ? dp__add(dp__ld(dz, i), v) : v);
    }
}

template <typename T>
static dp_status bn_act_backward_apply(dp_cuda_ctx *ctx, void *dz, const void *dy, const void *y,
                                       const void *z, const float *coef, dp_act act, float slope,
                                       const dp_bn_params *p, int accumulate, dp_cuda_layout layout)
{
    const size_t hw = plane_of(p), n = (size_t)p->N * (size_t)p->C * hw;
    bn_act_apply_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)dz, (const T *)dy, (const T *)y, (const T *)z, coef, act, slope, accumulate, n,
        (unsigned)p->C, hw, layout);
    DP_CUDA_LAUNCHED("batchnorm+activation backward (apply)");
    return DP_OK;
}

extern "C" dp_status dp_cuda_bn_act_backward_apply(dp_cuda_ctx *ctx, void *dz, const void *dy,
                                                   const void *y, const void *z, const float *coef,
                                                   dp_act act, float slope, const dp_bn_params *p,
                                                   int accumulate, dp_cuda_layout layout,
                                                   dp_cuda_dtype dtype)
{
    static const char what[] = "cuda batchnorm+activation backward";
    DP_TRY(check_bn(ctx, p, layout, what));
    DP_TRY(check_fusable(act, y, what));
    DP__OPS_NEED(dz, what);
    DP__OPS_NEED(dy, what);
    DP__OPS_NEED(z, what);
    DP__OPS_NEED(coef, what);
    DP__OPS_DISPATCH(dtype, what, bn_act_backward_apply, ctx, dz, dy, y, z, coef, act, slope, p,
                     accumulate, layout);
}

// --- the unfused kernels of cpu/batchnorm.h ---

extern "C" dp_status dp_cuda_bn_forward_train(dp_cuda_ctx *ctx, void *y, float *save_mean,
                                              float *save_inv_std, float *running_mean,
                                              float *running_var, const void *x, const float *gamma,
                                              const float *beta, const dp_bn_params *p,
                                              dp_cuda_layout layout, dp_cuda_dtype dtype,
                                              void *workspace)
{
    static const char what[] = "cuda batchnorm forward_train";
    DP_TRY(check_bn(ctx, p, layout, what));
    DP__OPS_NEED(gamma, what);
    DP__OPS_NEED(beta, what);
    DP__OPS_NEED(workspace, what);
    float *scale = workspace_floats(workspace, p, layout);
    DP_TRY(dp_cuda_bn_stats(ctx, save_mean, save_inv_std, running_mean, running_var, scale, x,
                            gamma, p, layout, dtype, workspace));
    return dp_cuda_bn_act_forward(ctx, y, NULL, x, save_mean, scale, beta, DP_ACT_LINEAR, 0.0f, p,
                                  layout, dtype);
}

// The CPU's eval arithmetic per element: scale in double from the running variance.
template <typename T>
__global__ void bn_eval_kernel(T *y, const T *x, const float *gamma, const float *beta,
                               const float *running_mean, const float *running_var, float eps,
                               size_t n, unsigned C, size_t hw, dp_cuda_layout layout)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        unsigned c = dp__channel_of(i, C, hw, layout);
        float scale = (float)(gamma[c] * (1.0 / sqrt((double)running_var[c] + (double)eps)));
        float v = dp__add(dp__mul(dp__sub(dp__ld(x, i), running_mean[c]), scale), beta[c]);
        dp__st(y, i, v);
    }
}

template <typename T>
static dp_status bn_forward_eval(dp_cuda_ctx *ctx, void *y, const void *x, const float *gamma,
                                 const float *beta, const float *running_mean,
                                 const float *running_var, const dp_bn_params *p,
                                 dp_cuda_layout layout)
{
    const size_t hw = plane_of(p), n = (size_t)p->N * (size_t)p->C * hw;
    bn_eval_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)y, (const T *)x, gamma, beta, running_mean, running_var, p->eps, n, (unsigned)p->C, hw,
        layout);
    DP_CUDA_LAUNCHED("batchnorm forward_eval");
    return DP_OK;
}

extern "C" dp_status dp_cuda_bn_forward_eval(dp_cuda_ctx *ctx, void *y, const void *x,
                                             const float *gamma, const float *beta,
                                             const float *running_mean, const float *running_var,
                                             const dp_bn_params *p, dp_cuda_layout layout,
                                             dp_cuda_dtype dtype)
{
    static const char what[] = "cuda batchnorm forward_eval";
    DP_TRY(check_bn(ctx, p, layout, what));
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(x, what);
    DP__OPS_NEED(gamma, what);
    DP__OPS_NEED(beta, what);
    DP__OPS_NEED(running_mean, what);
    DP__OPS_NEED(running_var, what);
    DP__OPS_DISPATCH(dtype, what, bn_forward_eval, ctx, y, x, gamma, beta, running_mean,
                     running_var, p, layout);
}

extern "C" dp_status dp_cuda_bn_backward(dp_cuda_ctx *ctx, void *dx, float *dgamma, float *dbeta,
                                         const void *dy, const void *x, const float *gamma,
                                         const float *save_mean, const float *save_inv_std,
                                         const dp_bn_params *p, unsigned accum,
                                         dp_cuda_layout layout, dp_cuda_dtype dtype,
                                         void *workspace)
{
    static const char what[] = "cuda batchnorm backward";
    DP_TRY(check_bn(ctx, p, layout, what));
    DP__OPS_NEED(workspace, what);
    float *coef = workspace_floats(workspace, p, layout);
    DP_TRY(dp_cuda_bn_act_backward_coef(ctx, coef, dgamma, dbeta, dy, NULL, x, gamma, save_mean,
                                        save_inv_std, DP_ACT_LINEAR, 0.0f, p, accum, layout, dtype,
                                        workspace));
    if (dx == NULL) {
        return DP_OK;
    }
    return dp_cuda_bn_act_backward_apply(ctx, dx, dy, NULL, x, coef, DP_ACT_LINEAR, 0.0f, p,
                                         (accum & DP_ACCUM_DX) != 0, layout, dtype);
}
