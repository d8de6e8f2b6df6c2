// Softmax and softmax cross-entropy on the device (see step_ops.h; the reference is
// src/nn/cpu/softmax_xent.c): one warp per sample, max in float, log-sum-exp, smoothed target
// and loss in double, the gradient rounded to the storage type once. The batch's stats are
// summed by a second, single-block kernel with a fixed tree, so they are deterministic.
#include <math.h>
#include <stdint.h>

#include "nn/cuda/step/step_internal.cuh"
#include "nn/cuda/step/step_ops.h"

enum { WARPS_PER_BLOCK = DP__STEP_THREADS / 32 };

// Per-sample info bits in the workspace, for the stats kernel.
enum { INFO_TOP1 = 1, INFO_TOP5 = 2, INFO_BAD_A = 4, INFO_BAD_B = 8 };

typedef struct xent_args {
    int N, k;
    double eps, off, on; // smoothing; target off the label eps / k, on it 1 - eps + eps / k
    double grad_scale;
} xent_args;

// --- kernels ---

// log sum_j exp(z_j), max-subtracted, in double (softmax_xent.c's log_sum_exp).
template <typename T>
__device__ __forceinline__ double warp_log_sum_exp(const T *z, int k, int lane)
{
    float m = -INFINITY;
    for (int j = lane; j < k; j += 32) {
        m = fmaxf(m, dp__ld(z, j));
    }
    m = dp__warp_max(m);
    double sum = 0.0;
    for (int j = lane; j < k; j += 32) {
        sum = __dadd_rn(sum, exp((double)dp__ld(z, j) - (double)m));
    }
    return (double)m + log(dp__warp_sum(sum));
}

// Loss of one row against label and its rank among the logits (the CPU's tie rule).
template <typename T>
__device__ __forceinline__ double row_loss(const T *z, int label, double lse, const xent_args &a,
                                           int lane, int *rank)
{
    const float zl = dp__ld(z, label);
    int above = 0;
    for (int j = lane; j < a.k; j += 32) {
        const float zj = dp__ld(z, j);
        above += zj > zl || (zj == zl && j < label);
    }
    *rank = dp__warp_sum(above);
    double target_dot = (double)zl;
    if (a.eps > 0.0) {
        double zsum = 0.0;
        for (int j = lane; j < a.k; j += 32) {
            zsum = __dadd_rn(zsum, (double)dp__ld(z, j));
        }
        zsum = dp__warp_sum(zsum);
        target_dot = __dadd_rn(__dmul_rn(a.off, zsum), __dmul_rn(1.0 - a.eps, (double)zl));
    }
    return lse - target_dot;
}

// grad_scale (softmax_j - t_j) rounded to float, t_j the smoothed target of label.
__device__ __forceinline__ float grad_of(double zj, double lse, int j, int label,
                                         const xent_args &a)
{
    const double t = j == label ? a.on : a.off;
    return (float)__dmul_rn(a.grad_scale, __dadd_rn(exp(zj - lse), -t));
}

// One warp per sample; MIXED: the mixup/cutmix form with labels_b and lambda.
template <typename T, bool MIXED>
__global__ void xent_kernel(T *dlogits, float *loss, double *ws_loss, int32_t *ws_info,
                            const T *logits, const int32_t *labels, const int32_t *labels_b,
                            const float *lambda, xent_args a)
{
    const int lane = threadIdx.x & 31;
    const int warp0 = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32;
    for (int n = warp0; n < a.N; n += gridDim.x * WARPS_PER_BLOCK) {
        const T *z = logits + (size_t)n * a.k;
        T *g = dlogits != NULL ? dlogits + (size_t)n * a.k : NULL;
        const int la = labels[n], lb = MIXED ? labels_b[n] : 0;
        const int bad = (la < 0 || la >= a.k ? INFO_BAD_A : 0) |
                        (MIXED && (lb < 0 || lb >= a.k) ? INFO_BAD_B : 0);
        if (bad) {
            for (int j = lane; g != NULL && j < a.k; j += 32) {
                dp__st(g, j, 0.0f);
            }
            if (lane == 0) {
                ws_loss[n] = (double)NAN;
                ws_info[n] = bad;
                if (loss != NULL) {
                    loss[n] = NAN;
                }
            }
            continue;
        }
        const double lse = warp_log_sum_exp(z, a.k, lane);
        int rank = 0, rank_b = 0;
        const double l_a = row_loss(z, la, lse, a, lane, &rank);
        double l = l_a;
        float lam = 1.0f;
        if (MIXED) {
            // The CPU mixes the float-rounded per-sample losses in double.
            const double l_b = row_loss(z, lb, lse, a, lane, &rank_b);
            lam = lambda[n];
            l = __dadd_rn(__dmul_rn((double)lam, (double)(float)l_a),
                          __dmul_rn(1.0 - (double)lam, (double)(float)l_b));
        }
        if (lane == 0) {
            ws_loss[n] = l;
            ws_info[n] = (rank < 1 ? INFO_TOP1 : 0) | (rank < 5 ? INFO_TOP5 : 0);
            if (loss != NULL) {
                loss[n] = (float)l;
            }
        }
        for (int j = lane; g != NULL && j < a.k; j += 32) {
            const double zj = (double)dp__ld(z, j);
            float gj = grad_of(zj, lse, j, la, a);
            if (MIXED) {
                const float gb = grad_of(zj, lse, j, lb, a);
                gj = __fadd_rn(__fmul_rn(lam, gj), __fmul_rn(__fadd_rn(1.0f, -lam), gb));
            }
            dp__st(g, j, gj);
        }
    }
}

// One block: loss sum, top-1/top-5 counts (thread t takes samples t, t + 256, ... in order, then
// the block's tree) and the bad label the CPU would name: the first sample whose label is out of
// range, else the first whose label_b is (the CPU checks all labels before all labels_b).
__global__ void xent_stats_kernel(dp_cuda_xent_result *out, const double *ws_loss,
                                  const int32_t *ws_info, const int32_t *labels,
                                  const int32_t *labels_b, int N)
{
    __shared__ double sh[DP__STEP_THREADS];
    __shared__ int first_bad[2]; // of labels, of labels_b
    if (threadIdx.x < 2) {
        first_bad[threadIdx.x] = N;
    }
    double s = 0.0, top1 = 0.0, top5 = 0.0;
    int bad_a = N, bad_b = N;
    for (int n = threadIdx.x; n < N; n += DP__STEP_THREADS) {
        const int info = ws_info[n];
        s = __dadd_rn(s, ws_loss[n]);
        top1 += (info & INFO_TOP1) != 0;
        top5 += (info & INFO_TOP5) != 0;
        bad_a = (info & INFO_BAD_A) && n < bad_a ? n : bad_a;
        bad_b = (info & INFO_BAD_B) && n < bad_b ? n : bad_b;
    }
    __syncthreads(); // first_bad is set before anyone lowers it
    if (bad_a < N) {
        atomicMin(&first_bad[0], bad_a); // integer min: the same whatever the order
    }
    if (bad_b < N) {
        atomicMin(&first_bad[1], bad_b);
    }
    s = dp__block_sum(sh, s);
    top1 = dp__block_sum(sh, top1); // counts below 2^53: exact in double
    top5 = dp__block_sum(sh, top5);
    if (threadIdx.x != 0) {
        return;
    }
    out->stats.loss_sum = s;
    out->stats.top1 = (int64_t)top1;
    out->stats.top5 = (int64_t)top5;
    out->bad_sample = -1;
    out->bad_label = 0;
    if (first_bad[0] < N) {
        out->bad_sample = first_bad[0];
        out->bad_label = labels[first_bad[0]];
    } else if (first_bad[1] < N) {
        out->bad_sample = first_bad[1];
        out->bad_label = labels_b[first_bad[1]];
    }
}

// y = softmax(x) per row, one warp per row.
template <typename T> __global__ void softmax_kernel(T *y, const T *x, int N, int k)
{
    const int lane = threadIdx.x & 31;
    const int warp0 = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32;
    for (int n = warp0; n < N; n += gridDim.x * WARPS_PER_BLOCK) {
        const T *z = x + (size_t)n * k;
        T *out = y + (size_t)n * k;
        const double lse = warp_log_sum_exp(z, k, lane);
        for (int j = lane; j < k; j += 32) {
            dp__st(out, j, (float)exp((double)dp__ld(z, j) - lse));
        }
    }
}

// --- launchers ---

static dp_status check_params(const dp_xent_params *p, const char *what)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: params are NULL", what);
    }
    if (p->N < 1 || p->classes < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: N %d and classes %d must be >= 1", what, p->N,
                            p->classes);
    }
    if (!(p->smoothing >= 0.0f && p->smoothing < 1.0f)) {
        return dp_error_set(DP_ERR_ARG, "%s: label smoothing %g outside [0, 1)", what,
                            (double)p->smoothing);
    }
    return DP_OK;
}

static unsigned row_blocks(int N)
{
    const unsigned b = (unsigned)((N + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    return b < 65535u * 8u ? b : 65535u * 8u;
}

extern "C" size_t dp_cuda_softmax_xent_workspace_bytes(const dp_xent_params *p)
{
    return p != NULL && p->N > 0 ? (size_t)p->N * (sizeof(double) + 2 * sizeof(int32_t)) : 0;
}

template <typename T>
static dp_status xent_typed(dp_cuda_ctx *ctx, void *dlogits, float *loss,
                            dp_cuda_xent_result *result, const void *logits, const int32_t *labels,
                            const int32_t *labels_b, const float *lambda, const xent_args &a,
                            void *workspace)
{
    cudaStream_t st = dp__stream(ctx);
    double *ws_loss = (double *)workspace;
    int32_t *ws_info = (int32_t *)(ws_loss + a.N);
    if (labels_b != NULL) {
        xent_kernel<T, true><<<row_blocks(a.N), DP__STEP_THREADS, 0, st>>>(
            (T *)dlogits, loss, ws_loss, ws_info, (const T *)logits, labels, labels_b, lambda, a);
    } else {
        xent_kernel<T, false><<<row_blocks(a.N), DP__STEP_THREADS, 0, st>>>(
            (T *)dlogits, loss, ws_loss, ws_info, (const T *)logits, labels, NULL, NULL, a);
    }
    DP_CUDA_LAUNCHED("xent_kernel");
    xent_stats_kernel<<<1, DP__STEP_THREADS, 0, st>>>(result, ws_loss, ws_info, labels, labels_b,
                                                      a.N);
    DP_CUDA_LAUNCHED("xent_stats_kernel");
    return DP_OK;
}

static dp_status xent_launch(dp_cuda_ctx *ctx, void *dlogits, float *loss,
                             dp_cuda_xent_result *result, const void *logits, const int32_t *labels,
                             const int32_t *labels_b, const float *lambda, const dp_xent_params *p,
                             dp_cuda_dtype dtype, void *workspace, const char *what)
{
    DP__STEP_NEED(ctx, what);
    DP__STEP_NEED(result, what);
    DP__STEP_NEED(logits, what);
    DP__STEP_NEED(labels, what);
    DP__STEP_NEED(workspace, what);
    DP_TRY(check_params(p, what));
    xent_args a;
    a.N = p->N;
    a.k = p->classes;
    a.eps = p->smoothing;
    a.off = a.eps / a.k;
    a.on = 1.0 - a.eps + a.off;
    a.grad_scale = (double)p->grad_scale;
    switch (dtype) {
    case DP_CUDA_F32:
        return xent_typed<float>(ctx, dlogits, loss, result, logits, labels, labels_b, lambda, a,
                                 workspace);
    case DP_CUDA_BF16:
        return xent_typed<__nv_bfloat16>(ctx, dlogits, loss, result, logits, labels, labels_b,
                                         lambda, a, workspace);
    case DP_CUDA_F16:
        return xent_typed<__half>(ctx, dlogits, loss, result, logits, labels, labels_b, lambda, a,
                                  workspace);
    }
    return dp_error_set(DP_ERR_ARG, "%s: unknown storage type %d", what, (int)dtype);
}

extern "C" dp_status dp_cuda_softmax_xent(dp_cuda_ctx *ctx, void *dlogits, float *loss,
                                          dp_cuda_xent_result *result, const void *logits,
                                          const int32_t *labels, const dp_xent_params *p,
                                          dp_cuda_dtype dtype, void *workspace)
{
    return xent_launch(ctx, dlogits, loss, result, logits, labels, NULL, NULL, p, dtype, workspace,
                       "cuda softmax_xent");
}

extern "C" dp_status dp_cuda_softmax_xent_mixed(dp_cuda_ctx *ctx, void *dlogits, float *loss,
                                                dp_cuda_xent_result *result, const void *logits,
                                                const int32_t *labels, const int32_t *labels_b,
                                                const float *lambda, const dp_xent_params *p,
                                                dp_cuda_dtype dtype, void *workspace)
{
    const char *what = "cuda softmax_xent (mixed)";
    DP__STEP_NEED(labels_b, what);
    DP__STEP_NEED(lambda, what);
    return xent_launch(ctx, dlogits, loss, result, logits, labels, labels_b, lambda, p, dtype,
                       workspace, what);
}

extern "C" dp_status dp_cuda_xent_result_read(dp_cuda_ctx *ctx, dp_xent_stats *out,
                                              const dp_cuda_xent_result *result, int classes)
{
    DP__STEP_NEED(ctx, "dp_cuda_xent_result_read");
    DP__STEP_NEED(out, "dp_cuda_xent_result_read");
    DP__STEP_NEED(result, "dp_cuda_xent_result_read");
    dp_cuda_xent_result r;
    DP_TRY(dp_cuda_d2h_sync(ctx, &r, result, sizeof r));
    if (r.bad_sample >= 0) {
        return dp_error_set(DP_ERR_DATA, "sample %d of the batch: label %d outside [0, %d)",
                            (int)r.bad_sample, (int)r.bad_label, classes);
    }
    *out = r.stats;
    return DP_OK;
}

template <typename T>
static dp_status softmax_typed(dp_cuda_ctx *ctx, void *y, const void *x, int N, int classes)
{
    softmax_kernel<T>
        <<<row_blocks(N), DP__STEP_THREADS, 0, dp__stream(ctx)>>>((T *)y, (const T *)x, N, classes);
    DP_CUDA_LAUNCHED("softmax_kernel");
    return DP_OK;
}

extern "C" dp_status dp_cuda_softmax_forward(dp_cuda_ctx *ctx, void *y, const void *x, int N,
                                             int classes, dp_cuda_dtype dtype)
{
    const char *what = "cuda softmax forward";
    DP__STEP_NEED(ctx, what);
    DP__STEP_NEED(y, what);
    DP__STEP_NEED(x, what);
    if (N < 1 || classes < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: N %d and classes %d must be >= 1", what, N, classes);
    }
    switch (dtype) {
    case DP_CUDA_F32:
        return softmax_typed<float>(ctx, y, x, N, classes);
    case DP_CUDA_BF16:
        return softmax_typed<__nv_bfloat16>(ctx, y, x, N, classes);
    case DP_CUDA_F16:
        return softmax_typed<__half>(ctx, y, x, N, classes);
    }
    return dp_error_set(DP_ERR_ARG, "%s: unknown storage type %d", what, (int)dtype);
}
