// Initializers (see init.h): a scale from the fans and the gain, then one Philox fill.
#include "nn/cpu/init.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "nn/cpu/cpu_internal.h"

static const char *const init_names[DP_INIT_COUNT_] = {
    [DP_INIT_PYTORCH] = "pytorch",
    [DP_INIT_KAIMING_NORMAL] = "kaiming_normal",
    [DP_INIT_KAIMING_UNIFORM] = "kaiming_uniform",
    [DP_INIT_XAVIER_NORMAL] = "xavier_normal",
    [DP_INIT_XAVIER_UNIFORM] = "xavier_uniform",
    [DP_INIT_LECUN_NORMAL] = "lecun_normal",
    [DP_INIT_LECUN_UNIFORM] = "lecun_uniform",
    [DP_INIT_ZEROS] = "zeros",
    [DP_INIT_ONES] = "ones",
};

dp_status dp_init_from_name(const char *name, dp_init *out)
{
    if (name == NULL || out == NULL) {
        return dp_error_set(DP_ERR_ARG, "init: name or out is NULL");
    }
    if (strcmp(name, "default") == 0) {
        *out = DP_INIT_PYTORCH;
        return DP_OK;
    }
    for (int k = 0; k < DP_INIT_COUNT_; k++) {
        if (strcmp(name, init_names[k]) == 0) {
            *out = (dp_init)k;
            return DP_OK;
        }
    }
    return dp_error_set(DP_ERR_UNSUPPORTED, "unknown initializer '%s'", name);
}

const char *dp_init_name(dp_init kind)
{
    return (kind >= 0 && kind < DP_INIT_COUNT_) ? init_names[kind] : "unknown";
}

float dp_init_gain(dp_act act, float slope)
{
    switch (act) {
    case DP_ACT_RELU:
    case DP_ACT_RELU6:
    case DP_ACT_RELIE:
    case DP_ACT_RAMP:
        return sqrtf(2.0f);
    case DP_ACT_LEAKY:
    case DP_ACT_PRELU:
        return sqrtf(2.0f / (1.0f + slope * slope));
    case DP_ACT_TANH:
        return 5.0f / 3.0f;
    case DP_ACT_SELU:
        return 0.75f;
    default:
        return 1.0f;
    }
}

static int uses_gain(dp_init k)
{
    return k == DP_INIT_KAIMING_NORMAL || k == DP_INIT_KAIMING_UNIFORM ||
           k == DP_INIT_XAVIER_NORMAL || k == DP_INIT_XAVIER_UNIFORM;
}

static int is_xavier(dp_init k)
{
    return k == DP_INIT_XAVIER_NORMAL || k == DP_INIT_XAVIER_UNIFORM;
}

double dp_init_std(const dp_init_params *p)
{
    const double fan_in = p->fan_in, fan_avg = 0.5 * ((double)p->fan_in + p->fan_out);
    switch (p->kind) {
    case DP_INIT_PYTORCH:
        return 1.0 / sqrt(3.0 * fan_in); // U(+-b) has std b / sqrt 3
    case DP_INIT_KAIMING_NORMAL:
    case DP_INIT_KAIMING_UNIFORM:
        return p->gain / sqrt(fan_in);
    case DP_INIT_XAVIER_NORMAL:
    case DP_INIT_XAVIER_UNIFORM:
        return p->gain / sqrt(fan_avg);
    case DP_INIT_LECUN_NORMAL:
    case DP_INIT_LECUN_UNIFORM:
        return 1.0 / sqrt(fan_in);
    default:
        return 0.0;
    }
}

static dp_status check_params(const dp_init_params *p)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "init: params are NULL");
    }
    if (p->kind < 0 || p->kind >= DP_INIT_COUNT_) {
        return dp_error_set(DP_ERR_ARG, "init: unknown initializer %d", (int)p->kind);
    }
    if (p->kind == DP_INIT_ZEROS || p->kind == DP_INIT_ONES) {
        return DP_OK;
    }
    if (p->fan_in < 1 || (is_xavier(p->kind) && p->fan_out < 1)) {
        return dp_error_set(DP_ERR_ARG, "init %s: fan_in %d, fan_out %d must be >= 1",
                            init_names[p->kind], p->fan_in, p->fan_out);
    }
    if (uses_gain(p->kind) && !(p->gain > 0.0f)) {
        return dp_error_set(DP_ERR_ARG, "init %s: gain %g must be > 0", init_names[p->kind],
                            (double)p->gain);
    }
    return DP_OK;
}

dp_status dp_cpu_init_fill(float *w, size_t n, const dp_init_params *p)
{
    DP_TRY(check_params(p));
    DP_CPU_NEED(w, "init");
    const float std = (float)dp_init_std(p), bound = (float)(sqrt(3.0) * dp_init_std(p));
    switch (p->kind) {
    case DP_INIT_ZEROS:
    case DP_INIT_ONES:
        for (size_t i = 0; i < n; i++) {
            w[i] = p->kind == DP_INIT_ONES ? 1.0f : 0.0f;
        }
        break;
    case DP_INIT_KAIMING_NORMAL:
    case DP_INIT_XAVIER_NORMAL:
    case DP_INIT_LECUN_NORMAL:
        dp_rng_fill_normal(w, n, 0.0f, std, p->seed, p->layer, p->param, DP_INIT_RNG_TAG);
        break;
    default:
        dp_rng_fill_uniform(w, n, -bound, bound, p->seed, p->layer, p->param, DP_INIT_RNG_TAG);
        break;
    }
    return DP_OK;
}
