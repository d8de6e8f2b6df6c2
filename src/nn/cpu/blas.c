// Thin wrappers over OpenBLAS's own introspection (cblas.h), and the backend's thread count.
#include "nn/cpu/blas.h"

#include <cblas.h>
#include <stdatomic.h>

// 0: never set. Mirrors OpenBLAS's process-wide thread setting, which it replaces.
static atomic_int cpu_threads;

const char *dp_blas_corename(void)
{
    const char *name = openblas_get_corename();
    return name != NULL ? name : "unknown";
}

int dp_blas_threads(void)
{
    int n = atomic_load(&cpu_threads);
    return n > 0 ? n : openblas_get_num_threads();
}

void dp_blas_set_threads(int n)
{
    atomic_store(&cpu_threads, n < 1 ? 1 : n);
    openblas_set_num_threads(1);
}
