// Activations: forward against independent double formulas (Darknet's), backward against
// finite differences away from the kinks, in-place use, PReLU's input and slope gradients, and
// name lookup.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "grad_check.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/activation.h"

enum { N_VALUES = 256 };
static const float leaky_slope = 0.1f;

// Reference forms in double, written from Darknet's activations.h and the papers.
static double ref_act(dp_act a, double x)
{
    const double lambda = 1.0507009873554805, alpha = 1.6732632423543772;
    switch (a) {
    case DP_ACT_LINEAR:
        return x;
    case DP_ACT_LOGISTIC:
        return 1.0 / (1.0 + exp(-x));
    case DP_ACT_LOGGY:
        return 2.0 / (1.0 + exp(-x)) - 1.0;
    case DP_ACT_RELU:
        return x * (x > 0);
    case DP_ACT_LEAKY:
        return x > 0 ? x : 0.1 * x;
    case DP_ACT_ELU:
        return (x >= 0) * x + (x < 0) * (exp(x) - 1);
    case DP_ACT_SELU:
        return (x >= 0) * lambda * x + (x < 0) * lambda * alpha * (exp(x) - 1);
    case DP_ACT_RELIE:
        return x > 0 ? x : 0.01 * x;
    case DP_ACT_RAMP:
        return x * (x > 0) + 0.1 * x;
    case DP_ACT_TANH:
        return (exp(2 * x) - 1) / (exp(2 * x) + 1);
    case DP_ACT_PLSE:
        return x < -4 ? 0.01 * (x + 4) : (x > 4 ? 0.01 * (x - 4) + 1 : 0.125 * x + 0.5);
    case DP_ACT_STAIR: {
        int n = (int)floor(x);
        return n % 2 == 0 ? floor(x / 2.0) : (x - n) + floor(x / 2.0);
    }
    case DP_ACT_HARDTAN:
        return x < -1 ? -1 : (x > 1 ? 1 : x);
    case DP_ACT_LHTAN:
        return x < 0 ? 0.001 * x : (x > 1 ? 0.001 * (x - 1) + 1 : x);
    case DP_ACT_RELU6:
        return fmin(fmax(x, 0.0), 6.0);
    case DP_ACT_SWISH:
        return x / (1.0 + exp(-x));
    case DP_ACT_MISH:
        return x * tanh(x > 20 ? x : log(1.0 + exp(x)));
    case DP_ACT_GELU:
        return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case DP_ACT_GELU_ERF:
        return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    default:
        return NAN;
    }
}

// Values in [-7, 7] at least 0.05 away from every integer (all kinks are at integers).
static void fill_off_kinks(float *x, size_t n, uint32_t tag)
{
    gc_fill(x, n, -7.0f, 7.0f, tag);
    for (size_t i = 0; i < n; i++) {
        float frac = x[i] - roundf(x[i]);
        if (fabsf(frac) < 0.05f) {
            x[i] += frac >= 0 ? 0.1f : -0.1f;
        }
    }
}

typedef struct act_fix {
    dp_act act;
    float x[N_VALUES], y[N_VALUES], dy[N_VALUES];
} act_fix;

static double act_loss(void *ctx)
{
    act_fix *f = ctx;
    cr_assert_eq(dp_cpu_act_forward(f->y, f->x, N_VALUES, f->act, leaky_slope), DP_OK);
    return gc_dot(f->dy, f->y, N_VALUES);
}

Test(activation, forward_matches_reference_formulas)
{
    for (int a = 0; a < DP_ACT_COUNT_; a++) {
        if (a == DP_ACT_PRELU) {
            continue;
        }
        act_fix f = {.act = (dp_act)a};
        gc_fill(f.x, N_VALUES, -8.0f, 8.0f, 21);
        f.x[0] = 0.0f, f.x[1] = -1.0f, f.x[2] = 1.0f, f.x[3] = 2.5f, f.x[4] = -4.0f;
        cr_assert_eq(dp_cpu_act_forward(f.y, f.x, N_VALUES, f.act, leaky_slope), DP_OK);
        double ref[N_VALUES];
        for (int i = 0; i < N_VALUES; i++) {
            ref[i] = ref_act(f.act, f.x[i]);
        }
        char what[64];
        snprintf(what, sizeof what, "%s forward", dp_act_name(f.act));
        gc_err e = gc_compare(what, f.y, ref, N_VALUES, 1e-3);
        cr_expect_lt(e.max_rel, 1e-5, "%s: %g at x = %g (%g vs %g)", what, e.max_rel,
                     (double)f.x[e.index], e.got, e.expect);
    }
}

Test(activation, backward_matches_finite_differences)
{
    for (int a = 0; a < DP_ACT_COUNT_; a++) {
        if (a == DP_ACT_PRELU) {
            continue;
        }
        act_fix f = {.act = (dp_act)a};
        fill_off_kinks(f.x, N_VALUES, 22);
        gc_fill(f.dy, N_VALUES, -1.0f, 1.0f, 23);
        float dx[N_VALUES];
        cr_assert_eq(act_loss(&f) == act_loss(&f), 1);
        cr_assert_eq(dp_cpu_act_backward(dx, f.dy, f.x, f.y, N_VALUES, f.act, leaky_slope), DP_OK,
                     "%s", dp_error_message());
        char what[64];
        snprintf(what, sizeof what, "%s dx", dp_act_name(f.act));
        gc_err e = gc_check(what, dx, f.x, N_VALUES, 1e-2, act_loss, &f);
        cr_expect_lt(e.max_rel, 5e-3, "%s: %g at x = %g (%g vs %g)", what, e.max_rel,
                     (double)f.x[e.index], e.got, e.expect);
    }
}

Test(activation, output_only_activations_run_in_place)
{
    for (int a = 0; a < DP_ACT_COUNT_; a++) {
        if (a == DP_ACT_PRELU || dp_act_backward_needs_input((dp_act)a)) {
            continue;
        }
        float x[N_VALUES], buf[N_VALUES], y[N_VALUES], dy[N_VALUES], dx[N_VALUES];
        fill_off_kinks(x, N_VALUES, 24);
        gc_fill(dy, N_VALUES, -1.0f, 1.0f, 25);
        memcpy(buf, x, sizeof buf);
        cr_assert_eq(dp_cpu_act_forward(y, x, N_VALUES, (dp_act)a, leaky_slope), DP_OK);
        cr_assert_eq(dp_cpu_act_forward(buf, buf, N_VALUES, (dp_act)a, leaky_slope), DP_OK);
        cr_expect_eq(memcmp(buf, y, sizeof buf), 0, "%s in place differs (bitwise)",
                     dp_act_name((dp_act)a));
        cr_assert_eq(dp_cpu_act_backward(dx, dy, x, y, N_VALUES, (dp_act)a, leaky_slope), DP_OK);
        cr_assert_eq(dp_cpu_act_backward(dy, dy, NULL, buf, N_VALUES, (dp_act)a, leaky_slope),
                     DP_OK, "%s without x: %s", dp_act_name((dp_act)a), dp_error_message());
        cr_expect_eq(memcmp(dy, dx, sizeof dx), 0, "%s backward in place differs (bitwise)",
                     dp_act_name((dp_act)a));
    }
}

Test(activation, darknet_special_values)
{
    const struct {
        dp_act act;
        float x, y;
    } cases[] = {
        {DP_ACT_STAIR, 2.5f, 1.0f},   {DP_ACT_STAIR, 3.5f, 1.5f},    {DP_ACT_STAIR, -0.5f, -0.5f},
        {DP_ACT_PLSE, -5.0f, -0.01f}, {DP_ACT_PLSE, 5.0f, 1.01f},    {DP_ACT_LHTAN, 2.0f, 1.001f},
        {DP_ACT_RAMP, -1.0f, -0.1f},  {DP_ACT_RAMP, 1.0f, 1.1f},     {DP_ACT_RELU6, 7.0f, 6.0f},
        {DP_ACT_LEAKY, -2.0f, -0.2f}, {DP_ACT_RELIE, -1.0f, -0.01f}, {DP_ACT_HARDTAN, -3.0f, -1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float y;
        cr_assert_eq(dp_cpu_act_forward(&y, &cases[i].x, 1, cases[i].act, 0.1f), DP_OK);
        cr_expect_float_eq(y, cases[i].y, 1e-6, "%s(%g) = %g, expected %g",
                           dp_act_name(cases[i].act), (double)cases[i].x, (double)y,
                           (double)cases[i].y);
    }
}

typedef struct prelu_fix {
    float x[2 * 3 * 10], y[2 * 3 * 10], dy[2 * 3 * 10], slope[3];
} prelu_fix;

static double prelu_loss(void *ctx)
{
    prelu_fix *f = ctx;
    cr_assert_eq(dp_cpu_prelu_forward(f->y, f->x, f->slope, 2, 3, 10), DP_OK);
    return gc_dot(f->dy, f->y, 60);
}

Test(activation, prelu_gradients_match_finite_differences)
{
    prelu_fix f;
    fill_off_kinks(f.x, 60, 26);
    gc_fill(f.dy, 60, -1.0f, 1.0f, 27);
    f.slope[0] = 0.25f, f.slope[1] = -0.1f, f.slope[2] = 0.6f;
    float dx[60], dslope[3];
    cr_assert_eq(prelu_loss(&f) == prelu_loss(&f), 1);
    cr_assert_eq(dp_cpu_prelu_backward(dx, dslope, f.dy, f.x, f.slope, 2, 3, 10, DP_ACCUM_NONE),
                 DP_OK);
    gc_err e = gc_check("prelu dx", dx, f.x, 60, 1e-2, prelu_loss, &f);
    cr_expect_lt(e.max_rel, 1e-3, "prelu dx: %g at %zu", e.max_rel, e.index);
    e = gc_check("prelu dslope", dslope, f.slope, 3, 1e-2, prelu_loss, &f);
    cr_expect_lt(e.max_rel, 1e-3, "prelu dslope: %g at %zu", e.max_rel, e.index);
    float acc[3] = {1.0f, 1.0f, 1.0f};
    cr_assert_eq(dp_cpu_prelu_backward(NULL, acc, f.dy, f.x, f.slope, 2, 3, 10, DP_ACCUM_DPARAMS),
                 DP_OK);
    for (int c = 0; c < 3; c++) {
        cr_expect_float_eq(acc[c], 1.0f + dslope[c], 1e-5, "accumulated dslope[%d]", c);
    }
}

Test(activation, names_round_trip_and_unknown_is_unsupported)
{
    for (int a = 0; a < DP_ACT_COUNT_; a++) {
        dp_act got;
        cr_assert_eq(dp_act_from_name(dp_act_name((dp_act)a), &got), DP_OK);
        cr_expect_eq(got, (dp_act)a, "%s", dp_act_name((dp_act)a));
    }
    dp_act got;
    cr_expect_eq(dp_act_from_name("leakyy", &got), DP_ERR_UNSUPPORTED);
    cr_expect_not_null(strstr(dp_error_message(), "'leakyy'"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_origin(), "activation.c:"), "%s", dp_error_origin());
    float v = 1.0f;
    cr_expect_eq(dp_cpu_act_forward(&v, &v, 1, DP_ACT_PRELU, 0.0f), DP_ERR_ARG);
    cr_expect_eq(dp_cpu_act_forward(&v, &v, 1, DP_ACT_LEAKY, -0.5f), DP_ERR_ARG);
}
