// Pooling on the device (ops.h), both layouts: one thread per output element forward, and one
// thread per input element backward that gathers the outputs of the windows covering it in the
// CPU's order (rows, then columns), so there are no atomics and float32 results are the CPU's
// bits. Global average pooling sums each plane in one thread with the CPU's blocked order.
#include "nn/cpu/cpu_internal.h"
#include "nn/cuda/ops_internal.cuh"

// Dims of one pooling call as the kernels want them.
struct pool_dims {
    int C, H, W, oh, ow;
    int kh, kw, sh, sw, ph, pw; // window, stride, leading padding (pad / 2)
    int include_pad;
};

static pool_dims dims_of(const dp_pool_params *p)
{
    pool_dims d = {p->C,        p->H,         p->W,         p->out_h,
                   p->out_w,    p->size_h,    p->size_w,    p->stride_h,
                   p->stride_w, p->pad_h / 2, p->pad_w / 2, p->count_include_pad};
    return d;
}

// Element (n, c, h, w) of an (N, C, H, W) tensor in layout.
__device__ __forceinline__ size_t at4(size_t n, int c, int h, int w, int C, int H, int W,
                                      dp_cuda_layout layout)
{
    return layout == DP_CUDA_NHWC ? (((n * H + h) * W + w) * C + c)
                                  : (((n * C + c) * H + h) * W + w);
}

// Splits flat index i of an (N, C, H, W) tensor in layout into its coordinates.
__device__ __forceinline__ void split4(size_t i, int C, int H, int W, dp_cuda_layout layout,
                                       size_t *n, int *c, int *h, int *w)
{
    if (layout == DP_CUDA_NHWC) {
        *c = (int)(i % C);
        i /= C;
        *w = (int)(i % W);
        i /= W;
        *h = (int)(i % H);
        *n = i / H;
    } else {
        *w = (int)(i % W);
        i /= W;
        *h = (int)(i % H);
        i /= H;
        *c = (int)(i % C);
        *n = i / C;
    }
}

// The input rows [*lo, *hi) of output row o (the CPU's window(), clipped to the input).
__device__ __forceinline__ void window(int o, int stride, int lead, int size, int in, int *lo,
                                       int *hi)
{
    int start = o * stride - lead;
    *lo = start < 0 ? 0 : start;
    *hi = start + size > in ? in : start + size;
}

// The outputs [*lo, *hi] whose window covers input row h (empty when *lo > *hi).
__device__ __forceinline__ void covering(int h, int stride, int lead, int size, int out, int *lo,
                                         int *hi)
{
    int a = h + lead - size + 1; // o stride >= a
    int first = a >= 0 ? (a + stride - 1) / stride : -((-a) / stride);
    *lo = first < 0 ? 0 : first;
    int last = (h + lead) / stride;
    *hi = last > out - 1 ? out - 1 : last;
}

// --- kernels ---

template <typename T>
__global__ void maxpool_forward_kernel(T *y, int32_t *argmax, const T *x, size_t n_out, pool_dims d,
                                       dp_cuda_layout layout)
{
    for (size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x; o < n_out;
         o += (size_t)gridDim.x * blockDim.x) {
        size_t n;
        int c, oh, ow, h0, h1, w0, w1;
        split4(o, d.C, d.oh, d.ow, layout, &n, &c, &oh, &ow);
        window(oh, d.sh, d.ph, d.kh, d.H, &h0, &h1);
        window(ow, d.sw, d.pw, d.kw, d.W, &w0, &w1);
        int best = h0 * d.W + w0;
        float max = dp__ld(x, at4(n, c, h0, w0, d.C, d.H, d.W, layout));
        for (int h = h0; h < h1; h++) {
            for (int w = w0; w < w1; w++) {
                float v = dp__ld(x, at4(n, c, h, w, d.C, d.H, d.W, layout));
                if (v > max || (isnan(v) && !isnan(max))) {
                    max = v;
                    best = h * d.W + w;
                }
            }
        }
        dp__st(y, o, max);
        argmax[o] = best;
    }
}

template <typename T>
__global__ void maxpool_backward_kernel(T *dx, const T *dy, const int32_t *argmax, size_t n_in,
                                        pool_dims d, int accumulate, dp_cuda_layout layout)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_in;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n;
        int c, h, w, oh0, oh1, ow0, ow1;
        split4(i, d.C, d.H, d.W, layout, &n, &c, &h, &w);
        covering(h, d.sh, d.ph, d.kh, d.oh, &oh0, &oh1);
        covering(w, d.sw, d.pw, d.kw, d.ow, &ow0, &ow1);
        const int32_t self = h * d.W + w;
        float acc = accumulate ? dp__ld(dx, i) : 0.0f;
        for (int oh = oh0; oh <= oh1; oh++) {
            for (int ow = ow0; ow <= ow1; ow++) {
                size_t o = at4(n, c, oh, ow, d.C, d.oh, d.ow, layout);
                if (argmax[o] == self) {
                    acc = dp__add(acc, dp__ld(dy, o));
                }
            }
        }
        dp__st(dx, i, acc);
    }
}

__device__ __forceinline__ float divisor(const pool_dims &d, int h0, int h1, int w0, int w1)
{
    return d.include_pad ? (float)(d.kh * d.kw) : (float)((h1 - h0) * (w1 - w0));
}

template <typename T>
__global__ void avgpool_forward_kernel(T *y, const T *x, size_t n_out, pool_dims d,
                                       dp_cuda_layout layout)
{
    for (size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x; o < n_out;
         o += (size_t)gridDim.x * blockDim.x) {
        size_t n;
        int c, oh, ow, h0, h1, w0, w1;
        split4(o, d.C, d.oh, d.ow, layout, &n, &c, &oh, &ow);
        window(oh, d.sh, d.ph, d.kh, d.H, &h0, &h1);
        window(ow, d.sw, d.pw, d.kw, d.W, &w0, &w1);
        float sum = 0.0f;
        for (int h = h0; h < h1; h++) {
            for (int w = w0; w < w1; w++) {
                sum = dp__add(sum, dp__ld(x, at4(n, c, h, w, d.C, d.H, d.W, layout)));
            }
        }
        dp__st(y, o, sum / divisor(d, h0, h1, w0, w1));
    }
}

template <typename T>
__global__ void avgpool_backward_kernel(T *dx, const T *dy, size_t n_in, pool_dims d,
                                        int accumulate, dp_cuda_layout layout)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_in;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n;
        int c, h, w, oh0, oh1, ow0, ow1;
        split4(i, d.C, d.H, d.W, layout, &n, &c, &h, &w);
        covering(h, d.sh, d.ph, d.kh, d.oh, &oh0, &oh1);
        covering(w, d.sw, d.pw, d.kw, d.ow, &ow0, &ow1);
        float acc = accumulate ? dp__ld(dx, i) : 0.0f;
        for (int oh = oh0; oh <= oh1; oh++) {
            int h0, h1;
            window(oh, d.sh, d.ph, d.kh, d.H, &h0, &h1);
            for (int ow = ow0; ow <= ow1; ow++) {
                int w0, w1;
                window(ow, d.sw, d.pw, d.kw, d.W, &w0, &w1);
                float g = dp__ld(dy, at4(n, c, oh, ow, d.C, d.oh, d.ow, layout)) /
                          divisor(d, h0, h1, w0, w1);
                acc = dp__add(acc, g);
            }
        }
        dp__st(dx, i, acc);
    }
}

// dp__sum of reduce.c over a strided plane: 8 float lanes per block of DP__SUM_BLOCK values,
// combined pairwise, blocks added in double, in the same order.
template <typename T> __device__ double blocked_sum(const T *x, size_t first, size_t step, size_t n)
{
    double sum = 0.0;
    for (size_t b = 0; b < n; b += DP__SUM_BLOCK) {
        const size_t len = n - b < DP__SUM_BLOCK ? n - b : DP__SUM_BLOCK;
        float lane[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        size_t i = 0;
        for (; i + 8 <= len; i += 8) {
#pragma unroll
            for (int l = 0; l < 8; l++) {
                lane[l] = dp__add(lane[l], dp__ld(x, first + (b + i + l) * step));
            }
        }
        float tail = 0.0f;
        for (; i < len; i++) {
            tail = dp__add(tail, dp__ld(x, first + (b + i) * step));
        }
        float lo = dp__add(dp__add(lane[0], lane[4]), dp__add(lane[1], lane[5]));
        float hi = dp__add(dp__add(lane[2], lane[6]), dp__add(lane[3], lane[7]));
        sum += (double)dp__add(lo, hi) + (double)tail;
    }
    return sum;
}

template <typename T>
__global__ void global_avgpool_forward_kernel(T *y, const T *x, size_t planes, unsigned C,
                                              size_t hw, dp_cuda_layout layout)
{
    for (size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x; o < planes;
         o += (size_t)gridDim.x * blockDim.x) {
        const size_t n = o / C, c = o % C;
        double s = layout == DP_CUDA_NHWC ? blocked_sum(x, n * hw * C + c, C, hw)
                                          : blocked_sum(x, o * hw, 1, hw);
        dp__st(y, o, (float)(s / (double)hw));
    }
}

template <typename T>
__global__ void global_avgpool_backward_kernel(T *dx, const T *dy, size_t n_in, unsigned C,
                                               size_t hw, int accumulate, dp_cuda_layout layout)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_in;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t plane = layout == DP_CUDA_NHWC ? (i / (hw * C)) * C + i % C : i / hw;
        float g = dp__ld(dy, plane) / (float)hw;
        dp__st(dx, i, accumulate ? dp__add(dp__ld(dx, i), g) : g);
    }
}

// --- launchers ---

// The CPU's check_call: params resolved and consistent.
static dp_status check_pool(dp_cuda_ctx *ctx, const dp_pool_params *p, dp_cuda_layout layout,
                            const char *what)
{
    DP__OPS_NEED(ctx, what);
    DP__OPS_NEED(p, what);
    DP_TRY(dp__ops_check_layout(layout, what));
    dp_pool_params q = *p;
    DP_TRY(dp_pool_params_resolve(&q));
    if (q.out_h != p->out_h || q.out_w != p->out_w) {
        return dp_error_set(DP_ERR_ARG, "%s: params not resolved; call dp_pool_params_resolve",
                            what);
    }
    return DP_OK;
}

static size_t in_count(const dp_pool_params *p)
{
    return (size_t)p->N * (size_t)p->C * (size_t)p->H * (size_t)p->W;
}

static size_t out_count(const dp_pool_params *p)
{
    return (size_t)p->N * (size_t)p->C * (size_t)p->out_h * (size_t)p->out_w;
}

template <typename T>
static dp_status maxpool_forward(dp_cuda_ctx *ctx, void *y, int32_t *argmax, const void *x,
                                 const dp_pool_params *p, dp_cuda_layout layout)
{
    size_t n = out_count(p);
    maxpool_forward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)y, argmax, (const T *)x, n, dims_of(p), layout);
    DP_CUDA_LAUNCHED("maxpool forward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_maxpool_forward(dp_cuda_ctx *ctx, void *y, int32_t *argmax,
                                             const void *x, const dp_pool_params *p,
                                             dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda maxpool forward";
    DP_TRY(check_pool(ctx, p, layout, what));
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(argmax, what);
    DP__OPS_NEED(x, what);
    DP__OPS_DISPATCH(dtype, what, maxpool_forward, ctx, y, argmax, x, p, layout);
}

template <typename T>
static dp_status maxpool_backward(dp_cuda_ctx *ctx, void *dx, const void *dy, const int32_t *argmax,
                                  const dp_pool_params *p, int accumulate, dp_cuda_layout layout)
{
    size_t n = in_count(p);
    maxpool_backward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)dx, (const T *)dy, argmax, n, dims_of(p), accumulate, layout);
    DP_CUDA_LAUNCHED("maxpool backward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_maxpool_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                              const int32_t *argmax, const dp_pool_params *p,
                                              int accumulate, dp_cuda_layout layout,
                                              dp_cuda_dtype dtype)
{
    static const char what[] = "cuda maxpool backward";
    DP_TRY(check_pool(ctx, p, layout, what));
    DP__OPS_NEED(dx, what);
    DP__OPS_NEED(dy, what);
    DP__OPS_NEED(argmax, what);
    DP__OPS_DISPATCH(dtype, what, maxpool_backward, ctx, dx, dy, argmax, p, accumulate, layout);
}

template <typename T>
static dp_status avgpool_forward(dp_cuda_ctx *ctx, void *y, const void *x, const dp_pool_params *p,
                                 dp_cuda_layout layout)
{
    size_t n = out_count(p);
    avgpool_forward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)y, (const T *)x, n, dims_of(p), layout);
    DP_CUDA_LAUNCHED("avgpool forward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_avgpool_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                             const dp_pool_params *p, dp_cuda_layout layout,
                                             dp_cuda_dtype dtype)
{
    static const char what[] = "cuda avgpool forward";
    DP_TRY(check_pool(ctx, p, layout, what));
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(x, what);
    DP__OPS_DISPATCH(dtype, what, avgpool_forward, ctx, y, x, p, layout);
}

template <typename T>
static dp_status avgpool_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                  const dp_pool_params *p, int accumulate, dp_cuda_layout layout)
{
    size_t n = in_count(p);
    avgpool_backward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)dx, (const T *)dy, n, dims_of(p), accumulate, layout);
    DP_CUDA_LAUNCHED("avgpool backward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_avgpool_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                              const dp_pool_params *p, int accumulate,
                                              dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda avgpool backward";
    DP_TRY(check_pool(ctx, p, layout, what));
    DP__OPS_NEED(dx, what);
    DP__OPS_NEED(dy, what);
    DP__OPS_DISPATCH(dtype, what, avgpool_backward, ctx, dx, dy, p, accumulate, layout);
}

static dp_status check_global(dp_cuda_ctx *ctx, int N, int C, size_t hw, dp_cuda_layout layout,
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
static dp_status global_forward(dp_cuda_ctx *ctx, void *y, const void *x, int N, int C, size_t hw,
                                dp_cuda_layout layout)
{
    size_t planes = (size_t)N * (size_t)C;
    global_avgpool_forward_kernel<T>
        <<<dp__ops_blocks(planes), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
            (T *)y, (const T *)x, planes, (unsigned)C, hw, layout);
    DP_CUDA_LAUNCHED("global avgpool forward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_global_avgpool_forward(dp_cuda_ctx *ctx, void *y, const void *x, int N,
                                                    int C, size_t hw, dp_cuda_layout layout,
                                                    dp_cuda_dtype dtype)
{
    static const char what[] = "cuda global_avgpool forward";
    DP_TRY(check_global(ctx, N, C, hw, layout, what));
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(x, what);
    DP__OPS_DISPATCH(dtype, what, global_forward, ctx, y, x, N, C, hw, layout);
}

template <typename T>
static dp_status global_backward(dp_cuda_ctx *ctx, void *dx, const void *dy, int N, int C,
                                 size_t hw, int accumulate, dp_cuda_layout layout)
{
    size_t n = (size_t)N * (size_t)C * hw;
    global_avgpool_backward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)dx, (const T *)dy, n, (unsigned)C, hw, accumulate, layout);
    DP_CUDA_LAUNCHED("global avgpool backward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_global_avgpool_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                                     int N, int C, size_t hw, int accumulate,
                                                     dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda global_avgpool backward";
    DP_TRY(check_global(ctx, N, C, hw, layout, what));
    DP__OPS_NEED(dx, what);
    DP__OPS_NEED(dy, what);
    DP__OPS_DISPATCH(dtype, what, global_backward, ctx, dx, dy, N, C, hw, accumulate, layout);
}
