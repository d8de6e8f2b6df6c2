// OpenBLAS facts and thread control for the CPU backend.
#ifndef DP_NN_CPU_BLAS_H
#define DP_NN_CPU_BLAS_H

// The kernel OpenBLAS picked for this CPU ("Cooperlake", "Zen", ...), never NULL.
const char *dp_blas_corename(void);

// Threads OpenBLAS uses now; and sets them (n >= 1).
int dp_blas_threads(void);
void dp_blas_set_threads(int n);

#endif
