// Device helpers shared by the .cu files of src/nn/cuda/step/ (never included from C): fixed
// warp and block reductions (the same tree on every run, so float sums are deterministic) and
// the argument check of the launchers.
#ifndef DP_NN_CUDA_STEP_STEP_INTERNAL_CUH
#define DP_NN_CUDA_STEP_STEP_INTERNAL_CUH

#include <stdint.h>

#include "core/error.h"
#include "nn/cuda/cuda_util.cuh"

// Threads per block of the step's kernels; the block reductions below assume exactly this many.
#define DP__STEP_THREADS 256
#define DP__FULL_MASK 0xffffffffu

// Returns DP_ERR_ARG from the calling launcher, naming it and the argument, when ptr is NULL.
#define DP__STEP_NEED(ptr, what)                                                                   \
    do {                                                                                           \
        if ((ptr) == NULL) {                                                                       \
            return dp_error_set(DP_ERR_ARG, "%s: argument '%s' is NULL", (what), #ptr);            \
        }                                                                                          \
    } while (0)

// Philox4x32-10 as src/core/rng.c (Random123's constants and round): block c of the stream
// keyed by (k0, k1), so a device draw is the CPU's dp_rng word for word (dropout, crop).
__device__ __forceinline__ uint4 dp__philox(uint4 c, uint32_t k0, uint32_t k1)
{
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += W0;
            k1 += W1;
        }
        const uint32_t hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
        const uint32_t hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
    }
    return c;
}

// Butterfly sums over the 32 lanes of a full warp: every lane gets the same value, from the same
// pairing on every run.
__device__ __forceinline__ double dp__warp_sum(double v)
{
    for (int off = 16; off > 0; off >>= 1) {
        v = __dadd_rn(v, __shfl_xor_sync(DP__FULL_MASK, v, off));
    }
    return v;
}

__device__ __forceinline__ int dp__warp_sum(int v)
{
    for (int off = 16; off > 0; off >>= 1) {
        v += __shfl_xor_sync(DP__FULL_MASK, v, off);
    }
    return v;
}

__device__ __forceinline__ float dp__warp_max(float v)
{
    for (int off = 16; off > 0; off >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(DP__FULL_MASK, v, off));
    }
    return v;
}

// Sum of v over the DP__STEP_THREADS threads of the block by a pairwise tree in shared memory
// (thread t with t + w, w = 128, 64, ..., 1). Every thread of the block must call it; all get the
// sum. sh: DP__STEP_THREADS doubles of shared memory, free again when this returns.
__device__ __forceinline__ double dp__block_sum(double *sh, double v)
{
    const unsigned t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (unsigned w = DP__STEP_THREADS / 2; w > 0; w >>= 1) {
        if (t < w) {
            sh[t] = __dadd_rn(sh[t], sh[t + w]);
        }
        __syncthreads();
    }
    double sum = sh[0];
    __syncthreads();
    return sum;
}

#endif
