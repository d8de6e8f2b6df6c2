// Helpers of the GPU tests of ops.h: the context or a SKIP (exit 77), device tensors of any
// storage type uploaded from and downloaded to float host arrays, host layout changes, and the
// comparisons (bitwise, or within a tolerance, reporting the worst element).
#ifndef DP_TESTS_CUDA_OPS_OPS_TEST_H
#define DP_TESTS_CUDA_OPS_OPS_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "../cuda_test.h"
#include "nn/cuda/cuda_ctx.h"


extern int ot_failures;

// The context of device 0 (deterministic), or exit 77 printing "SKIP: <reason>".
dp_cuda_ctx *ot_ctx_or_skip(void);
// Checks the device for errors, destroys ctx, prints PASS/FAIL; the exit status.
int ot_finish(dp_cuda_ctx *ctx, const char *test);

void ot_check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Fails (and says where) when st is not DP_OK.
void ot_ok(dp_status st, const char *what);

// Host values rounded to a storage type and back (what the device sees).
void ot_round_all(float *x, size_t n, dp_cuda_dtype t);

// Uniform values in [lo, hi) from a fixed seed.
void ot_fill(float *x, size_t n, float lo, float hi, uint32_t seed);
float *ot_alloc(size_t n); // host, zeroed; aborts the test on failure

// Device memory holding n values of type t, from a float host array (rounded), or zeroed.
void *ot_dev(dp_cuda_ctx *ctx, const float *host, size_t n, dp_cuda_dtype t);
void *ot_dev_bytes(dp_cuda_ctx *ctx, const void *host, size_t bytes); // host NULL: zeroed
// Downloads n values of type t into a float host array (blocking).
void ot_get(dp_cuda_ctx *ctx, float *host, const void *dev, size_t n, dp_cuda_dtype t);
void ot_get_bytes(dp_cuda_ctx *ctx, void *host, const void *dev, size_t bytes);

// (N, C, hw) NCHW <-> layout, on the host.
void ot_to_layout(float *dst, const float *nchw, int N, int C, size_t hw, dp_cuda_layout l);
void ot_from_layout(float *nchw, const float *src, int N, int C, size_t hw, dp_cuda_layout l);

// got == ref element by element (bitwise: +0 and -0 differ, NaNs must match as NaNs).
void ot_same(const char *what, const float *got, const float *ref, size_t n);
// |got - ref| <= atol + rtol |ref| everywhere; reports the worst element.
void ot_close(const char *what, const float *got, const float *ref, size_t n, double atol,
              double rtol);

// The relative tolerance of one rounding into t (float32: a few ulp of float math).
double ot_rtol(dp_cuda_dtype t);

#endif
