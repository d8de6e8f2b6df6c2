// Dropout on the device (see step_ops.h and src/nn/cpu/dropout.c): the CPU's Philox4x32-10
// stream per sample, word i deciding element i of the sample in NCHW order, regenerated in
// backward; the affine factors computed on the host exactly as the CPU does. Nothing is stored
// between forward and backward.
#include <math.h>
#include <stdint.h>

#include "nn/cpu/activation.h"
#include "nn/cuda/step/step_internal.cuh"
#include "nn/cuda/step/step_ops.h"

enum { MODE_FORWARD = 0, MODE_BACKWARD, MODE_BACKWARD_ACC };

// Everything a thread needs, by value. Element word w of sample n: Philox block w / 4 of the
// counter (w / 4, step, first_sample + n, layer), word w % 4; kept when its 24-bit unit >= p.
typedef struct dropout_args {
    float scale, shift, dropped; // kept: scale x + shift; dropped: dropped; d y / d x = scale
    float p;
    uint32_t key0, key1, step, first_sample, layer;
    size_t N, S;  // samples, elements per sample
    size_t C, HW; // NHWC: channels and pixels per sample (S = C HW)
} dropout_args;

// --- kernels ---

__device__ __forceinline__ uint32_t word_of(uint4 b, unsigned j)
{
    return j == 0 ? b.x : j == 1 ? b.y : j == 2 ? b.z : b.w;
}

// dp_rng_bits_to_unit(x) >= p: the top 24 bits times 2^-24 (exact in float).
__device__ __forceinline__ bool keep_of(uint32_t x, float p)
{
    return __fmul_rn((float)(x >> 8), 1.0f / 16777216.0f) >= p;
}

__device__ __forceinline__ uint4 block_of(const dropout_args &a, size_t n, size_t w)
{
    const uint4 ctr = make_uint4((uint32_t)(w / 4), a.step, a.first_sample + (uint32_t)n, a.layer);
    return dp__philox(ctr, a.key0, a.key1);
}

// Element i of the buffer with its keep bit: the CPU's float arithmetic, no fused multiply-add.
template <typename T, int MODE>
__device__ __forceinline__ void apply(T *out, const T *in, size_t i, bool keep,
                                      const dropout_args &a)
{
    if (MODE == MODE_FORWARD) {
        const float y = keep ? __fadd_rn(__fmul_rn(a.scale, dp__ld(in, i)), a.shift) : a.dropped;
        dp__st(out, i, y);
    } else {
        const float g = keep ? __fmul_rn(a.scale, dp__ld(in, i)) : 0.0f;
        dp__st(out, i, MODE == MODE_BACKWARD_ACC ? __fadd_rn(dp__ld((const T *)out, i), g) : g);
    }
}

// NCHW: one thread per Philox block, i.e. 4 consecutive elements of a sample.
template <typename T, int MODE>
__global__ void dropout_nchw_kernel(T *out, const T *in, dropout_args a)
{
    const size_t quads = (a.S + 3) / 4, total = a.N * quads;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t q = (size_t)blockIdx.x * blockDim.x + threadIdx.x; q < total; q += stride) {
        const size_t n = q / quads, w0 = (q % quads) * 4;
        const uint4 b = block_of(a, n, w0);
        for (unsigned j = 0; j < 4 && w0 + j < a.S; j++) {
            apply<T, MODE>(out, in, n * a.S + w0 + j, keep_of(word_of(b, j), a.p), a);
        }
    }
}

// NHWC: one thread per element (coalesced along channels); element (hw, c) is word c HW + hw,
// so each thread draws its own block.
template <typename T, int MODE>
__global__ void dropout_nhwc_kernel(T *out, const T *in, dropout_args a)
{
    const size_t total = a.N * a.S, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const size_t n = e / a.S, r = e % a.S, hw = r / a.C, c = r % a.C;
        const size_t w = c * a.HW + hw;
        const uint4 b = block_of(a, n, w);
        apply<T, MODE>(out, in, e, keep_of(word_of(b, (unsigned)(w % 4)), a.p), a);
    }
}

// --- launchers ---

// dropout.c's check_params: the same affine factors from the same double arithmetic.
static dp_status make_args(const dp_dropout_params *p, dp_cuda_layout layout, int C,
                           const char *what, dropout_args *a)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: params are NULL", what);
    }
    if (!(p->p >= 0.0f && p->p < 1.0f)) {
        return dp_error_set(DP_ERR_ARG, "%s: drop probability %g outside [0, 1)", what,
                            (double)p->p);
    }
    if (p->N < 0) {
        return dp_error_set(DP_ERR_ARG, "%s: N = %d", what, p->N);
    }
    const double q = 1.0 - p->p;
    if (p->kind == DP_DROPOUT_STANDARD) {
        a->scale = (float)(1.0 / q);
        a->shift = 0.0f;
        a->dropped = 0.0f;
    } else if (p->kind == DP_DROPOUT_ALPHA) {
        const double alpha_p = -(double)DP_SELU_LAMBDA * DP_SELU_ALPHA;
        const double ka = 1.0 / sqrt(q * (1.0 + p->p * alpha_p * alpha_p));
        const double kb = -ka * alpha_p * p->p;
        a->scale = (float)ka;
        a->shift = (float)kb;
        a->dropped = (float)(ka * alpha_p + kb);
    } else {
        return dp_error_set(DP_ERR_ARG, "%s: unknown dropout kind %d", what, (int)p->kind);
    }
    if (layout != DP_CUDA_NCHW && layout != DP_CUDA_NHWC) {
        return dp_error_set(DP_ERR_ARG, "%s: unknown layout %d", what, (int)layout);
    }
    if (layout == DP_CUDA_NHWC && (C < 1 || p->sample_size % (size_t)C != 0)) {
        return dp_error_set(DP_ERR_ARG, "%s: NHWC with C = %d channels and %zu elements per sample",
                            what, C, p->sample_size);
    }
    a->p = p->p;
    a->key0 = (uint32_t)p->seed;
    a->key1 = (uint32_t)(p->seed >> 32);
    a->step = p->step;
    a->first_sample = p->first_sample;
    a->layer = p->layer;
    a->N = (size_t)p->N;
    a->S = p->sample_size;
    a->C = layout == DP_CUDA_NHWC ? (size_t)C : 1;
    a->HW = a->S / a->C;
    return DP_OK;
}

template <typename T, int MODE>
static dp_status launch_typed(dp_cuda_ctx *ctx, void *out, const void *in, const dropout_args &a,
                              dp_cuda_layout layout)
{
    cudaStream_t st = dp__stream(ctx);
    if (layout == DP_CUDA_NHWC) {
        dropout_nhwc_kernel<T, MODE>
            <<<dp__cuda_blocks(a.N * a.S, DP__STEP_THREADS), DP__STEP_THREADS, 0, st>>>(
                (T *)out, (const T *)in, a);
        DP_CUDA_LAUNCHED("dropout_nhwc_kernel");
    } else {
        dropout_nchw_kernel<T, MODE>
            <<<dp__cuda_blocks(a.N * ((a.S + 3) / 4), DP__STEP_THREADS), DP__STEP_THREADS, 0, st>>>(
                (T *)out, (const T *)in, a);
        DP_CUDA_LAUNCHED("dropout_nchw_kernel");
    }
    return DP_OK;
}

template <int MODE>
static dp_status launch(dp_cuda_ctx *ctx, void *out, const void *in, const dropout_args &a,
                        dp_cuda_layout layout, dp_cuda_dtype dtype, const char *what)
{
    if (a.N == 0 || a.S == 0) {
        return DP_OK;
    }
    switch (dtype) {
    case DP_CUDA_F32:
        return launch_typed<float, MODE>(ctx, out, in, a, layout);
    case DP_CUDA_BF16:
        return launch_typed<__nv_bfloat16, MODE>(ctx, out, in, a, layout);
    case DP_CUDA_F16:
        return launch_typed<__half, MODE>(ctx, out, in, a, layout);
    }
    return dp_error_set(DP_ERR_ARG, "%s: unknown storage type %d", what, (int)dtype);
}

extern "C" dp_status dp_cuda_dropout_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                             const dp_dropout_params *p, dp_cuda_layout layout,
                                             int C, dp_cuda_dtype dtype)
{
    const char *what = "cuda dropout forward";
    DP__STEP_NEED(ctx, what);
    DP__STEP_NEED(y, what);
    DP__STEP_NEED(x, what);
    dropout_args a;
    DP_TRY(make_args(p, layout, C, what, &a));
    return launch<MODE_FORWARD>(ctx, y, x, a, layout, dtype, what);
}

extern "C" dp_status dp_cuda_dropout_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                              const dp_dropout_params *p, int accumulate,
                                              dp_cuda_layout layout, int C, dp_cuda_dtype dtype)
{
    const char *what = "cuda dropout backward";
    DP__STEP_NEED(ctx, what);
    DP__STEP_NEED(dx, what);
    DP__STEP_NEED(dy, what);
    dropout_args a;
    DP_TRY(make_args(p, layout, C, what, &a));
    if (accumulate) {
        return launch<MODE_BACKWARD_ACC>(ctx, dx, dy, a, layout, dtype, what);
    }
    return launch<MODE_BACKWARD>(ctx, dx, dy, a, layout, dtype, what);
}
