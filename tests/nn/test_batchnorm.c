// Batch norm: training statistics against a two-pass double computation, running-statistics
// update (unbiased variance), eval forward, backward against finite differences, ghost slices,
// accumulation, and the too-few-values error.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "grad_check.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/batchnorm.h"

typedef struct bn_fix {
    dp_bn_params p;
    size_t n;
    float *x, *y, *dy, *gamma, *beta, *mean, *inv_std, *rmean, *rvar;
} bn_fix;

static void fix_init(bn_fix *f, int N, int C, int H, int W)
{
    dp_bn_params p = DP_BN_PARAMS_INIT;
    p.N = N, p.C = C, p.H = H, p.W = W;
    f->p = p;
    f->n = (size_t)N * C * H * W;
    f->x = malloc(f->n * sizeof(float));
    f->y = malloc(f->n * sizeof(float));
    f->dy = malloc(f->n * sizeof(float));
    f->gamma = malloc((size_t)C * 7 * sizeof(float));
    cr_assert(f->x && f->y && f->dy && f->gamma);
    f->beta = f->gamma + C, f->mean = f->beta + C, f->inv_std = f->mean + C;
    f->rmean = f->inv_std + C, f->rvar = f->rmean + C;
    gc_fill(f->x, f->n, 2.0f, 4.0f, 11); // mean far from 0: exercises the two-pass scheme
    gc_fill(f->dy, f->n, -1.0f, 1.0f, 12);
    gc_fill(f->gamma, (size_t)C, 0.5f, 1.5f, 13);
    gc_fill(f->beta, (size_t)C, -0.5f, 0.5f, 14);
    for (int c = 0; c < C; c++) {
        f->rmean[c] = 0.25f * c, f->rvar[c] = 1.0f + c;
    }
}

static void fix_fini(bn_fix *f)
{
    free(f->x);
    free(f->y);
    free(f->dy);
    free(f->gamma);
}

static double bn_loss(void *ctx)
{
    bn_fix *f = ctx;
    cr_assert_eq(dp_cpu_bn_forward_train(f->y, f->mean, f->inv_std, NULL, NULL, f->x, f->gamma,
                                         f->beta, &f->p),
                 DP_OK);
    return gc_dot(f->dy, f->y, f->n);
}

// Two-pass double statistics of channel c over samples [n0, n0 + count).
static void ref_stats(const bn_fix *f, int c, int n0, int count, double *mean, double *var)
{
    const dp_bn_params *p = &f->p;
    size_t hw = (size_t)p->H * p->W;
    double m = (double)count * hw, s = 0.0, q = 0.0;
    for (int n = n0; n < n0 + count; n++) {
        for (size_t i = 0; i < hw; i++) {
            s += f->x[((size_t)n * p->C + c) * hw + i];
        }
    }
    *mean = s / m;
    for (int n = n0; n < n0 + count; n++) {
        for (size_t i = 0; i < hw; i++) {
            double d = f->x[((size_t)n * p->C + c) * hw + i] - *mean;
            q += d * d;
        }
    }
    *var = q / m;
}

Test(batchnorm, training_statistics_match_two_pass_double)
{
    bn_fix f;
    fix_init(&f, 6, 3, 9, 7);
    const dp_bn_params *p = &f.p;
    float rmean0[3], rvar0[3];
    memcpy(rmean0, f.rmean, sizeof rmean0);
    memcpy(rvar0, f.rvar, sizeof rvar0);
    cr_assert_eq(
        dp_cpu_bn_forward_train(f.y, f.mean, f.inv_std, f.rmean, f.rvar, f.x, f.gamma, f.beta, p),
        DP_OK);
    double m = (double)p->N * p->H * p->W;
    size_t hw = (size_t)p->H * p->W;
    double worst_y = 0.0;
    for (int c = 0; c < p->C; c++) {
        double mean, var;
        ref_stats(&f, c, 0, p->N, &mean, &var);
        double inv_std = 1.0 / sqrt(var + p->eps);
        cr_expect_float_eq(f.mean[c], mean, 1e-6 * fabs(mean), "mean[%d] %g vs %g", c,
                           (double)f.mean[c], mean);
        cr_expect_float_eq(f.inv_std[c], inv_std, 1e-6 * inv_std, "inv_std[%d]", c);
        double rm = 0.9 * rmean0[c] + 0.1 * mean, rv = 0.9 * rvar0[c] + 0.1 * var * m / (m - 1);
        cr_expect_float_eq(f.rmean[c], rm, 1e-6 * fabs(rm) + 1e-7, "running_mean[%d]", c);
        cr_expect_float_eq(f.rvar[c], rv, 1e-6 * rv, "running_var[%d] %g vs %g", c,
                           (double)f.rvar[c], rv);
        for (int n = 0; n < p->N; n++) {
            for (size_t i = 0; i < hw; i++) {
                size_t at = ((size_t)n * p->C + c) * hw + i;
                double ref = f.gamma[c] * (f.x[at] - mean) * inv_std + f.beta[c];
                worst_y = fmax(worst_y, fabs(f.y[at] - ref));
            }
        }
    }
    fprintf(stderr, "batchnorm forward_train: max abs err of y %.3g\n", worst_y);
    cr_expect_lt(worst_y, 1e-5, "y differs by %g", worst_y);
    fix_fini(&f);
}

Test(batchnorm, eval_uses_running_statistics)
{
    bn_fix f;
    fix_init(&f, 2, 3, 4, 5);
    cr_assert_eq(dp_cpu_bn_forward_eval(f.y, f.x, f.gamma, f.beta, f.rmean, f.rvar, &f.p), DP_OK);
    size_t hw = 20;
    double worst = 0.0;
    for (size_t at = 0; at < f.n; at++) {
        int c = (int)(at / hw % 3);
        double ref = f.gamma[c] * (f.x[at] - f.rmean[c]) / sqrt(f.rvar[c] + 1e-5) + f.beta[c];
        worst = fmax(worst, fabs(f.y[at] - ref));
    }
    cr_expect_lt(worst, 1e-5, "eval y differs by %g", worst);
    fix_fini(&f);
}

Test(batchnorm, backward_matches_finite_differences)
{
    bn_fix f;
    fix_init(&f, 3, 2, 4, 3);
    gc_fill(f.x, f.n, -1.0f, 2.0f, 15);
    cr_assert_eq(bn_loss(&f) != 0.0, 1);
    size_t C = (size_t)f.p.C;
    float *dx = malloc(f.n * sizeof(float)), dgamma[2], dbeta[2];
    cr_assert_not_null(dx);
    cr_assert_eq(dp_cpu_bn_backward(dx, dgamma, dbeta, f.dy, f.x, f.gamma, f.mean, f.inv_std, &f.p,
                                    DP_ACCUM_NONE),
                 DP_OK);
    gc_err e = gc_check("batchnorm dx", dx, f.x, f.n, 1e-2, bn_loss, &f);
    cr_expect_lt(e.max_rel, 2e-3, "dx: %g at %zu (%g vs %g)", e.max_rel, e.index, e.got, e.expect);
    e = gc_check("batchnorm dgamma", dgamma, f.gamma, C, 1e-2, bn_loss, &f);
    cr_expect_lt(e.max_rel, 1e-3, "dgamma: %g at %zu", e.max_rel, e.index);
    e = gc_check("batchnorm dbeta", dbeta, f.beta, C, 1e-2, bn_loss, &f);
    cr_expect_lt(e.max_rel, 1e-3, "dbeta: %g at %zu", e.max_rel, e.index);
    free(dx);
    fix_fini(&f);
}

Test(batchnorm, accumulate_flags_add_to_dx_and_parameter_grads_independently)
{
    bn_fix f;
    fix_init(&f, 2, 2, 3, 3);
    cr_assert_eq(bn_loss(&f) != 0.0, 1);
    float *dx = malloc(f.n * sizeof(float)), *dx2 = malloc(f.n * sizeof(float));
    cr_assert(dx && dx2);
    float dg[2], db[2], dg2[2] = {1.0f, 2.0f}, db2[2] = {3.0f, 4.0f};
    cr_assert_eq(dp_cpu_bn_backward(dx, dg, db, f.dy, f.x, f.gamma, f.mean, f.inv_std, &f.p, 0),
                 DP_OK);
    for (size_t i = 0; i < f.n; i++) {
        dx2[i] = 0.5f;
    }
    cr_assert_eq(dp_cpu_bn_backward(dx2, dg2, db2, f.dy, f.x, f.gamma, f.mean, f.inv_std, &f.p,
                                    DP_ACCUM_DPARAMS),
                 DP_OK);
    for (size_t i = 0; i < f.n; i++) {
        cr_expect_eq(dx2[i], dx[i], "dx[%zu] overwritten: %g vs %g", i, (double)dx2[i],
                     (double)dx[i]);
    }
    for (int c = 0; c < 2; c++) {
        cr_expect_float_eq(dg2[c], 1.0f + c + dg[c], 1e-6, "dgamma[%d]", c);
        cr_expect_float_eq(db2[c], 3.0f + c + db[c], 1e-6, "dbeta[%d]", c);
    }
    cr_assert_eq(
        dp_cpu_bn_backward(dx2, dg2, db2, f.dy, f.x, f.gamma, f.mean, f.inv_std, &f.p, DP_ACCUM_DX),
        DP_OK);
    for (size_t i = 0; i < f.n; i++) {
        cr_expect_float_eq(dx2[i], 2.0f * dx[i], 1e-6, "dx[%zu] accumulated", i);
    }
    cr_expect_eq(dg2[0], dg[0], "dgamma overwritten");
    free(dx);
    free(dx2);
    fix_fini(&f);
}

Test(batchnorm, ghost_slices_take_statistics_of_their_own_samples)
{
    bn_fix f;
    fix_init(&f, 4, 2, 3, 3);
    gc_fill(f.x + f.n / 2, f.n / 2, 10.0f, 12.0f, 16); // second half: a different distribution
    dp_bn_params slice = f.p;
    slice.N = 2;
    size_t half = f.n / 2;
    float rmean0 = f.rmean[1];
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(dp_cpu_bn_forward_train(f.y + s * half, f.mean, f.inv_std, f.rmean, f.rvar,
                                             f.x + s * half, f.gamma, f.beta, &slice),
                     DP_OK);
        double mean, var;
        ref_stats(&f, 1, 2 * s, 2, &mean, &var);
        cr_expect_float_eq(f.mean[1], mean, 1e-6 * fabs(mean), "slice %d mean %g vs %g", s,
                           (double)f.mean[1], mean);
        cr_expect_float_eq(f.inv_std[1], 1.0 / sqrt(var + 1e-5), 1e-5, "slice %d inv_std", s);
        double expect_rm = 0.9 * rmean0 + 0.1 * mean;
        cr_expect_float_eq(f.rmean[1], expect_rm, 1e-5, "slice %d running mean", s);
        rmean0 = f.rmean[1];
    }
    fix_fini(&f);
}

Test(batchnorm, one_value_per_channel_is_a_shape_error)
{
    bn_fix f;
    fix_init(&f, 1, 2, 1, 1);
    cr_expect_eq(dp_cpu_bn_forward_train(f.y, f.mean, f.inv_std, f.rmean, f.rvar, f.x, f.gamma,
                                         f.beta, &f.p),
                 DP_ERR_SHAPE);
    cr_expect_not_null(strstr(dp_error_message(), "at least 2"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_origin(), "batchnorm.c:"), "%s", dp_error_origin());
    fix_fini(&f);
}
