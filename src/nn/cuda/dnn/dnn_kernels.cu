// The small kernels the convolution and dense plans run around cuDNN and cuBLAS: bias add,
// the deterministic bias gradient, weight casts to the compute type (with the KCRS -> KRSC
// transpose of NHWC filters) and the way back for filter gradients; plus the helpers shared by
// the plans. Not a general cast or transpose library: ops.h has those for activations.
#include "nn/cuda/dnn/dnn_internal.cuh"

// Threads per block of the 1-D kernels here; the NCHW bias-gradient tree assumes exactly this.
#define DNN_THREADS 256
// The NHWC bias-gradient blocks are DNN_BG_COLS channels x DNN_BG_ROWS row lanes.
#define DNN_BG_COLS 32
#define DNN_BG_ROWS 8
// Rows (n, pixel) per block of the bias gradient, and the most blocks per channel: fixed by
// the shape only, so the summation tree is the same on every run.
#define DNN_BG_CHUNK 2048
#define DNN_BG_MAX_PARTS 1024

// --- kernels ---

template <typename T>
__global__ void bias_add_kernel(T *y, const float *bias, size_t n, int K, int HW, int nhwc)
{
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const int k = nhwc ? (int)(i % (size_t)K) : (int)((i / (size_t)HW) % (size_t)K);
        dp__st(y, i, dp__ld(y, i) + bias[k]);
    }
}

// Partial sums of channel k over rows [r0, r1) of an NHWC (M, K) tensor: the 8 row lanes of a
// column each take every 8th row, then lane 0 adds the 8 lanes in order.
template <typename T>
__global__ void bias_grad_nhwc_kernel(float *part, const T *dy, int M, int K, int chunk)
{
    __shared__ float sh[DNN_BG_ROWS][DNN_BG_COLS + 1];
    const int k = blockIdx.x * DNN_BG_COLS + threadIdx.x;
    const int r0 = blockIdx.y * chunk;
    const int r1 = min(M, r0 + chunk);
    float s = 0.0f;
    if (k < K) {
        for (int r = r0 + (int)threadIdx.y; r < r1; r += DNN_BG_ROWS) {
            s += dp__ld(dy, (size_t)r * (size_t)K + (size_t)k);
        }
    }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && k < K) {
        float t = sh[0][threadIdx.x];
        for (int j = 1; j < DNN_BG_ROWS; j++) {
            t += sh[j][threadIdx.x];
        }
        part[(size_t)blockIdx.y * (size_t)K + (size_t)k] = t;
    }
}

// Partial sum of channel k = blockIdx.x over rows [r0, r1) of an NCHW tensor, row r being
// pixel r % HW of image r / HW: threads take every 256th row (consecutive threads read
// consecutive pixels), then a pairwise tree in shared memory.
template <typename T>
__global__ void bias_grad_nchw_kernel(float *part, const T *dy, int M, int K, int HW, int chunk)
{
    __shared__ float sh[DNN_THREADS];
    const int k = blockIdx.x;
    const int r0 = blockIdx.y * chunk;
    const int r1 = min(M, r0 + chunk);
    float s = 0.0f;
    for (int r = r0 + (int)threadIdx.x; r < r1; r += DNN_THREADS) {
        const int n = r / HW;
        const int i = r - n * HW;
        s += dp__ld(dy, ((size_t)n * (size_t)K + (size_t)k) * (size_t)HW + (size_t)i);
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = DNN_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) {
            sh[threadIdx.x] += sh[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        part[(size_t)blockIdx.y * (size_t)K + (size_t)k] = sh[0];
    }
}

// db[k] (+)= the parts of channel k added in block order, in double.
__global__ void bias_grad_final_kernel(float *db, const float *part, int parts, int K,
                                       int accumulate)
{
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= K) {
        return;
    }
    double s = 0.0;
    for (int p = 0; p < parts; p++) {
        s += (double)part[(size_t)p * (size_t)K + (size_t)k];
    }
    db[k] = accumulate ? (float)((double)db[k] + s) : (float)s;
}

// dst (K, Cg, RS) in the filter layout from src (K, Cg, RS) KCRS: index i of dst is
// ((k RS + rs) Cg + c) for KRSC.
template <typename T>
__global__ void weights_cast_kernel(T *dst, const float *src, size_t n, int Cg, int RS, int krsc)
{
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        size_t j = i;
        if (krsc) {
            const size_t c = i % (size_t)Cg;
            const size_t t = i / (size_t)Cg;
            j = (t / (size_t)RS * (size_t)Cg + c) * (size_t)RS + t % (size_t)RS;
        }
        dp__st(dst, i, src[j]);
    }
}

// dw (K, Cg, RS) KCRS (+)= g in the filter layout: index j of dw is ((k Cg + c) RS + rs).
template <typename T>
__global__ void grad_add_kernel(float *dw, const T *g, size_t n, int Cg, int RS, int krsc,
                                int accumulate)
{
    const size_t step = (size_t)gridDim.x * blockDim.x;
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += step) {
        size_t i = j;
        if (krsc) {
            const size_t rs = j % (size_t)RS;
            const size_t t = j / (size_t)RS;
            i = (t / (size_t)Cg * (size_t)RS + rs) * (size_t)Cg + t % (size_t)Cg;
        }
        const float v = dp__ld(g, i);
        dw[j] = accumulate ? dw[j] + v : v;
    }
}

// --- helpers of the plans ---

dp_status dp__dnn_check_ws(const char *what, const void *ws, size_t ws_bytes, size_t need)
{
    if (need > 0 && ws == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: workspace is NULL, %zu bytes needed", what, need);
    }
    if (ws_bytes < need) {
        return dp_error_set(DP_ERR_ARG, "%s: workspace of %zu bytes, %zu needed", what, ws_bytes,
                            need);
    }
    if ((uintptr_t)ws % DP_CUDA_WS_ALIGN != 0) {
        return dp_error_set(DP_ERR_ARG, "%s: workspace %p is not aligned to %d bytes", what, ws,
                            (int)DP_CUDA_WS_ALIGN);
    }
    return DP_OK;
}

cudnnDataType_t dp__dnn_cudnn_type(dp_cuda_dtype t)
{
    return t == DP_CUDA_BF16  ? CUDNN_DATA_BFLOAT16
           : t == DP_CUDA_F16 ? CUDNN_DATA_HALF
                              : CUDNN_DATA_FLOAT;
}

cudaDataType_t dp__dnn_cuda_type(dp_cuda_dtype t)
{
    return t == DP_CUDA_BF16 ? CUDA_R_16BF : t == DP_CUDA_F16 ? CUDA_R_16F : CUDA_R_32F;
}

// --- launchers ---

dp_status dp__dnn_bias_add(dp_cuda_ctx *ctx, void *y, dp_cuda_dtype dtype, const float *bias,
                           const dp__dnn_chan *g)
{
    const size_t n = (size_t)g->N * (size_t)g->K * (size_t)g->HW;
    const unsigned blocks = dp__cuda_blocks(n, DNN_THREADS);
    const int nhwc = g->layout == DP_CUDA_NHWC;
    cudaStream_t s = dp__stream(ctx);
    switch (dtype) {
    case DP_CUDA_F32:
        bias_add_kernel<<<blocks, DNN_THREADS, 0, s>>>((float *)y, bias, n, g->K, g->HW, nhwc);
        break;
    case DP_CUDA_BF16:
        bias_add_kernel<<<blocks, DNN_THREADS, 0, s>>>((__nv_bfloat16 *)y, bias, n, g->K, g->HW,
                                                       nhwc);
        break;
    case DP_CUDA_F16:
        bias_add_kernel<<<blocks, DNN_THREADS, 0, s>>>((__half *)y, bias, n, g->K, g->HW, nhwc);
        break;
    default:
        return dp_error_set(DP_ERR_ARG, "bias add: unknown dtype %d", (int)dtype);
    }
    DP_CUDA_LAUNCHED("dnn bias_add_kernel");
    return DP_OK;
}

// Rows per block and blocks per channel of the bias gradient of g.
static void bias_grad_split(const dp__dnn_chan *g, int *chunk, int *parts)
{
    const size_t M = (size_t)g->N * (size_t)g->HW;
    size_t p = (M + DNN_BG_CHUNK - 1) / DNN_BG_CHUNK;
    if (p > DNN_BG_MAX_PARTS) {
        p = DNN_BG_MAX_PARTS;
    }
    if (p < 1) {
        p = 1;
    }
    *chunk = (int)((M + p - 1) / p);
    *parts = (int)p;
}

size_t dp__dnn_bias_grad_ws_bytes(const dp__dnn_chan *g)
{
    int chunk, parts;
    bias_grad_split(g, &chunk, &parts);
    return dp__dnn_align((size_t)parts * (size_t)g->K * sizeof(float));
}

template <typename T>
static void bias_grad_parts(float *part, const T *dy, const dp__dnn_chan *g, int chunk, int parts,
                            cudaStream_t s)
{
    const int M = g->N * g->HW;
    if (g->layout == DP_CUDA_NHWC) {
        const dim3 grid((unsigned)((g->K + DNN_BG_COLS - 1) / DNN_BG_COLS), (unsigned)parts);
        const dim3 block(DNN_BG_COLS, DNN_BG_ROWS);
        bias_grad_nhwc_kernel<<<grid, block, 0, s>>>(part, dy, M, g->K, chunk);
    } else {
        const dim3 grid((unsigned)g->K, (unsigned)parts);
        bias_grad_nchw_kernel<<<grid, DNN_THREADS, 0, s>>>(part, dy, M, g->K, g->HW, chunk);
    }
}

dp_status dp__dnn_bias_grad(dp_cuda_ctx *ctx, float *db, const void *dy, dp_cuda_dtype dtype,
                            const dp__dnn_chan *g, int accumulate, void *ws)
{
    int chunk, parts;
    bias_grad_split(g, &chunk, &parts);
    float *part = (float *)ws;
    cudaStream_t s = dp__stream(ctx);
    switch (dtype) {
    case DP_CUDA_F32:
        bias_grad_parts(part, (const float *)dy, g, chunk, parts, s);
        break;
    case DP_CUDA_BF16:
        bias_grad_parts(part, (const __nv_bfloat16 *)dy, g, chunk, parts, s);
        break;
    case DP_CUDA_F16:
        bias_grad_parts(part, (const __half *)dy, g, chunk, parts, s);
        break;
    default:
        return dp_error_set(DP_ERR_ARG, "bias gradient: unknown dtype %d", (int)dtype);
    }
    DP_CUDA_LAUNCHED("dnn bias_grad partial kernel");
    const unsigned blocks = (unsigned)((g->K + DNN_THREADS - 1) / DNN_THREADS);
    bias_grad_final_kernel<<<blocks, DNN_THREADS, 0, s>>>(db, part, parts, g->K, accumulate);
    DP_CUDA_LAUNCHED("dnn bias_grad_final_kernel");
    return DP_OK;
}

dp_status dp__dnn_weights_cast(dp_cuda_ctx *ctx, void *dst, dp_cuda_dtype dtype, const float *src,
                               const dp__dnn_filter *f)
{
    const size_t n = (size_t)f->K * (size_t)f->Cg * (size_t)f->RS;
    const unsigned blocks = dp__cuda_blocks(n, DNN_THREADS);
    const int krsc = f->layout == DP_CUDA_NHWC && f->RS > 1;
    cudaStream_t s = dp__stream(ctx);
    switch (dtype) {
    case DP_CUDA_F32:
        weights_cast_kernel<<<blocks, DNN_THREADS, 0, s>>>((float *)dst, src, n, f->Cg, f->RS,
                                                           krsc);
        break;
    case DP_CUDA_BF16:
        weights_cast_kernel<<<blocks, DNN_THREADS, 0, s>>>((__nv_bfloat16 *)dst, src, n, f->Cg,
                                                           f->RS, krsc);
        break;
    case DP_CUDA_F16:
        weights_cast_kernel<<<blocks, DNN_THREADS, 0, s>>>((__half *)dst, src, n, f->Cg, f->RS,
                                                           krsc);
        break;
    default:
        return dp_error_set(DP_ERR_ARG, "weight cast: unknown dtype %d", (int)dtype);
    }
    DP_CUDA_LAUNCHED("dnn weights_cast_kernel");
    return DP_OK;
}

dp_status dp__dnn_grad_add(dp_cuda_ctx *ctx, float *dw, const void *g, dp_cuda_dtype dtype,
                           const dp__dnn_filter *f, int accumulate)
{
    const size_t n = (size_t)f->K * (size_t)f->Cg * (size_t)f->RS;
    const unsigned blocks = dp__cuda_blocks(n, DNN_THREADS);
    const int krsc = f->layout == DP_CUDA_NHWC && f->RS > 1;
    cudaStream_t s = dp__stream(ctx);
    switch (dtype) {
    case DP_CUDA_F32:
        grad_add_kernel<<<blocks, DNN_THREADS, 0, s>>>(dw, (const float *)g, n, f->Cg, f->RS, krsc,
                                                       accumulate);
        break;
    case DP_CUDA_BF16:
        grad_add_kernel<<<blocks, DNN_THREADS, 0, s>>>(dw, (const __nv_bfloat16 *)g, n, f->Cg,
                                                       f->RS, krsc, accumulate);
        break;
    case DP_CUDA_F16:
        grad_add_kernel<<<blocks, DNN_THREADS, 0, s>>>(dw, (const __half *)g, n, f->Cg, f->RS, krsc,
                                                       accumulate);
        break;
    default:
        return dp_error_set(DP_ERR_ARG, "filter gradient: unknown dtype %d", (int)dtype);
    }
    DP_CUDA_LAUNCHED("dnn grad_add_kernel");
    return DP_OK;
}
