// Backend registry: build features and device discovery. CUDA calls go through the C ABI
// launchers of src/core/cuda/, which are compiled only when meson found nvcc and the toolkit.
#include "core/backend.h"

#include <string.h>

#include "core/error.h"
#include "dp_config.h"

#if DP_HAVE_CUDA
#include "core/cuda/device_query.h"
#endif

int dp_backend_have_cuda(void)
{
    return DP_HAVE_CUDA;
}

int dp_backend_have_nccl(void)
{
    return DP_HAVE_NCCL;
}

dp_status dp_backend_cuda_query(dp_cuda_info *out)
{
    memset(out, 0, sizeof *out);
#if DP_HAVE_CUDA
    return dp__cuda_device_query(out);
#else
    return dp_error_set(DP_ERR_UNSUPPORTED, "this dptrain was built without CUDA (-Dcuda)");
#endif
}

dp_status dp_backend_nccl_version(int *out)
{
    *out = 0;
#if DP_HAVE_NCCL
    return dp__nccl_version(out);
#else
    return dp_error_set(DP_ERR_UNSUPPORTED, "this dptrain was built without NCCL");
#endif
}
