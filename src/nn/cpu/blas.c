// Thin wrappers over OpenBLAS's own introspection (cblas.h).
#include "nn/cpu/blas.h"

#include <cblas.h>

const char *dp_blas_corename(void)
{
    const char *name = openblas_get_corename();
    return name != NULL ? name : "unknown";
}

int dp_blas_threads(void)
{
    return openblas_get_num_threads();
}

void dp_blas_set_threads(int n)
{
    openblas_set_num_threads(n < 1 ? 1 : n);
}
