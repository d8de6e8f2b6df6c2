// Learning-rate schedules: Darknet's get_current_rate (src/network.c) policy by policy, and
// PyTorch's per-step schedulers in closed form (StepLR, MultiStepLR, ExponentialLR,
// PolynomialLR, CosineAnnealingLR, OneCycleLR, LinearLR warmup). Everything is computed in
// double and rounded once to float.
// Not here: who calls it when (the trainer), momentum cycling.
#include "nn/schedule.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

static const double PI = 3.14159265358979323846;

// --- check ---

static dp_status bad(const char *field, const char *what)
{
    return dp_error_set(DP_ERR_ARG, "schedule: %s %s", field, what);
}

static int needs_length(dp_schedule_kind k)
{
    return k == DP_SCHEDULE_POLY || k == DP_SCHEDULE_COSINE || k == DP_SCHEDULE_ONE_CYCLE;
}

static dp_status check_one_cycle(const dp_schedule *s)
{
    if (!(s->pct_start > 0 && s->pct_start < 1)) {
        return bad("pct_start", "must lie in (0, 1)");
    }
    // Both of OneCycleLR's phases must span at least one update, or its pct divides by <= 0.
    if (!(s->pct_start * (double)s->max_steps > 1.0) ||
        !((1.0 - s->pct_start) * (double)s->max_steps > 0.0)) {
        return bad("max_steps", "too short for one-cycle's two phases (pct_start * max_steps "
                                "must exceed 1)");
    }
    if (!(s->div_factor > 0 && isfinite(s->div_factor))) {
        return bad("div_factor", "must be > 0");
    }
    if (!(s->final_div_factor > 0 && isfinite(s->final_div_factor))) {
        return bad("final_div_factor", "must be > 0");
    }
    return DP_OK;
}

dp_status dp_schedule_check(const dp_schedule *s)
{
    if ((unsigned)s->kind > DP_SCHEDULE_ONE_CYCLE) {
        return dp_error_set(DP_ERR_ARG, "schedule: unknown kind %d", (int)s->kind);
    }
    if (!(s->lr >= 0 && isfinite(s->lr))) {
        return bad("lr", "must be finite and >= 0");
    }
    if (!(s->min_lr >= 0 && isfinite(s->min_lr))) {
        return bad("min_lr", "must be finite and >= 0");
    }
    if (!isfinite(s->scale) || !isfinite(s->gamma) || !isfinite(s->power)) {
        return bad("scale, gamma and power", "must be finite");
    }
    if (s->kind == DP_SCHEDULE_STEP && s->step_size < 1) {
        return bad("step_size", "must be >= 1");
    }
    if (s->n_steps < 0 || s->n_steps > DP_SCHEDULE_STEPS_MAX) {
        return bad("n_steps", "must lie in [0, DP_SCHEDULE_STEPS_MAX]");
    }
    for (int i = 0; i < s->n_steps; i++) {
        if (!isfinite(s->scales[i])) {
            return bad("scales", "must be finite");
        }
    }
    if (needs_length(s->kind) && s->max_steps < 1) {
        return bad("max_steps", "must be >= 1 for poly, cosine and one-cycle");
    }
    if (s->burn_in < 0 || s->warmup_steps < 0 || s->reference_batch < 0) {
        return bad("burn_in, warmup_steps and reference_batch", "must be >= 0");
    }
    if (s->reference_batch > 0 && s->global_batch < 1) {
        return bad("global_batch", "must be >= 1 when reference_batch is set");
    }
    return s->kind == DP_SCHEDULE_ONE_CYCLE ? check_one_cycle(s) : DP_OK;
}

// --- rate ---

// OneCycleLR's get_lr with anneal_strategy='cos', three_phase=False, at step x.
static double one_cycle(const dp_schedule *s, double max_lr, long b)
{
    const double initial = max_lr / s->div_factor;
    const double final_lr = initial / s->final_div_factor;
    const double end1 = s->pct_start * (double)s->max_steps - 1.0;
    const double end2 = (double)s->max_steps - 1.0;
    const double x = (double)(b < s->max_steps ? b : s->max_steps - 1);
    double start, end, pct;
    if (x <= end1) {
        start = initial;
        end = max_lr;
        pct = x / end1;
    } else {
        start = max_lr;
        end = final_lr;
        pct = (x - end1) / (end2 - end1);
    }
    return end + (start - end) / 2.0 * (cos(PI * pct) + 1.0); // _annealing_cos
}

static double steps_rate(const dp_schedule *s, double lr, long b)
{
    double r = lr;
    for (int i = 0; i < s->n_steps; i++) {
        if (s->steps[i] > b) {
            if (s->darknet) {
                break; // Darknet: `if (net->steps[i] > batch_num) return rate;`
            }
            continue;
        }
        r *= s->scales[i];
    }
    return r;
}

static double policy_rate(const dp_schedule *s, double lr, long b)
{
    const double T = (double)s->max_steps;
    switch (s->kind) {
    case DP_SCHEDULE_CONSTANT:
        return lr;
    case DP_SCHEDULE_STEP:
        return lr * pow(s->scale, (double)(b / s->step_size));
    case DP_SCHEDULE_STEPS:
        return steps_rate(s, lr, b);
    case DP_SCHEDULE_EXP:
        return lr * pow(s->gamma, (double)b);
    case DP_SCHEDULE_POLY:
        return b >= s->max_steps ? 0.0 : lr * pow(1.0 - (double)b / T, s->power);
    case DP_SCHEDULE_SIGMOID:
        return lr * (1.0 / (1.0 + exp(s->gamma * (double)(b - s->step_size))));
    case DP_SCHEDULE_COSINE:
        if (b >= s->max_steps) {
            return s->min_lr;
        }
        return s->min_lr + (lr - s->min_lr) * (1.0 + cos(PI * (double)b / T)) / 2.0;
    case DP_SCHEDULE_ONE_CYCLE:
        return one_cycle(s, lr, b);
    }
    return lr;
}

float dp_schedule_lr(const dp_schedule *s, long step)
{
    if (step < 0) {
        step = 0;
    }
    double lr = s->lr;
    if (s->reference_batch > 0) {
        lr *= (double)s->global_batch / (double)s->reference_batch;
    }
    const long b = step + (s->darknet ? 1 : 0);
    if (s->burn_in > 0 && b < s->burn_in) {
        return (float)(lr * pow((double)b / (double)s->burn_in, s->power));
    }
    double r = policy_rate(s, lr, b);
    if (s->warmup_steps > 0 && step < s->warmup_steps) {
        r *= (double)(step + 1) / (double)s->warmup_steps;
    }
    return (float)r;
}

// --- cfg ---

enum { WHERE_BYTES = 256 };

static dp_status key_error(dp_status st, const dp_cfg_section *s, const char *key, const char *what)
{
    char where[WHERE_BYTES];
    return dp_error_set(st, "%s: [%s] %s: %s", dp_cfg_where(s, key, where, sizeof where),
                        dp_cfg_section_header(s), key, what);
}

static dp_status get_int(const dp_cfg_section *s, const char *key, long def, long *out)
{
    *out = def;
    return s != NULL ? dp_cfg_get_int(s, key, def, out) : DP_OK;
}

static dp_status get_float(const dp_cfg_section *s, const char *key, double def, double *out)
{
    *out = def;
    return s != NULL ? dp_cfg_get_float(s, key, def, out) : DP_OK;
}

// A float key that must be > 0 when present.
static dp_status get_positive(const dp_cfg_section *s, const char *key, double def, double *out)
{
    DP_TRY(get_float(s, key, def, out));
    if (!(*out > 0)) {
        return key_error(DP_ERR_CFG, s, key, "must be > 0");
    }
    return DP_OK;
}

static const struct {
    const char *name;
    dp_schedule_kind kind;
} kind_names[] = {
    {"constant", DP_SCHEDULE_CONSTANT}, {"step", DP_SCHEDULE_STEP},
    {"steps", DP_SCHEDULE_STEPS},       {"exp", DP_SCHEDULE_EXP},
    {"poly", DP_SCHEDULE_POLY},         {"sigmoid", DP_SCHEDULE_SIGMOID},
    {"cosine", DP_SCHEDULE_COSINE},     {"one_cycle", DP_SCHEDULE_ONE_CYCLE},
};

// The kind named by [net] policy (darknet) or [train] schedule.
static dp_status cfg_kind(const dp_cfg_section *net, const dp_cfg_section *train, int darknet,
                          dp_schedule_kind *kind)
{
    const dp_cfg_section *s = darknet ? net : train;
    const char *key = darknet ? "policy" : "schedule";
    const char *name = "constant";
    if (s != NULL) {
        DP_TRY(dp_cfg_get_str(s, key, "constant", &name));
    }
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++) {
        if (strcmp(name, kind_names[i].name) == 0 &&
            !(darknet && kind_names[i].kind == DP_SCHEDULE_ONE_CYCLE)) {
            *kind = kind_names[i].kind;
            return DP_OK;
        }
    }
    char what[160];
    if (darknet && (strcmp(name, "random") == 0 || strcmp(name, "sgdr") == 0)) {
        snprintf(what, sizeof what,
                 "Darknet policy '%s' is not supported (supported: constant, "
                 "step, steps, exp, poly, sigmoid, cosine)",
                 name);
        return key_error(DP_ERR_UNSUPPORTED, s, key, what);
    }
    snprintf(what, sizeof what, "unknown schedule '%s'", name);
    return key_error(DP_ERR_CFG, s, key, what);
}

// [net] steps and scales, both present with the same count.
static dp_status cfg_steps(dp_schedule *s, const dp_cfg_section *net)
{
    if (net == NULL || !dp_cfg_has(net, "steps") || !dp_cfg_has(net, "scales")) {
        const char *key = net != NULL && dp_cfg_has(net, "steps") ? "scales" : "steps";
        return net != NULL
                   ? key_error(DP_ERR_CFG, net, key, "the steps policy needs both steps and scales")
                   : dp_error_set(DP_ERR_CFG, "steps policy without a [net] section");
    }
    int n_steps = 0, n_scales = 0;
    DP_TRY(dp_cfg_get_int_list(net, "steps", s->steps, DP_SCHEDULE_STEPS_MAX, &n_steps));
    DP_TRY(dp_cfg_get_float_list(net, "scales", s->scales, DP_SCHEDULE_STEPS_MAX, &n_scales));
    if (n_steps != n_scales) {
        char what[96];
        snprintf(what, sizeof what, "%d values for %d steps", n_scales, n_steps);
        return key_error(DP_ERR_CFG, net, "scales", what);
    }
    s->n_steps = n_steps;
    return DP_OK;
}

// [train] warmup_epochs against [net] burn_in; the scaling rule.
static dp_status cfg_warmup_scaling(dp_schedule *s, const dp_cfg_section *net,
                                    const dp_cfg_section *train, long steps_per_epoch)
{
    double warmup_epochs = 0.0;
    DP_TRY(get_float(train, "warmup_epochs", 0.0, &warmup_epochs));
    if (warmup_epochs > 0) {
        if (s->burn_in > 0) {
            char where[WHERE_BYTES], what[WHERE_BYTES + 64];
            snprintf(what, sizeof what, "cannot be combined with [net] burn_in (%s)",
                     dp_cfg_where(net, "burn_in", where, sizeof where));
            return key_error(DP_ERR_CFG, train, "warmup_epochs", what);
        }
        double w = floor(warmup_epochs * (double)steps_per_epoch + 0.5);
        s->warmup_steps = w < 1.0 ? 1 : (long)w;
    }
    long ref = 0;
    DP_TRY(get_int(train, "lr_scaling_reference_batch", 0, &ref));
    if (ref < 0) {
        return key_error(DP_ERR_CFG, train, "lr_scaling_reference_batch", "must be >= 0");
    }
    if (ref > 0) {
        s->reference_batch = ref;
        DP_TRY(get_int(net, "batch", 1, &s->global_batch));
    }
    return DP_OK;
}

// The keys of the policy itself.
static dp_status cfg_policy_keys(dp_schedule *s, const dp_cfg_section *net,
                                 const dp_cfg_section *train, long total_steps)
{
    DP_TRY(get_float(net, "learning_rate", 0.001, &s->lr));
    DP_TRY(get_int(net, "step", 1, &s->step_size));
    DP_TRY(get_float(net, "scale", 1.0, &s->scale));
    DP_TRY(get_float(net, "gamma", 1.0, &s->gamma));
    DP_TRY(get_float(net, "power", 4.0, &s->power));
    DP_TRY(get_int(net, "burn_in", 0, &s->burn_in));
    long max_batches = 0;
    DP_TRY(get_int(net, "max_batches", 0, &max_batches));
    s->max_steps = max_batches > 0 ? max_batches : total_steps;
    if (s->kind == DP_SCHEDULE_STEPS) {
        DP_TRY(cfg_steps(s, net));
    }
    DP_TRY(get_float(train, "min_lr", 0.0, &s->min_lr));
    DP_TRY(get_positive(train, "one_cycle_pct", 0.3, &s->pct_start));
    DP_TRY(get_positive(train, "one_cycle_div", 25.0, &s->div_factor));
    DP_TRY(get_positive(train, "one_cycle_final_div", 1e4, &s->final_div_factor));
    return DP_OK;
}

dp_status dp_schedule_from_cfg(dp_schedule *out, const dp_cfg *cfg, long steps_per_epoch,
                               long total_steps)
{
    if (steps_per_epoch < 1 || total_steps < 1) {
        return dp_error_set(DP_ERR_ARG,
                            "schedule: steps_per_epoch %ld and total_steps %ld must "
                            "be >= 1",
                            steps_per_epoch, total_steps);
    }
    dp_schedule s = DP_SCHEDULE_INIT;
    const dp_cfg_section *net = dp_cfg_find(cfg, "net"), *train = dp_cfg_find(cfg, "train");
    const char *mode = "darknet";
    if (train != NULL) {
        DP_TRY(dp_cfg_get_str(train, "schedule", "darknet", &mode));
    }
    s.darknet = strcmp(mode, "darknet") == 0;
    DP_TRY(cfg_kind(net, train, s.darknet, &s.kind));
    DP_TRY(cfg_policy_keys(&s, net, train, total_steps));
    DP_TRY(cfg_warmup_scaling(&s, net, train, steps_per_epoch));
    if (dp_schedule_check(&s) != DP_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dp_error_message());
        return dp_error_set(DP_ERR_CFG, "%s: %s", dp_cfg_path(cfg), msg);
    }
    *out = s;
    return DP_OK;
}
