// Batch norm + activation on the thread pool (see bn_act.h). Every sum is a set of float lanes
// over blocks of DP__SUM_BLOCK values, blocks added in double, planes in image order: fixed
// for given dims, whatever the threads.
#include "nn/cpu/bn_act.h"

#include <math.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/cpu_internal.h"

int dp_bn_act_fusable(dp_act act)
{
    return act == DP_ACT_LINEAR || act == DP_ACT_RELU || act == DP_ACT_LEAKY;
}

static size_t plane_of(const dp_bn_params *p)
{
    return (size_t)p->H * (size_t)p->W;
}

// --- statistics ---

void dp_cpu_bn_plane_stats(double *stats, const float *x, int C, size_t hw)
{
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * hw;
        double sum = dp__sum(xc, hw), mean = sum / (double)hw;
        float shift = (float)mean;
        double d = mean - (double)shift;
        // sum (x - mean)^2 = sum (x - shift)^2 - hw (mean - shift)^2
        double m2 = dp__sum_sq_dev(xc, hw, shift) - (double)hw * d * d;
        stats[2 * c] = sum;
        stats[2 * c + 1] = m2 > 0.0 ? m2 : 0.0;
    }
}

typedef struct stats_job {
    double *stats;
    const float *x;
    int C;
    size_t hw;
} stats_job;

static void stats_task(void *arg, long n, int thread)
{
    (void)thread;
    const stats_job *j = arg;
    size_t image = (size_t)j->C * j->hw;
    dp_cpu_bn_plane_stats(j->stats + (size_t)n * 2 * j->C, j->x + (size_t)n * image, j->C, j->hw);
}

void dp_cpu_bn_plane_stats_pool(double *stats, const float *x, const dp_bn_params *p,
                                dp_threadpool *pool)
{
    stats_job j = {stats, x, p->C, plane_of(p)};
    dp_threadpool_for(pool, p->N, stats_task, &j);
}

dp_status dp_cpu_bn_stats_finish(float *save_mean, float *save_inv_std, float *running_mean,
                                 float *running_var, const double *stats, const dp_bn_params *p)
{
    static const char kernel[] = "batchnorm statistics";
    DP_TRY(dp__bn_params_check(p, kernel));
    DP_CPU_NEED(save_mean, kernel);
    DP_CPU_NEED(save_inv_std, kernel);
    DP_CPU_NEED(stats, kernel);
    const double hw = (double)plane_of(p), m = (double)p->N * hw;
    if (m < 2.0) {
        return dp_error_set(DP_ERR_SHAPE,
                            "%s: %d value(s) per channel (N %d x H %d x W %d); training needs at "
                            "least 2",
                            kernel, (int)m, p->N, p->H, p->W);
    }
    for (int c = 0; c < p->C; c++) {
        double sum = 0.0;
        for (int n = 0; n < p->N; n++) {
            sum += stats[((size_t)n * p->C + c) * 2];
        }
        const double mean = sum / m;
        double m2 = 0.0;
        for (int n = 0; n < p->N; n++) {
            const double *s = stats + ((size_t)n * p->C + c) * 2;
            double d = s[0] / hw - mean;
            m2 += s[1] + hw * d * d;
        }
        const double var = m2 / m;
        save_mean[c] = (float)mean;
        save_inv_std[c] = (float)(1.0 / sqrt(var + (double)p->eps));
        if (running_mean != NULL) {
            running_mean[c] = (float)((1.0 - p->momentum) * running_mean[c] + p->momentum * mean);
        }
        if (running_var != NULL) {
            double unbiased = var * m / (m - 1.0);
            running_var[c] = (float)((1.0 - p->momentum) * running_var[c] + p->momentum * unbiased);
        }
    }
    return DP_OK;
}

// --- forward ---

typedef struct fwd_job {
    float *y, *a;
    const float *z, *mean, *scale, *shift;
    dp_act act;
    float slope;
    int C;
    size_t hw;
} fwd_job;

static void fwd_plane(float *restrict y, const float *restrict z, size_t n, float mean, float scale,
                      float shift, dp_act act, float slope)
{
    switch (act) {
    case DP_ACT_RELU:
        for (size_t i = 0; i < n; i++) {
            float v = (z[i] - mean) * scale + shift;
            y[i] = v > 0.0f ? v : 0.0f;
        }
        break;
    case DP_ACT_LEAKY:
        for (size_t i = 0; i < n; i++) {
            float v = (z[i] - mean) * scale + shift;
            y[i] = v > 0.0f ? v : slope * v;
        }
        break;
    default: // linear, or another activation applied afterwards
        for (size_t i = 0; i < n; i++) {
            y[i] = (z[i] - mean) * scale + shift;
        }
        break;
    }
}

// bn_out = the affine map of z (fused with act when fusable and a is not needed), then y = act
// of bn_out when not fused.
static void fwd_image(float *y, float *bn_out, const float *z, int C, size_t hw, const float *mean,
                      const float *scale, const float *shift, dp_act act, float slope)
{
    const dp_act fused = dp_bn_act_fusable(act) && bn_out == y ? act : DP_ACT_LINEAR;
    if (mean != NULL) {
        for (int c = 0; c < C; c++) {
            size_t at = (size_t)c * hw;
            fwd_plane(bn_out + at, z + at, hw, mean[c], scale[c], shift[c], fused, slope);
        }
    } else if (fused != DP_ACT_LINEAR) {
        fwd_plane(bn_out, z, (size_t)C * hw, 0.0f, 1.0f, 0.0f, fused, slope);
    } else if (bn_out != z) {
        memcpy(bn_out, z, (size_t)C * hw * sizeof(float));
    }
    if (fused != act) {
        dp_status st = dp_cpu_act_forward(y, bn_out, (size_t)C * hw, act, slope);
        DP_ASSERT(st == DP_OK);
    }
}

void dp__bn_act_image(float *y, const float *z, int C, size_t hw, const float *mean,
                      const float *scale, const float *shift, dp_act act, float slope)
{
    fwd_image(y, y, z, C, hw, mean, scale, shift, act, slope);
}

static void fwd_task(void *arg, long n, int thread)
{
    (void)thread;
    const fwd_job *j = arg;
    const size_t off = (size_t)n * (size_t)j->C * j->hw;
    fwd_image(j->y + off, j->a != NULL ? j->a + off : j->y + off, j->z + off, j->C, j->hw, j->mean,
              j->scale, j->shift, j->act, j->slope);
}

dp_status dp_cpu_bn_act_forward(float *y, float *a, const float *z, const float *mean,
                                const float *scale, const float *shift, dp_act act, float slope,
                                const dp_bn_params *p, dp_threadpool *pool)
{
    static const char kernel[] = "batchnorm+activation forward";
    DP_TRY(dp__bn_params_check(p, kernel));
    DP_CPU_NEED(y, kernel);
    DP_CPU_NEED(z, kernel);
    DP_CPU_NEED(mean, kernel);
    DP_CPU_NEED(scale, kernel);
    DP_CPU_NEED(shift, kernel);
    if (act < 0 || act >= DP_ACT_COUNT_ || act == DP_ACT_PRELU || (a != NULL && a == z)) {
        return dp_error_set(DP_ERR_ARG, "%s: activation %d (prelu has its own kernel), or a == z",
                            kernel, (int)act);
    }
    fwd_job j = {y, a, z, mean, scale, shift, act, slope, p->C, plane_of(p)};
    dp_threadpool_for(pool, p->N, fwd_task, &j);
    return DP_OK;
}

// --- backward ---

// Lanes combined pairwise in a fixed order.
static float combine8(const float l[8])
{
    return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
}

// *sum += sum g, *dot += sum g (z - mean) over one block with g = dy act'(y), 8 float lanes;
// y is not read for linear. One loop per case so that each vectorizes.
static void block_sums(const float *restrict dy, const float *restrict y, const float *restrict z,
                       size_t n, float mean, dp_act act, float slope, double *sum, double *dot)
{
    float ls[8] = {0}, ld[8] = {0}, ts = 0.0f, td = 0.0f;
    const size_t nb = n / 8 * 8;
#if defined(__AVX2__)
    // The same lanes and operations as the loops below (no FMA), written out: GCC does not
    // vectorize those.
    {
        const __m256 m = _mm256_set1_ps(mean), zero = _mm256_setzero_ps();
        const __m256 neg = _mm256_set1_ps(act == DP_ACT_LEAKY ? slope : 0.0f);
        __m256 vs = zero, vd = zero;
        for (size_t i = 0; i < nb; i += 8) {
            __m256 g = _mm256_loadu_ps(dy + i);
            if (act != DP_ACT_LINEAR) {
                __m256 pos = _mm256_cmp_ps(_mm256_loadu_ps(y + i), zero, _CMP_GT_OQ);
                g = _mm256_blendv_ps(_mm256_mul_ps(neg, g), g, pos);
            }
            vs = _mm256_add_ps(vs, g);
            vd = _mm256_add_ps(vd, _mm256_mul_ps(g, _mm256_sub_ps(_mm256_loadu_ps(z + i), m)));
        }
        _mm256_storeu_ps(ls, vs);
        _mm256_storeu_ps(ld, vd);
        const float ng = act == DP_ACT_LEAKY ? slope : 0.0f;
        for (size_t i = nb; i < n; i++) {
            float g = act == DP_ACT_LINEAR || y[i] > 0.0f ? dy[i] : ng * dy[i];
            ts += g;
            td += g * (z[i] - mean);
        }
        *sum += (double)combine8(ls) + (double)ts;
        *dot += (double)combine8(ld) + (double)td;
        return;
    }
#endif
    if (act == DP_ACT_LINEAR) {
        for (size_t i = 0; i < nb; i += 8) {
            for (int l = 0; l < 8; l++) {
                ls[l] += dy[i + l];
                ld[l] += dy[i + l] * (z[i + l] - mean);
            }
        }
        for (size_t i = nb; i < n; i++) {
            ts += dy[i];
            td += dy[i] * (z[i] - mean);
        }
    } else {
        const float neg = act == DP_ACT_LEAKY ? slope : 0.0f;
        for (size_t i = 0; i < nb; i += 8) {
            for (int l = 0; l < 8; l++) {
                float g = y[i + l] > 0.0f ? dy[i + l] : neg * dy[i + l];
                ls[l] += g;
                ld[l] += g * (z[i + l] - mean);
            }
        }
        for (size_t i = nb; i < n; i++) {
            float g = y[i] > 0.0f ? dy[i] : neg * dy[i];
            ts += g;
            td += g * (z[i] - mean);
        }
    }
    *sum += (double)combine8(ls) + (double)ts;
    *dot += (double)combine8(ld) + (double)td;
}

typedef struct coef_job {
    float *coef, *dgamma, *dbeta;
    const float *dy, *y, *z, *gamma, *mean, *inv_std;
    dp_act act;
    float slope;
    int N, C, add;
    size_t hw;
} coef_job;

static void coef_task(void *arg, long c, int thread)
{
    (void)thread;
    const coef_job *j = arg;
    const float mean = j->mean[c], inv_std = j->inv_std[c];
    double sum = 0.0, dot = 0.0;
    for (int n = 0; n < j->N; n++) {
        size_t off = ((size_t)n * j->C + (size_t)c) * j->hw;
        for (size_t b = 0; b < j->hw; b += DP__SUM_BLOCK) {
            size_t len = j->hw - b < DP__SUM_BLOCK ? j->hw - b : DP__SUM_BLOCK;
            block_sums(j->dy + off + b, j->y != NULL ? j->y + off + b : NULL, j->z + off + b, len,
                       mean, j->act, j->slope, &sum, &dot);
        }
    }
    const double m = (double)j->N * (double)j->hw;
    const double sum_xhat = dot * inv_std;
    j->dbeta[c] = j->add ? (float)(j->dbeta[c] + sum) : (float)sum;
    j->dgamma[c] = j->add ? (float)(j->dgamma[c] + sum_xhat) : (float)sum_xhat;
    const double k = (double)j->gamma[c] * inv_std;
    float *cf = j->coef + 4 * c;
    cf[0] = (float)k;
    cf[1] = (float)(-k * inv_std * (sum_xhat / m));
    cf[2] = (float)(-k * (sum / m));
    cf[3] = mean;
}

dp_status dp_cpu_bn_act_backward_coef(float *coef, float *dgamma, float *dbeta, const float *dy,
                                      const float *y, const float *z, const float *gamma,
                                      const float *save_mean, const float *save_inv_std, dp_act act,
                                      float slope, const dp_bn_params *p, unsigned accum,
                                      dp_threadpool *pool)
{
    static const char kernel[] = "batchnorm+activation backward";
    DP_TRY(dp__bn_params_check(p, kernel));
    DP_CPU_NEED(coef, kernel);
    DP_CPU_NEED(dgamma, kernel);
    DP_CPU_NEED(dbeta, kernel);
    DP_CPU_NEED(dy, kernel);
    DP_CPU_NEED(z, kernel);
    DP_CPU_NEED(gamma, kernel);
    DP_CPU_NEED(save_mean, kernel);
    DP_CPU_NEED(save_inv_std, kernel);
    if (!dp_bn_act_fusable(act)) {
        return dp_error_set(DP_ERR_ARG, "%s: activation %s is not fused with batch norm", kernel,
                            dp_act_name(act));
    }
    if (act != DP_ACT_LINEAR) {
        DP_CPU_NEED(y, kernel);
    }
    coef_job j = {
        coef,       dgamma,       dbeta, dy,    y,    z,    gamma,
        save_mean,  save_inv_std, act,   slope, p->N, p->C, (accum & DP_ACCUM_DPARAMS) != 0,
        plane_of(p)};
    dp_threadpool_for(pool, p->C, coef_task, &j);
    return DP_OK;
}

void dp__bn_act_dz_plane(float *restrict dz, const float *restrict dy, const float *restrict y,
                         const float *restrict z, size_t n, const float coef[4], dp_act act,
                         float slope, int accumulate)
{
    const float c0 = coef[0], c1 = coef[1], c2 = coef[2], c3 = coef[3];
    // One loop per case, so that each vectorizes.
    if (act == DP_ACT_LINEAR) {
        for (size_t i = 0; i < n; i++) {
            float v = c0 * dy[i] + c1 * (z[i] - c3) + c2;
            dz[i] = accumulate ? dz[i] + v : v;
        }
    } else if (act == DP_ACT_RELU) {
        for (size_t i = 0; i < n; i++) {
            float g = y[i] > 0.0f ? dy[i] : 0.0f;
            float v = c0 * g + c1 * (z[i] - c3) + c2;
            dz[i] = accumulate ? dz[i] + v : v;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float g = y[i] > 0.0f ? dy[i] : slope * dy[i];
            float v = c0 * g + c1 * (z[i] - c3) + c2;
            dz[i] = accumulate ? dz[i] + v : v;
        }
    }
}

typedef struct apply_job {
    float *dz;
    const float *dy, *y, *z, *coef;
    dp_act act;
    float slope;
    int C, accumulate;
    size_t hw;
} apply_job;

static void apply_task(void *arg, long n, int thread)
{
    (void)thread;
    const apply_job *j = arg;
    for (int c = 0; c < j->C; c++) {
        size_t off = ((size_t)n * j->C + (size_t)c) * j->hw;
        dp__bn_act_dz_plane(j->dz + off, j->dy + off, j->y != NULL ? j->y + off : NULL, j->z + off,
                            j->hw, j->coef + 4 * c, j->act, j->slope, j->accumulate);
    }
}

dp_status dp_cpu_bn_act_backward_apply(float *dz, const float *dy, const float *y, const float *z,
                                       const float *coef, dp_act act, float slope,
                                       const dp_bn_params *p, int accumulate, dp_threadpool *pool)
{
    static const char kernel[] = "batchnorm+activation backward";
    DP_TRY(dp__bn_params_check(p, kernel));
    DP_CPU_NEED(dz, kernel);
    DP_CPU_NEED(dy, kernel);
    DP_CPU_NEED(z, kernel);
    DP_CPU_NEED(coef, kernel);
    if (!dp_bn_act_fusable(act)) {
        return dp_error_set(DP_ERR_ARG, "%s: activation %s is not fused with batch norm", kernel,
                            dp_act_name(act));
    }
    if (act != DP_ACT_LINEAR) {
        DP_CPU_NEED(y, kernel);
    }
    apply_job j = {dz, dy, y, z, coef, act, slope, p->C, accumulate, plane_of(p)};
    dp_threadpool_for(pool, p->N, apply_task, &j);
    return DP_OK;
}
