// Initializers: sample moments against the target variance, bounds of the uniform ones, PyTorch's
// default bound, gains, determinism by (seed, layer, param), names and argument errors.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/cpu/init.h"

enum { N = 200000 };

static dp_init_params params(dp_init kind)
{
    dp_init_params p = {.kind = kind, .fan_in = 144, .fan_out = 288, .gain = 1.0f};
    p.seed = 42, p.layer = 3, p.param = 0;
    return p;
}

Test(init, moments_match_the_target_variance)
{
    float *w = malloc(N * sizeof(float));
    cr_assert_not_null(w);
    for (int k = DP_INIT_PYTORCH; k <= DP_INIT_LECUN_UNIFORM; k++) {
        dp_init_params p = params((dp_init)k);
        p.gain = dp_init_gain(DP_ACT_RELU, 0.0f);
        cr_assert_eq(dp_cpu_init_fill(w, N, &p), DP_OK);
        double mean = 0.0, sq = 0.0, amax = 0.0;
        for (int i = 0; i < N; i++) {
            mean += w[i];
            sq += (double)w[i] * w[i];
            amax = fmax(amax, fabs(w[i]));
        }
        mean /= N;
        double var = sq / N - mean * mean, target = dp_init_std(&p) * dp_init_std(&p);
        fprintf(stderr, "init %s: std %.5g (target %.5g), mean %.2g\n", dp_init_name(p.kind),
                sqrt(var), sqrt(target), mean);
        cr_expect(fabs(mean) < 5 * sqrt(target / N), "%s: mean %g", dp_init_name(p.kind), mean);
        cr_expect(fabs(var / target - 1.0) < 0.02, "%s: variance %g, target %g",
                  dp_init_name(p.kind), var, target);
        int uniform = k == DP_INIT_PYTORCH || k == DP_INIT_KAIMING_UNIFORM ||
                      k == DP_INIT_XAVIER_UNIFORM || k == DP_INIT_LECUN_UNIFORM;
        if (uniform) {
            double bound = sqrt(3.0 * target);
            cr_expect(amax <= bound * (1 + 1e-6) && amax > 0.999 * bound,
                      "%s: max |w| %g, bound %g", dp_init_name(p.kind), amax, bound);
        }
    }
    free(w);
}

Test(init, pytorch_default_bound_and_kaiming_formulas)
{
    dp_init_params p = params(DP_INIT_PYTORCH);
    p.fan_in = 25;
    cr_expect_float_eq(sqrt(3.0) * dp_init_std(&p), 0.2, 1e-12, "1 / sqrt(25)");
    p.kind = DP_INIT_KAIMING_NORMAL, p.gain = dp_init_gain(DP_ACT_RELU, 0.0f);
    cr_expect_float_eq(dp_init_std(&p), sqrt(2.0 / 25), 1e-7);
    p.kind = DP_INIT_XAVIER_UNIFORM, p.gain = 1.0f, p.fan_out = 75;
    cr_expect_float_eq(sqrt(3.0) * dp_init_std(&p), sqrt(6.0 / 100), 1e-7);
    cr_expect_float_eq(dp_init_gain(DP_ACT_LEAKY, 0.1f), sqrt(2.0 / 1.01), 1e-6);
    cr_expect_float_eq(dp_init_gain(DP_ACT_TANH, 0.0f), 5.0 / 3.0, 1e-6);
    cr_expect_float_eq(dp_init_gain(DP_ACT_LINEAR, 0.0f), 1.0, 0);
}

Test(init, same_identity_same_bits_other_identity_other_values)
{
    float a[64], b[64];
    dp_init_params p = params(DP_INIT_KAIMING_NORMAL);
    cr_assert_eq(dp_cpu_init_fill(a, 64, &p), DP_OK);
    cr_assert_eq(dp_cpu_init_fill(b, 64, &p), DP_OK);
    cr_expect_eq(memcmp(a, b, sizeof a), 0, "same (seed, layer, param) differs (bitwise)");
    p.param = 1;
    cr_assert_eq(dp_cpu_init_fill(b, 64, &p), DP_OK);
    cr_expect_neq(memcmp(a, b, sizeof a), 0, "param index ignored");
    p.param = 0, p.layer = 4;
    cr_assert_eq(dp_cpu_init_fill(b, 64, &p), DP_OK);
    cr_expect_neq(memcmp(a, b, sizeof a), 0, "layer index ignored");
    p.layer = 3, p.seed = 43;
    cr_assert_eq(dp_cpu_init_fill(b, 64, &p), DP_OK);
    cr_expect_neq(memcmp(a, b, sizeof a), 0, "seed ignored");
    // A prefix of a longer fill is the shorter fill: element i depends only on i.
    float c[100];
    p.seed = 42;
    cr_assert_eq(dp_cpu_init_fill(c, 100, &p), DP_OK);
    cr_expect_eq(memcmp(a, c, sizeof a), 0, "element i depends on n");
}

Test(init, zeros_and_ones)
{
    float w[10];
    dp_init_params p = params(DP_INIT_ONES);
    p.fan_in = 0;
    cr_assert_eq(dp_cpu_init_fill(w, 10, &p), DP_OK);
    cr_expect_eq(w[9], 1.0f);
    p.kind = DP_INIT_ZEROS;
    cr_assert_eq(dp_cpu_init_fill(w, 10, &p), DP_OK);
    cr_expect_eq(w[0], 0.0f);
}

Test(init, names_and_errors)
{
    for (int k = 0; k < DP_INIT_COUNT_; k++) {
        dp_init got;
        cr_assert_eq(dp_init_from_name(dp_init_name((dp_init)k), &got), DP_OK);
        cr_expect_eq(got, (dp_init)k);
    }
    dp_init got;
    cr_assert_eq(dp_init_from_name("default", &got), DP_OK);
    cr_expect_eq(got, DP_INIT_PYTORCH);
    cr_expect_eq(dp_init_from_name("he", &got), DP_ERR_UNSUPPORTED);
    cr_expect_not_null(strstr(dp_error_message(), "'he'"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_origin(), "init.c:"), "%s", dp_error_origin());
    float w[4];
    dp_init_params p = params(DP_INIT_XAVIER_NORMAL);
    p.fan_out = 0;
    cr_expect_eq(dp_cpu_init_fill(w, 4, &p), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "fan_out 0"), "%s", dp_error_message());
    p.fan_out = 3, p.gain = 0.0f;
    cr_expect_eq(dp_cpu_init_fill(w, 4, &p), DP_ERR_ARG);
}
