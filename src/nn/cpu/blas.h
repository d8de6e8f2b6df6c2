// OpenBLAS facts, and the thread count of the CPU backend.
#ifndef DP_NN_CPU_BLAS_H
#define DP_NN_CPU_BLAS_H

// The kernel OpenBLAS picked for this CPU ("Cooperlake", "Zen", ...), never NULL.
const char *dp_blas_corename(void);

// Threads of the CPU backend (n >= 1; smaller is taken as 1). A network allocated afterwards
// (dp_net_alloc) runs its kernels on a pool of n threads, and OpenBLAS is set to 1 thread,
// since each pool thread calls it for its own images (a threaded BLAS inside another pool
// oversubscribes the cores: ../shared/bench/BASELINES.md section 4). Process-wide, like
// OpenBLAS's own setting; call it before creating networks, not while one runs.
void dp_blas_set_threads(int n);

// The thread count last set by dp_blas_set_threads, or OpenBLAS's own default
// (OPENBLAS_NUM_THREADS, else the cores) when it was never called.
int dp_blas_threads(void);

#endif
