// Finite-difference and comparison helpers shared by the tests/nn suites (see grad_check.h).
#include "grad_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"

void gc_fill(float *v, size_t n, float lo, float hi, uint32_t tag)
{
    dp_rng_fill_uniform(v, n, lo, hi, 0x5eedull, tag, 0, 0);
}

double gc_dot(const float *w, const float *y, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        sum += (double)w[i] * (double)y[i];
    }
    return sum;
}

void gc_numeric_grad(double *num, float *v, size_t n, double h, gc_loss_fn loss, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        float saved = v[i];
        float plus = (float)(saved + h), minus = (float)(saved - h);
        v[i] = plus;
        double lp = loss(ctx);
        v[i] = minus;
        double lm = loss(ctx);
        v[i] = saved;
        num[i] = (lp - lm) / ((double)plus - (double)minus);
    }
}

static gc_err compare_at(const char *what, const float *got, const float *expect_f,
                         const double *expect_d, size_t n, double floor_frac)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = expect_d != NULL ? expect_d[i] : expect_f[i];
        scale = fmax(scale, fabs(e));
    }
    double floor_abs = floor_frac * scale;
    gc_err err = {0.0, 0, 0.0, 0.0};
    for (size_t i = 0; i < n; i++) {
        double e = expect_d != NULL ? expect_d[i] : expect_f[i];
        double a = got[i];
        double denom = fmax(fmax(fabs(a), fabs(e)), floor_abs);
        double rel = denom > 0.0 ? fabs(a - e) / denom : 0.0;
        if (!(rel <= err.max_rel)) { // also catches NaN
            err.max_rel = isnan(rel) ? INFINITY : rel;
            err.index = i;
            err.got = a;
            err.expect = e;
        }
    }
    fprintf(stderr, "%s: max rel err %.3g at %zu (got %.9g, expected %.9g)\n", what, err.max_rel,
            err.index, err.got, err.expect);
    return err;
}

gc_err gc_compare(const char *what, const float *got, const double *expect, size_t n,
                  double floor_frac)
{
    return compare_at(what, got, NULL, expect, n, floor_frac);
}

gc_err gc_compare_f(const char *what, const float *got, const float *expect, size_t n,
                    double floor_frac)
{
    return compare_at(what, got, expect, NULL, n, floor_frac);
}

gc_err gc_check(const char *what, const float *grad, float *v, size_t n, double h, gc_loss_fn loss,
                void *ctx)
{
    double *num = malloc((n > 0 ? n : 1) * sizeof(double));
    if (num == NULL) {
        gc_err fail = {INFINITY, 0, 0.0, 0.0};
        return fail;
    }
    gc_numeric_grad(num, v, n, h, loss, ctx);
    gc_err err = gc_compare(what, grad, num, n, 1e-2);
    free(num);
    return err;
}
