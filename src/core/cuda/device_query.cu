// CUDA device discovery through the runtime API (never the driver library, so that a binary
// built here starts on machines without a GPU). Launchers only; no kernels in this file.
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

#include "core/cuda/device_query.h"
#include "core/error.h"
#include "dp_config.h"

#if DP_HAVE_NCCL
#include <nccl.h>
#endif

// --- launchers ---

extern "C" dp_status dp__cuda_device_query(dp_cuda_info *out)
{
    memset(out, 0, sizeof *out);
    cudaRuntimeGetVersion(&out->runtime_version);
    cudaError_t err = cudaDriverGetVersion(&out->driver_version);
    if (err != cudaSuccess) {
        return dp_error_set(DP_ERR_CUDA, "cudaDriverGetVersion: %s", cudaGetErrorString(err));
    }
    int count = 0;
    err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        return dp_error_set(DP_ERR_CUDA, "cudaGetDeviceCount: %s (%s)", cudaGetErrorString(err),
                            cudaGetErrorName(err));
    }
    if (count == 0) {
        return dp_error_set(DP_ERR_CUDA, "cudaGetDeviceCount: no CUDA device found");
    }
    out->device_count = count;
    for (int i = 0; i < count && i < DP_MAX_CUDA_DEVICES; i++) {
        cudaDeviceProp prop;
        err = cudaGetDeviceProperties(&prop, i);
        if (err != cudaSuccess) {
            return dp_error_set(DP_ERR_CUDA, "cudaGetDeviceProperties(%d): %s", i,
                                cudaGetErrorString(err));
        }
        dp_cuda_device_info *d = &out->devices[i];
        d->ordinal = i;
        snprintf(d->name, sizeof d->name, "%s", prop.name);
        d->cc_major = prop.major;
        d->cc_minor = prop.minor;
        d->total_mem_bytes = prop.totalGlobalMem;
        d->multiprocessors = prop.multiProcessorCount;
    }
    return DP_OK;
}

extern "C" dp_status dp__nccl_version(int *out)
{
    *out = 0;
#if DP_HAVE_NCCL
    ncclResult_t r = ncclGetVersion(out);
    if (r != ncclSuccess) {
        return dp_error_set(DP_ERR_NCCL, "ncclGetVersion: %s", ncclGetErrorString(r));
    }
    return DP_OK;
#else
    return dp_error_set(DP_ERR_UNSUPPORTED, "this dptrain was built without NCCL");
#endif
}
