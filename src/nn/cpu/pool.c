// Pooling on the CPU (see pool.h): direct loops over windows clipped to the input with
// dp__tap_range, so no tap is tested for bounds inside the window loops. Not here: ceil mode,
// fractional or adaptive pooling, NHWC.
#include "nn/cpu/pool.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "nn/cpu/cpu_internal.h"

// --- params ---

dp_status dp_pool_params_resolve(dp_pool_params *p)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "pool: params are NULL");
    }
    const char *names[] = {"N", "C", "H", "W", "size_h", "size_w", "stride_h", "stride_w"};
    const int values[] = {p->N, p->C, p->H, p->W, p->size_h, p->size_w, p->stride_h, p->stride_w};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        if (values[i] < 1) {
            return dp_error_set(DP_ERR_ARG, "pool: %s = %d, must be >= 1", names[i], values[i]);
        }
    }
    if (p->pad_h < 0 || (p->pad_h + 1) / 2 > p->size_h - 1 || p->pad_w < 0 ||
        (p->pad_w + 1) / 2 > p->size_w - 1) {
        return dp_error_set(DP_ERR_ARG,
                            "pool: padding %dx%d with a %dx%d window: ceil(padding / 2) must be "
                            "in [0, size - 1]",
                            p->pad_h, p->pad_w, p->size_h, p->size_w);
    }
    if (p->H + p->pad_h < p->size_h || p->W + p->pad_w < p->size_w) {
        return dp_error_set(DP_ERR_SHAPE,
                            "pool: window %dx%d is larger than the input %dx%d "
                            "padded by %dx%d",
                            p->size_h, p->size_w, p->H, p->W, p->pad_h, p->pad_w);
    }
    p->out_h = (p->H + p->pad_h - p->size_h) / p->stride_h + 1;
    p->out_w = (p->W + p->pad_w - p->size_w) / p->stride_w + 1;
    return DP_OK;
}

dp_status dp_pool_params_darknet(dp_pool_params *p, int N, int C, int H, int W, int size,
                                 int stride, int padding)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "pool: params are NULL");
    }
    dp_pool_params q = {.N = N, .C = C, .H = H, .W = W, .size_h = size, .size_w = size};
    q.stride_h = q.stride_w = stride;
    q.pad_h = q.pad_w = padding < 0 ? size - 1 : padding;
    q.count_include_pad = 1;
    DP_TRY(dp_pool_params_resolve(&q));
    *p = q;
    return DP_OK;
}

static dp_status check_call(const dp_pool_params *p, const char *kernel)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: params are NULL", kernel);
    }
    dp_pool_params q = *p;
    DP_TRY(dp_pool_params_resolve(&q));
    if (q.out_h != p->out_h || q.out_w != p->out_w) {
        return dp_error_set(DP_ERR_ARG, "%s: params not resolved; call dp_pool_params_resolve",
                            kernel);
    }
    return DP_OK;
}

// The input rows [*lo, *hi) of output row o (window clipped to the input).
static inline void window(int o, int stride, int pad, int size, int in, int *lo, int *hi)
{
    int start = o * stride - pad / 2;
    *lo = start < 0 ? 0 : start;
    *hi = start + size > in ? in : start + size;
}

// --- max ---

dp_status dp_cpu_maxpool_forward(float *y, int32_t *argmax, const float *x, const dp_pool_params *p)
{
    DP_TRY(check_call(p, "maxpool forward"));
    DP_CPU_NEED(y, "maxpool forward");
    DP_CPU_NEED(argmax, "maxpool forward");
    DP_CPU_NEED(x, "maxpool forward");
    const size_t hw = (size_t)p->H * p->W, ohw = (size_t)p->out_h * p->out_w;
    for (size_t plane = 0; plane < (size_t)p->N * p->C; plane++) {
        const float *xp = x + plane * hw;
        float *yp = y + plane * ohw;
        int32_t *ap = argmax + plane * ohw;
        for (int oh = 0; oh < p->out_h; oh++) {
            int h0, h1;
            window(oh, p->stride_h, p->pad_h, p->size_h, p->H, &h0, &h1);
            for (int ow = 0; ow < p->out_w; ow++) {
                int w0, w1;
                window(ow, p->stride_w, p->pad_w, p->size_w, p->W, &w0, &w1);
                int best = h0 * p->W + w0;
                float max = xp[best];
                for (int h = h0; h < h1; h++) {
                    for (int w = w0; w < w1; w++) {
                        float v = xp[h * p->W + w];
                        if (v > max || (isnan(v) && !isnan(max))) {
                            max = v;
                            best = h * p->W + w;
                        }
                    }
                }
                yp[oh * p->out_w + ow] = max;
                ap[oh * p->out_w + ow] = best;
            }
        }
    }
    return DP_OK;
}

dp_status dp_cpu_maxpool_backward(float *dx, const float *dy, const int32_t *argmax,
                                  const dp_pool_params *p, int accumulate)
{
    DP_TRY(check_call(p, "maxpool backward"));
    DP_CPU_NEED(dx, "maxpool backward");
    DP_CPU_NEED(dy, "maxpool backward");
    DP_CPU_NEED(argmax, "maxpool backward");
    const size_t hw = (size_t)p->H * p->W, ohw = (size_t)p->out_h * p->out_w;
    const size_t planes = (size_t)p->N * p->C;
    if (!accumulate) {
        memset(dx, 0, planes * hw * sizeof(float));
    }
    for (size_t plane = 0; plane < planes; plane++) {
        float *dxp = dx + plane * hw;
        const float *dyp = dy + plane * ohw;
        const int32_t *ap = argmax + plane * ohw;
        for (size_t i = 0; i < ohw; i++) {
            int32_t at = ap[i];
            if (at < 0 || (size_t)at >= hw) {
                return dp_error_set(DP_ERR_ARG,
                                    "maxpool backward: argmax %d of output %zu of plane %zu is "
                                    "outside the %zu-element input plane",
                                    (int)at, i, plane, hw);
            }
            dxp[at] += dyp[i];
        }
    }
    return DP_OK;
}

// --- average ---

static float divisor(const dp_pool_params *p, int h0, int h1, int w0, int w1)
{
    if (p->count_include_pad) {
        return (float)(p->size_h * p->size_w);
    }
    return (float)((h1 - h0) * (w1 - w0));
}

dp_status dp_cpu_avgpool_forward(float *y, const float *x, const dp_pool_params *p)
{
    DP_TRY(check_call(p, "avgpool forward"));
    DP_CPU_NEED(y, "avgpool forward");
    DP_CPU_NEED(x, "avgpool forward");
    const size_t hw = (size_t)p->H * p->W, ohw = (size_t)p->out_h * p->out_w;
    for (size_t plane = 0; plane < (size_t)p->N * p->C; plane++) {
        const float *xp = x + plane * hw;
        float *yp = y + plane * ohw;
        for (int oh = 0; oh < p->out_h; oh++) {
            int h0, h1;
            window(oh, p->stride_h, p->pad_h, p->size_h, p->H, &h0, &h1);
            for (int ow = 0; ow < p->out_w; ow++) {
                int w0, w1;
                window(ow, p->stride_w, p->pad_w, p->size_w, p->W, &w0, &w1);
                float sum = 0.0f;
                for (int h = h0; h < h1; h++) {
                    for (int w = w0; w < w1; w++) {
                        sum += xp[h * p->W + w];
                    }
                }
                yp[oh * p->out_w + ow] = sum / divisor(p, h0, h1, w0, w1);
            }
        }
    }
    return DP_OK;
}

dp_status dp_cpu_avgpool_backward(float *dx, const float *dy, const dp_pool_params *p,
                                  int accumulate)
{
    DP_TRY(check_call(p, "avgpool backward"));
    DP_CPU_NEED(dx, "avgpool backward");
    DP_CPU_NEED(dy, "avgpool backward");
    const size_t hw = (size_t)p->H * p->W, ohw = (size_t)p->out_h * p->out_w;
    const size_t planes = (size_t)p->N * p->C;
    if (!accumulate) {
        memset(dx, 0, planes * hw * sizeof(float));
    }
    for (size_t plane = 0; plane < planes; plane++) {
        float *dxp = dx + plane * hw;
        const float *dyp = dy + plane * ohw;
        for (int oh = 0; oh < p->out_h; oh++) {
            int h0, h1;
            window(oh, p->stride_h, p->pad_h, p->size_h, p->H, &h0, &h1);
            for (int ow = 0; ow < p->out_w; ow++) {
                int w0, w1;
                window(ow, p->stride_w, p->pad_w, p->size_w, p->W, &w0, &w1);
                float g = dyp[oh * p->out_w + ow] / divisor(p, h0, h1, w0, w1);
                for (int h = h0; h < h1; h++) {
                    for (int w = w0; w < w1; w++) {
                        dxp[h * p->W + w] += g;
                    }
                }
            }
        }
    }
    return DP_OK;
}

// --- global average ---

static dp_status check_global(int N, int C, size_t hw, const char *kernel)
{
    if (N < 1 || C < 1 || hw < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: dims N %d, C %d, hw %zu must be >= 1", kernel, N, C,
                            hw);
    }
    return DP_OK;
}

dp_status dp_cpu_global_avgpool_forward(float *y, const float *x, int N, int C, size_t hw)
{
    DP_TRY(check_global(N, C, hw, "global_avgpool forward"));
    DP_CPU_NEED(y, "global_avgpool forward");
    DP_CPU_NEED(x, "global_avgpool forward");
    for (size_t plane = 0; plane < (size_t)N * C; plane++) {
        y[plane] = (float)(dp__sum(x + plane * hw, hw) / (double)hw);
    }
    return DP_OK;
}

dp_status dp_cpu_global_avgpool_backward(float *dx, const float *dy, int N, int C, size_t hw,
                                         int accumulate)
{
    DP_TRY(check_global(N, C, hw, "global_avgpool backward"));
    DP_CPU_NEED(dx, "global_avgpool backward");
    DP_CPU_NEED(dy, "global_avgpool backward");
    for (size_t plane = 0; plane < (size_t)N * C; plane++) {
        const float g = dy[plane] / (float)hw;
        float *dxp = dx + plane * hw;
        for (size_t i = 0; i < hw; i++) {
            dxp[i] = accumulate ? dxp[i] + g : g;
        }
    }
    return DP_OK;
}
