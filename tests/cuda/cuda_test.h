// Shared by the GPU test suites (tests/cuda/*): the skip rule of a machine without a usable
// GPU, and the host side of the device storage types (round to nearest even, as
// __float2bfloat16_rn and __float2half_rn do) so references see exactly what the device sees.
#ifndef DP_TESTS_CUDA_CUDA_TEST_H
#define DP_TESTS_CUDA_CUDA_TEST_H

#include <stdint.h>

#include "nn/cuda/cuda_ctx.h"

enum { CT_EXIT_SKIP = 77 };

// Exits with CT_EXIT_SKIP and a "SKIP: reason" line when the build has no CUDA backend or no
// device answers; otherwise prints device 0's name and compute capability.
void ct_skip_without_gpu(void);

uint16_t ct_f32_to_bf16(float f);
float ct_bf16_to_f32(uint16_t h);
uint16_t ct_f32_to_f16(float f);
float ct_f16_to_f32(uint16_t h);
// v rounded through storage type t (v itself for f32).
float ct_round(float v, dp_cuda_dtype t);

const char *ct_dtype_name(dp_cuda_dtype t);   // "f32", "bf16", "f16"
const char *ct_layout_name(dp_cuda_layout l); // "NCHW", "NHWC"

#endif
