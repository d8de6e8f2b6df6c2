// Helpers shared by the CPU kernels of src/nn/cpu/: argument checks that set the thread-local
// error, and the index arithmetic of windows (convolution, pooling). Not a public header.
#ifndef DP_NN_CPU_CPU_INTERNAL_H
#define DP_NN_CPU_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

// Returns DP_ERR_ARG from the calling kernel, naming it and the argument, when ptr is NULL.
#define DP_CPU_NEED(ptr, kernel)                                                                   \
    do {                                                                                           \
        if ((ptr) == NULL) {                                                                       \
            return dp_error_set(DP_ERR_ARG, "%s: argument '%s' is NULL", (kernel), #ptr);          \
        }                                                                                          \
    } while (0)

// floor(a / b) for b > 0 and any sign of a.
static inline int dp__floor_div(int a, int b)
{
    int q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

// The outputs o in [0, n_out) whose input tap i = o * stride + offset lies in [0, n_in) form
// one range [*lo, *hi) (empty when *lo >= *hi). stride >= 1.
static inline void dp__tap_range(int n_out, int stride, int offset, int n_in, int *lo, int *hi)
{
    int a = -dp__floor_div(offset, stride); // ceil(-offset / stride)
    int b = dp__floor_div(n_in - 1 - offset, stride) + 1;
    *lo = a < 0 ? 0 : (a > n_out ? n_out : a);
    *hi = b < *lo ? *lo : (b > n_out ? n_out : b);
}

// --- blocked sums (reduce.c) ---
// Float partial sums in 8 lanes over blocks of DP__SUM_BLOCK elements, the blocks added in
// double: vectorizable, accurate to about the float rounding of one block, and in a fixed order
// (deterministic for a given n).
enum { DP__SUM_BLOCK = 256 };

// sum_i x[i]
double dp__sum(const float *x, size_t n);

// sum_i (x[i] - shift)^2
double dp__sum_sq_dev(const float *x, size_t n, float shift);

// *sum += sum_i a[i] and *dot += sum_i a[i] (b[i] - shift), in one pass over a and b; each block
// is added to the accumulators as soon as it is summed.
void dp__sum_dot_dev(const float *a, const float *b, size_t n, float shift, double *sum,
                     double *dot);

// Checks batch-norm dims (>= 1) and eps (> 0); DP_ERR_ARG naming kernel (batchnorm.c).
struct dp_bn_params;
dp_status dp__bn_params_check(const struct dp_bn_params *p, const char *kernel);

#endif
