// Helpers shared by the .cu files of ops.h (never included from C): argument checks, the storage
// type dispatch, the activations as device functions (the CPU's formulas), tensor indexing in
// both layouts, and the deterministic per-channel reduction (fixed chunks, float per thread,
// double across threads and chunks) that batch norm and PReLU use.
#ifndef DP_NN_CUDA_OPS_INTERNAL_CUH
#define DP_NN_CUDA_OPS_INTERNAL_CUH

#include <stdint.h>

#include "core/error.h"
#include "nn/cuda/cuda_util.cuh"
#include "nn/cuda/ops.h"

// Threads per block of the element-wise kernels.
#define DP__OPS_THREADS 256

// Returns DP_ERR_ARG from the calling launcher, naming it and the argument, when ptr is NULL.
#define DP__OPS_NEED(ptr, what)                                                                    \
    do {                                                                                           \
        if ((ptr) == NULL) {                                                                       \
            return dp_error_set(DP_ERR_ARG, "%s: argument '%s' is NULL", (what), #ptr);            \
        }                                                                                          \
    } while (0)

// Calls fn<T>(args...) with T the storage type of dtype; DP_ERR_ARG for an unknown dtype.
#define DP__OPS_DISPATCH(dtype, what, fn, ...)                                                     \
    do {                                                                                           \
        switch (dtype) {                                                                           \
        case DP_CUDA_F32:                                                                          \
            return fn<float>(__VA_ARGS__);                                                         \
        case DP_CUDA_BF16:                                                                         \
            return fn<__nv_bfloat16>(__VA_ARGS__);                                                 \
        case DP_CUDA_F16:                                                                          \
            return fn<__half>(__VA_ARGS__);                                                        \
        }                                                                                          \
        return dp_error_set(DP_ERR_ARG, "%s: unknown storage type %d", (what), (int)(dtype));      \
    } while (0)

static inline dp_status dp__ops_check_layout(dp_cuda_layout layout, const char *what)
{
    if (layout != DP_CUDA_NCHW && layout != DP_CUDA_NHWC) {
        return dp_error_set(DP_ERR_ARG, "%s: unknown layout %d", what, (int)layout);
    }
    return DP_OK;
}

// Grid for a grid-stride loop over n elements with DP__OPS_THREADS threads.
static inline unsigned dp__ops_blocks(size_t n)
{
    return dp__cuda_blocks(n, DP__OPS_THREADS);
}

// Float operations that nvcc may not contract into fused multiply-adds: the CPU (ISO C, so GCC's
// -ffp-contract=off) rounds every product, and these keep the device's bits equal to it.
__device__ __forceinline__ float dp__mul(float a, float b)
{
    return __fmul_rn(a, b);
}
__device__ __forceinline__ float dp__add(float a, float b)
{
    return __fadd_rn(a, b);
}
__device__ __forceinline__ float dp__sub(float a, float b)
{
    return __fsub_rn(a, b);
}

// --- activations (cpu/activation.c, the same formulas and thresholds) ---

__device__ __forceinline__ float dp__sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

__device__ __forceinline__ float dp__act_f(float v, dp_act act, float slope)
{
    const float k0 = 0.7978845608028654f, k1 = 0.044715f; // gelu: sqrt(2 / pi), 0.044715
    switch (act) {
    case DP_ACT_LINEAR:
        return v;
    case DP_ACT_LOGISTIC:
        return dp__sigmoid(v);
    case DP_ACT_LOGGY:
        return 2.0f * dp__sigmoid(v) - 1.0f;
    case DP_ACT_RELU:
        return v > 0.0f ? v : 0.0f;
    case DP_ACT_LEAKY:
        return v > 0.0f ? v : slope * v;
    case DP_ACT_ELU:
        return v >= 0.0f ? v : expm1f(v);
    case DP_ACT_SELU:
        return v >= 0.0f ? DP_SELU_LAMBDA * v : (DP_SELU_LAMBDA * DP_SELU_ALPHA) * expm1f(v);
    case DP_ACT_RELIE:
        return v > 0.0f ? v : 0.01f * v;
    case DP_ACT_RAMP:
        return (v > 0.0f ? v : 0.0f) + 0.1f * v;
    case DP_ACT_TANH:
        return tanhf(v);
    case DP_ACT_PLSE:
        if (v < -4.0f) {
            return 0.01f * (v + 4.0f);
        }
        return v > 4.0f ? 0.01f * (v - 4.0f) + 1.0f : 0.125f * v + 0.5f;
    case DP_ACT_STAIR: {
        float n = floorf(v);
        return fmodf(n, 2.0f) == 0.0f ? floorf(v / 2.0f) : (v - n) + floorf(v / 2.0f);
    }
    case DP_ACT_HARDTAN:
        return v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
    case DP_ACT_LHTAN:
        if (v < 0.0f) {
            return 0.001f * v;
        }
        return v > 1.0f ? 0.001f * (v - 1.0f) + 1.0f : v;
    case DP_ACT_RELU6:
        return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    case DP_ACT_SWISH:
        return v * dp__sigmoid(v);
    case DP_ACT_MISH: {
        if (v > 20.0f) { // AlexeyAB's threshold: softplus(x) = x, tanh rounds to 1
            return v;
        }
        float e = expf(v), n = e * (e + 2.0f);
        return v * n / (n + 2.0f);
    }
    case DP_ACT_GELU:
        return v * dp__sigmoid(2.0f * k0 * (v + k1 * v * v * v));
    case DP_ACT_GELU_ERF:
        return 0.5f * v * erfcf(-v * 0.70710678118654752f);
    default: // prelu and unknown values are refused by the launchers
        return v;
    }
}

// f'(v), v the forward input x when dp_act_backward_needs_input(act), else the output y.
__device__ __forceinline__ float dp__act_grad(float v, dp_act act, float slope)
{
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    switch (act) {
    case DP_ACT_LINEAR:
        return 1.0f;
    case DP_ACT_LOGISTIC:
        return (1.0f - v) * v;
    case DP_ACT_LOGGY:
        return 2.0f * (1.0f - 0.5f * (v + 1.0f)) * 0.5f * (v + 1.0f);
    case DP_ACT_RELU:
        return v > 0.0f ? 1.0f : 0.0f;
    case DP_ACT_LEAKY:
        return v > 0.0f ? 1.0f : slope;
    case DP_ACT_ELU:
        return v >= 0.0f ? 1.0f : v + 1.0f;
    case DP_ACT_SELU:
        return v >= 0.0f ? DP_SELU_LAMBDA : v + DP_SELU_LAMBDA * DP_SELU_ALPHA;
    case DP_ACT_RELIE:
        return v > 0.0f ? 1.0f : 0.01f;
    case DP_ACT_RAMP:
        return (v > 0.0f ? 1.0f : 0.0f) + 0.1f;
    case DP_ACT_TANH:
        return 1.0f - v * v;
    case DP_ACT_PLSE:
        return (v < 0.0f || v > 1.0f) ? 0.01f : 0.125f;
    case DP_ACT_STAIR:
        return floorf(v) == v ? 0.0f : 1.0f;
    case DP_ACT_HARDTAN:
        return (v > -1.0f && v < 1.0f) ? 1.0f : 0.0f;
    case DP_ACT_LHTAN:
        return (v > 0.0f && v < 1.0f) ? 1.0f : 0.001f;
    case DP_ACT_RELU6:
        return (v > 0.0f && v < 6.0f) ? 1.0f : 0.0f;
    case DP_ACT_SWISH: {
        float s = dp__sigmoid(v);
        return s * (1.0f + v * (1.0f - s));
    }
    case DP_ACT_MISH: {
        if (v > 20.0f) {
            return 1.0f;
        }
        float e = expf(v), n = e * (e + 2.0f), d = n + 2.0f;
        return n / d + v * 4.0f * e * (e + 1.0f) / (d * d);
    }
    case DP_ACT_GELU: {
        float s = dp__sigmoid(2.0f * k0 * (v + k1 * v * v * v));
        return s + 2.0f * v * s * (1.0f - s) * k0 * (1.0f + 3.0f * k1 * v * v);
    }
    case DP_ACT_GELU_ERF:
        return 0.5f * erfcf(-v * 0.70710678118654752f) +
               v * 0.39894228040143268f * expf(-0.5f * v * v);
    default:
        return 1.0f;
    }
}

// g = dy act'(y) for the activations fused with batch norm and shortcut (linear, relu, leaky),
// exactly as the CPU: relu gives 0 where y <= 0, leaky slope dy (one rounding).
__device__ __forceinline__ float dp__fused_grad(float dy, float y, dp_act act, float slope)
{
    if (act == DP_ACT_LINEAR || y > 0.0f) {
        return dy;
    }
    return act == DP_ACT_RELU ? 0.0f : dp__mul(slope, dy);
}

// The CPU's checks of an activation argument (activation.c check_act).
dp_status dp__ops_check_act(dp_act act, float slope, const char *what);

// --- indexing ---

// Channel of flat element i of an (N, C, hw) tensor.
__device__ __forceinline__ unsigned dp__channel_of(size_t i, unsigned C, size_t hw,
                                                   dp_cuda_layout layout)
{
    if (layout == DP_CUDA_NHWC) {
        return (unsigned)(i % C);
    }
    return (unsigned)((i / hw) % C);
}

// Flat offset of element (n, c, s) of an (N, C, S) tensor (S the spatial positions).
__device__ __forceinline__ size_t dp__offset(size_t n, size_t c, size_t s, size_t C, size_t S,
                                             dp_cuda_layout layout)
{
    return layout == DP_CUDA_NHWC ? (n * S + s) * C + c : (n * C + c) * S + s;
}

// --- deterministic per-channel reduction ---
//
// The M = N hw values of each channel are cut into K chunks of R consecutive values (in (n, s)
// order); one block reduces one chunk of one channel (NCHW: 256 threads on that channel) or of
// 32 channels (NHWC: 32 x 8 threads, threadIdx.x the channel, so every warp reads a row of
// consecutive channels). Each thread accumulates its values in float, the block combines the
// threads by a fixed pairwise tree in double, and a per-channel pass combines the chunks in
// order: the tree depends on (N, C, hw, layout) only.

typedef struct dp__chunking {
    size_t M;  // values per channel
    size_t R;  // values per chunk (the last may be short)
    int K;     // chunks per channel
    int tiles; // NHWC: channel tiles of 32; NCHW: C
} dp__chunking;

dp__chunking dp__chunking_of(int N, int C, size_t hw, dp_cuda_layout layout);

// Device bytes of the partials for states of `doubles` doubles per (chunk, channel).
size_t dp__chunk_workspace_bytes(int N, int C, size_t hw, dp_cuda_layout layout, int doubles);

#define DP__RED_ROWS 8 // NHWC: thread rows per block (32 x 8 threads)

// The partial-reduction kernel. Op provides:
//   enum { S };                                 doubles per state (<= 3)
//   struct Acc;  __device__ Acc init() const;   per-thread float state
//   __device__ void add(Acc &, size_t off, unsigned c) const;   value at flat offset off
//   __device__ static void to_double(const Acc &, double *out);
//   __device__ static void merge(double *a, const double *b);  a = a (+) b
// ws[(k C + c) S + j] receives chunk k of channel c.
template <typename Op>
__global__ void dp__chunk_reduce_kernel(double *ws, Op op, unsigned C, size_t hw, size_t M,
                                        size_t R, dp_cuda_layout layout)
{
    __shared__ double sh[DP__OPS_THREADS * 3];
    const unsigned k = blockIdx.x;
    const size_t e0 = (size_t)k * R, e1 = e0 + R < M ? e0 + R : M;
    typename Op::Acc acc = op.init();
    unsigned c, t, lanes;
    if (layout == DP_CUDA_NHWC) {
        c = blockIdx.y * 32u + threadIdx.x;
        t = threadIdx.y * 32u + threadIdx.x;
        lanes = DP__RED_ROWS;
        if (c < C) {
            for (size_t e = e0 + threadIdx.y; e < e1; e += DP__RED_ROWS) {
                op.add(acc, e * C + c, c);
            }
        }
    } else {
        c = blockIdx.y;
        t = threadIdx.x;
        lanes = DP__OPS_THREADS;
        size_t e = e0 + t;
        size_t n = e / hw, s = e % hw;
        for (; e < e1; e += DP__OPS_THREADS) {
            op.add(acc, (n * C + c) * hw + s, c);
            s += DP__OPS_THREADS;
            if (s >= hw) { // one division per step, whatever hw (1 x 1 planes too)
                n += s / hw;
                s %= hw;
            }
        }
    }
    double *mine = sh + (size_t)t * Op::S;
    Op::to_double(acc, mine);
    __syncthreads();
    // NHWC: rows of one channel are 32 threads apart; NCHW: all threads hold one channel.
    const unsigned step = layout == DP_CUDA_NHWC ? 32u : 1u;
    const unsigned lane = layout == DP_CUDA_NHWC ? threadIdx.y : threadIdx.x;
    for (unsigned w = lanes / 2; w > 0; w >>= 1) {
        if (lane < w) {
            Op::merge(mine, sh + (size_t)(t + w * step) * Op::S);
        }
        __syncthreads();
    }
    if (lane == 0 && c < C) {
        double *out = ws + ((size_t)k * C + c) * Op::S;
        for (int j = 0; j < Op::S; j++) {
            out[j] = mine[j];
        }
    }
}

// Launches the partial reduction over every channel.
template <typename Op>
static dp_status dp__chunk_reduce(dp_cuda_ctx *ctx, double *ws, const Op &op, int C, size_t hw,
                                  const dp__chunking &ch, dp_cuda_layout layout, const char *what)
{
    if (ch.tiles > 65535) {
        return dp_error_set(DP_ERR_UNSUPPORTED, "%s: %d channels (at most 65535 in NCHW)", what, C);
    }
    dim3 grid((unsigned)ch.K, (unsigned)ch.tiles);
    dim3 block = layout == DP_CUDA_NHWC ? dim3(32, DP__RED_ROWS) : dim3(DP__OPS_THREADS);
    dp__chunk_reduce_kernel<Op>
        <<<grid, block, 0, dp__stream(ctx)>>>(ws, op, (unsigned)C, hw, ch.M, ch.R, layout);
    DP_CUDA_LAUNCHED(what);
    return DP_OK;
}

// Combines the K chunk states of channel c in chunk order into out (S doubles).
template <typename Op>
__device__ void dp__chunk_combine(double *out, const double *ws, int K, unsigned C, unsigned c)
{
    for (int j = 0; j < Op::S; j++) {
        out[j] = ws[(size_t)c * Op::S + j];
    }
    for (int k = 1; k < K; k++) {
        Op::merge(out, ws + ((size_t)k * C + c) * Op::S);
    }
}

// Two plain sums per channel (float per thread, double beyond): the backward passes.
struct dp__sum2_acc {
    float s0, s1;
};

__device__ __forceinline__ void dp__sum2_to_double(const dp__sum2_acc &a, double *out)
{
    out[0] = (double)a.s0;
    out[1] = (double)a.s1;
}

__device__ __forceinline__ void dp__sum2_merge(double *a, const double *b)
{
    a[0] += b[0];
    a[1] += b[1];
}

#endif
