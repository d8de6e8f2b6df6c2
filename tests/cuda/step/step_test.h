// Helpers of the step kernels' GPU tests (tests/cuda/step/): the skip rule, a context on device
// 0, device buffers, random data from Philox, the storage types' conversions on the host and
// comparisons that report the worst element. Plain C mains: a failed check prints FAIL and
// counts; the exit status is 1 when any check failed, 77 (SKIP in meson) with the reason when no
// GPU is usable.
#ifndef DP_TESTS_CUDA_STEP_STEP_TEST_H
#define DP_TESTS_CUDA_STEP_STEP_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "../cuda_test.h"
#include "nn/cuda/cuda_ctx.h"


// Failed checks so far.
extern int st_failures;

// Returns a context on device 0 (fp32, deterministic, NCHW), or exits 77 printing
// "SKIP: <reason>" when this build has no CUDA or no device is usable.
dp_cuda_ctx *st_ctx_or_skip(void);

// Ends the test: destroys ctx, prints PASS/FAIL with the test's name, returns the exit status.
int st_finish(dp_cuda_ctx *ctx, const char *test);

// Records a failure (printf-style message) unless ok.
void st_check(int ok, const char *fmt, ...) DP_PRINTF(2, 3);

// Records a failure naming the call when st is not DP_OK (with the library's message).
void st_ok(dp_status st, const char *what);

// Device buffers: allocated and filled from host (NULL host: zeroed), read back. Abort the test
// with exit 1 on a CUDA error (a broken device is not a skip).
void *st_dev_from(dp_cuda_ctx *ctx, const void *host, size_t bytes);
void st_dev_to(dp_cuda_ctx *ctx, void *host, const void *dev, size_t bytes);
void st_dev_set(dp_cuda_ctx *ctx, void *dev, const void *host, size_t bytes);
void st_dev_free(dp_cuda_ctx *ctx, void *dev);

// Host memory that exits on failure.
void *st_alloc(size_t bytes);

// x[i] = mean + std * N(0, 1), from Philox stream (seed; 7, 7, 7).
void st_fill_normal(float *x, size_t n, float mean, float std, uint64_t seed);

// The storage types on the host, round to nearest even (as __float2bfloat16_rn, __float2half_rn).

// x rounded through dtype (identity for F32), element by element.
void st_round_through(float *x, size_t n, dp_cuda_dtype dtype);
// A host buffer of dtype from floats (for upload), and back to floats.
void st_pack(void *out, const float *x, size_t n, dp_cuda_dtype dtype);
void st_unpack(float *out, const void *x, size_t n, dp_cuda_dtype dtype);

// Fails unless |got[i] - ref[i]| <= atol + rtol |ref[i]| for all i (NaNs must match); prints the
// worst element. Returns 1 when all are within.
int st_close(const char *what, const float *got, const float *ref, size_t n, double atol,
             double rtol);

// Fails unless the n floats are bitwise equal; prints the first difference.
int st_bitwise(const char *what, const float *got, const float *ref, size_t n);

#endif
