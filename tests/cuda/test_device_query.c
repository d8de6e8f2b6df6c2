// GPU-only check of the CUDA device query that `dptrain --version` prints: count, name,
// compute capability, memory and versions must be plausible. Exits 77 (SKIP in meson) with
// the reason when the build has no CUDA or the machine has no usable GPU.
#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"

enum { EXIT_SKIP = 77 };

static int failures;

static void check(int ok, const char *what, int device)
{
    if (!ok) {
        fprintf(stderr, "FAIL: device %d: %s\n", device, what);
        failures++;
    }
}

int main(void)
{
    if (!dp_backend_have_cuda()) {
        printf("SKIP: this build has no CUDA backend (-Dcuda=disabled or no toolkit)\n");
        return EXIT_SKIP;
    }
    dp_cuda_info info;
    if (dp_backend_cuda_query(&info) != DP_OK) {
        printf("SKIP: no CUDA device: %s\n", dp_error_message());
        return EXIT_SKIP;
    }
    check(info.runtime_version >= 12000, "runtime version >= 12.0", -1);
    check(info.driver_version >= info.runtime_version, "driver supports the runtime", -1);
    check(info.device_count >= 1, "at least one device", -1);
    for (int i = 0; i < info.device_count && i < DP_MAX_CUDA_DEVICES; i++) {
        const dp_cuda_device_info *d = &info.devices[i];
        check(d->ordinal == i, "ordinal", i);
        check(strlen(d->name) > 0, "name is set", i);
        check(d->cc_major >= 7, "compute capability >= 7.0", i);
        check(d->total_mem_bytes >= (size_t)1 << 30, "at least 1 GiB of memory", i);
        check(d->multiprocessors > 0, "SM count", i);
        printf("device %d: %s, cc %d.%d, %zu MiB, %d SMs\n", i, d->name, d->cc_major, d->cc_minor,
               d->total_mem_bytes >> 20, d->multiprocessors);
    }
    int nccl = 0;
    if (dp_backend_have_nccl()) {
        check(dp_backend_nccl_version(&nccl) == DP_OK && nccl >= 20000, "NCCL version", -1);
    }
    printf("%s: %d device(s), runtime %d, driver %d, NCCL %d\n", failures ? "FAIL" : "PASS",
           info.device_count, info.runtime_version, info.driver_version, nccl);
    return failures ? 1 : 0;
}
