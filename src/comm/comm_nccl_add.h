// The one device kernel of the NCCL communicator (comm_nccl_add.cu): the addition step of the
// deterministic reduction. Internal to src/comm; no CUDA types (the stream is a cudaStream_t).
#ifndef DP_COMM_COMM_NCCL_ADD_H
#define DP_COMM_COMM_NCCL_ADD_H

#include <stddef.h>

#include "core/status.h"

DP_EXTERN_C_BEGIN

// Enqueues on `stream`: mine[i] = mine[i] + theirs[i] when mine_left, else theirs[i] + mine[i],
// for i < n, each a float32 addition rounded to nearest with no contraction and no flush to
// zero: the operands and the order of dp_comm_allreduce_sum_deterministic's host loop, so the
// bits are the CPU's for every finite input (a NaN result is the GPU's canonical NaN). mine and
// theirs: n floats of device memory, not overlapping. n 0 enqueues nothing. Returns
// DP_ERR_CUDA naming the launch if it fails.
DP_MUST_CHECK dp_status dp__comm_nccl_add(float *mine, const float *theirs, size_t n, int mine_left,
                                          void *stream);

DP_EXTERN_C_END

#endif
