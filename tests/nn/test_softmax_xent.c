// Softmax cross-entropy: a hand-computed case with and without label smoothing, the gradient
// against finite differences, top-1/top-5 counts with ties, large logits, label errors.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "grad_check.h"
#include "nn/cpu/softmax_xent.h"

Test(softmax_xent, hand_computed_case)
{
    const float logits[3] = {1.0f, 2.0f, 3.0f};
    const int32_t label = 2;
    const double lse = 3.0 + log(exp(-2.0) + exp(-1.0) + 1.0); // 3.40760596...
    dp_xent_params p = {.N = 1, .classes = 3, .smoothing = 0.0f, .grad_scale = 0.5f};
    float loss, g[3];
    dp_xent_stats st;
    cr_assert_eq(dp_cpu_softmax_xent(g, &loss, &st, logits, &label, &p), DP_OK);
    cr_expect_float_eq(loss, 0.40760596, 1e-6, "loss %.9g", (double)loss);
    cr_expect_float_eq(st.loss_sum, 0.40760596, 1e-7, "loss_sum");
    cr_expect_eq(st.top1, 1);
    cr_expect_eq(st.top5, 1);
    for (int j = 0; j < 3; j++) {
        double expect = 0.5 * (exp(logits[j] - lse) - (j == 2));
        cr_expect_float_eq(g[j], expect, 1e-7, "g[%d] %g vs %g", j, (double)g[j], expect);
    }
    // eps = 0.1: target (0.1/3, 0.1/3, 0.9 + 0.1/3); sum t z = 0.2 + 2.7 = 2.9.
    p.smoothing = 0.1f;
    cr_assert_eq(dp_cpu_softmax_xent(g, &loss, NULL, logits, &label, &p), DP_OK);
    cr_expect_float_eq(loss, 0.50760596, 1e-6, "smoothed loss %.9g", (double)loss);
    cr_expect_float_eq(g[0], 0.5 * (exp(1.0 - lse) - 0.1 / 3), 1e-7, "smoothed g[0]");
}

typedef struct xent_fix {
    dp_xent_params p;
    float z[4 * 6], loss[4];
    int32_t labels[4];
} xent_fix;

static double xent_loss(void *ctx)
{
    xent_fix *f = ctx;
    dp_xent_stats st;
    cr_assert_eq(dp_cpu_softmax_xent(NULL, f->loss, &st, f->z, f->labels, &f->p), DP_OK);
    return st.loss_sum * f->p.grad_scale;
}

Test(softmax_xent, gradient_matches_finite_differences_with_smoothing)
{
    xent_fix f = {.p = {.N = 4, .classes = 6, .smoothing = 0.1f, .grad_scale = 0.25f},
                  .labels = {0, 5, 2, 2}};
    gc_fill(f.z, 24, -3.0f, 3.0f, 51);
    float g[24];
    cr_assert_eq(dp_cpu_softmax_xent(g, NULL, NULL, f.z, f.labels, &f.p), DP_OK);
    gc_err e = gc_check("softmax_xent dlogits (eps 0.1)", g, f.z, 24, 1e-2, xent_loss, &f);
    cr_expect_lt(e.max_rel, 2e-3, "dlogits: %g at %zu (%g vs %g)", e.max_rel, e.index, e.got,
                 e.expect);
    double total = xent_loss(&f), sum = 0.0;
    for (int n = 0; n < 4; n++) {
        sum += f.loss[n];
    }
    cr_expect_float_eq(total, 0.25 * sum, 1e-6, "loss_sum is the sum of the losses");
}

Test(softmax_xent, top1_and_top5_count_ties_by_class_index)
{
    float z[2 * 7] = {
        0, 5, 5, 1, 2, 3, 4, // label 1 ties class 2 (higher index): top-1
        9, 8, 7, 6, 5, 4, 3, // label 6 is last: neither
    };
    int32_t labels[2] = {1, 6};
    dp_xent_params p = {.N = 2, .classes = 7, .grad_scale = 1.0f};
    dp_xent_stats st;
    cr_assert_eq(dp_cpu_softmax_xent(NULL, NULL, &st, z, labels, &p), DP_OK);
    cr_expect_eq(st.top1, 1);
    cr_expect_eq(st.top5, 1);
    labels[0] = 2; // ties class 1, lower index: rank 1, top-5 only
    labels[1] = 4; // four above it: rank 4, top-5
    cr_assert_eq(dp_cpu_softmax_xent(NULL, NULL, &st, z, labels, &p), DP_OK);
    cr_expect_eq(st.top1, 0);
    cr_expect_eq(st.top5, 2);
}

Test(softmax_xent, large_logits_stay_finite)
{
    float z[3] = {1000.0f, 990.0f, -1000.0f}, g[3], y[3], loss;
    int32_t label = 1;
    dp_xent_params p = {.N = 1, .classes = 3, .smoothing = 0.2f, .grad_scale = 1.0f};
    cr_assert_eq(dp_cpu_softmax_xent(g, &loss, NULL, z, &label, &p), DP_OK);
    cr_expect(isfinite(loss) && isfinite(g[0]) && isfinite(g[2]), "loss %g", (double)loss);
    cr_expect_float_eq(loss, 10.0 * 0.8 + 0.2 / 3 * (0.0 + 10.0 + 2000.0), 1e-3, "loss %.9g",
                       (double)loss);
    cr_assert_eq(dp_cpu_softmax_forward(y, z, 1, 3), DP_OK);
    cr_expect_float_eq(y[0] + y[1] + y[2], 1.0f, 1e-6);
    cr_expect_float_eq(y[1], exp(-10.0) / (1 + exp(-10.0)), 1e-9);
}

Test(softmax_xent, label_out_of_range_is_a_data_error_naming_sample_and_label)
{
    float z[3 * 4] = {0}, g[12];
    for (int i = 0; i < 12; i++) {
        g[i] = 7.0f;
    }
    int32_t labels[3] = {0, 3, 4};
    dp_xent_params p = {.N = 3, .classes = 4, .grad_scale = 1.0f};
    cr_expect_eq(dp_cpu_softmax_xent(g, NULL, NULL, z, labels, &p), DP_ERR_DATA);
    cr_expect_not_null(strstr(dp_error_message(), "sample 2"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_message(), "label 4"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_origin(), "softmax_xent.c:"), "%s", dp_error_origin());
    cr_expect_eq(g[0], 7.0f, "nothing written before the labels are checked");
    labels[2] = -1;
    cr_expect_eq(dp_cpu_softmax_xent(g, NULL, NULL, z, labels, &p), DP_ERR_DATA);
    cr_expect_not_null(strstr(dp_error_message(), "label -1"), "%s", dp_error_message());
}
