// Backend registry: which compute devices this build has and what they are. The backend
// operation tables (cpu, cuda) are registered here as the layers arrive; this is the only
// C file that tests DP_HAVE_CUDA / DP_HAVE_NCCL.
#ifndef DP_CORE_BACKEND_H
#define DP_CORE_BACKEND_H

#include <stddef.h>

#include "core/status.h"

DP_EXTERN_C_BEGIN

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

// --- which backend a run uses ([train] backend= and precision=) ---

typedef enum dp_backend_kind {
    DP_BACKEND_AUTO = 0, // cuda when this build has CUDA and a device is usable, else cpu
    DP_BACKEND_CPU,
    DP_BACKEND_CUDA,
} dp_backend_kind;

// Arithmetic of the run. The values match dp_cuda_precision (src/nn/cuda/cuda_ctx.h). The CPU
// backend computes in float32 only.
typedef enum dp_precision {
    DP_PRECISION_AUTO = -1, // bf16 on CUDA devices of compute capability >= 8.0, else fp32
    DP_PRECISION_FP32 = 0,
    DP_PRECISION_TF32,
    DP_PRECISION_BF16,
    DP_PRECISION_FP16,
} dp_precision;

// "auto", "cpu", "cuda" (case-insensitive); DP_ERR_ARG naming the text otherwise.
DP_MUST_CHECK dp_status dp_backend_kind_parse(dp_backend_kind *out, const char *text);
const char *dp_backend_kind_str(dp_backend_kind k); // "unknown" for a bad value
// "fp32", "tf32", "bf16", "fp16" (and "auto"); DP_ERR_ARG naming the text otherwise.
DP_MUST_CHECK dp_status dp_precision_parse(dp_precision *out, const char *text);
const char *dp_precision_str(dp_precision p);

typedef struct dp_backend_choice {
    dp_backend_kind kind;   // CPU or CUDA, never AUTO
    dp_precision precision; // resolved, never AUTO; FP32 on the CPU
    int device;             // CUDA ordinal of this rank; -1 on the CPU
    char device_name[256];  // "NVIDIA H100 80GB HBM3", or "" on the CPU
    int cc_major, cc_minor;
    char why_cpu[320]; // auto only: why the CPU was chosen ("" when CUDA was)
} dp_backend_choice;

// Resolves a request against what the machine has, without querying it: info is the CUDA
// query's result, or NULL when there is no usable device (no_device says why: "built without
// CUDA", the runtime's message). The rank's device is local_rank, or 0 when one device is
// visible (a launcher that sets CUDA_VISIBLE_DEVICES per rank). Errors, each naming the reason:
// DP_ERR_UNSUPPORTED for backend=cuda without a usable device, DP_ERR_ARG for a local rank
// beyond the visible devices, or for a precision other than fp32 on backend=cpu (the CPU
// computes in float32). With backend=auto falling back to the CPU, a requested precision other
// than fp32 is not an error: the result says fp32 and why_cpu says why. Pure; thread-safe.
DP_MUST_CHECK dp_status dp_backend_resolve(dp_backend_choice *out, dp_backend_kind want,
                                           dp_precision precision, int local_rank,
                                           const dp_cuda_info *info, const char *no_device);

// dp_backend_resolve with this machine's CUDA query (dp_backend_cuda_query).
DP_MUST_CHECK dp_status dp_backend_select(dp_backend_choice *out, dp_backend_kind want,
                                          dp_precision precision, int local_rank);

// One line for the start-up message: "cpu" or "cuda device 0 (NVIDIA H100, cc 9.0), bf16".
char *dp_backend_choice_str(const dp_backend_choice *c, char *buf, size_t size);

DP_EXTERN_C_END

#endif
