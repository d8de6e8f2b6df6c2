// C ABI of the CUDA device query (src/core/cuda/device_query.cu). No CUDA types here, so C
// files may include it; only src/core/backend.c does.
#ifndef DP_CORE_CUDA_DEVICE_QUERY_H
#define DP_CORE_CUDA_DEVICE_QUERY_H

#include "core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

dp_status dp__cuda_device_query(dp_cuda_info *out);
dp_status dp__nccl_version(int *out);

#ifdef __cplusplus
}
#endif

#endif
