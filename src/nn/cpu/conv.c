// Convolution on the CPU (see conv.h): im2col + cblas_sgemm per image and group, the 1x1
// stride-1 path without im2col, and direct loops for depthwise-style groups (one input channel
// per group). Sums run in a fixed order, so every result is deterministic for a fixed BLAS
// thread count. Not here: Winograd/FFT, NHWC, fused activations.
#include "nn/cpu/conv.h"

#include <cblas.h>
#include <string.h>

#include "core/error.h"
#include "nn/cpu/cpu_internal.h"

// --- params ---

static dp_status need_min(const char *field, int value, int min)
{
    if (value < min) {
        return dp_error_set(DP_ERR_ARG, "conv: %s = %d, must be >= %d", field, value, min);
    }
    return DP_OK;
}

static int conv_out_dim(int in, int pad, int dil, int window, int stride)
{
    int span = dil * (window - 1) + 1;
    if (in + 2 * pad < span) {
        return 0;
    }
    return (in + 2 * pad - span) / stride + 1;
}

dp_status dp_conv_params_resolve(dp_conv_params *p)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "conv: params are NULL");
    }
    const char *names[] = {"N", "C",        "H",        "W",     "K",     "R",
                           "S", "stride_h", "stride_w", "dil_h", "dil_w", "groups"};
    const int values[] = {p->N, p->C,        p->H,        p->W,     p->K,     p->R,
                          p->S, p->stride_h, p->stride_w, p->dil_h, p->dil_w, p->groups};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        DP_TRY(need_min(names[i], values[i], 1));
    }
    DP_TRY(need_min("pad_h", p->pad_h, 0));
    DP_TRY(need_min("pad_w", p->pad_w, 0));
    if (p->C % p->groups != 0 || p->K % p->groups != 0) {
        return dp_error_set(DP_ERR_SHAPE, "conv: groups = %d must divide C = %d and K = %d",
                            p->groups, p->C, p->K);
    }
    int oh = conv_out_dim(p->H, p->pad_h, p->dil_h, p->R, p->stride_h);
    int ow = conv_out_dim(p->W, p->pad_w, p->dil_w, p->S, p->stride_w);
    if (oh < 1 || ow < 1) {
        return dp_error_set(DP_ERR_SHAPE,
                            "conv: window %dx%d (dilation %dx%d) is larger than the input %dx%d "
                            "padded by %dx%d",
                            p->R, p->S, p->dil_h, p->dil_w, p->H, p->W, p->pad_h, p->pad_w);
    }
    p->out_h = oh;
    p->out_w = ow;
    return DP_OK;
}

// 1x1, stride 1, no padding: the input of one image is already its column matrix.
static int is_pointwise(const dp_conv_params *p)
{
    return p->R == 1 && p->S == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 &&
           p->pad_w == 0;
}

// One input channel per group: GEMMs would have a single row, so direct loops run instead.
static int is_depthwise(const dp_conv_params *p)
{
    return p->groups > 1 && p->C == p->groups;
}

size_t dp_cpu_conv_workspace_bytes(const dp_conv_params *p)
{
    if (is_pointwise(p) || is_depthwise(p)) {
        return 0;
    }
    size_t rows = (size_t)(p->C / p->groups) * (size_t)p->R * (size_t)p->S;
    return rows * (size_t)p->out_h * (size_t)p->out_w * sizeof(float);
}

// Checks that p was resolved and that the workspace is large enough.
static dp_status check_call(const dp_conv_params *p, const char *kernel, const float *ws,
                            size_t ws_bytes)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: params are NULL", kernel);
    }
    dp_conv_params q = *p;
    DP_TRY(dp_conv_params_resolve(&q));
    if (q.out_h != p->out_h || q.out_w != p->out_w) {
        return dp_error_set(DP_ERR_ARG,
                            "%s: params not resolved (out %dx%d, expected %dx%d); call "
                            "dp_conv_params_resolve",
                            kernel, p->out_h, p->out_w, q.out_h, q.out_w);
    }
    size_t need = dp_cpu_conv_workspace_bytes(p);
    if (ws_bytes < need || (need > 0 && ws == NULL)) {
        return dp_error_set(DP_ERR_ARG, "%s: workspace of %zu bytes, needs %zu", kernel,
                            ws == NULL ? (size_t)0 : ws_bytes, need);
    }
    return DP_OK;
}

// --- im2col ---

// Stride 1 and out_w == W ("same" width): output element i of a window tap reads input element
// i + shift, so the valid rows of the tap are one contiguous copy; the columns that wrapped
// around a row edge are zeroed afterwards. Removes the per-row overhead on small images.
static void im2col_plane_same(float *restrict row, const float *restrict xc, int OH, int OW,
                              int oh_lo, int oh_hi, int ow_lo, int ow_hi, int off_h, int off_w)
{
    memset(row, 0, (size_t)oh_lo * OW * sizeof(float));
    if (oh_lo < oh_hi) {
        size_t first = (size_t)oh_lo * OW + ow_lo, end = (size_t)(oh_hi - 1) * OW + ow_hi;
        const float *src = xc + ((size_t)(oh_lo + off_h) * OW + (size_t)(ow_lo + off_w));
        memcpy(row + first, src, (end - first) * sizeof(float));
        for (int oh = oh_lo; oh < oh_hi; oh++) {
            float *dst = row + (size_t)oh * OW;
            for (int ow = 0; ow < ow_lo; ow++) {
                dst[ow] = 0.0f;
            }
            for (int ow = ow_hi; ow < OW; ow++) {
                dst[ow] = 0.0f;
            }
        }
    }
    memset(row + (size_t)oh_hi * OW, 0, (size_t)(OH - oh_hi) * OW * sizeof(float));
}

// One output row of im2col: dst[ow] = xr[ow * stride + off] for ow in [lo, hi), 0 elsewhere.
// Plain loops, not memset/memcpy: the rows are short (tens of floats) and calls would dominate.
static inline void im2col_row(float *restrict dst, const float *restrict xr, int OW, int lo, int hi,
                              int stride, int off)
{
    for (int ow = 0; ow < lo; ow++) {
        dst[ow] = 0.0f;
    }
    if (stride == 1) {
        for (int ow = lo; ow < hi; ow++) {
            dst[ow] = xr[ow + off];
        }
    } else {
        for (int ow = lo; ow < hi; ow++) {
            dst[ow] = xr[ow * stride + off];
        }
    }
    for (int ow = hi; ow < OW; ow++) {
        dst[ow] = 0.0f;
    }
}

void dp_cpu_conv_im2col(float *col, size_t ldcol, const float *x, int C, const dp_conv_params *p)
{
    const int OH = p->out_h, OW = p->out_w, H = p->H, W = p->W;
    const int same = p->stride_h == 1 && p->stride_w == 1 && OW == W;
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * H * W;
        for (int r = 0; r < p->R; r++) {
            int off_h = r * p->dil_h - p->pad_h, oh_lo, oh_hi;
            dp__tap_range(OH, p->stride_h, off_h, H, &oh_lo, &oh_hi);
            for (int s = 0; s < p->S; s++) {
                float *row = col + ((size_t)(c * p->R + r) * p->S + s) * ldcol;
                int off_w = s * p->dil_w - p->pad_w, ow_lo, ow_hi;
                dp__tap_range(OW, p->stride_w, off_w, W, &ow_lo, &ow_hi);
                if (same && ow_lo < ow_hi) {
                    im2col_plane_same(row, xc, OH, OW, oh_lo, oh_hi, ow_lo, ow_hi, off_h, off_w);
                    continue;
                }
                memset(row, 0, (size_t)oh_lo * OW * sizeof(float));
                for (int oh = oh_lo; oh < oh_hi; oh++) {
                    const float *xr = xc + (size_t)(oh * p->stride_h + off_h) * W;
                    im2col_row(row + (size_t)oh * OW, xr, OW, ow_lo, ow_hi, p->stride_w, off_w);
                }
                memset(row + (size_t)oh_hi * OW, 0, (size_t)(OH - oh_hi) * OW * sizeof(float));
            }
        }
    }
}

void dp_cpu_conv_col2im(float *x, const float *col, size_t ldcol, int C, const dp_conv_params *p)
{
    const int OH = p->out_h, OW = p->out_w, H = p->H, W = p->W;
    for (int c = 0; c < C; c++) {
        float *xc = x + (size_t)c * H * W;
        for (int r = 0; r < p->R; r++) {
            int off_h = r * p->dil_h - p->pad_h, oh_lo, oh_hi;
            dp__tap_range(OH, p->stride_h, off_h, H, &oh_lo, &oh_hi);
            for (int s = 0; s < p->S; s++) {
                const float *row = col + ((size_t)(c * p->R + r) * p->S + s) * ldcol;
                int off_w = s * p->dil_w - p->pad_w, ow_lo, ow_hi;
                dp__tap_range(OW, p->stride_w, off_w, W, &ow_lo, &ow_hi);
                for (int oh = oh_lo; oh < oh_hi; oh++) {
                    const float *src = row + (size_t)oh * OW;
                    float *xr = xc + (size_t)(oh * p->stride_h + off_h) * W;
                    for (int ow = ow_lo; ow < ow_hi; ow++) {
                        xr[ow * p->stride_w + off_w] += src[ow];
                    }
                }
            }
        }
    }
}

// --- bias ---

// y[k, :] = bias[k] (0 without bias) for one image: the GEMM then accumulates into it with
// beta = 1, which saves OpenBLAS's beta pass and a separate bias pass.
static void init_bias(float *y, const float *bias, int K, size_t ohw)
{
    for (int k = 0; k < K; k++) {
        const float b = bias != NULL ? bias[k] : 0.0f;
        float *yk = y + (size_t)k * ohw;
        for (size_t i = 0; i < ohw; i++) {
            yk[i] = b;
        }
    }
}

// db[k] (+)= sum of dy over n and the plane: blocked plane sums (reduce.c) added in double in
// image order.
static void bias_grad(float *db, const float *dy, int N, int K, size_t ohw, int accumulate)
{
    for (int k = 0; k < K; k++) {
        double sum = 0.0;
        for (int n = 0; n < N; n++) {
            sum += dp__sum(dy + ((size_t)n * K + k) * ohw, ohw);
        }
        db[k] = accumulate ? (float)(db[k] + sum) : (float)sum;
    }
}

// --- depthwise (one input channel per group, K / groups filters each) ---

static void depthwise_forward(float *y, const float *x, const float *w, const float *bias,
                              const dp_conv_params *p)
{
    const int OH = p->out_h, OW = p->out_w, mult = p->K / p->groups;
    const size_t hw = (size_t)p->H * p->W, ohw = (size_t)OH * OW;
    for (int n = 0; n < p->N; n++) {
        for (int k = 0; k < p->K; k++) {
            const float *xp = x + ((size_t)n * p->C + k / mult) * hw;
            float *yp = y + ((size_t)n * p->K + k) * ohw;
            init_bias(yp, bias != NULL ? bias + k : NULL, 1, ohw);
            for (int r = 0; r < p->R; r++) {
                int off_h = r * p->dil_h - p->pad_h, oh_lo, oh_hi;
                dp__tap_range(OH, p->stride_h, off_h, p->H, &oh_lo, &oh_hi);
                for (int s = 0; s < p->S; s++) {
                    int off_w = s * p->dil_w - p->pad_w, ow_lo, ow_hi;
                    dp__tap_range(OW, p->stride_w, off_w, p->W, &ow_lo, &ow_hi);
                    const float wv = w[((size_t)k * p->R + r) * p->S + s];
                    for (int oh = oh_lo; oh < oh_hi; oh++) {
                        const float *xr = xp + (size_t)(oh * p->stride_h + off_h) * p->W;
                        float *yr = yp + (size_t)oh * OW;
                        for (int ow = ow_lo; ow < ow_hi; ow++) {
                            yr[ow] += wv * xr[ow * p->stride_w + off_w];
                        }
                    }
                }
            }
        }
    }
}

static void depthwise_backward_data(float *dx, const float *dy, const float *w,
                                    const dp_conv_params *p)
{
    const int OH = p->out_h, OW = p->out_w, mult = p->K / p->groups;
    const size_t hw = (size_t)p->H * p->W, ohw = (size_t)OH * OW;
    for (int n = 0; n < p->N; n++) {
        for (int k = 0; k < p->K; k++) {
            float *dxp = dx + ((size_t)n * p->C + k / mult) * hw;
            const float *dyp = dy + ((size_t)n * p->K + k) * ohw;
            for (int r = 0; r < p->R; r++) {
                int off_h = r * p->dil_h - p->pad_h, oh_lo, oh_hi;
                dp__tap_range(OH, p->stride_h, off_h, p->H, &oh_lo, &oh_hi);
                for (int s = 0; s < p->S; s++) {
                    int off_w = s * p->dil_w - p->pad_w, ow_lo, ow_hi;
                    dp__tap_range(OW, p->stride_w, off_w, p->W, &ow_lo, &ow_hi);
                    const float wv = w[((size_t)k * p->R + r) * p->S + s];
                    for (int oh = oh_lo; oh < oh_hi; oh++) {
                        float *dxr = dxp + (size_t)(oh * p->stride_h + off_h) * p->W;
                        const float *dyr = dyp + (size_t)oh * OW;
                        for (int ow = ow_lo; ow < ow_hi; ow++) {
                            dxr[ow * p->stride_w + off_w] += wv * dyr[ow];
                        }
                    }
                }
            }
        }
    }
}

// dw[k, r, s] += sum over the batch of dy * x at that tap; partial sums per row in float,
// accumulated in double in (n, oh) order.
static void depthwise_backward_filter(float *dw, const float *dy, const float *x,
                                      const dp_conv_params *p)
{
    const int OH = p->out_h, OW = p->out_w, mult = p->K / p->groups;
    const size_t hw = (size_t)p->H * p->W, ohw = (size_t)OH * OW;
    for (int k = 0; k < p->K; k++) {
        for (int r = 0; r < p->R; r++) {
            int off_h = r * p->dil_h - p->pad_h, oh_lo, oh_hi;
            dp__tap_range(OH, p->stride_h, off_h, p->H, &oh_lo, &oh_hi);
            for (int s = 0; s < p->S; s++) {
                int off_w = s * p->dil_w - p->pad_w, ow_lo, ow_hi;
                dp__tap_range(OW, p->stride_w, off_w, p->W, &ow_lo, &ow_hi);
                double sum = 0.0;
                for (int n = 0; n < p->N; n++) {
                    const float *xp = x + ((size_t)n * p->C + k / mult) * hw;
                    const float *dyp = dy + ((size_t)n * p->K + k) * ohw;
                    for (int oh = oh_lo; oh < oh_hi; oh++) {
                        const float *xr = xp + (size_t)(oh * p->stride_h + off_h) * p->W;
                        const float *dyr = dyp + (size_t)oh * OW;
                        float row = 0.0f;
                        for (int ow = ow_lo; ow < ow_hi; ow++) {
                            row += dyr[ow] * xr[ow * p->stride_w + off_w];
                        }
                        sum += row;
                    }
                }
                float *dst = dw + ((size_t)k * p->R + r) * p->S + s;
                *dst = (float)(*dst + sum);
            }
        }
    }
}

// --- kernels ---

dp_status dp_cpu_conv_forward(float *y, const float *x, const float *w, const float *bias,
                              const dp_conv_params *p, float *ws, size_t ws_bytes)
{
    DP_TRY(check_call(p, "conv forward", ws, ws_bytes));
    DP_CPU_NEED(y, "conv forward");
    DP_CPU_NEED(x, "conv forward");
    DP_CPU_NEED(w, "conv forward");
    const size_t ohw = (size_t)p->out_h * p->out_w, hw = (size_t)p->H * p->W;
    if (is_depthwise(p)) {
        depthwise_forward(y, x, w, bias, p);
        return DP_OK;
    }
    const int Cg = p->C / p->groups, Kg = p->K / p->groups, crs = Cg * p->R * p->S;
    const int pointwise = is_pointwise(p);
    const float beta = bias != NULL ? 1.0f : 0.0f;
    for (int n = 0; n < p->N; n++) {
        if (bias != NULL) {
            init_bias(y + (size_t)n * p->K * ohw, bias, p->K, ohw);
        }
        for (int g = 0; g < p->groups; g++) {
            const float *xg = x + ((size_t)n * p->C + (size_t)g * Cg) * hw;
            float *yg = y + ((size_t)n * p->K + (size_t)g * Kg) * ohw;
            const float *cols = xg;
            if (!pointwise) {
                dp_cpu_conv_im2col(ws, ohw, xg, Cg, p);
                cols = ws;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Kg, (int)ohw, crs, 1.0f,
                        w + (size_t)g * Kg * crs, crs, cols, (int)ohw, beta, yg, (int)ohw);
        }
    }
    return DP_OK;
}

dp_status dp_cpu_conv_backward_data(float *dx, const float *dy, const float *w,
                                    const dp_conv_params *p, int accumulate, float *ws,
                                    size_t ws_bytes)
{
    DP_TRY(check_call(p, "conv backward_data", ws, ws_bytes));
    DP_CPU_NEED(dx, "conv backward_data");
    DP_CPU_NEED(dy, "conv backward_data");
    DP_CPU_NEED(w, "conv backward_data");
    const size_t ohw = (size_t)p->out_h * p->out_w, hw = (size_t)p->H * p->W;
    if (is_depthwise(p)) {
        if (!accumulate) {
            memset(dx, 0, (size_t)p->N * p->C * hw * sizeof(float));
        }
        depthwise_backward_data(dx, dy, w, p);
        return DP_OK;
    }
    const int Cg = p->C / p->groups, Kg = p->K / p->groups, crs = Cg * p->R * p->S;
    const int pointwise = is_pointwise(p);
    for (int n = 0; n < p->N; n++) {
        for (int g = 0; g < p->groups; g++) {
            float *dxg = dx + ((size_t)n * p->C + (size_t)g * Cg) * hw;
            const float *dyg = dy + ((size_t)n * p->K + (size_t)g * Kg) * ohw;
            const float *wg = w + (size_t)g * Kg * crs;
            if (pointwise) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cg, (int)hw, Kg, 1.0f, wg, crs,
                            dyg, (int)ohw, accumulate ? 1.0f : 0.0f, dxg, (int)hw);
                continue;
            }
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, crs, (int)ohw, Kg, 1.0f, wg, crs,
                        dyg, (int)ohw, 0.0f, ws, (int)ohw);
            if (!accumulate) {
                memset(dxg, 0, (size_t)Cg * hw * sizeof(float));
            }
            dp_cpu_conv_col2im(dxg, ws, ohw, Cg, p);
        }
    }
    return DP_OK;
}

dp_status dp_cpu_conv_backward_filter(float *dw, float *db, const float *dy, const float *x,
                                      const dp_conv_params *p, int accumulate, float *ws,
                                      size_t ws_bytes)
{
    DP_TRY(check_call(p, "conv backward_filter", ws, ws_bytes));
    DP_CPU_NEED(dw, "conv backward_filter");
    DP_CPU_NEED(dy, "conv backward_filter");
    DP_CPU_NEED(x, "conv backward_filter");
    const size_t ohw = (size_t)p->out_h * p->out_w, hw = (size_t)p->H * p->W;
    const int Cg = p->C / p->groups, Kg = p->K / p->groups, crs = Cg * p->R * p->S;
    if (db != NULL) {
        bias_grad(db, dy, p->N, p->K, ohw, accumulate);
    }
    if (is_depthwise(p)) {
        if (!accumulate) {
            memset(dw, 0, (size_t)p->K * crs * sizeof(float));
        }
        depthwise_backward_filter(dw, dy, x, p);
        return DP_OK;
    }
    const int pointwise = is_pointwise(p);
    for (int n = 0; n < p->N; n++) {
        const float beta = (n == 0 && !accumulate) ? 0.0f : 1.0f;
        for (int g = 0; g < p->groups; g++) {
            const float *xg = x + ((size_t)n * p->C + (size_t)g * Cg) * hw;
            const float *dyg = dy + ((size_t)n * p->K + (size_t)g * Kg) * ohw;
            const float *cols = xg;
            if (!pointwise) {
                dp_cpu_conv_im2col(ws, ohw, xg, Cg, p);
                cols = ws;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Kg, crs, (int)ohw, 1.0f, dyg,
                        (int)ohw, cols, (int)ohw, beta, dw + (size_t)g * Kg * crs, crs);
        }
    }
    return DP_OK;
}
