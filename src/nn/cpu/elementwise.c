// Shortcut, channel copy and crop on the CPU (see elementwise.h). Every output element is
// written by one loop iteration, so the results are exact and deterministic. Not here: the
// augmenting parts of Darknet's crop (random offset, flip, exposure), which belong to io.
#include "nn/cpu/elementwise.h"

#include <string.h>

#include "core/error.h"
#include "nn/cpu/cpu_internal.h"

// --- shortcut ---

// Darknet's index maps: from element (k, j*stride, i*stride) goes with y element
// (k, j*sample, i*sample), for k < min C, j < min H, i < min W.
typedef struct shortcut_map {
    int stride, sample, minc, minh, minw;
} shortcut_map;

static shortcut_map shortcut_map_of(const dp_shortcut_params *p)
{
    shortcut_map m;
    m.stride = p->from_W / p->W;
    m.sample = p->W / p->from_W;
    m.stride = m.stride < 1 ? 1 : m.stride;
    m.sample = m.sample < 1 ? 1 : m.sample;
    m.minc = p->C < p->from_C ? p->C : p->from_C;
    m.minh = p->H < p->from_H ? p->H : p->from_H;
    m.minw = p->W < p->from_W ? p->W : p->from_W;
    return m;
}

dp_status dp_shortcut_params_check(const dp_shortcut_params *p)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "shortcut: params are NULL");
    }
    if (p->N < 1 || p->C < 1 || p->H < 1 || p->W < 1 || p->from_C < 1 || p->from_H < 1 ||
        p->from_W < 1) {
        return dp_error_set(DP_ERR_ARG,
                            "shortcut: dims (%d, %d, %d, %d) from (%d, %d, %d) must be "
                            ">= 1",
                            p->N, p->C, p->H, p->W, p->from_C, p->from_H, p->from_W);
    }
    if (p->from_W / p->W != p->from_H / p->H || p->W / p->from_W != p->H / p->from_H) {
        return dp_error_set(DP_ERR_SHAPE,
                            "shortcut: from %dx%d and input %dx%d differ by different factors "
                            "along H and W",
                            p->from_H, p->from_W, p->H, p->W);
    }
    return DP_OK;
}

dp_status dp_cpu_shortcut_forward(float *y, const float *x, const float *from,
                                  const dp_shortcut_params *p)
{
    DP_TRY(dp_shortcut_params_check(p));
    DP_CPU_NEED(y, "shortcut forward");
    DP_CPU_NEED(x, "shortcut forward");
    DP_CPU_NEED(from, "shortcut forward");
    const size_t n_y = (size_t)p->N * p->C * p->H * p->W;
    for (size_t i = 0; i < n_y; i++) {
        y[i] = p->alpha * x[i];
    }
    const shortcut_map m = shortcut_map_of(p);
    for (int b = 0; b < p->N; b++) {
        for (int k = 0; k < m.minc; k++) {
            for (int j = 0; j < m.minh; j++) {
                float *yr = y + (((size_t)b * p->C + k) * p->H + (size_t)j * m.sample) * p->W;
                const float *fr =
                    from +
                    (((size_t)b * p->from_C + k) * p->from_H + (size_t)j * m.stride) * p->from_W;
                for (int i = 0; i < m.minw; i++) {
                    yr[i * m.sample] += p->beta * fr[i * m.stride];
                }
            }
        }
    }
    return DP_OK;
}

dp_status dp_cpu_shortcut_backward(float *dx, float *dfrom, const float *dy,
                                   const dp_shortcut_params *p, int accumulate_dx,
                                   int accumulate_dfrom)
{
    DP_TRY(dp_shortcut_params_check(p));
    DP_CPU_NEED(dy, "shortcut backward");
    const size_t n_y = (size_t)p->N * p->C * p->H * p->W;
    if (dx != NULL) {
        for (size_t i = 0; i < n_y; i++) {
            dx[i] = accumulate_dx ? dx[i] + p->alpha * dy[i] : p->alpha * dy[i];
        }
    }
    if (dfrom == NULL) {
        return DP_OK;
    }
    if (!accumulate_dfrom) {
        memset(dfrom, 0, (size_t)p->N * p->from_C * p->from_H * p->from_W * sizeof(float));
    }
    const shortcut_map m = shortcut_map_of(p);
    for (int b = 0; b < p->N; b++) {
        for (int k = 0; k < m.minc; k++) {
            for (int j = 0; j < m.minh; j++) {
                const float *dyr =
                    dy + (((size_t)b * p->C + k) * p->H + (size_t)j * m.sample) * p->W;
                float *dfr =
                    dfrom +
                    (((size_t)b * p->from_C + k) * p->from_H + (size_t)j * m.stride) * p->from_W;
                for (int i = 0; i < m.minw; i++) {
                    dfr[i * m.stride] += p->beta * dyr[i * m.sample];
                }
            }
        }
    }
    return DP_OK;
}

// --- same-shape shortcut with its activation, on the pool ---

typedef struct shortcut_job {
    float *y, *dx, *dfrom;
    const float *x, *from, *dy;
    float alpha, beta, slope;
    dp_act act;
    int add_dx, add_from;
    size_t image;
} shortcut_job;

static dp_status check_same_shape(const dp_shortcut_params *p, dp_act act, const char *kernel)
{
    DP_TRY(dp_shortcut_params_check(p));
    if (p->from_C != p->C || p->from_H != p->H || p->from_W != p->W ||
        !(act == DP_ACT_LINEAR || act == DP_ACT_RELU || act == DP_ACT_LEAKY)) {
        return dp_error_set(DP_ERR_ARG,
                            "%s: needs one shape (got %dx%dx%d and %dx%dx%d) and a linear, relu "
                            "or leaky activation (got %s)",
                            kernel, p->C, p->H, p->W, p->from_C, p->from_H, p->from_W,
                            dp_act_name(act));
    }
    return DP_OK;
}

static void shortcut_fwd_task(void *arg, long n, int thread)
{
    (void)thread;
    const shortcut_job *j = arg;
    const size_t off = (size_t)n * j->image;
    float *restrict y = j->y + off;
    const float *restrict x = j->x + off, *restrict from = j->from + off;
    const float a = j->alpha, b = j->beta, neg = j->act == DP_ACT_LEAKY ? j->slope : 0.0f;
    // One loop per activation, so that each vectorizes (and relu gives +0, as activation.c).
    if (j->act == DP_ACT_LINEAR) {
        for (size_t i = 0; i < j->image; i++) {
            y[i] = a * x[i] + b * from[i];
        }
    } else if (j->act == DP_ACT_RELU) {
        for (size_t i = 0; i < j->image; i++) {
            float v = a * x[i] + b * from[i];
            y[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (size_t i = 0; i < j->image; i++) {
            float v = a * x[i] + b * from[i];
            y[i] = v > 0.0f ? v : neg * v;
        }
    }
}

dp_status dp_cpu_shortcut_act_forward(float *y, const float *x, const float *from,
                                      const dp_shortcut_params *p, dp_act act, float slope,
                                      dp_threadpool *pool)
{
    DP_TRY(check_same_shape(p, act, "shortcut forward"));
    DP_CPU_NEED(y, "shortcut forward");
    DP_CPU_NEED(x, "shortcut forward");
    DP_CPU_NEED(from, "shortcut forward");
    shortcut_job j = {.y = y,
                      .x = x,
                      .from = from,
                      .alpha = p->alpha,
                      .beta = p->beta,
                      .slope = slope,
                      .act = act,
                      .image = (size_t)p->C * p->H * p->W};
    dp_threadpool_for(pool, p->N, shortcut_fwd_task, &j);
    return DP_OK;
}

// out (+)= scale g with g = dy act'(y), over one image; one loop per case so that each
// vectorizes.
static void scaled_grad(float *restrict out, const float *restrict dy, const float *restrict y,
                        size_t n, float scale, dp_act act, float slope, int add)
{
    if (act == DP_ACT_LINEAR) {
        if (add) {
            for (size_t i = 0; i < n; i++) {
                out[i] += scale * dy[i];
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                out[i] = scale * dy[i];
            }
        }
        return;
    }
    const float neg = act == DP_ACT_LEAKY ? slope : 0.0f;
    if (act == DP_ACT_RELU && add) {
        for (size_t i = 0; i < n; i++) {
            out[i] += scale * (y[i] > 0.0f ? dy[i] : 0.0f);
        }
    } else if (act == DP_ACT_RELU) {
        for (size_t i = 0; i < n; i++) {
            out[i] = scale * (y[i] > 0.0f ? dy[i] : 0.0f);
        }
    } else if (add) {
        for (size_t i = 0; i < n; i++) {
            out[i] += scale * (y[i] > 0.0f ? dy[i] : neg * dy[i]);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            out[i] = scale * (y[i] > 0.0f ? dy[i] : neg * dy[i]);
        }
    }
}

static void shortcut_bwd_task(void *arg, long n, int thread)
{
    (void)thread;
    const shortcut_job *j = arg;
    const size_t off = (size_t)n * j->image;
    const float *y = j->y != NULL ? j->y + off : NULL;
    if (j->dx != NULL) {
        scaled_grad(j->dx + off, j->dy + off, y, j->image, j->alpha, j->act, j->slope, j->add_dx);
    }
    if (j->dfrom != NULL) {
        scaled_grad(j->dfrom + off, j->dy + off, y, j->image, j->beta, j->act, j->slope,
                    j->add_from);
    }
}

dp_status dp_cpu_shortcut_act_backward(float *dx, float *dfrom, const float *dy, const float *y,
                                       const dp_shortcut_params *p, dp_act act, float slope,
                                       int accumulate_dx, int accumulate_dfrom, dp_threadpool *pool)
{
    DP_TRY(check_same_shape(p, act, "shortcut backward"));
    DP_CPU_NEED(dy, "shortcut backward");
    if (act != DP_ACT_LINEAR) {
        DP_CPU_NEED(y, "shortcut backward");
    }
    shortcut_job j = {.y = (float *)y,
                      .dx = dx,
                      .dfrom = dfrom,
                      .dy = dy,
                      .alpha = p->alpha,
                      .beta = p->beta,
                      .slope = slope,
                      .act = act,
                      .add_dx = accumulate_dx,
                      .add_from = accumulate_dfrom,
                      .image = (size_t)p->C * p->H * p->W};
    dp_threadpool_for(pool, p->N, shortcut_bwd_task, &j);
    return DP_OK;
}

// --- channel copy ---

dp_status dp_cpu_channel_copy(float *dst, int dst_C, int dst_c0, const float *src, int src_C,
                              int src_c0, int count, int N, size_t hw, int accumulate)
{
    DP_CPU_NEED(dst, "channel copy");
    DP_CPU_NEED(src, "channel copy");
    if (N < 0 || count < 0 || dst_c0 < 0 || src_c0 < 0 || dst_c0 + count > dst_C ||
        src_c0 + count > src_C) {
        return dp_error_set(DP_ERR_ARG,
                            "channel copy: %d channels from %d of %d into %d of %d (N %d)", count,
                            src_c0, src_C, dst_c0, dst_C, N);
    }
    const size_t len = (size_t)count * hw;
    for (int n = 0; n < N; n++) {
        float *d = dst + ((size_t)n * dst_C + dst_c0) * hw;
        const float *s = src + ((size_t)n * src_C + src_c0) * hw;
        if (!accumulate) {
            memcpy(d, s, len * sizeof(float));
            continue;
        }
        for (size_t i = 0; i < len; i++) {
            d[i] += s[i];
        }
    }
    return DP_OK;
}

// --- crop ---

static dp_status check_crop(const dp_crop_params *p, const char *kernel)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: params are NULL", kernel);
    }
    if (p->N < 1 || p->C < 1 || p->out_h < 1 || p->out_w < 1 || p->off_h < 0 || p->off_w < 0 ||
        p->off_h + p->out_h > p->H || p->off_w + p->out_w > p->W) {
        return dp_error_set(DP_ERR_ARG, "%s: window %dx%d at (%d, %d) outside the %dx%d input",
                            kernel, p->out_h, p->out_w, p->off_h, p->off_w, p->H, p->W);
    }
    return DP_OK;
}

dp_status dp_cpu_crop_forward(float *y, const float *x, const dp_crop_params *p)
{
    DP_TRY(check_crop(p, "crop forward"));
    DP_CPU_NEED(y, "crop forward");
    DP_CPU_NEED(x, "crop forward");
    for (size_t plane = 0; plane < (size_t)p->N * p->C; plane++) {
        for (int h = 0; h < p->out_h; h++) {
            memcpy(y + (plane * p->out_h + h) * p->out_w,
                   x + (plane * p->H + p->off_h + h) * p->W + p->off_w,
                   (size_t)p->out_w * sizeof(float));
        }
    }
    return DP_OK;
}

dp_status dp_cpu_crop_backward(float *dx, const float *dy, const dp_crop_params *p, int accumulate)
{
    DP_TRY(check_crop(p, "crop backward"));
    DP_CPU_NEED(dx, "crop backward");
    DP_CPU_NEED(dy, "crop backward");
    if (!accumulate) {
        memset(dx, 0, (size_t)p->N * p->C * p->H * p->W * sizeof(float));
    }
    for (size_t plane = 0; plane < (size_t)p->N * p->C; plane++) {
        for (int h = 0; h < p->out_h; h++) {
            float *d = dx + (plane * p->H + p->off_h + h) * p->W + p->off_w;
            const float *s = dy + (plane * p->out_h + h) * p->out_w;
            for (int w = 0; w < p->out_w; w++) {
                d[w] += s[w];
            }
        }
    }
    return DP_OK;
}
