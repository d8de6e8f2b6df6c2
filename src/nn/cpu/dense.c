// Fully connected layer on the CPU (see dense.h): three sgemm calls and a bias loop, whole or
// by blocks of features on the thread pool. The BLAS thread count is the caller's (1 under the
// pool).
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

// --- on the pool ---

typedef struct dense_job {
    float *y, *dx, *dw, *db;
    const float *x, *w, *b, *dy;
    dp_dense_params p;
    float beta_dx;
    int add_params;
    long in_blocks; // backward: tasks [0, in_blocks) are dx blocks, the rest dw + db blocks
} dense_job;

static int block_len(int total, long blk)
{
    int lo = (int)blk * DP_DENSE_BLOCK;
    return total - lo < DP_DENSE_BLOCK ? total - lo : DP_DENSE_BLOCK;
}

static void dense_fwd_task(void *arg, long blk, int thread)
{
    (void)thread;
    const dense_job *j = arg;
    const dp_dense_params *p = &j->p;
    const int j0 = (int)blk * DP_DENSE_BLOCK, len = block_len(p->out, blk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->N, len, p->in, 1.0f, j->x, p->in,
                j->w + (size_t)j0 * p->in, p->in, 0.0f, j->y + j0, p->out);
    if (j->b != NULL) {
        for (int n = 0; n < p->N; n++) {
            float *yn = j->y + (size_t)n * p->out + j0;
            for (int i = 0; i < len; i++) {
                yn[i] += j->b[j0 + i];
            }
        }
    }
}

dp_status dp_cpu_dense_forward_pool(float *y, const float *x, const float *w, const float *b,
                                    const dp_dense_params *p, dp_threadpool *pool)
{
    DP_TRY(check_params(p, "dense forward"));
    DP_CPU_NEED(y, "dense forward");
    DP_CPU_NEED(x, "dense forward");
    DP_CPU_NEED(w, "dense forward");
    dense_job j = {.y = y, .x = x, .w = w, .b = b, .p = *p};
    dp_threadpool_for(pool, (p->out + DP_DENSE_BLOCK - 1) / DP_DENSE_BLOCK, dense_fwd_task, &j);
    return DP_OK;
}

static void dense_bwd_task(void *arg, long task, int thread)
{
    (void)thread;
    const dense_job *j = arg;
    const dp_dense_params *p = &j->p;
    if (task < j->in_blocks) { // dx[:, i0 : i0 + len] = dy W[:, i0 : i0 + len]
        const int i0 = (int)task * DP_DENSE_BLOCK, len = block_len(p->in, task);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->N, len, p->out, 1.0f, j->dy,
                    p->out, j->w + i0, p->in, j->beta_dx, j->dx + i0, p->in);
        return;
    }
    const long blk = task - j->in_blocks; // dW[j0 : j0 + len, :] = dy[:, j0 : j0 + len]^T x
    const int j0 = (int)blk * DP_DENSE_BLOCK, len = block_len(p->out, blk);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, len, p->in, p->N, 1.0f, j->dy + j0, p->out,
                j->x, p->in, j->add_params ? 1.0f : 0.0f, j->dw + (size_t)j0 * p->in, p->in);
    for (int o = j0; o < j0 + len && j->db != NULL; o++) {
        double sum = 0.0;
        for (int n = 0; n < p->N; n++) {
            sum += j->dy[(size_t)n * p->out + o];
        }
        j->db[o] = j->add_params ? (float)(j->db[o] + sum) : (float)sum;
    }
}

dp_status dp_cpu_dense_backward_pool(float *dx, float *dw, float *db, const float *dy,
                                     const float *x, const float *w, const dp_dense_params *p,
                                     unsigned accum, dp_threadpool *pool)
{
    DP_TRY(check_params(p, "dense backward"));
    DP_CPU_NEED(dw, "dense backward");
    DP_CPU_NEED(dy, "dense backward");
    DP_CPU_NEED(x, "dense backward");
    DP_CPU_NEED(w, "dense backward");
    dense_job j = {.dx = dx,
                   .dw = dw,
                   .db = db,
                   .x = x,
                   .w = w,
                   .dy = dy,
                   .p = *p,
                   .beta_dx = (accum & DP_ACCUM_DX) ? 1.0f : 0.0f,
                   .add_params = (accum & DP_ACCUM_DPARAMS) != 0};
    j.in_blocks = dx != NULL ? (p->in + DP_DENSE_BLOCK - 1) / DP_DENSE_BLOCK : 0;
    long out_blocks = (p->out + DP_DENSE_BLOCK - 1) / DP_DENSE_BLOCK;
    dp_threadpool_for(pool, j.in_blocks + out_blocks, dense_bwd_task, &j);
    return DP_OK;
}
