// Backend registry: which compute devices this build has and what they are. The backend
// operation tables (cpu, cuda) are registered here as the layers arrive; this is the only
// C file that tests DP_HAVE_CUDA / DP_HAVE_NCCL.
#ifndef DP_CORE_BACKEND_H
#define DP_CORE_BACKEND_H

#include <stddef.h>

#include "core/status.h"

enum { DP_MAX_CUDA_DEVICES = 16 };

typedef struct dp_cuda_device_info {
    int ordinal;
    char name[256];
    int cc_major;
    int cc_minor;
    size_t total_mem_bytes;
    int multiprocessors;
} dp_cuda_device_info;

typedef struct dp_cuda_info {
    int runtime_version; // CUDA runtime the binary was linked with, e.g. 13000
    int driver_version;  // 0 when no driver is installed
    int device_count;
    dp_cuda_device_info devices[DP_MAX_CUDA_DEVICES];
} dp_cuda_info;

// 1 when the library was built with the CUDA backend (-Dcuda), else 0.
int dp_backend_have_cuda(void);
int dp_backend_have_nccl(void);

// Queries the CUDA runtime: versions, device count, and name, compute capability, memory and
// SM count of each device. Returns DP_ERR_UNSUPPORTED if built without CUDA, DP_ERR_CUDA with
// the runtime's message when no driver or no device is usable (out->runtime_version is still
// set then). Thread-safe.
DP_MUST_CHECK dp_status dp_backend_cuda_query(dp_cuda_info *out);

// NCCL version as major*10000 + minor*100 + patch; DP_ERR_UNSUPPORTED without NCCL.
DP_MUST_CHECK dp_status dp_backend_nccl_version(int *out);

#endif
