// Convolution on the CPU, 1 thread: the library's per-image im2col + sgemm against batched
// im2col (nb images side by side in one GEMM, with the packing copies NCHW needs) and against
// the pool kernels the layers run (direct kernels, conv_pool.c) on the Fashion-MNIST ResNet-20
// shapes at batch 128. Prints one RESULT line per shape, op and variant:
//   RESULT conv_<shape>_<fwd|bwd_data|bwd_filter>_<perimage|batch<nb>|pool>_gflops=<GFLOP/s>
// (the pool's backward data is conv_<shape>_bwd_data_filter_pool_gflops: data + filter)
// Usage: bench_conv [reps]   (fastest of reps timed runs after one warm-up, default 5: the
// machine is shared, and the minimum is the figure least disturbed by other jobs)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/rng.h"
#include "core/timer.h"
#include "nn/cpu/blas.h"
#include "nn/cpu/conv.h"

typedef struct shape {
    const char *name;
    int C, H, K, R, stride, pad;
} shape;

static const shape shapes[] = {
    {"stem_1x28_16", 1, 28, 16, 3, 1, 1},         {"s1_16x28_16", 16, 28, 16, 3, 1, 1},
    {"s2_32x14_32", 32, 14, 32, 3, 1, 1},         {"s3_64x7_64", 64, 7, 64, 3, 1, 1},
    {"down2_16x28_32", 16, 28, 32, 3, 2, 1},      {"down3_32x14_64", 32, 14, 64, 3, 2, 1},
    {"short2_1x1_16x28_32", 16, 28, 32, 1, 2, 0},
};

enum { BATCH = 128, N_VARIANTS = 5 };
// 1: the library (per image); 0: the pool kernels the layers run (their backward data comes
// with the filter gradient: reported as bwd_data_filter)
static const int variant_nb[N_VARIANTS] = {1, 8, 32, 128, 0};

typedef enum op { OP_FWD, OP_BWD_DATA, OP_BWD_FILTER, N_OPS } op;
static const char *op_names[N_OPS] = {"fwd", "bwd_data", "bwd_filter"};

typedef struct bufs {
    dp_conv_params p;
    float *x, *w, *y, *dy, *dx, *dw, *ws, *col, *pack;
    size_t ws_bytes;
    void *pool_ws; // the layers' pool kernels (conv_pool.c), one thread
    size_t pool_ws_bytes;
} bufs;

static float *alloc_floats(size_t n, uint32_t tag)
{
    float *v = malloc(n * sizeof(float));
    if (v == NULL) {
        fprintf(stderr, "bench_conv: out of memory (%zu floats)\n", n);
        exit(1);
    }
    dp_rng_fill_uniform(v, n, -1.0f, 1.0f, 42, tag, 0, 0);
    return v;
}

// --- batched im2col: nb images side by side, GEMMs of N = nb * out_h * out_w columns ---

// One op over the whole batch, nb images per GEMM (groups == 1).
static void run_batched(bufs *b, op o, int nb)
{
    const dp_conv_params *p = &b->p;
    const size_t hw = (size_t)p->H * p->W, ohw = (size_t)p->out_h * p->out_w;
    const int crs = p->C * p->R * p->S, ld = (int)(nb * ohw);
    for (int n0 = 0; n0 < p->N; n0 += nb) {
        if (o != OP_BWD_DATA) {
            for (int i = 0; i < nb; i++) {
                dp_cpu_conv_im2col(b->col + i * ohw, (size_t)ld, b->x + (n0 + i) * p->C * hw, p->C,
                                   p);
            }
        }
        if (o != OP_FWD) { // pack dy (nb, K, ohw) -> (K, nb * ohw)
            for (int i = 0; i < nb; i++) {
                for (int k = 0; k < p->K; k++) {
                    memcpy(b->pack + k * (size_t)ld + i * ohw, b->dy + ((n0 + i) * p->K + k) * ohw,
                           ohw * sizeof(float));
                }
            }
        }
        if (o == OP_FWD) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->K, ld, crs, 1.0f, b->w, crs,
                        b->col, ld, 0.0f, b->pack, ld);
            for (int i = 0; i < nb; i++) { // unpack (K, nb * ohw) -> (nb, K, ohw)
                for (int k = 0; k < p->K; k++) {
                    memcpy(b->y + ((n0 + i) * p->K + k) * ohw, b->pack + k * (size_t)ld + i * ohw,
                           ohw * sizeof(float));
                }
            }
        } else if (o == OP_BWD_FILTER) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->K, crs, ld, 1.0f, b->pack, ld,
                        b->col, ld, n0 == 0 ? 0.0f : 1.0f, b->dw, crs);
        } else {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, crs, ld, p->K, 1.0f, b->w, crs,
                        b->pack, ld, 0.0f, b->col, ld);
            memset(b->dx + n0 * p->C * hw, 0, nb * p->C * hw * sizeof(float));
            for (int i = 0; i < nb; i++) {
                dp_cpu_conv_col2im(b->dx + (n0 + i) * p->C * hw, b->col + i * ohw, (size_t)ld, p->C,
                                   p);
            }
        }
    }
}

static void run_library(bufs *b, op o)
{
    dp_status st = DP_OK;
    if (o == OP_FWD) {
        st = dp_cpu_conv_forward(b->y, b->x, b->w, NULL, &b->p, b->ws, b->ws_bytes);
    } else if (o == OP_BWD_DATA) {
        st = dp_cpu_conv_backward_data(b->dx, b->dy, b->w, &b->p, 0, b->ws, b->ws_bytes);
    } else {
        st = dp_cpu_conv_backward_filter(b->dw, NULL, b->dy, b->x, &b->p, 0, b->ws, b->ws_bytes);
    }
    if (st != DP_OK) {
        fprintf(stderr, "bench_conv: kernel failed: %s\n", dp_status_str(st));
        exit(1);
    }
}

// The layers' path: the pool kernels on the calling thread alone. Backward data runs together
// with the filter gradient there (one pass over the batch).
static void run_pool(bufs *b, op o)
{
    dp_status st;
    if (o == OP_FWD) {
        st = dp_cpu_conv_forward_pool(b->y, b->x, b->w, NULL, &b->p, NULL, NULL, b->pool_ws,
                                      b->pool_ws_bytes);
    } else {
        st = dp_cpu_conv_backward_pool(o == OP_BWD_DATA ? b->dx : NULL, b->dw, NULL, b->dy, b->x,
                                       b->w, &b->p, NULL, 0, NULL, b->pool_ws, b->pool_ws_bytes);
    }
    if (st != DP_OK) {
        fprintf(stderr, "bench_conv: pool kernel failed: %s\n", dp_status_str(st));
        exit(1);
    }
}

static void run(bufs *b, op o, int nb)
{
    if (nb == 0) {
        run_pool(b, o);
    } else if (nb == 1) {
        run_library(b, o);
    } else {
        run_batched(b, o, nb);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Max |a - b| / max |b| over n elements.
static double rel_diff(const float *a, const float *b, size_t n)
{
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return scale > 0.0 ? diff / scale : diff;
}

// Runs every variant of op o on shape b; checks the batched results against the library's.
static int bench_op(bufs *b, const char *name, op o, int reps)
{
    const dp_conv_params *p = &b->p;
    size_t n_out = o == OP_FWD ? (size_t)p->N * p->K * p->out_h * p->out_w
                               : (o == OP_BWD_DATA ? (size_t)p->N * p->C * p->H * p->W
                                                   : (size_t)p->K * p->C * p->R * p->S);
    float *out = o == OP_FWD ? b->y : (o == OP_BWD_DATA ? b->dx : b->dw);
    float *ref = malloc(n_out * sizeof(float));
    if (ref == NULL) {
        return 1;
    }
    run_library(b, o);
    memcpy(ref, out, n_out * sizeof(float));
    double flops = 2.0 * p->N * p->K * (double)p->C * p->R * p->S * p->out_h * p->out_w;
    double times[64];
    int bad = 0;
    for (int v = 0; v < N_VARIANTS; v++) {
        int nb = variant_nb[v];
        run(b, o, nb);
        double err = rel_diff(out, ref, n_out);
        if (err > 1e-4) {
            fprintf(stderr, "bench_conv: %s %s nb=%d differs from the library: %g\n", name,
                    op_names[o], nb, err);
            bad = 1;
        }
        for (int r = 0; r < reps; r++) {
            dp_timer t;
            dp_timer_start(&t);
            run(b, o, nb);
            times[r] = dp_timer_elapsed_s(&t);
        }
        qsort(times, (size_t)reps, sizeof times[0], cmp_double);
        char variant[32];
        snprintf(variant, sizeof variant, nb == 1 ? "perimage" : (nb == 0 ? "pool" : "batch%d"),
                 nb);
        // The pool's backward data includes the filter gradient: twice the FLOPs, own name.
        int both = nb == 0 && o == OP_BWD_DATA;
        printf("RESULT conv_%s_%s_%s_gflops=%.1f\n", name, both ? "bwd_data_filter" : op_names[o],
               variant, (both ? 2.0 : 1.0) * flops / times[0] * 1e-9);
        fflush(stdout);
    }
    free(ref);
    return bad;
}

static int bench_shape(const shape *s, int reps)
{
    bufs b = {.p = DP_CONV_PARAMS_INIT};
    b.p.N = BATCH, b.p.C = s->C, b.p.H = s->H, b.p.W = s->H, b.p.K = s->K;
    b.p.R = s->R, b.p.S = s->R, b.p.stride_h = b.p.stride_w = s->stride;
    b.p.pad_h = b.p.pad_w = s->pad;
    if (dp_conv_params_resolve(&b.p) != DP_OK) {
        return 1;
    }
    const dp_conv_params *p = &b.p;
    size_t nx = (size_t)BATCH * p->C * p->H * p->W, ny = (size_t)BATCH * p->K * p->out_h * p->out_w;
    size_t crs = (size_t)p->C * p->R * p->S, cols = (size_t)BATCH * p->out_h * p->out_w;
    b.x = alloc_floats(nx, 1);
    b.w = alloc_floats((size_t)p->K * crs, 2);
    b.dy = alloc_floats(ny, 3);
    b.y = alloc_floats(ny, 4);
    b.dx = alloc_floats(nx, 5);
    b.dw = alloc_floats((size_t)p->K * crs, 6);
    b.col = alloc_floats(crs * cols, 7);
    b.pack = alloc_floats((size_t)p->K * cols, 8);
    b.ws_bytes = dp_cpu_conv_workspace_bytes(p);
    b.ws = alloc_floats(b.ws_bytes / sizeof(float) + 1, 9);
    b.pool_ws_bytes = dp_cpu_conv_pool_workspace_bytes(p, 1);
    b.pool_ws = alloc_floats(b.pool_ws_bytes / sizeof(float) + 1, 10);
    int bad = 0;
    for (int o = 0; o < N_OPS; o++) {
        bad |= bench_op(&b, s->name, (op)o, reps);
    }
    float *all[] = {b.x, b.w, b.dy, b.y, b.dx, b.dw, b.col, b.pack, b.ws, b.pool_ws};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(all[i]);
    }
    return bad;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > 64) {
        fprintf(stderr, "usage: bench_conv [reps in 1..64]\n");
        return 2;
    }
    dp_blas_set_threads(1);
    printf("# bench_conv: batch %d, OpenBLAS %s, %d thread(s), fastest of %d\n", BATCH,
           dp_blas_corename(), dp_blas_threads(), reps);
    int bad = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        bad |= bench_shape(&shapes[i], reps);
    }
    return bad;
}
