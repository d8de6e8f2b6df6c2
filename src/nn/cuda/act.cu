// Activations and PReLU on the device (ops.h), with the chunking of the deterministic
// per-channel reductions (ops_internal.cuh) that PReLU's slope gradient and batch norm share.
// Element-wise kernels are grid-stride loops; the activation is a switch on a kernel argument,
// uniform across the grid, so it costs no divergence.
#include "nn/cuda/ops_internal.cuh"

#include "nn/cpu/accum.h"

// --- shared helpers ---

dp_status dp__ops_check_act(dp_act act, float slope, const char *what)
{
    if ((int)act < 0 || act >= DP_ACT_COUNT_) {
        return dp_error_set(DP_ERR_ARG, "%s: unknown activation %d", what, (int)act);
    }
    if (act == DP_ACT_PRELU) {
        return dp_error_set(DP_ERR_ARG, "%s: prelu has per-channel slopes; use dp_cuda_prelu_*",
                            what);
    }
    if (act == DP_ACT_LEAKY && !(slope >= 0.0f)) {
        return dp_error_set(DP_ERR_ARG, "%s: leaky slope %g must be >= 0", what, (double)slope);
    }
    return DP_OK;
}

// Chunks of at least 4096 values per NCHW block (16 per thread) or 128 rows per NHWC block (16
// per thread row), and no more than about 4096 blocks: enough to fill any current GPU while each
// thread still sums a run of values in float. A function of the shape only (determinism).
dp__chunking dp__chunking_of(int N, int C, size_t hw, dp_cuda_layout layout)
{
    dp__chunking ch;
    ch.M = (size_t)N * hw;
    const size_t per_block = layout == DP_CUDA_NHWC ? 128 : 4096;
    ch.tiles = layout == DP_CUDA_NHWC ? (C + 31) / 32 : C;
    size_t k_max = (4096 + (size_t)ch.tiles - 1) / (size_t)ch.tiles;
    size_t k = (ch.M + per_block - 1) / per_block;
    k = k < k_max ? k : k_max;
    k = k < 1 ? 1 : k;
    ch.R = (ch.M + k - 1) / k;
    ch.K = (int)((ch.M + ch.R - 1) / ch.R); // no empty chunk
    return ch;
}

size_t dp__chunk_workspace_bytes(int N, int C, size_t hw, dp_cuda_layout layout, int doubles)
{
    if (N < 1 || C < 1 || hw < 1) {
        return 0;
    }
    dp__chunking ch = dp__chunking_of(N, C, hw, layout);
    return (size_t)ch.K * (size_t)C * (size_t)doubles * sizeof(double);
}

// --- kernels ---

template <typename T>
__global__ void act_forward_kernel(T *y, const T *x, size_t n, dp_act act, float slope)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        dp__st(y, i, dp__act_f(dp__ld(x, i), act, slope));
    }
}

// src: x or y, whichever the derivative is taken from (NULL for linear).
template <typename T>
__global__ void act_backward_kernel(T *dx, const T *dy, const T *src, size_t n, dp_act act,
                                    float slope)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = dp__ld(dy, i);
        float d = act == DP_ACT_LINEAR ? g : g * dp__act_grad(dp__ld(src, i), act, slope);
        dp__st(dx, i, d);
    }
}

template <typename T>
__global__ void prelu_forward_kernel(T *y, const T *x, const float *slope, size_t n, unsigned C,
                                     size_t hw, dp_cuda_layout layout)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = dp__ld(x, i);
        float a = slope[dp__channel_of(i, C, hw, layout)];
        dp__st(y, i, v > 0.0f ? v : dp__mul(a, v));
    }
}

// The slope gradient's reduction, writing dx in the same pass (every value is visited once).
template <typename T> struct prelu_op {
    enum { S = 1 };
    struct Acc {
        float s;
    };
    T *dx;
    const T *dy, *x;
    const float *slope;
    int add_dx;

    __device__ Acc init() const
    {
        return Acc{0.0f};
    }
    __device__ void add(Acc &acc, size_t off, unsigned c) const
    {
        float v = dp__ld(x, off), g = dp__ld(dy, off);
        acc.s += v > 0.0f ? 0.0f : dp__mul(g, v);
        if (dx != NULL) {
            float d = v > 0.0f ? g : dp__mul(slope[c], g);
            dp__st(dx, off, add_dx ? dp__add(dp__ld(dx, off), d) : d);
        }
    }
    __device__ static void to_double(const Acc &a, double *out)
    {
        out[0] = (double)a.s;
    }
    __device__ static void merge(double *a, const double *b)
    {
        a[0] += b[0];
    }
};

__global__ void prelu_finish_kernel(float *dslope, const double *ws, int K, unsigned C, int add)
{
    unsigned c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) {
        return;
    }
    double sum;
    dp__chunk_combine<prelu_op<float>>(&sum, ws, K, C, c);
    dslope[c] = add ? (float)(dslope[c] + sum) : (float)sum;
}

// --- launchers ---

template <typename T>
static dp_status act_forward(dp_cuda_ctx *ctx, void *y, const void *x, size_t n, dp_act act,
                             float slope)
{
    act_forward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)y, (const T *)x, n, act, slope);
    DP_CUDA_LAUNCHED("activation forward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_act_forward(dp_cuda_ctx *ctx, void *y, const void *x, size_t n,
                                         dp_act act, float slope, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda activation forward";
    DP_TRY(dp__ops_check_act(act, slope, what));
    DP__OPS_NEED(ctx, what);
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(x, what);
    if (n == 0) {
        return DP_OK;
    }
    DP__OPS_DISPATCH(dtype, what, act_forward, ctx, y, x, n, act, slope);
}

template <typename T>
static dp_status act_backward(dp_cuda_ctx *ctx, void *dx, const void *dy, const void *src, size_t n,
                              dp_act act, float slope)
{
    act_backward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)dx, (const T *)dy, (const T *)src, n, act, slope);
    DP_CUDA_LAUNCHED("activation backward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_act_backward(dp_cuda_ctx *ctx, void *dx, const void *dy, const void *x,
                                          const void *y, size_t n, dp_act act, float slope,
                                          dp_cuda_dtype dtype)
{
    static const char what[] = "cuda activation backward";
    DP_TRY(dp__ops_check_act(act, slope, what));
    DP__OPS_NEED(ctx, what);
    DP__OPS_NEED(dx, what);
    DP__OPS_NEED(dy, what);
    const int from_x = dp_act_backward_needs_input(act);
    if (from_x) {
        DP__OPS_NEED(x, what);
    } else if (act != DP_ACT_LINEAR) {
        DP__OPS_NEED(y, what);
    }
    if (n == 0) {
        return DP_OK;
    }
    const void *src = from_x ? x : y;
    DP__OPS_DISPATCH(dtype, what, act_backward, ctx, dx, dy, src, n, act, slope);
}

static dp_status check_prelu(dp_cuda_ctx *ctx, int N, int C, size_t hw, dp_cuda_layout layout,
                             const char *what)
{
    DP__OPS_NEED(ctx, what);
    DP_TRY(dp__ops_check_layout(layout, what));
    if (N < 1 || C < 1 || hw < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: dims N %d, C %d, hw %zu must be >= 1", what, N, C, hw);
    }
    return DP_OK;
}

template <typename T>
static dp_status prelu_forward(dp_cuda_ctx *ctx, void *y, const void *x, const float *slope,
                               size_t n, int C, size_t hw, dp_cuda_layout layout)
{
    prelu_forward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)y, (const T *)x, slope, n, (unsigned)C, hw, layout);
    DP_CUDA_LAUNCHED("prelu forward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_prelu_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                           const float *slope, int N, int C, size_t hw,
                                           dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda prelu forward";
    DP_TRY(check_prelu(ctx, N, C, hw, layout, what));
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(x, what);
    DP__OPS_NEED(slope, what);
    size_t n = (size_t)N * (size_t)C * hw;
    DP__OPS_DISPATCH(dtype, what, prelu_forward, ctx, y, x, slope, n, C, hw, layout);
}

extern "C" size_t dp_cuda_prelu_workspace_bytes(int N, int C, size_t hw, dp_cuda_layout layout)
{
    return dp__chunk_workspace_bytes(N, C, hw, layout, 1);
}

template <typename T>
static dp_status prelu_backward(dp_cuda_ctx *ctx, void *dx, float *dslope, const void *dy,
                                const void *x, const float *slope, int N, int C, size_t hw,
                                unsigned accum, dp_cuda_layout layout, void *workspace)
{
    prelu_op<T> op;
    op.dx = (T *)dx;
    op.dy = (const T *)dy;
    op.x = (const T *)x;
    op.slope = slope;
    op.add_dx = (accum & DP_ACCUM_DX) != 0;
    dp__chunking ch = dp__chunking_of(N, C, hw, layout);
    double *ws = (double *)workspace;
    DP_TRY(dp__chunk_reduce(ctx, ws, op, C, hw, ch, layout, "prelu backward"));
    prelu_finish_kernel<<<(C + 127) / 128, 128, 0, dp__stream(ctx)>>>(
        dslope, ws, ch.K, (unsigned)C, (accum & DP_ACCUM_DPARAMS) != 0);
    DP_CUDA_LAUNCHED("prelu backward (slopes)");
    return DP_OK;
}

extern "C" dp_status dp_cuda_prelu_backward(dp_cuda_ctx *ctx, void *dx, float *dslope,
                                            const void *dy, const void *x, const float *slope,
                                            int N, int C, size_t hw, unsigned accum,
                                            dp_cuda_layout layout, dp_cuda_dtype dtype,
                                            void *workspace)
{
    static const char what[] = "cuda prelu backward";
    DP_TRY(check_prelu(ctx, N, C, hw, layout, what));
    DP__OPS_NEED(dslope, what);
    DP__OPS_NEED(dy, what);
    DP__OPS_NEED(x, what);
    DP__OPS_NEED(slope, what);
    DP__OPS_NEED(workspace, what);
    if (dx != NULL && dx == dy && (accum & DP_ACCUM_DX)) {
        return dp_error_set(DP_ERR_ARG, "%s: dx may not equal dy when accumulating", what);
    }
    DP__OPS_DISPATCH(dtype, what, prelu_backward, ctx, dx, dslope, dy, x, slope, N, C, hw, accum,
                     layout, workspace);
}
