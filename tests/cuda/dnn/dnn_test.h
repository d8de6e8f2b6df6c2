// Helpers of the dnn GPU tests (cuDNN convolutions, cuBLAS dense against the CPU reference):
// the precisions under test with their tolerances, host-side bf16/fp16 rounding (the CPU
// reference runs on the values the GPU really sees), NCHW <-> NHWC on the host, uploads and
// downloads in any storage type and layout, and the error measure.
#ifndef DP_TESTS_CUDA_DNN_DNN_TEST_H
#define DP_TESTS_CUDA_DNN_DNN_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "../cuda_test.h"
#include "nn/cuda/cuda_ctx.h"


// One context configuration under test: precision, deterministic flag, tolerance. The error
// measure is max |gpu - ref| / max |ref| over a tensor (relative to the tensor's scale):
//   fp32 2e-4: float32 FMA math in another summation order (Winograd/FFT algorithms included);
//   tf32 5e-3: inputs rounded to 10 mantissa bits inside the tensor cores;
//   bf16 1e-2: inputs are exact bf16 (rounded on the host for the reference too), outputs
//        rounded to 8 bits (2^-9 relative), once more after a bias add;
//   fp16 3e-3: the same with 11 bits (2^-12 relative).
typedef struct dt_config {
    dp_cuda_precision precision;
    int deterministic;
    double tol;
    const char *name;
} dt_config;

extern const dt_config dt_configs[];
extern const int dt_n_configs;

// Exits 77 with "SKIP: <reason>" when the build has no CUDA or no device is usable.

// Creates the context of c on device 0; prints the reason and returns NULL on failure.
dp_cuda_ctx *dt_ctx_create(const dt_config *c);

// Uniform floats in [lo, hi) from a splitmix64 stream.
void dt_fill(float *x, size_t n, uint64_t *state, float lo, float hi);

// Rounds every element to the storage type t and back (identity for float32).
void dt_quantize(float *x, size_t n, dp_cuda_dtype t);

// Host copy of a float (N, C, HW) NCHW tensor into device memory as type t in layout l, and
// the way back. Blocking. Print the error and return 0 on failure, 1 on success.
int dt_upload(dp_cuda_ctx *ctx, void *dev, const float *nchw, int N, int C, int HW, dp_cuda_dtype t,
              dp_cuda_layout l);
int dt_download(dp_cuda_ctx *ctx, float *nchw, const void *dev, int N, int C, int HW,
                dp_cuda_dtype t, dp_cuda_layout l);

// Raw bytes of a device buffer (for the bitwise checks). Blocking; 0 on failure.
int dt_download_raw(dp_cuda_ctx *ctx, void *host, const void *dev, size_t bytes);

// max |got - ref| / max |ref| (max |ref| taken as 1 when the reference is all zeros); *at
// receives the index of the largest difference.
double dt_rel_err(const float *got, const float *ref, size_t n, size_t *at);

// Host allocation that prints and returns NULL on failure (the caller counts a failure).
void *dt_malloc(size_t bytes);


#endif
