// Data-movement kernels on the device (ops.h): Darknet's shortcut (with its different-shape
// rule) and the same-shape shortcut with its activation, route's channel copies, crop, storage
// casts and the NCHW <-> NHWC conversion. Every output element is written by one thread that
// gathers what it needs, so results are exact, deterministic and (float32) the CPU's bits.
#include "nn/cuda/ops_internal.cuh"

// Element (n, c, h, w) of an (N, C, H, W) tensor in layout.
__device__ __forceinline__ size_t at4(size_t n, int c, int h, int w, int C, int H, int W,
                                      dp_cuda_layout layout)
{
    return layout == DP_CUDA_NHWC ? (((n * H + h) * W + w) * C + c)
                                  : (((n * C + c) * H + h) * W + w);
}

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

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

// --- shortcut ---

// Darknet's index maps (cpu/elementwise.c): from (k, j stride, i stride) goes with y (k,
// j sample, i sample) for k < minc, j < minh, i < minw.
struct shortcut_map {
    int C, H, W, fC, fH, fW;
    int stride, sample, minc, minh, minw;
    float alpha, beta;
};

static shortcut_map map_of(const dp_shortcut_params *p)
{
    shortcut_map m;
    m.C = p->C;
    m.H = p->H;
    m.W = p->W;
    m.fC = p->from_C;
    m.fH = p->from_H;
    m.fW = p->from_W;
    m.stride = p->from_W / p->W;
    m.sample = p->W / p->from_W;
    m.stride = m.stride < 1 ? 1 : m.stride;
    m.sample = m.sample < 1 ? 1 : m.sample;
    m.minc = p->C < p->from_C ? p->C : p->from_C;
    m.minh = p->H < p->from_H ? p->H : p->from_H;
    m.minw = p->W < p->from_W ? p->W : p->from_W;
    m.alpha = p->alpha;
    m.beta = p->beta;
    return m;
}

template <typename T>
__global__ void shortcut_forward_kernel(T *y, const T *x, const T *from, size_t n_y, shortcut_map m,
                                        dp_cuda_layout layout)
{
    GRID_STRIDE(i, n_y)
    {
        size_t n;
        int k, h, w;
        split4(i, m.C, m.H, m.W, layout, &n, &k, &h, &w);
        float v = dp__mul(m.alpha, dp__ld(x, i));
        const int j = h / m.sample, l = w / m.sample;
        if (k < m.minc && h % m.sample == 0 && w % m.sample == 0 && j < m.minh && l < m.minw) {
            float f = dp__ld(from, at4(n, k, j * m.stride, l * m.stride, m.fC, m.fH, m.fW, layout));
            v = dp__add(v, dp__mul(m.beta, f));
        }
        dp__st(y, i, v);
    }
}

template <typename T>
__global__ void scale_into_kernel(T *out, const T *in, size_t n, float s, int add)
{
    GRID_STRIDE(i, n)
    {
        float v = dp__mul(s, dp__ld(in, i));
        dp__st(out, i, add ? dp__add(dp__ld(out, i), v) : v);
    }
}

template <typename T>
__global__ void shortcut_dfrom_kernel(T *dfrom, const T *dy, size_t n_from, shortcut_map m, int add,
                                      dp_cuda_layout layout)
{
    GRID_STRIDE(i, n_from)
    {
        size_t n;
        int k, h, w;
        split4(i, m.fC, m.fH, m.fW, layout, &n, &k, &h, &w);
        float acc = add ? dp__ld(dfrom, i) : 0.0f;
        const int j = h / m.stride, l = w / m.stride;
        if (k < m.minc && h % m.stride == 0 && w % m.stride == 0 && j < m.minh && l < m.minw) {
            float g = dp__ld(dy, at4(n, k, j * m.sample, l * m.sample, m.C, m.H, m.W, layout));
            acc = dp__add(acc, dp__mul(m.beta, g));
        }
        dp__st(dfrom, i, acc);
    }
}

static dp_status check_shortcut(dp_cuda_ctx *ctx, const dp_shortcut_params *p,
                                dp_cuda_layout layout, const char *what)
{
    DP__OPS_NEED(ctx, what);
    DP_TRY(dp__ops_check_layout(layout, what));
    return dp_shortcut_params_check(p);
}

static size_t y_count(const dp_shortcut_params *p)
{
    return (size_t)p->N * (size_t)p->C * (size_t)p->H * (size_t)p->W;
}

static size_t from_count(const dp_shortcut_params *p)
{
    return (size_t)p->N * (size_t)p->from_C * (size_t)p->from_H * (size_t)p->from_W;
}

template <typename T>
static dp_status shortcut_forward(dp_cuda_ctx *ctx, void *y, const void *x, const void *from,
                                  const dp_shortcut_params *p, dp_cuda_layout layout)
{
    size_t n = y_count(p);
    shortcut_forward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)y, (const T *)x, (const T *)from, n, map_of(p), layout);
    DP_CUDA_LAUNCHED("shortcut forward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_shortcut_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                              const void *from, const dp_shortcut_params *p,
                                              dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda shortcut forward";
    DP_TRY(check_shortcut(ctx, p, layout, what));
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(x, what);
    DP__OPS_NEED(from, what);
    DP__OPS_DISPATCH(dtype, what, shortcut_forward, ctx, y, x, from, p, layout);
}

template <typename T>
static dp_status shortcut_backward(dp_cuda_ctx *ctx, void *dx, void *dfrom, const void *dy,
                                   const dp_shortcut_params *p, int add_dx, int add_from,
                                   dp_cuda_layout layout)
{
    cudaStream_t s = dp__stream(ctx);
    if (dx != NULL) {
        size_t n = y_count(p);
        scale_into_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, s>>>((T *)dx, (const T *)dy,
                                                                           n, p->alpha, add_dx);
        DP_CUDA_LAUNCHED("shortcut backward (dx)");
    }
    if (dfrom != NULL) {
        size_t n = from_count(p);
        shortcut_dfrom_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, s>>>(
            (T *)dfrom, (const T *)dy, n, map_of(p), add_from, layout);
        DP_CUDA_LAUNCHED("shortcut backward (dfrom)");
    }
    return DP_OK;
}

extern "C" dp_status dp_cuda_shortcut_backward(dp_cuda_ctx *ctx, void *dx, void *dfrom,
                                               const void *dy, const dp_shortcut_params *p,
                                               int accumulate_dx, int accumulate_dfrom,
                                               dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda shortcut backward";
    DP_TRY(check_shortcut(ctx, p, layout, what));
    DP__OPS_NEED(dy, what);
    DP__OPS_DISPATCH(dtype, what, shortcut_backward, ctx, dx, dfrom, dy, p, accumulate_dx,
                     accumulate_dfrom, layout);
}

// --- same-shape shortcut with its activation ---

template <typename T>
__global__ void shortcut_act_forward_kernel(T *y, const T *x, const T *from, size_t n, float a,
                                            float b, dp_act act, float slope)
{
    GRID_STRIDE(i, n)
    {
        float v = dp__add(dp__mul(a, dp__ld(x, i)), dp__mul(b, dp__ld(from, i)));
        if (act == DP_ACT_RELU) {
            v = v > 0.0f ? v : 0.0f;
        } else if (act == DP_ACT_LEAKY) {
            v = v > 0.0f ? v : dp__mul(slope, v);
        }
        dp__st(y, i, v);
    }
}

// dx (+)= alpha g and dfrom (+)= beta g with g = dy act'(y), one pass over dy and y.
template <typename T>
__global__ void shortcut_act_backward_kernel(T *dx, T *dfrom, const T *dy, const T *y, size_t n,
                                             float a, float b, dp_act act, float slope, int add_dx,
                                             int add_from)
{
    GRID_STRIDE(i, n)
    {
        float yv = act == DP_ACT_LINEAR ? 0.0f : dp__ld(y, i);
        float g = dp__fused_grad(dp__ld(dy, i), yv, act, slope);
        if (dx != NULL) {
            float v = dp__mul(a, g);
            dp__st(dx, i, add_dx ? dp__add(dp__ld(dx, i), v) : v);
        }
        if (dfrom != NULL) {
            float v = dp__mul(b, g);
            dp__st(dfrom, i, add_from ? dp__add(dp__ld(dfrom, i), v) : v);
        }
    }
}

static dp_status check_same_shape(dp_cuda_ctx *ctx, const dp_shortcut_params *p, dp_act act,
                                  const char *what)
{
    DP__OPS_NEED(ctx, what);
    DP_TRY(dp_shortcut_params_check(p));
    if (p->from_C != p->C || p->from_H != p->H || p->from_W != p->W || !dp_bn_act_fusable(act)) {
        return dp_error_set(DP_ERR_ARG,
                            "%s: needs one shape (got %dx%dx%d and %dx%dx%d) and a linear, relu "
                            "or leaky activation (got %s)",
                            what, p->C, p->H, p->W, p->from_C, p->from_H, p->from_W,
                            dp_act_name(act));
    }
    return DP_OK;
}

template <typename T>
static dp_status shortcut_act_forward(dp_cuda_ctx *ctx, void *y, const void *x, const void *from,
                                      const dp_shortcut_params *p, dp_act act, float slope)
{
    size_t n = y_count(p);
    shortcut_act_forward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)y, (const T *)x, (const T *)from, n, p->alpha, p->beta, act, slope);
    DP_CUDA_LAUNCHED("shortcut+activation forward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_shortcut_act_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                                  const void *from, const dp_shortcut_params *p,
                                                  dp_act act, float slope, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda shortcut forward";
    DP_TRY(check_same_shape(ctx, p, act, what));
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(x, what);
    DP__OPS_NEED(from, what);
    DP__OPS_DISPATCH(dtype, what, shortcut_act_forward, ctx, y, x, from, p, act, slope);
}

template <typename T>
static dp_status shortcut_act_backward(dp_cuda_ctx *ctx, void *dx, void *dfrom, const void *dy,
                                       const void *y, const dp_shortcut_params *p, dp_act act,
                                       float slope, int add_dx, int add_from)
{
    size_t n = y_count(p);
    shortcut_act_backward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)dx, (T *)dfrom, (const T *)dy, (const T *)y, n, p->alpha, p->beta, act, slope, add_dx,
        add_from);
    DP_CUDA_LAUNCHED("shortcut+activation backward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_shortcut_act_backward(dp_cuda_ctx *ctx, void *dx, void *dfrom,
                                                   const void *dy, const void *y,
                                                   const dp_shortcut_params *p, dp_act act,
                                                   float slope, int accumulate_dx,
                                                   int accumulate_dfrom, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda shortcut backward";
    DP_TRY(check_same_shape(ctx, p, act, what));
    DP__OPS_NEED(dy, what);
    if (act != DP_ACT_LINEAR) {
        DP__OPS_NEED(y, what);
    }
    DP__OPS_DISPATCH(dtype, what, shortcut_act_backward, ctx, dx, dfrom, dy, y, p, act, slope,
                     accumulate_dx, accumulate_dfrom);
}

// --- channel copy (route) ---

template <typename T>
__global__ void channel_copy_kernel(T *dst, int dst_C, int dst_c0, const T *src, int src_C,
                                    int src_c0, int count, size_t n, size_t hw, int add,
                                    dp_cuda_layout layout)
{
    GRID_STRIDE(j, n)
    {
        size_t d, s;
        if (layout == DP_CUDA_NHWC) {
            size_t pix = j / (size_t)count, c = j % (size_t)count; // pix = n hw + s
            d = pix * dst_C + dst_c0 + c;
            s = pix * src_C + src_c0 + c;
        } else {
            size_t block = (size_t)count * hw, img = j / block, r = j % block;
            d = (img * dst_C + dst_c0) * hw + r;
            s = (img * src_C + src_c0) * hw + r;
        }
        float v = dp__ld(src, s);
        dp__st(dst, d, add ? dp__add(dp__ld(dst, d), v) : v);
    }
}

template <typename T>
static dp_status channel_copy(dp_cuda_ctx *ctx, void *dst, int dst_C, int dst_c0, const void *src,
                              int src_C, int src_c0, int count, int N, size_t hw, int add,
                              dp_cuda_layout layout)
{
    size_t n = (size_t)N * (size_t)count * hw;
    if (n == 0) {
        return DP_OK;
    }
    channel_copy_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)dst, dst_C, dst_c0, (const T *)src, src_C, src_c0, count, n, hw, add, layout);
    DP_CUDA_LAUNCHED("channel copy");
    return DP_OK;
}

extern "C" dp_status dp_cuda_channel_copy(dp_cuda_ctx *ctx, void *dst, int dst_C, int dst_c0,
                                          const void *src, int src_C, int src_c0, int count, int N,
                                          size_t hw, int accumulate, dp_cuda_layout layout,
                                          dp_cuda_dtype dtype)
{
    static const char what[] = "cuda channel copy";
    DP__OPS_NEED(ctx, what);
    DP__OPS_NEED(dst, what);
    DP__OPS_NEED(src, what);
    DP_TRY(dp__ops_check_layout(layout, what));
    if (N < 0 || count < 0 || dst_c0 < 0 || src_c0 < 0 || dst_c0 + count > dst_C ||
        src_c0 + count > src_C) {
        return dp_error_set(DP_ERR_ARG,
                            "channel copy: %d channels from %d of %d into %d of %d (N %d)", count,
                            src_c0, src_C, dst_c0, dst_C, N);
    }
    DP__OPS_DISPATCH(dtype, what, channel_copy, ctx, dst, dst_C, dst_c0, src, src_C, src_c0, count,
                     N, hw, accumulate, layout);
}

// --- crop ---

struct crop_dims {
    int C, H, W, oh, ow, off_h, off_w;
};

template <typename T>
__global__ void crop_forward_kernel(T *y, const T *x, size_t n_out, crop_dims d,
                                    dp_cuda_layout layout)
{
    GRID_STRIDE(i, n_out)
    {
        size_t n;
        int c, h, w;
        split4(i, d.C, d.oh, d.ow, layout, &n, &c, &h, &w);
        dp__st(y, i, dp__ld(x, at4(n, c, h + d.off_h, w + d.off_w, d.C, d.H, d.W, layout)));
    }
}

template <typename T>
__global__ void crop_backward_kernel(T *dx, const T *dy, size_t n_in, crop_dims d, int add,
                                     dp_cuda_layout layout)
{
    GRID_STRIDE(i, n_in)
    {
        size_t n;
        int c, h, w;
        split4(i, d.C, d.H, d.W, layout, &n, &c, &h, &w);
        float acc = add ? dp__ld(dx, i) : 0.0f;
        const int oh = h - d.off_h, ow = w - d.off_w;
        if (oh >= 0 && oh < d.oh && ow >= 0 && ow < d.ow) {
            acc = dp__add(acc, dp__ld(dy, at4(n, c, oh, ow, d.C, d.oh, d.ow, layout)));
        }
        dp__st(dx, i, acc);
    }
}

static dp_status check_crop(dp_cuda_ctx *ctx, const dp_crop_params *p, dp_cuda_layout layout,
                            const char *what)
{
    DP__OPS_NEED(ctx, what);
    DP__OPS_NEED(p, what);
    DP_TRY(dp__ops_check_layout(layout, what));
    if (p->N < 1 || p->C < 1 || p->out_h < 1 || p->out_w < 1 || p->off_h < 0 || p->off_w < 0 ||
        p->off_h + p->out_h > p->H || p->off_w + p->out_w > p->W) {
        return dp_error_set(DP_ERR_ARG, "%s: window %dx%d at (%d, %d) outside the %dx%d input",
                            what, p->out_h, p->out_w, p->off_h, p->off_w, p->H, p->W);
    }
    return DP_OK;
}

static crop_dims crop_dims_of(const dp_crop_params *p)
{
    crop_dims d = {p->C, p->H, p->W, p->out_h, p->out_w, p->off_h, p->off_w};
    return d;
}

template <typename T>
static dp_status crop_forward(dp_cuda_ctx *ctx, void *y, const void *x, const dp_crop_params *p,
                              dp_cuda_layout layout)
{
    size_t n = (size_t)p->N * (size_t)p->C * (size_t)p->out_h * (size_t)p->out_w;
    crop_forward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)y, (const T *)x, n, crop_dims_of(p), layout);
    DP_CUDA_LAUNCHED("crop forward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_crop_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                          const dp_crop_params *p, dp_cuda_layout layout,
                                          dp_cuda_dtype dtype)
{
    static const char what[] = "cuda crop forward";
    DP_TRY(check_crop(ctx, p, layout, what));
    DP__OPS_NEED(y, what);
    DP__OPS_NEED(x, what);
    DP__OPS_DISPATCH(dtype, what, crop_forward, ctx, y, x, p, layout);
}

template <typename T>
static dp_status crop_backward(dp_cuda_ctx *ctx, void *dx, const void *dy, const dp_crop_params *p,
                               int add, dp_cuda_layout layout)
{
    size_t n = (size_t)p->N * (size_t)p->C * (size_t)p->H * (size_t)p->W;
    crop_backward_kernel<T><<<dp__ops_blocks(n), DP__OPS_THREADS, 0, dp__stream(ctx)>>>(
        (T *)dx, (const T *)dy, n, crop_dims_of(p), add, layout);
    DP_CUDA_LAUNCHED("crop backward");
    return DP_OK;
}

extern "C" dp_status dp_cuda_crop_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                           const dp_crop_params *p, int accumulate,
                                           dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    static const char what[] = "cuda crop backward";
    DP_TRY(check_crop(ctx, p, layout, what));
    DP__OPS_NEED(dx, what);
    DP__OPS_NEED(dy, what);
    DP__OPS_DISPATCH(dtype, what, crop_backward, ctx, dx, dy, p, accumulate, layout);
}

// --- casts and layout conversion ---

template <typename D, typename S> __global__ void cast_kernel(D *dst, const S *src, size_t n)
{
    GRID_STRIDE(i, n)
    {
        dp__st(dst, i, dp__ld(src, i));
    }
}

// Per image, src is an (R, S) row-major matrix and dst its (S, R) transpose: NCHW -> NHWC is
// R = C, S = hw; NHWC -> NCHW is R = hw, S = C. 32 x 32 tiles through shared memory (one column
// of padding against bank conflicts), 32 x 8 threads; grid-stride in all three grid dims.
template <typename D, typename S>
__global__ void transpose_kernel(D *dst, const S *src, int N, size_t R, size_t Scols)
{
    __shared__ float tile[32][33];
    const size_t tiles_r = (R + 31) / 32, tiles_s = (Scols + 31) / 32, image = R * Scols;
    for (size_t n = blockIdx.z; n < (size_t)N; n += gridDim.z) {
        for (size_t tr = blockIdx.y; tr < tiles_r; tr += gridDim.y) {
            for (size_t ts = blockIdx.x; ts < tiles_s; ts += gridDim.x) {
                const size_t r0 = tr * 32, s0 = ts * 32, base = n * image;
                for (unsigned j = threadIdx.y; j < 32; j += 8) {
                    size_t r = r0 + j, s = s0 + threadIdx.x;
                    if (r < R && s < Scols) {
                        tile[j][threadIdx.x] = dp__ld(src, base + r * Scols + s);
                    }
                }
                __syncthreads();
                for (unsigned j = threadIdx.y; j < 32; j += 8) {
                    size_t s = s0 + j, r = r0 + threadIdx.x;
                    if (s < Scols && r < R) {
                        dp__st(dst, base + s * R + r, tile[threadIdx.x][j]);
                    }
                }
                __syncthreads();
            }
        }
    }
}

template <typename D, typename S>
static dp_status convert_typed(dp_cuda_ctx *ctx, void *dst, const void *src, int N, size_t R,
                               size_t Scols, int transpose)
{
    cudaStream_t st = dp__stream(ctx);
    if (!transpose) {
        size_t n = (size_t)N * R * Scols;
        cast_kernel<D, S>
            <<<dp__ops_blocks(n), DP__OPS_THREADS, 0, st>>>((D *)dst, (const S *)src, n);
        DP_CUDA_LAUNCHED("cast");
        return DP_OK;
    }
    size_t tr = (R + 31) / 32, ts = (Scols + 31) / 32;
    dim3 grid((unsigned)(ts < 65535 ? ts : 65535), (unsigned)(tr < 65535 ? tr : 65535),
              (unsigned)(N < 65535 ? N : 65535));
    transpose_kernel<D, S><<<grid, dim3(32, 8), 0, st>>>((D *)dst, (const S *)src, N, R, Scols);
    DP_CUDA_LAUNCHED("layout conversion");
    return DP_OK;
}

template <typename D>
static dp_status convert_from(dp_cuda_ctx *ctx, void *dst, const void *src, dp_cuda_dtype src_type,
                              int N, size_t R, size_t Scols, int transpose)
{
    switch (src_type) {
    case DP_CUDA_F32:
        return convert_typed<D, float>(ctx, dst, src, N, R, Scols, transpose);
    case DP_CUDA_BF16:
        return convert_typed<D, __nv_bfloat16>(ctx, dst, src, N, R, Scols, transpose);
    case DP_CUDA_F16:
        return convert_typed<D, __half>(ctx, dst, src, N, R, Scols, transpose);
    }
    return dp_error_set(DP_ERR_ARG, "cuda convert: unknown source type %d", (int)src_type);
}

extern "C" dp_status dp_cuda_cast(dp_cuda_ctx *ctx, void *dst, dp_cuda_dtype dst_type,
                                  const void *src, dp_cuda_dtype src_type, size_t n)
{
    static const char what[] = "cuda cast";
    DP__OPS_NEED(ctx, what);
    DP__OPS_NEED(dst, what);
    DP__OPS_NEED(src, what);
    if (dst == src && dp_cuda_dtype_size(dst_type) != dp_cuda_dtype_size(src_type)) {
        return dp_error_set(DP_ERR_ARG, "%s: in place needs types of one size", what);
    }
    if (n == 0) {
        return DP_OK;
    }
    DP__OPS_DISPATCH(dst_type, what, convert_from, ctx, dst, src, src_type, 1, 1, n, 0);
}

extern "C" dp_status dp_cuda_convert(dp_cuda_ctx *ctx, void *dst, dp_cuda_layout dst_layout,
                                     dp_cuda_dtype dst_type, const void *src,
                                     dp_cuda_layout src_layout, dp_cuda_dtype src_type, int N,
                                     int C, size_t hw)
{
    static const char what[] = "cuda convert";
    DP__OPS_NEED(ctx, what);
    DP__OPS_NEED(dst, what);
    DP__OPS_NEED(src, what);
    DP_TRY(dp__ops_check_layout(dst_layout, what));
    DP_TRY(dp__ops_check_layout(src_layout, what));
    if (N < 1 || C < 1 || hw < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: dims N %d, C %d, hw %zu must be >= 1", what, N, C, hw);
    }
    if (dst == src) {
        return dp_error_set(DP_ERR_ARG, "%s: dst may not be src", what);
    }
    if (dst_layout == src_layout) {
        DP__OPS_DISPATCH(dst_type, what, convert_from, ctx, dst, src, src_type, N, (size_t)C, hw,
                         0);
    }
    const size_t R = src_layout == DP_CUDA_NCHW ? (size_t)C : hw;
    const size_t S = src_layout == DP_CUDA_NCHW ? hw : (size_t)C;
    DP__OPS_DISPATCH(dst_type, what, convert_from, ctx, dst, src, src_type, N, R, S, 1);
}
