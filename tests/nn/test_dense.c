// Fully connected: forward against a double loop, backward (dx, dW, db) against finite
// differences, accumulation and the optional dx; the pool kernels against the whole ones.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "grad_check.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/dense.h"

enum { N = 3, IN = 7, OUT = 5 };

typedef struct dense_fix {
    dp_dense_params p;
    float x[N * IN], w[OUT * IN], b[OUT], y[N * OUT], dy[N * OUT];
} dense_fix;

static void fix_init(dense_fix *f)
{
    f->p = (dp_dense_params){.N = N, .in = IN, .out = OUT};
    gc_fill(f->x, N * IN, -1.0f, 1.0f, 41);
    gc_fill(f->w, OUT * IN, -0.5f, 0.5f, 42);
    gc_fill(f->b, OUT, -0.5f, 0.5f, 43);
    gc_fill(f->dy, N * OUT, -1.0f, 1.0f, 44);
}

static double dense_loss(void *ctx)
{
    dense_fix *f = ctx;
    cr_assert_eq(dp_cpu_dense_forward(f->y, f->x, f->w, f->b, &f->p), DP_OK);
    return gc_dot(f->dy, f->y, N * OUT);
}

Test(dense, forward_matches_double_loop)
{
    dense_fix f;
    fix_init(&f);
    cr_assert_eq(dp_cpu_dense_forward(f.y, f.x, f.w, f.b, &f.p), DP_OK);
    double ref[N * OUT];
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < OUT; j++) {
            double acc = f.b[j];
            for (int i = 0; i < IN; i++) {
                acc += (double)f.x[n * IN + i] * f.w[j * IN + i];
            }
            ref[n * OUT + j] = acc;
        }
    }
    gc_err e = gc_compare("dense forward", f.y, ref, N * OUT, 1e-2);
    cr_expect_lt(e.max_rel, 1e-5, "dense forward: %g at %zu", e.max_rel, e.index);
}

Test(dense, backward_matches_finite_differences)
{
    dense_fix f;
    fix_init(&f);
    float dx[N * IN], dw[OUT * IN], db[OUT];
    cr_assert_eq(dp_cpu_dense_backward(dx, dw, db, f.dy, f.x, f.w, &f.p, DP_ACCUM_NONE), DP_OK);
    gc_err e = gc_check("dense dx", dx, f.x, N * IN, 0.1, dense_loss, &f);
    cr_expect_lt(e.max_rel, 1e-3, "dx: %g at %zu", e.max_rel, e.index);
    e = gc_check("dense dw", dw, f.w, OUT * IN, 0.1, dense_loss, &f);
    cr_expect_lt(e.max_rel, 1e-3, "dw: %g at %zu", e.max_rel, e.index);
    e = gc_check("dense db", db, f.b, OUT, 0.1, dense_loss, &f);
    cr_expect_lt(e.max_rel, 1e-3, "db: %g at %zu", e.max_rel, e.index);
}

Test(dense, accumulate_flags_and_optional_dx)
{
    dense_fix f;
    fix_init(&f);
    float dx[N * IN], dw[OUT * IN], db[OUT], dw2[OUT * IN], db2[OUT];
    cr_assert_eq(dp_cpu_dense_backward(dx, dw, db, f.dy, f.x, f.w, &f.p, 0), DP_OK);
    for (int i = 0; i < OUT * IN; i++) {
        dw2[i] = 1.0f;
    }
    for (int j = 0; j < OUT; j++) {
        db2[j] = -1.0f;
    }
    cr_assert_eq(dp_cpu_dense_backward(NULL, dw2, db2, f.dy, f.x, f.w, &f.p, DP_ACCUM_DPARAMS),
                 DP_OK);
    for (int i = 0; i < OUT * IN; i++) {
        cr_expect_float_eq(dw2[i], 1.0f + dw[i], 1e-6, "dw[%d]", i);
    }
    for (int j = 0; j < OUT; j++) {
        cr_expect_float_eq(db2[j], -1.0f + db[j], 1e-6, "db[%d]", j);
    }
    float dx2[N * IN];
    for (int i = 0; i < N * IN; i++) {
        dx2[i] = dx[i];
    }
    cr_assert_eq(dp_cpu_dense_backward(dx2, dw2, NULL, f.dy, f.x, f.w, &f.p, DP_ACCUM_DX), DP_OK);
    for (int i = 0; i < N * IN; i++) {
        cr_expect_float_eq(dx2[i], 2.0f * dx[i], 1e-6, "dx[%d]", i);
    }
    cr_expect_float_eq(dw2[0], dw[0], 1e-7, "dw overwritten without DP_ACCUM_DPARAMS");
}

// The pool kernels (blocks of features) against the whole-matrix kernels, with feature counts
// across several blocks, every accumulation flag, without a pool and on 1-3 threads; bitwise the
// same for every thread count.
Test(dense, pool_kernels_match_the_whole_kernels_and_repeat_across_threads, .timeout = 60)
{
    const dp_dense_params p = {.N = 9, .in = 300, .out = 270};
    const size_t nx = 9 * 300, nw = 270 * 300, ny = 9 * 270;
    float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float));
    float *b = malloc(270 * sizeof(float)), *dy = malloc(ny * sizeof(float));
    float *ref = malloc((ny + nx + nw + 270) * sizeof(float));
    float *got = malloc((ny + nx + nw + 270) * sizeof(float));
    float *first = malloc((ny + nx + nw + 270) * sizeof(float));
    cr_assert(x && w && b && dy && ref && got && first);
    gc_fill(x, nx, -1.0f, 1.0f, 51);
    gc_fill(w, nw, -0.2f, 0.2f, 52);
    gc_fill(b, 270, -0.5f, 0.5f, 53);
    gc_fill(dy, ny, -1.0f, 1.0f, 54);
    for (unsigned accum = 0; accum <= DP_ACCUM_ALL; accum++) {
        for (int threads = 0; threads <= 3; threads++) {
            dp_threadpool *pool = NULL;
            if (threads > 0) {
                cr_assert_eq(dp_threadpool_create(&pool, threads), DP_OK);
            }
            gc_fill(ref + ny, nx + nw + 270, -1.0f, 1.0f, 55 + accum);
            memcpy(got + ny, ref + ny, (nx + nw + 270) * sizeof(float));
            cr_assert_eq(dp_cpu_dense_forward(ref, x, w, b, &p), DP_OK);
            cr_assert_eq(dp_cpu_dense_backward(ref + ny, ref + ny + nx, ref + ny + nx + nw, dy, x,
                                               w, &p, accum),
                         DP_OK);
            cr_assert_eq(dp_cpu_dense_forward_pool(got, x, w, b, &p, pool), DP_OK);
            cr_assert_eq(dp_cpu_dense_backward_pool(got + ny, got + ny + nx, got + ny + nx + nw, dy,
                                                    x, w, &p, accum, pool),
                         DP_OK);
            gc_err e = gc_compare_f("dense pool", got, ref, ny + nx + nw + 270, 1e-2);
            cr_expect_lt(e.max_rel, 1e-4, "accum %u, %d threads: %g at %zu", accum, threads,
                         e.max_rel, e.index);
            if (threads == 0) {
                memcpy(first, got, (ny + nx + nw + 270) * sizeof(float));
            } else {
                cr_expect(memcmp(first, got, (ny + nx + nw + 270) * sizeof(float)) == 0,
                          "bitwise: accum %u, %d threads", accum, threads);
            }
            dp_threadpool_destroy(pool);
        }
    }
    free(x);
    free(w);
    free(b);
    free(dy);
    free(ref);
    free(got);
    free(first);
}
