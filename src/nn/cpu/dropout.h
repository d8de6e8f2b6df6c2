// Dropout on the CPU: standard (inverted scaling) and alpha dropout (for SELU networks). The
// mask is drawn from Philox keyed by (seed; step, global sample index, layer), element i of a
// sample being word i of that stream, so a sample's mask does not depend on the rank, thread or
// batch position that processes it. Backward regenerates the mask: nothing is stored, and no
// workspace is needed. Training only; in evaluation dropout is the identity.
#ifndef DP_NN_CPU_DROPOUT_H
#define DP_NN_CPU_DROPOUT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef enum dp_dropout_kind {
    DP_DROPOUT_STANDARD = 0, // y = keep ? x / (1 - p) : 0
    DP_DROPOUT_ALPHA,        // y = a (keep ? x : alpha') + b, alpha' = -SELU lambda alpha, with
                             // a, b keeping zero mean and unit variance (Klambauer et al. 2017)
} dp_dropout_kind;

typedef struct dp_dropout_params {
    int N;              // samples in this call
    size_t sample_size; // elements per sample (C H W)
    float p;            // drop probability in [0, 1)
    dp_dropout_kind kind;
    uint64_t seed;         // the run's seed
    uint32_t step;         // optimizer step (counter word a)
    uint32_t first_sample; // global index of sample 0 of this call in the step's global batch
                           // (counter word b is first_sample + n)
    uint32_t layer;        // layer index (counter word c)
} dp_dropout_params;

static inline size_t dp_cpu_dropout_workspace_bytes(const dp_dropout_params *p)
{
    (void)p;
    return 0;
}

// An element is kept when its uniform draw u (24 bits, dp_rng_uniform) satisfies u >= p.
//   y (N, sample_size), host, written (may equal x)
//   x (N, sample_size), host
// Returns DP_ERR_ARG for NULL, p outside [0, 1) or an unknown kind.
DP_MUST_CHECK dp_status dp_cpu_dropout_forward(float *y, const float *x,
                                               const dp_dropout_params *p);

// dx = dy * d y / d x with the same mask: keep / (1 - p) (standard) or keep * a (alpha); dx is
// overwritten, or added to when accumulate != 0.
//   dx (N, sample_size), host (may equal dy when not accumulating)
//   dy (N, sample_size), host
DP_MUST_CHECK dp_status dp_cpu_dropout_backward(float *dx, const float *dy,
                                                const dp_dropout_params *p, int accumulate);

DP_EXTERN_C_END

#endif
