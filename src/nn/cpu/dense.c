// Fully connected layer on the CPU (see dense.h): three sgemm calls and a bias loop. The BLAS
// thread count is the caller's (one per rank).
#include "nn/cpu/dense.h"

#include <cblas.h>

#include "core/error.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/cpu_internal.h"

static dp_status check_params(const dp_dense_params *p, const char *kernel)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: params are NULL", kernel);
    }
    if (p->N < 1 || p->in < 1 || p->out < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: N %d, in %d, out %d must be >= 1", kernel, p->N, p->in,
                            p->out);
    }
    return DP_OK;
}

dp_status dp_cpu_dense_forward(float *y, const float *x, const float *w, const float *b,
                               const dp_dense_params *p)
{
    DP_TRY(check_params(p, "dense forward"));
    DP_CPU_NEED(y, "dense forward");
    DP_CPU_NEED(x, "dense forward");
    DP_CPU_NEED(w, "dense forward");
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->N, p->out, p->in, 1.0f, x, p->in, w,
                p->in, 0.0f, y, p->out);
    if (b != NULL) {
        for (int n = 0; n < p->N; n++) {
            float *yn = y + (size_t)n * p->out;
            for (int j = 0; j < p->out; j++) {
                yn[j] += b[j];
            }
        }
    }
    return DP_OK;
}

dp_status dp_cpu_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                                const float *w, const dp_dense_params *p, unsigned accum)
{
    DP_TRY(check_params(p, "dense backward"));
    DP_CPU_NEED(dw, "dense backward");
    DP_CPU_NEED(dy, "dense backward");
    DP_CPU_NEED(x, "dense backward");
    DP_CPU_NEED(w, "dense backward");
    const float beta_dx = (accum & DP_ACCUM_DX) ? 1.0f : 0.0f;
    const int add_params = (accum & DP_ACCUM_DPARAMS) != 0;
    if (dx != NULL) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->N, p->in, p->out, 1.0f, dy,
                    p->out, w, p->in, beta_dx, dx, p->in);
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p->out, p->in, p->N, 1.0f, dy, p->out, x,
                p->in, add_params ? 1.0f : 0.0f, dw, p->in);
    if (db != NULL) {
        for (int j = 0; j < p->out; j++) {
            double sum = 0.0;
            for (int n = 0; n < p->N; n++) {
                sum += dy[(size_t)n * p->out + j];
            }
            db[j] = add_params ? (float)(db[j] + sum) : (float)sum;
        }
    }
    return DP_OK;
}
