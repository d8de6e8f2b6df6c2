// Test helpers for the CPU kernels: random fills, central finite differences in double of a
// scalar loss, and comparison reporting the worst relative error and where it is.
#ifndef DP_TESTS_NN_GRAD_CHECK_H
#define DP_TESTS_NN_GRAD_CHECK_H

#include <stddef.h>
#include <stdint.h>

// The worst element of a comparison: relative error |a - b| / max(|a|, |b|, floor).
typedef struct gc_err {
    double max_rel;
    size_t index;
    double got;    // analytic (or tested) value at index
    double expect; // numeric (or reference) value at index
} gc_err;

// Fills v[0, n) with uniform values in [lo, hi) from a fixed stream (seed, tag).
void gc_fill(float *v, size_t n, float lo, float hi, uint32_t tag);

// L = sum_i w[i] * y[i], accumulated in double.
double gc_dot(const float *w, const float *y, size_t n);

// Scalar loss of the current parameter values; ctx is the caller's.
typedef double (*gc_loss_fn)(void *ctx);

// num[i] = (L(v + h e_i) - L(v - h e_i)) / (actual step) for i in [0, n), with the step taken
// in float and its actual size measured in double; v is restored.
void gc_numeric_grad(double *num, float *v, size_t n, double h, gc_loss_fn loss, void *ctx);

// Compares got[i] with expect[i]; floor = floor_frac * max |expect| keeps near-zero entries
// from dominating. Logs "<what>: max rel err ... at i" to stderr for the record.
gc_err gc_compare(const char *what, const float *got, const double *expect, size_t n,
                  double floor_frac);

// As gc_compare, for a float reference.
gc_err gc_compare_f(const char *what, const float *got, const float *expect, size_t n,
                    double floor_frac);

// Checks the analytic gradient grad of loss with respect to v (n elements) by finite
// differences (floor 1e-2 of the largest entry, so that the float noise of the loss does not
// dominate near-zero entries); returns the comparison. Allocates its own scratch.
gc_err gc_check(const char *what, const float *grad, float *v, size_t n, double h, gc_loss_fn loss,
                void *ctx);

#endif
