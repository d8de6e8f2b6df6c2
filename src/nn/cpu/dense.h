// Fully connected (Darknet's [connected], PyTorch's Linear) on the CPU: y = x W^T + b with W
// stored (out, in) row-major as PyTorch does; forward and backward through cblas_sgemm. Needs
// no workspace.
#ifndef DP_NN_CPU_DENSE_H
#define DP_NN_CPU_DENSE_H

#include <stddef.h>

#include "core/status.h"
#include "core/threadpool.h"

DP_EXTERN_C_BEGIN

typedef struct dp_dense_params {
    int N;   // samples
    int in;  // input features per sample (C H W of a flattened NCHW input)
    int out; // output features
} dp_dense_params;

static inline size_t dp_cpu_dense_workspace_bytes(const dp_dense_params *p)
{
    (void)p;
    return 0;
}

// y = x W^T + b.
//   y (N, out) row-major, host, written
//   x (N, in) row-major, host (an (N, C, H, W) tensor read as (N, C H W))
//   w (out, in) row-major, host
//   b (out), host, or NULL for no bias
// Returns DP_ERR_ARG for a NULL tensor or a dim < 1.
DP_MUST_CHECK dp_status dp_cpu_dense_forward(float *y, const float *x, const float *w,
                                             const float *b, const dp_dense_params *p);

// dx = dy W, dW = dy^T x, db = sum over samples of dy (double, sample order). accum
// (DP_ACCUM_* of accum.h): DP_ACCUM_DX adds to dx, DP_ACCUM_DPARAMS adds to dw and db.
//   dx (N, in), host, or NULL when not needed (first layer)
//   dw (out, in), host
//   db (out), host, or NULL for no bias
//   dy (N, out), host
//   x  (N, in), host: the forward input
//   w  (out, in), host
DP_MUST_CHECK dp_status dp_cpu_dense_backward(float *dx, float *dw, float *db, const float *dy,
                                              const float *x, const float *w,
                                              const dp_dense_params *p, unsigned accum);

// The same two kernels split over the threads of pool (NULL: the caller alone), OpenBLAS at 1
// thread: blocks of DP_DENSE_BLOCK output features (forward, dW, db) or input features (dx), one
// sgemm each. The blocks do not depend on the threads, and no sum crosses a block, so the
// results are the same for any thread count (they may differ from the unsplit kernels in the
// last bits).
enum { DP_DENSE_BLOCK = 128 };
DP_MUST_CHECK dp_status dp_cpu_dense_forward_pool(float *y, const float *x, const float *w,
                                                  const float *b, const dp_dense_params *p,
                                                  dp_threadpool *pool);
DP_MUST_CHECK dp_status dp_cpu_dense_backward_pool(float *dx, float *dw, float *db, const float *dy,
                                                   const float *x, const float *w,
                                                   const dp_dense_params *p, unsigned accum,
                                                   dp_threadpool *pool);

DP_EXTERN_C_END

#endif
