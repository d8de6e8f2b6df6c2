// Softmax cross-entropy on the CPU (see softmax_xent.h). Per sample: max, log-sum-exp in double,
// loss, rank of the label, gradient. Rows are independent; nothing is accumulated in float.
#include "nn/cpu/softmax_xent.h"

#include <math.h>

#include "core/error.h"
#include "nn/cpu/cpu_internal.h"

static dp_status check_params(const dp_xent_params *p)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "softmax_xent: params are NULL");
    }
    if (p->N < 1 || p->classes < 1) {
        return dp_error_set(DP_ERR_ARG, "softmax_xent: N %d and classes %d must be >= 1", p->N,
                            p->classes);
    }
    if (!(p->smoothing >= 0.0f && p->smoothing < 1.0f)) {
        return dp_error_set(DP_ERR_ARG, "softmax_xent: label smoothing %g outside [0, 1)",
                            (double)p->smoothing);
    }
    return DP_OK;
}

// log sum_j exp(z_j), max-subtracted, in double.
static double log_sum_exp(const float *z, int k)
{
    float m = z[0];
    for (int j = 1; j < k; j++) {
        m = z[j] > m ? z[j] : m;
    }
    double sum = 0.0;
    for (int j = 0; j < k; j++) {
        sum += exp((double)z[j] - m);
    }
    return m + log(sum);
}

// Classes ranked above the label: larger logits, and equal ones at lower indices.
static int label_rank(const float *z, int k, int label)
{
    const float zl = z[label];
    int rank = 0;
    for (int j = 0; j < k; j++) {
        rank += z[j] > zl || (z[j] == zl && j < label);
    }
    return rank;
}

dp_status dp_cpu_softmax_xent(float *dlogits, float *loss, dp_xent_stats *stats,
                              const float *logits, const int32_t *labels, const dp_xent_params *p)
{
    DP_TRY(check_params(p));
    DP_CPU_NEED(logits, "softmax_xent");
    DP_CPU_NEED(labels, "softmax_xent");
    const int k = p->classes;
    for (int n = 0; n < p->N; n++) {
        if (labels[n] < 0 || labels[n] >= k) {
            return dp_error_set(DP_ERR_DATA, "sample %d of the batch: label %d outside [0, %d)", n,
                                (int)labels[n], k);
        }
    }
    const double eps = p->smoothing, off = eps / k, on = 1.0 - eps + off;
    dp_xent_stats acc = {0.0, 0, 0};
    for (int n = 0; n < p->N; n++) {
        const float *z = logits + (size_t)n * k;
        const int label = labels[n];
        const double lse = log_sum_exp(z, k);
        double target_dot = 0.0; // sum_j t_j z_j
        if (eps > 0.0) {
            double zsum = 0.0;
            for (int j = 0; j < k; j++) {
                zsum += z[j];
            }
            target_dot = off * zsum + (1.0 - eps) * z[label];
        } else {
            target_dot = z[label];
        }
        const double l = lse - target_dot;
        const int rank = label_rank(z, k, label);
        acc.loss_sum += l;
        acc.top1 += rank < 1;
        acc.top5 += rank < 5;
        if (loss != NULL) {
            loss[n] = (float)l;
        }
        if (dlogits != NULL) {
            float *g = dlogits + (size_t)n * k;
            for (int j = 0; j < k; j++) {
                double t = j == label ? on : off;
                g[j] = (float)(p->grad_scale * (exp((double)z[j] - lse) - t));
            }
        }
    }
    if (stats != NULL) {
        *stats = acc;
    }
    return DP_OK;
}

dp_status dp_cpu_softmax_forward(float *y, const float *x, int N, int classes)
{
    DP_CPU_NEED(y, "softmax forward");
    DP_CPU_NEED(x, "softmax forward");
    if (N < 1 || classes < 1) {
        return dp_error_set(DP_ERR_ARG, "softmax forward: N %d and classes %d must be >= 1", N,
                            classes);
    }
    for (int n = 0; n < N; n++) {
        const float *z = x + (size_t)n * classes;
        const double lse = log_sum_exp(z, classes);
        float *yn = y + (size_t)n * classes;
        for (int j = 0; j < classes; j++) {
            yn[j] = (float)exp((double)z[j] - lse);
        }
    }
    return DP_OK;
}
