// Dropout: the mask of a sample depends only on (seed, step, global sample index, layer), not
// on its batch position or on how the batch is split; kept fraction and inverted scaling;
// backward reproduces the mask; alpha dropout keeps zero mean and unit variance.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "grad_check.h"
#include "nn/cpu/dropout.h"

static dp_dropout_params params(int N, size_t size, float p, uint32_t first)
{
    dp_dropout_params d = {.N = N, .sample_size = size, .p = p, .kind = DP_DROPOUT_STANDARD};
    d.seed = 1234, d.step = 7, d.first_sample = first, d.layer = 3;
    return d;
}

Test(dropout, mask_depends_on_sample_identity_not_batch_position)
{
    enum { N = 8, SIZE = 50 };
    float x[N * SIZE], whole[N * SIZE], part[N * SIZE], one[SIZE];
    gc_fill(x, N * SIZE, 0.5f, 1.5f, 61);
    dp_dropout_params p = params(N, SIZE, 0.4f, 100);
    cr_assert_eq(dp_cpu_dropout_forward(whole, x, &p), DP_OK);
    // Two "ranks" of 4 samples each.
    for (int r = 0; r < 2; r++) {
        dp_dropout_params q = params(4, SIZE, 0.4f, 100 + 4 * r);
        cr_assert_eq(dp_cpu_dropout_forward(part + r * 4 * SIZE, x + r * 4 * SIZE, &q), DP_OK);
    }
    cr_expect_eq(memcmp(whole, part, sizeof whole), 0, "split batch differs (bitwise)");
    // Sample 105 alone.
    dp_dropout_params q = params(1, SIZE, 0.4f, 105);
    cr_assert_eq(dp_cpu_dropout_forward(one, x + 5 * SIZE, &q), DP_OK);
    cr_expect_eq(memcmp(one, whole + 5 * SIZE, sizeof one), 0, "single sample differs (bitwise)");
    // Another step or layer gives another mask.
    q.step = 8;
    cr_assert_eq(dp_cpu_dropout_forward(one, x + 5 * SIZE, &q), DP_OK);
    cr_expect_neq(memcmp(one, whole + 5 * SIZE, sizeof one), 0, "step does not change the mask");
    q.step = 7, q.layer = 4;
    cr_assert_eq(dp_cpu_dropout_forward(one, x + 5 * SIZE, &q), DP_OK);
    cr_expect_neq(memcmp(one, whole + 5 * SIZE, sizeof one), 0, "layer does not change the mask");
}

Test(dropout, element_i_is_word_i_of_the_sample_stream)
{
    // The documented contract a GPU kernel reproduces: element i of global sample s is kept when
    // word i of the stream (seed; step, s, layer) gives dp_rng_uniform() >= p. 2051 elements
    // cross the kernel's internal chunks and end in a partial Philox block.
    enum { N = 2, SIZE = 2051 };
    float *x = malloc(N * SIZE * sizeof(float)), *y = malloc(N * SIZE * sizeof(float));
    cr_assert(x && y);
    for (size_t i = 0; i < N * SIZE; i++) {
        x[i] = 1.0f;
    }
    dp_dropout_params d = params(N, SIZE, 0.25f, 500);
    cr_assert_eq(dp_cpu_dropout_forward(y, x, &d), DP_OK);
    for (int n = 0; n < N; n++) {
        dp_rng r;
        dp_rng_init(&r, d.seed, d.step, d.first_sample + (uint32_t)n, d.layer);
        for (size_t i = 0; i < SIZE; i++) {
            int keep = dp_rng_uniform(&r) >= d.p;
            cr_assert_eq(y[n * SIZE + i] != 0.0f, keep, "sample %d element %zu", n, i);
        }
    }
    free(x);
    free(y);
}

Test(dropout, kept_fraction_and_inverted_scaling)
{
    enum { N = 10, SIZE = 10000 };
    const float p = 0.3f;
    float *x = malloc(N * SIZE * sizeof(float)), *y = malloc(N * SIZE * sizeof(float));
    cr_assert(x && y);
    gc_fill(x, N * SIZE, 1.0f, 2.0f, 62);
    dp_dropout_params d = params(N, SIZE, p, 0);
    cr_assert_eq(dp_cpu_dropout_forward(y, x, &d), DP_OK);
    size_t kept = 0;
    for (size_t i = 0; i < N * SIZE; i++) {
        if (y[i] != 0.0f) {
            kept++;
            cr_assert_eq(y[i], (1.0f / (1.0f - p)) * x[i], "element %zu: %g from %g", i,
                         (double)y[i], (double)x[i]);
        }
    }
    double frac = (double)kept / (N * SIZE), sigma = sqrt(p * (1 - p) / (N * SIZE));
    cr_expect(fabs(frac - (1 - p)) < 5 * sigma, "kept %.4f, expected %.4f +- %.4f", frac, 1 - p,
              5 * sigma);
    free(x);
    free(y);
}

typedef struct drop_fix {
    dp_dropout_params p;
    float x[4 * 30], y[4 * 30], dy[4 * 30];
} drop_fix;

static double drop_loss(void *ctx)
{
    drop_fix *f = ctx;
    cr_assert_eq(dp_cpu_dropout_forward(f->y, f->x, &f->p), DP_OK);
    return gc_dot(f->dy, f->y, 120);
}

Test(dropout, backward_reproduces_the_mask)
{
    for (int kind = 0; kind < 2; kind++) {
        drop_fix f;
        f.p = params(4, 30, 0.5f, 40);
        f.p.kind = (dp_dropout_kind)kind;
        gc_fill(f.x, 120, -1.0f, 1.0f, 63);
        gc_fill(f.dy, 120, -1.0f, 1.0f, 64);
        float dx[120];
        cr_assert_eq(dp_cpu_dropout_backward(dx, f.dy, &f.p, 0), DP_OK);
        gc_err e =
            gc_check(kind ? "alpha dropout dx" : "dropout dx", dx, f.x, 120, 0.1, drop_loss, &f);
        cr_expect_lt(e.max_rel, 1e-4, "kind %d: %g at %zu", kind, e.max_rel, e.index);
    }
}

Test(dropout, alpha_dropout_keeps_zero_mean_and_unit_variance)
{
    enum { N = 4, SIZE = 50000 };
    float *x = malloc(N * SIZE * sizeof(float)), *y = malloc(N * SIZE * sizeof(float));
    cr_assert(x && y);
    dp_rng_fill_normal(x, N * SIZE, 0.0f, 1.0f, 99, 0, 0, 0);
    dp_dropout_params d = params(N, SIZE, 0.2f, 0);
    d.kind = DP_DROPOUT_ALPHA;
    cr_assert_eq(dp_cpu_dropout_forward(y, x, &d), DP_OK);
    double mean = 0.0, sq = 0.0;
    for (size_t i = 0; i < N * SIZE; i++) {
        mean += y[i];
        sq += (double)y[i] * y[i];
    }
    mean /= N * SIZE;
    double var = sq / (N * SIZE) - mean * mean;
    cr_expect(fabs(mean) < 0.01, "mean %g", mean);
    cr_expect(fabs(var - 1.0) < 0.02, "variance %g", var);
    free(x);
    free(y);
}

Test(dropout, bad_probability_is_an_argument_error)
{
    float v = 1.0f;
    dp_dropout_params d = params(1, 1, 1.0f, 0);
    cr_expect_eq(dp_cpu_dropout_forward(&v, &v, &d), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "outside [0, 1)"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_origin(), "dropout.c:"), "%s", dp_error_origin());
}
