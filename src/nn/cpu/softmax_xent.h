// Softmax and softmax + cross-entropy with label smoothing on the CPU, per sample over the
// classes (max-subtracted, log-sum-exp in double). Gives the per-sample and summed loss, top-1
// and top-5 counts, and the gradient of the summed loss with respect to the logits, scaled by
// the caller's factor (the trainer passes 1 / global batch). Needs no workspace.
#ifndef DP_NN_CPU_SOFTMAX_XENT_H
#define DP_NN_CPU_SOFTMAX_XENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef struct dp_xent_params {
    int N;            // samples
    int classes;      // >= 1
    float smoothing;  // label smoothing eps in [0, 1): target (1 - eps) one_hot + eps / classes
    float grad_scale; // dlogits = grad_scale * d(sum of losses) / dlogits
} dp_xent_params;

// What one batch contributes to the metrics.
typedef struct dp_xent_stats {
    double loss_sum; // sum over the batch of the per-sample losses (unscaled)
    int64_t top1;    // samples whose label has the highest logit
    int64_t top5;    // samples whose label is among the 5 highest (all, when classes <= 5)
} dp_xent_stats;

static inline size_t dp_cpu_softmax_xent_workspace_bytes(const dp_xent_params *p)
{
    (void)p;
    return 0;
}

// Loss of sample n: log sum_j exp(z_j) - sum_j t_j z_j with t the smoothed target; gradient
// grad_scale (softmax(z) - t). A label's rank counts the logits above it, and equal logits at
// lower class indices (so ties are broken the same way everywhere). The labels are checked
// before anything is written.
//   dlogits (N, classes) row-major, host, written; NULL in evaluation (may equal logits)
//   loss    (N), host, written; NULL when not needed
//   stats   host, written; NULL when not needed
//   logits  (N, classes) row-major, host
//   labels  (N) int32, host
// Returns DP_ERR_DATA for a label outside [0, classes), naming the sample's index in the batch
// and the label; DP_ERR_ARG for NULL inputs, dims < 1 or eps outside [0, 1).
DP_MUST_CHECK dp_status dp_cpu_softmax_xent(float *dlogits, float *loss, dp_xent_stats *stats,
                                            const float *logits, const int32_t *labels,
                                            const dp_xent_params *p);

// Probabilities only (Darknet's [softmax] in inference): y = softmax(x) per row.
//   y (N, classes) row-major, host, written (may equal x)
//   x (N, classes) row-major, host
DP_MUST_CHECK dp_status dp_cpu_softmax_forward(float *y, const float *x, int N, int classes);

DP_EXTERN_C_END

#endif
