// Backend registry: build features and device discovery. CUDA calls go through the C ABI
// launchers of src/core/cuda/, which are compiled only when meson found nvcc and the toolkit.
#include "core/backend.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

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

// --- backend choice ---

static const char *const kind_names[] = {"auto", "cpu", "cuda"};
static const char *const precision_names[] = {"fp32", "tf32", "bf16", "fp16"};

dp_status dp_backend_kind_parse(dp_backend_kind *out, const char *text)
{
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(text, kind_names[i]) == 0) {
            *out = (dp_backend_kind)i;
            return DP_OK;
        }
    }
    return dp_error_set(DP_ERR_ARG, "backend '%s': expected auto, cpu or cuda", text);
}

const char *dp_backend_kind_str(dp_backend_kind k)
{
    return k >= DP_BACKEND_AUTO && k <= DP_BACKEND_CUDA ? kind_names[k] : "unknown";
}

dp_status dp_precision_parse(dp_precision *out, const char *text)
{
    if (strcasecmp(text, "auto") == 0) {
        *out = DP_PRECISION_AUTO;
        return DP_OK;
    }
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, precision_names[i]) == 0) {
            *out = (dp_precision)i;
            return DP_OK;
        }
    }
    return dp_error_set(DP_ERR_ARG, "precision '%s': expected fp32, tf32, bf16 or fp16", text);
}

const char *dp_precision_str(dp_precision p)
{
    if (p == DP_PRECISION_AUTO) {
        return "auto";
    }
    return p >= DP_PRECISION_FP32 && p <= DP_PRECISION_FP16 ? precision_names[p] : "unknown";
}

static void choose_cpu(dp_backend_choice *out, const char *why)
{
    out->kind = DP_BACKEND_CPU;
    out->precision = DP_PRECISION_FP32;
    out->device = -1;
    snprintf(out->why_cpu, sizeof out->why_cpu, "%s", why);
}

dp_status dp_backend_resolve(dp_backend_choice *out, dp_backend_kind want, dp_precision precision,
                             int local_rank, const dp_cuda_info *info, const char *no_device)
{
    memset(out, 0, sizeof *out);
    out->device = -1;
    if (want == DP_BACKEND_CPU) {
        if (precision != DP_PRECISION_AUTO && precision != DP_PRECISION_FP32) {
            return dp_error_set(DP_ERR_ARG,
                                "precision=%s needs backend=cuda: the CPU backend computes in "
                                "fp32",
                                dp_precision_str(precision));
        }
        choose_cpu(out, "");
        return DP_OK;
    }
    int usable = info != NULL && info->device_count > 0;
    if (!usable) {
        const char *why = no_device != NULL && no_device[0] != '\0' ? no_device : "no CUDA device";
        if (want == DP_BACKEND_CUDA) {
            return dp_error_set(DP_ERR_UNSUPPORTED, "backend=cuda: no usable GPU: %s", why);
        }
        choose_cpu(out, why);
        return DP_OK;
    }
    int count = info->device_count < DP_MAX_CUDA_DEVICES ? info->device_count : DP_MAX_CUDA_DEVICES;
    // One device per rank: the local rank's, unless the launcher left each rank one device.
    int device = count == 1 ? 0 : local_rank;
    if (device < 0 || device >= count) {
        return dp_error_set(DP_ERR_ARG,
                            "backend=%s: local rank %d has no GPU of its own: %d devices are "
                            "visible on this node (one rank per GPU; set CUDA_VISIBLE_DEVICES "
                            "or start fewer ranks per node)",
                            dp_backend_kind_str(want), local_rank, count);
    }
    const dp_cuda_device_info *d = &info->devices[device];
    out->kind = DP_BACKEND_CUDA;
    out->device = device;
    snprintf(out->device_name, sizeof out->device_name, "%s", d->name);
    out->cc_major = d->cc_major;
    out->cc_minor = d->cc_minor;
    out->precision = precision;
    if (precision == DP_PRECISION_AUTO) {
        // bf16 tensor cores arrived with Ampere (8.0); below that fp32 is the safe default.
        out->precision = d->cc_major >= 8 ? DP_PRECISION_BF16 : DP_PRECISION_FP32;
    } else if (precision == DP_PRECISION_BF16 && d->cc_major < 8) {
        return dp_error_set(DP_ERR_UNSUPPORTED,
                            "precision=bf16 needs a GPU of compute capability >= 8.0; device %d "
                            "(%s) is %d.%d: use fp16 or fp32",
                            device, d->name, d->cc_major, d->cc_minor);
    } else if (precision == DP_PRECISION_TF32 && d->cc_major < 8) {
        return dp_error_set(DP_ERR_UNSUPPORTED,
                            "precision=tf32 needs a GPU of compute capability >= 8.0; device %d "
                            "(%s) is %d.%d: use fp32",
                            device, d->name, d->cc_major, d->cc_minor);
    }
    return DP_OK;
}

dp_status dp_backend_select(dp_backend_choice *out, dp_backend_kind want, dp_precision precision,
                            int local_rank)
{
    if (want == DP_BACKEND_CPU) {
        return dp_backend_resolve(out, want, precision, local_rank, NULL, NULL);
    }
    dp_cuda_info info;
    char why[256] = "";
    int usable = 0;
    if (!dp_backend_have_cuda()) {
        snprintf(why, sizeof why, "this dptrain was built without CUDA (-Dcuda)");
    } else if (dp_backend_cuda_query(&info) != DP_OK) {
        snprintf(why, sizeof why, "%s", dp_error_message());
    } else {
        usable = 1;
    }
    return dp_backend_resolve(out, want, precision, local_rank, usable ? &info : NULL, why);
}

char *dp_backend_choice_str(const dp_backend_choice *c, char *buf, size_t size)
{
    if (c->kind != DP_BACKEND_CUDA) {
        snprintf(buf, size, "cpu");
    } else {
        snprintf(buf, size, "cuda device %d (%s, cc %d.%d), %s", c->device, c->device_name,
                 c->cc_major, c->cc_minor, dp_precision_str(c->precision));
    }
    return buf;
}
