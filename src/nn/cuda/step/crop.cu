// [crop] on the device (see step_ops.h): each thread owns one element of the output (forward)
// or of the input gradient (backward), draws its sample's window from the CPU's Philox stream
// and copies or gathers one value, so nothing is stored between forward and backward and the
// result is the CPU layer's bit for bit (a copy; the accumulating backward adds in float once).
#include <stdint.h>

#include "nn/cuda/step/step_internal.cuh"
#include "nn/cuda/step/step_ops.h"

typedef struct crop_args {
    size_t N, C, H, W, oh, ow;
    int train, flip, nhwc, accumulate;
    uint32_t key0, key1, step, first_sample, layer;
} crop_args;

typedef struct window {
    size_t off_h, off_w;
    bool flip;
} window;

__device__ __forceinline__ window window_of(const crop_args &a, size_t n)
{
    window w;
    if (!a.train) {
        w.off_h = (a.H - a.oh) / 2;
        w.off_w = (a.W - a.ow) / 2;
        w.flip = false;
        return w;
    }
    const uint4 b = dp__philox(make_uint4(0u, a.step, a.first_sample + (uint32_t)n, a.layer),
                               a.key0, a.key1);
    w.off_h = b.x % (uint32_t)(a.H - a.oh + 1);
    w.off_w = b.y % (uint32_t)(a.W - a.ow + 1);
    w.flip = a.flip && (b.z & 1u);
    return w;
}

// Element e of a (N, C, h, w) tensor in the layout: its (n, c, y, x).
__device__ __forceinline__ void coords(const crop_args &a, size_t e, size_t h, size_t w, size_t *n,
                                       size_t *c, size_t *y, size_t *x)
{
    if (a.nhwc) {
        *c = e % a.C;
        e /= a.C;
        *x = e % w;
        e /= w;
        *y = e % h;
        *n = e / h;
    } else {
        *x = e % w;
        e /= w;
        *y = e % h;
        e /= h;
        *c = e % a.C;
        *n = e / a.C;
    }
}

__device__ __forceinline__ size_t index_of(const crop_args &a, size_t n, size_t c, size_t y,
                                           size_t x, size_t h, size_t w)
{
    return a.nhwc ? ((n * h + y) * w + x) * a.C + c : ((n * a.C + c) * h + y) * w + x;
}

template <typename T>
__global__ void crop_forward_kernel(T *out, const T *in, crop_args a)
{
    const size_t total = a.N * a.C * a.oh * a.ow, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        size_t n, c, y, x;
        coords(a, e, a.oh, a.ow, &n, &c, &y, &x);
        const window w = window_of(a, n);
        const size_t sx = w.off_w + (w.flip ? a.ow - 1 - x : x);
        out[e] = in[index_of(a, n, c, w.off_h + y, sx, a.H, a.W)];
    }
}

template <typename T>
__global__ void crop_backward_kernel(T *dx, const T *dy, crop_args a)
{
    const size_t total = a.N * a.C * a.H * a.W, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        size_t n, c, y, x;
        coords(a, e, a.H, a.W, &n, &c, &y, &x);
        const window w = window_of(a, n);
        if (y >= w.off_h && y < w.off_h + a.oh && x >= w.off_w && x < w.off_w + a.ow) {
            const size_t wx = x - w.off_w, ox = w.flip ? a.ow - 1 - wx : wx;
            const float g = dp__ld(dy, index_of(a, n, c, y - w.off_h, ox, a.oh, a.ow));
            dp__st(dx, e, a.accumulate ? __fadd_rn(dp__ld((const T *)dx, e), g) : g);
        } else if (!a.accumulate) { // outside the window: 0, or left as it is (a -0 stays -0)
            dp__st(dx, e, 0.0f);
        }
    }
}

static dp_status make_args(const dp_crop_random_params *p, dp_cuda_layout layout, int accumulate,
                           const char *what, crop_args *a)
{
    DP__STEP_NEED(p, what);
    if (p->N < 0 || p->C < 1 || p->out_h < 1 || p->out_w < 1 || p->out_h > p->H ||
        p->out_w > p->W) {
        return dp_error_set(DP_ERR_ARG,
                            "%s: a %dx%d window of a %dx%dx%d input (N = %d) does not fit", what,
                            p->out_h, p->out_w, p->C, p->H, p->W, p->N);
    }
    if (layout != DP_CUDA_NCHW && layout != DP_CUDA_NHWC) {
        return dp_error_set(DP_ERR_ARG, "%s: unknown layout %d", what, (int)layout);
    }
    a->N = (size_t)p->N;
    a->C = (size_t)p->C;
    a->H = (size_t)p->H;
    a->W = (size_t)p->W;
    a->oh = (size_t)p->out_h;
    a->ow = (size_t)p->out_w;
    a->train = p->train != 0;
    a->flip = p->flip != 0;
    a->nhwc = layout == DP_CUDA_NHWC;
    a->accumulate = accumulate != 0;
    a->key0 = (uint32_t)p->seed;
    a->key1 = (uint32_t)(p->seed >> 32);
    a->step = p->step;
    a->first_sample = p->first_sample;
    a->layer = p->layer;
    return DP_OK;
}

template <typename T>
static dp_status launch_typed(dp_cuda_ctx *ctx, void *out, const void *in, const crop_args &a,
                              int backward)
{
    cudaStream_t st = dp__stream(ctx);
    if (backward) {
        crop_backward_kernel<T><<<dp__cuda_blocks(a.N * a.C * a.H * a.W, DP__STEP_THREADS),
                                  DP__STEP_THREADS, 0, st>>>((T *)out, (const T *)in, a);
        DP_CUDA_LAUNCHED("crop_backward_kernel");
    } else {
        crop_forward_kernel<T><<<dp__cuda_blocks(a.N * a.C * a.oh * a.ow, DP__STEP_THREADS),
                                 DP__STEP_THREADS, 0, st>>>((T *)out, (const T *)in, a);
        DP_CUDA_LAUNCHED("crop_forward_kernel");
    }
    return DP_OK;
}

static dp_status launch(dp_cuda_ctx *ctx, void *out, const void *in, const crop_args &a,
                        int backward, dp_cuda_dtype dtype, const char *what)
{
    if (a.N == 0) {
        return DP_OK;
    }
    switch (dtype) {
    case DP_CUDA_F32:
        return launch_typed<float>(ctx, out, in, a, backward);
    case DP_CUDA_BF16:
        return launch_typed<__nv_bfloat16>(ctx, out, in, a, backward);
    case DP_CUDA_F16:
        return launch_typed<__half>(ctx, out, in, a, backward);
    }
    return dp_error_set(DP_ERR_ARG, "%s: unknown storage type %d", what, (int)dtype);
}

extern "C" dp_status dp_cuda_crop_random_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                                 const dp_crop_random_params *p,
                                                 dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    const char *what = "cuda crop forward";
    DP__STEP_NEED(ctx, what);
    DP__STEP_NEED(y, what);
    DP__STEP_NEED(x, what);
    crop_args a;
    DP_TRY(make_args(p, layout, 0, what, &a));
    return launch(ctx, y, x, a, 0, dtype, what);
}

extern "C" dp_status dp_cuda_crop_random_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                                  const dp_crop_random_params *p, int accumulate,
                                                  dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    const char *what = "cuda crop backward";
    DP__STEP_NEED(ctx, what);
    DP__STEP_NEED(dx, what);
    DP__STEP_NEED(dy, what);
    crop_args a;
    DP_TRY(make_args(p, layout, accumulate, what, &a));
    return launch(ctx, dx, dy, a, 1, dtype, what);
}
