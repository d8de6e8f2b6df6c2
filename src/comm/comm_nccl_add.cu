// The addition step of the NCCL deterministic reduction (comm_nccl.c): after each exchange of the
// recursive halving, the received half is added to the kept one on the communication stream.
// Own error handling rather than nn/cuda's helpers: src/comm does not depend on src/nn.
#include <cuda_runtime.h>

#include "comm/comm_nccl_add.h"
#include "core/error.h"

// --- kernels ---

// __fadd_rn: IEEE round-to-nearest float addition that the compiler never contracts into an FMA
// and that keeps subnormals whatever -ftz says; the operand order is the caller's.
__global__ void add_halves(float *mine, const float *theirs, size_t n, int mine_left)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float a = mine[i];
        float b = theirs[i];
        mine[i] = mine_left ? __fadd_rn(a, b) : __fadd_rn(b, a);
    }
}

// --- launchers ---

extern "C" dp_status dp__comm_nccl_add(float *mine, const float *theirs, size_t n, int mine_left,
                                       void *stream)
{
    if (n == 0) {
        return DP_OK;
    }
    // Memory-bound: a grid of up to 1024 blocks of 256 threads saturates an H100's bandwidth;
    // more blocks only add scheduling.
    const unsigned threads = 256;
    size_t blocks = (n + threads - 1) / threads;
    if (blocks > 1024) {
        blocks = 1024;
    }
    add_halves<<<(unsigned)blocks, threads, 0, (cudaStream_t)stream>>>(mine, theirs, n, mine_left);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        return dp_error_set(DP_ERR_CUDA,
                            "launch of the deterministic all-reduce add (%zu floats): "
                            "%s (%s)",
                            n, cudaGetErrorString(e), cudaGetErrorName(e));
    }
    return DP_OK;
}
