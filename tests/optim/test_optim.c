// Optimizers against PyTorch (tests/data/torch/optim_ref.txt, made by make_optim_ref.py with
// torch 1.13 and NAdam as PyTorch 2.x): every case runs STEPS updates with per-step learning
// rates, a decay mask (the torch side's second parameter group has weight_decay=0), gradient
// clipping and max-norm where the case says so, and compares the parameters after every step.
// Tolerance: |got - torch| <= TOL * max(|torch|, the element's largest |torch value| earlier
// in the run, FLOOR) (a parameter carried from O(1) towards 0 keeps the rounding of its O(1)
// updates; torch fuses some multiply-adds, this code does not); the worst element, its index
// and step are reported. Also: clipping, renorm, state save/restore (bitwise), masks,
// determinism, every error path, and the config built from a cfg.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "core/error.h"
#include "nn/optim.h"
#include "ref_text.h"

#define TOL 1e-6
#define FLOOR 1e-2

enum { MAXN = 64, MAXSTEPS = 8, MAXCASES = 48 };

typedef struct ref_case {
    char name[64];
    char config[512];
    float lr[MAXSTEPS];
    float expect[MAXSTEPS][MAXN]; // params after step k
} ref_case;

typedef struct optim_ref {
    int n, split, steps;
    size_t mn_off, mn_rows, mn_cols; // the block max_norm cases renorm
    float p0[MAXN];
    float grads[MAXSTEPS][MAXN];
    int n_cases;
    ref_case cases[MAXCASES];
    int renorm_rows, renorm_cols;
    double renorm_max;
    float renorm_in[MAXN], renorm_out[MAXN];
} optim_ref;

static optim_ref *ref;

static void parse_line(optim_ref *r, char *line, ref_case **cur)
{
    char tag[32];
    int off = 0;
    if (line[0] == '#' || line[0] == '\0' || sscanf(line, "%31s %n", tag, &off) != 1) {
        return;
    }
    char *rest = line + off;
    int k = 0, koff = 0;
    if (strcmp(tag, "n") == 0) {
        r->n = atoi(rest);
        cr_assert(r->n > 0 && r->n <= MAXN);
    } else if (strcmp(tag, "decay_split") == 0) {
        r->split = atoi(rest);
    } else if (strcmp(tag, "steps") == 0) {
        r->steps = atoi(rest);
        cr_assert(r->steps > 0 && r->steps <= MAXSTEPS);
    } else if (strcmp(tag, "maxnorm_rows") == 0) {
        cr_assert_eq(sscanf(rest, "%zu %zu %zu", &r->mn_off, &r->mn_rows, &r->mn_cols), 3);
    } else if (strcmp(tag, "p0") == 0) {
        cr_assert_eq(ref_parse_floats(rest, r->p0, MAXN), r->n);
    } else if (strcmp(tag, "grad") == 0 && sscanf(rest, "%d %n", &k, &koff) == 1) {
        cr_assert_eq(ref_parse_floats(rest + koff, r->grads[k], MAXN), r->n);
    } else if (strcmp(tag, "case") == 0) {
        cr_assert_lt(r->n_cases, MAXCASES);
        *cur = &r->cases[r->n_cases++];
        snprintf((*cur)->name, sizeof(*cur)->name, "%s", rest);
    } else if (strcmp(tag, "config") == 0) {
        snprintf((*cur)->config, sizeof(*cur)->config, "%s", rest);
    } else if (strcmp(tag, "lr") == 0) {
        cr_assert_eq(ref_parse_floats(rest, (*cur)->lr, MAXSTEPS), r->steps);
    } else if (strcmp(tag, "expect") == 0 && sscanf(rest, "%d %n", &k, &koff) == 1) {
        cr_assert(k >= 0 && k < r->steps);
        cr_assert_eq(ref_parse_floats(rest + koff, (*cur)->expect[k], MAXN), r->n);
    } else if (strcmp(tag, "renorm") == 0) {
        cr_assert_eq(sscanf(rest, "%d %d %la", &r->renorm_rows, &r->renorm_cols, &r->renorm_max),
                     3);
    } else if (strcmp(tag, "in") == 0) {
        cr_assert_eq(ref_parse_floats(rest, r->renorm_in, MAXN), r->renorm_rows * r->renorm_cols);
    } else if (strcmp(tag, "out") == 0) {
        cr_assert_eq(ref_parse_floats(rest, r->renorm_out, MAXN), r->renorm_rows * r->renorm_cols);
    }
}

static void load_ref(void)
{
    ref = calloc(1, sizeof *ref);
    cr_assert_not_null(ref);
    char *text = ref_load("tests/data/torch/optim_ref.txt");
    char *cursor = text, *line;
    ref_case *cur = NULL;
    while ((line = ref_next_line(&cursor)) != NULL) {
        parse_line(ref, line, &cur);
    }
    free(text);
    cr_assert(ref->n > 0 && ref->steps > 0 && ref->n_cases > 0, "incomplete optim_ref.txt");
}

static void free_ref(void)
{
    free(ref);
    ref = NULL;
}

TestSuite(optim, .init = load_ref, .fini = free_ref);

// --- config from the reference's "kind=adam amsgrad=1 ..." ---

static void set_field(dp_optim_config *c, const char *key, const char *val)
{
    double v = strtod(val, NULL);
    if (strcmp(key, "kind") == 0) {
        cr_assert_eq(dp_optim_kind_from_name(val, &c->kind), DP_OK, "%s", dp_error_message());
    } else if (strcmp(key, "momentum") == 0) {
        c->momentum = v;
    } else if (strcmp(key, "dampening") == 0) {
        c->dampening = v;
    } else if (strcmp(key, "nesterov") == 0) {
        c->nesterov = (int)v;
    } else if (strcmp(key, "beta1") == 0) {
        c->beta1 = v;
    } else if (strcmp(key, "beta2") == 0) {
        c->beta2 = v;
    } else if (strcmp(key, "eps") == 0) {
        c->eps = v;
    } else if (strcmp(key, "amsgrad") == 0) {
        c->amsgrad = (int)v;
    } else if (strcmp(key, "weight_decay") == 0) {
        c->weight_decay = v;
    } else if (strcmp(key, "rho") == 0) {
        c->rho = v;
    } else if (strcmp(key, "alpha") == 0) {
        c->alpha = v;
    } else if (strcmp(key, "centered") == 0) {
        c->centered = (int)v;
    } else if (strcmp(key, "lr_decay") == 0) {
        c->lr_decay = v;
    } else if (strcmp(key, "initial_accumulator_value") == 0) {
        c->initial_accumulator_value = v;
    } else if (strcmp(key, "momentum_decay") == 0) {
        c->momentum_decay = v;
    } else if (strcmp(key, "clip_global_norm") == 0) {
        c->clip_global_norm = v;
    } else if (strcmp(key, "max_norm") == 0) {
        c->max_norm = v;
    } else {
        cr_assert_fail("unknown config key '%s' in optim_ref.txt", key);
    }
}

static dp_optim_config parse_config(const char *text)
{
    dp_optim_config c = DP_OPTIM_CONFIG_INIT;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        cr_assert_not_null(eq, "bad config token '%s'", tok);
        *eq = '\0';
        set_field(&c, tok, eq + 1);
    }
    return c;
}

static void make_mask(uint8_t *mask, int n, int split)
{
    for (int i = 0; i < n; i++) {
        mask[i] = i < split ? 1 : 0;
    }
}

// Runs one reference case and checks every step; returns the worst error over the steps.
static double run_case(const ref_case *rc)
{
    dp_optim_config c = parse_config(rc->config);
    dp_optim *opt = NULL;
    cr_assert_eq(dp_optim_create(&opt, &c, (size_t)ref->n), DP_OK, "%s: %s", rc->name,
                 dp_error_message());
    if (c.max_norm > 0) {
        dp_optim_rows rows = {ref->mn_off, ref->mn_rows, ref->mn_cols};
        cr_assert_eq(dp_optim_set_max_norm_rows(opt, &rows, 1), DP_OK, "%s", dp_error_message());
    }
    float p[MAXN];
    uint8_t mask[MAXN];
    memcpy(p, ref->p0, sizeof p);
    make_mask(mask, ref->n, ref->split);
    float scale[MAXN]; // the largest |torch value| of each element so far
    for (int i = 0; i < ref->n; i++) {
        scale[i] = fabsf(ref->p0[i]);
    }
    double worst = 0.0;
    for (int k = 0; k < ref->steps; k++) {
        cr_assert_eq(dp_optim_step(opt, p, ref->grads[k], mask, rc->lr[k]), DP_OK, "%s: %s",
                     rc->name, dp_error_message());
        ref_err e = ref_max_rel_err(p, rc->expect[k], scale, (size_t)ref->n, FLOOR);
        for (int i = 0; i < ref->n; i++) {
            scale[i] = fmaxf(scale[i], fabsf(rc->expect[k][i]));
        }
        cr_expect_leq(e.max, TOL, "%s step %d: max rel error %.3g at [%zu]: %.9g vs torch %.9g",
                      rc->name, k + 1, e.max, e.index, e.got, e.want);
        worst = fmax(worst, e.max);
    }
    cr_expect_eq(dp_optim_step_count(opt), ref->steps);
    dp_optim_destroy(opt);
    return worst;
}

// Runs every case whose config starts with "kind=<kind> "; expects at least min_cases.
static void run_kind(const char *kind, int min_cases)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "kind=%s", kind);
    size_t plen = strlen(prefix);
    int ran = 0;
    for (int i = 0; i < ref->n_cases; i++) {
        const ref_case *rc = &ref->cases[i];
        if (strncmp(rc->config, prefix, plen) == 0 &&
            (rc->config[plen] == ' ' || rc->config[plen] == '\0')) {
            double worst = run_case(rc);
            fprintf(stderr, "optim %-30s max rel error %.3g (tolerance %g)\n", rc->name, worst,
                    TOL);
            ran++;
        }
    }
    cr_expect_geq(ran, min_cases, "%d %s cases in optim_ref.txt", ran, kind);
}

Test(optim, sgd_matches_torch)
{
    run_kind("sgd", 6);
}

Test(optim, adagrad_matches_torch)
{
    run_kind("adagrad", 2);
}

Test(optim, adadelta_matches_torch)
{
    run_kind("adadelta", 2);
}

Test(optim, rmsprop_matches_torch)
{
    run_kind("rmsprop", 4);
}

Test(optim, adam_matches_torch)
{
    run_kind("adam", 4);
}

Test(optim, adamw_matches_torch)
{
    run_kind("adamw", 2);
}

Test(optim, nadam_matches_pytorch2)
{
    run_kind("nadam", 2);
}

Test(optim, every_reference_kind_is_tested)
{
    const char *known[] = {"sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamw", "nadam"};
    for (int i = 0; i < ref->n_cases; i++) {
        int found = 0;
        for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) {
            char prefix[32];
            int len = snprintf(prefix, sizeof prefix, "kind=%s", known[j]);
            const char *cfg = ref->cases[i].config;
            found |=
                strncmp(cfg, prefix, (size_t)len) == 0 && (cfg[len] == ' ' || cfg[len] == '\0');
        }
        cr_expect(found, "case %s has a kind no test runs: %s", ref->cases[i].name,
                  ref->cases[i].config);
    }
}

Test(optim, renorm_matches_torch_renorm)
{
    float w[MAXN];
    size_t n = (size_t)(ref->renorm_rows * ref->renorm_cols);
    memcpy(w, ref->renorm_in, n * sizeof *w);
    cr_assert_eq(dp_optim_max_norm_apply(w, (size_t)ref->renorm_rows, (size_t)ref->renorm_cols,
                                         ref->renorm_max),
                 DP_OK);
    ref_err e = ref_max_rel_err(w, ref->renorm_out, NULL, n, FLOOR);
    cr_expect_leq(e.max, TOL, "max rel error %.3g at [%zu]: %.9g vs torch %.9g", e.max, e.index,
                  e.got, e.want);
    int changed = 0, kept = 0;
    for (int r = 0; r < ref->renorm_rows; r++) {
        const float *row = ref->renorm_in + r * ref->renorm_cols;
        double norm = dp_optim_grad_norm(row, (size_t)ref->renorm_cols);
        if (norm > ref->renorm_max) {
            changed++;
        } else {
            kept += memcmp(row, w + r * ref->renorm_cols, (size_t)ref->renorm_cols * 4) == 0;
        }
    }
    cr_expect(changed > 0 && kept > 0, "the reference has rows on both sides of max_norm");
    cr_expect_eq(changed + kept, ref->renorm_rows, "rows under max_norm are left bitwise as is");
}

// --- behaviour beyond the reference ---

static dp_optim *make(dp_optim_config c, size_t n)
{
    dp_optim *opt = NULL;
    cr_assert_eq(dp_optim_create(&opt, &c, n), DP_OK, "%s", dp_error_message());
    return opt;
}

Test(optim, clipping_leaves_grads_untouched_and_reports_the_norm)
{
    dp_optim_config c = DP_OPTIM_CONFIG_INIT;
    c.clip_global_norm = 0.5;
    dp_optim *opt = make(c, (size_t)ref->n);
    float p[MAXN], g[MAXN];
    memcpy(p, ref->p0, sizeof p);
    memcpy(g, ref->grads[0], sizeof g);
    cr_assert_eq(dp_optim_step(opt, p, g, NULL, 0.25f), DP_OK);
    cr_expect_eq(memcmp(g, ref->grads[0], sizeof g), 0, "grads are const (bitwise)");
    double norm = dp_optim_grad_norm(g, (size_t)ref->n);
    cr_expect_eq(dp_optim_last_grad_norm(opt), norm);
    cr_assert_gt(norm, 0.5, "the reference gradient is clipped");
    // Plain SGD: the step is -lr * g * clip / (norm + 1e-6); its norm is lr * clip.
    double s = 0.0;
    for (int i = 0; i < ref->n; i++) {
        double d = (double)p[i] - (double)ref->p0[i];
        s += d * d;
    }
    cr_expect_float_eq(sqrt(s), 0.25 * 0.5, 1e-5, "step norm %.9g", sqrt(s));
    dp_optim_destroy(opt);
}

Test(optim, clipping_a_non_finite_gradient_fails_and_changes_nothing)
{
    dp_optim_config c = DP_OPTIM_CONFIG_INIT;
    c.kind = DP_OPTIM_ADAM;
    c.clip_global_norm = 1.0;
    dp_optim *opt = make(c, 4);
    float p[4] = {1, 2, 3, 4}, g[4] = {0.5f, INFINITY, 0, 1};
    cr_expect_eq(dp_optim_step(opt, p, g, NULL, 0.1f), DP_ERR_DATA);
    cr_expect_not_null(strstr(dp_error_message(), "gradient norm"), "%s", dp_error_message());
    cr_expect(p[0] == 1 && p[1] == 2 && p[2] == 3 && p[3] == 4);
    cr_expect_eq(dp_optim_step_count(opt), 0);
    dp_optim_destroy(opt);
}

Test(optim, zero_mask_equals_no_weight_decay_bitwise)
{
    const dp_optim_kind kinds[] = {DP_OPTIM_SGD, DP_OPTIM_ADAM, DP_OPTIM_ADAMW, DP_OPTIM_NADAM,
                                   DP_OPTIM_RMSPROP};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        dp_optim_config c = DP_OPTIM_CONFIG_INIT;
        c.kind = kinds[k];
        c.momentum = kinds[k] == DP_OPTIM_SGD ? 0.9 : 0.0;
        c.weight_decay = 0.0;
        dp_optim *plain = make(c, (size_t)ref->n);
        c.weight_decay = 0.1;
        dp_optim *masked = make(c, (size_t)ref->n);
        float a[MAXN], b[MAXN];
        uint8_t zero[MAXN] = {0};
        memcpy(a, ref->p0, sizeof a);
        memcpy(b, ref->p0, sizeof b);
        for (int s = 0; s < ref->steps; s++) {
            cr_assert_eq(dp_optim_step(plain, a, ref->grads[s], NULL, 0.01f), DP_OK);
            cr_assert_eq(dp_optim_step(masked, b, ref->grads[s], zero, 0.01f), DP_OK);
        }
        cr_expect_eq(memcmp(a, b, sizeof a), 0, "%s", dp_optim_kind_name(kinds[k]));
        // And the decay is real: with no mask (decay everything) the result differs.
        dp_optim_reset(plain);
        dp_optim_reset(masked);
        memcpy(a, ref->p0, sizeof a);
        memcpy(b, ref->p0, sizeof b);
        cr_assert_eq(dp_optim_step(plain, a, ref->grads[0], NULL, 0.01f), DP_OK);
        cr_assert_eq(dp_optim_step(masked, b, ref->grads[0], NULL, 0.01f), DP_OK);
        cr_expect_neq(memcmp(a, b, sizeof a), 0, "%s: decay has no effect",
                      dp_optim_kind_name(kinds[k]));
        dp_optim_destroy(plain);
        dp_optim_destroy(masked);
    }
}

// Every kind with every state buffer: 3 steps, save, 3 steps; against restore into a fresh
// optimizer + the same 3 steps. Bitwise (memcmp).
Test(optim, state_save_and_restore_continue_bitwise)
{
    const char *cfgs[] = {
        "kind=sgd momentum=0.9 nesterov=1 weight_decay=0.01",
        "kind=adagrad lr_decay=0.01 initial_accumulator_value=0.1",
        "kind=adadelta",
        "kind=rmsprop momentum=0.9 centered=1",
        "kind=adam amsgrad=1 weight_decay=0.01",
        "kind=adamw amsgrad=1",
        "kind=nadam weight_decay=0.01",
    };
    const int expect_states[] = {1, 1, 2, 3, 3, 3, 3};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        dp_optim_config c = parse_config(cfgs[k]);
        dp_optim *a = make(c, (size_t)ref->n), *b = make(c, (size_t)ref->n);
        cr_expect_eq(dp_optim_state_count(a), expect_states[k], "%s", cfgs[k]);
        float pa[MAXN], pb[MAXN];
        uint8_t mask[MAXN];
        make_mask(mask, ref->n, ref->split);
        memcpy(pa, ref->p0, sizeof pa);
        for (int s = 0; s < 3; s++) {
            cr_assert_eq(dp_optim_step(a, pa, ref->grads[s], mask, 0.01f), DP_OK);
        }
        // "Checkpoint": copy a's state into b by name, as a checkpoint reader would.
        for (int i = 0; i < dp_optim_state_count(a); i++) {
            const char *na, *nb;
            float *da, *db;
            size_t ca, cb;
            cr_assert_eq(dp_optim_state_at(a, i, &na, &da, &ca), DP_OK);
            cr_assert_eq(dp_optim_state_at(b, i, &nb, &db, &cb), DP_OK);
            cr_expect_str_eq(na, nb);
            cr_assert_eq(ca, cb);
            memcpy(db, da, ca * sizeof *da);
        }
        cr_assert_eq(dp_optim_step_count_set(b, dp_optim_step_count(a)), DP_OK);
        memcpy(pb, pa, sizeof pb);
        for (int s = 3; s < ref->steps; s++) {
            cr_assert_eq(dp_optim_step(a, pa, ref->grads[s], mask, 0.01f), DP_OK);
            cr_assert_eq(dp_optim_step(b, pb, ref->grads[s], mask, 0.01f), DP_OK);
        }
        cr_expect_eq(memcmp(pa, pb, sizeof pa), 0, "%s: restored run differs", cfgs[k]);
        dp_optim_destroy(a);
        dp_optim_destroy(b);
    }
}

Test(optim, restore_without_step_count_changes_the_result)
{
    // The counter is part of the state: Adam's bias correction depends on it.
    dp_optim_config c = DP_OPTIM_CONFIG_INIT;
    c.kind = DP_OPTIM_ADAM;
    dp_optim *a = make(c, (size_t)ref->n), *b = make(c, (size_t)ref->n);
    float pa[MAXN], pb[MAXN];
    memcpy(pa, ref->p0, sizeof pa);
    cr_assert_eq(dp_optim_step(a, pa, ref->grads[0], NULL, 0.01f), DP_OK);
    for (int i = 0; i < dp_optim_state_count(a); i++) {
        const char *name;
        float *da, *db;
        size_t n;
        cr_assert_eq(dp_optim_state_at(a, i, &name, &da, &n), DP_OK);
        cr_assert_eq(dp_optim_state_at(b, i, &name, &db, &n), DP_OK);
        memcpy(db, da, n * sizeof *da);
    }
    memcpy(pb, pa, sizeof pb);
    cr_assert_eq(dp_optim_step(a, pa, ref->grads[1], NULL, 0.01f), DP_OK);
    cr_assert_eq(dp_optim_step(b, pb, ref->grads[1], NULL, 0.01f), DP_OK);
    cr_expect_neq(memcmp(pa, pb, sizeof pa), 0);
    dp_optim_destroy(a);
    dp_optim_destroy(b);
}

Test(optim, two_runs_are_bitwise_identical)
{
    dp_optim_config c = parse_config("kind=rmsprop momentum=0.9 centered=1 weight_decay=0.01 "
                                     "clip_global_norm=1.0");
    float pa[MAXN], pb[MAXN];
    memcpy(pa, ref->p0, sizeof pa);
    memcpy(pb, ref->p0, sizeof pb);
    for (int run = 0; run < 2; run++) {
        dp_optim *o = make(c, (size_t)ref->n);
        for (int s = 0; s < ref->steps; s++) {
            cr_assert_eq(dp_optim_step(o, run ? pb : pa, ref->grads[s], NULL, 0.01f), DP_OK);
        }
        dp_optim_destroy(o);
    }
    cr_expect_eq(memcmp(pa, pb, sizeof pa), 0);
}

Test(optim, defaults_follow_pytorch)
{
    struct {
        dp_optim_kind kind;
        double lr, eps, wd;
        dp_optim_decay mode;
    } want[] = {
        {DP_OPTIM_SGD, 0.01, 1e-8, 0, DP_OPTIM_DECAY_L2},
        {DP_OPTIM_ADAGRAD, 0.01, 1e-10, 0, DP_OPTIM_DECAY_L2},
        {DP_OPTIM_ADADELTA, 1.0, 1e-6, 0, DP_OPTIM_DECAY_L2},
        {DP_OPTIM_RMSPROP, 0.01, 1e-8, 0, DP_OPTIM_DECAY_L2},
        {DP_OPTIM_ADAM, 1e-3, 1e-8, 0, DP_OPTIM_DECAY_L2},
        {DP_OPTIM_ADAMW, 1e-3, 1e-8, 1e-2, DP_OPTIM_DECAY_DECOUPLED},
        {DP_OPTIM_NADAM, 2e-3, 1e-8, 0, DP_OPTIM_DECAY_L2},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        dp_optim_config c = DP_OPTIM_CONFIG_INIT;
        c.kind = want[i].kind;
        dp_optim *o = make(c, 3);
        const dp_optim_config *r = dp_optim_config_get(o);
        cr_expect(r->lr == want[i].lr && r->eps == want[i].eps && r->weight_decay == want[i].wd &&
                      r->decay_mode == want[i].mode,
                  "%s: lr %g eps %g wd %g mode %d", dp_optim_kind_name(want[i].kind), r->lr, r->eps,
                  r->weight_decay, (int)r->decay_mode);
        cr_expect_eq(dp_optim_param_count(o), 3);
        dp_optim_destroy(o);
    }
}

Test(optim, max_norm_in_step_equals_step_then_apply)
{
    dp_optim_config c = DP_OPTIM_CONFIG_INIT;
    c.momentum = 0.9;
    dp_optim *plain = make(c, (size_t)ref->n);
    c.max_norm = 0.8;
    dp_optim *mn = make(c, (size_t)ref->n);
    dp_optim_rows blocks[2] = {{0, 4, 8}, {40, 2, 4}};
    cr_assert_eq(dp_optim_set_max_norm_rows(mn, blocks, 2), DP_OK);
    float a[MAXN], b[MAXN];
    memcpy(a, ref->p0, sizeof a);
    memcpy(b, ref->p0, sizeof b);
    cr_assert_eq(dp_optim_step(plain, a, ref->grads[0], NULL, 0.1f), DP_OK);
    cr_assert_eq(dp_optim_max_norm_apply(a, 4, 8, 0.8), DP_OK);
    cr_assert_eq(dp_optim_max_norm_apply(a + 40, 2, 4, 0.8), DP_OK);
    cr_assert_eq(dp_optim_step(mn, b, ref->grads[0], NULL, 0.1f), DP_OK);
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    for (int r = 0; r < 4; r++) {
        cr_expect_leq(dp_optim_grad_norm(b + 8 * r, 8), 0.8 + 1e-6, "row %d", r);
    }
    dp_optim_destroy(plain);
    dp_optim_destroy(mn);
}

// --- errors ---

static void expect_create_error(dp_optim_config c, size_t n, const char *frag)
{
    dp_optim *o = (dp_optim *)&c; // must be reset to NULL on failure
    cr_expect_eq(dp_optim_create(&o, &c, n), DP_ERR_ARG, "expected DP_ERR_ARG for %s", frag);
    cr_expect_null(o);
    cr_expect_not_null(strstr(dp_error_message(), frag), "'%s' not in '%s'", frag,
                       dp_error_message());
}

Test(optim, bad_configs_are_rejected_naming_the_field)
{
    dp_optim_config c = DP_OPTIM_CONFIG_INIT;
    c.nesterov = 1;
    expect_create_error(c, 4, "nesterov");
    c.momentum = 0.9;
    c.dampening = 0.1;
    expect_create_error(c, 4, "dampening");
    c = (dp_optim_config)DP_OPTIM_CONFIG_INIT;
    c.lr = -1;
    expect_create_error(c, 4, "lr");
    c = (dp_optim_config)DP_OPTIM_CONFIG_INIT;
    c.kind = DP_OPTIM_ADAM;
    c.beta1 = 1.0;
    expect_create_error(c, 4, "beta1");
    c = (dp_optim_config)DP_OPTIM_CONFIG_INIT;
    c.weight_decay = -0.1;
    expect_create_error(c, 4, "weight_decay");
    c = (dp_optim_config)DP_OPTIM_CONFIG_INIT;
    c.kind = DP_OPTIM_ADADELTA;
    c.rho = 1.5;
    expect_create_error(c, 4, "rho");
    c = (dp_optim_config)DP_OPTIM_CONFIG_INIT;
    c.kind = (dp_optim_kind)99;
    expect_create_error(c, 4, "kind");
    c = (dp_optim_config)DP_OPTIM_CONFIG_INIT;
    expect_create_error(c, 0, "n == 0");
}

Test(optim, bad_step_arguments_are_rejected)
{
    dp_optim_config c = DP_OPTIM_CONFIG_INIT;
    dp_optim *o = make(c, 2);
    float p[2] = {1, 2}, g[2] = {1, 1};
    cr_expect_eq(dp_optim_step(o, NULL, g, NULL, 0.1f), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "params"));
    cr_expect_eq(dp_optim_step(o, p, NULL, NULL, 0.1f), DP_ERR_ARG);
    cr_expect_eq(dp_optim_step(o, p, g, NULL, -0.1f), DP_ERR_ARG);
    cr_expect_eq(dp_optim_step(o, p, g, NULL, NAN), DP_ERR_ARG);
    cr_expect_eq(dp_optim_step(o, p, g, NULL, INFINITY), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "learning rate"));
    cr_expect(p[0] == 1 && p[1] == 2, "nothing changed");
    cr_expect_eq(dp_optim_step_count(o), 0);
    const char *name;
    float *data;
    size_t n;
    cr_expect_eq(dp_optim_state_at(o, 0, &name, &data, &n), DP_ERR_ARG, "plain SGD has no state");
    cr_expect_eq(dp_optim_step_count_set(o, -1), DP_ERR_ARG);
    dp_optim_rows outside = {1, 1, 2};
    cr_expect_eq(dp_optim_set_max_norm_rows(o, &outside, 1), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "outside"));
    dp_optim_rows empty = {0, 0, 2};
    cr_expect_eq(dp_optim_set_max_norm_rows(o, &empty, 1), DP_ERR_ARG);
    cr_expect_eq(dp_optim_max_norm_apply(p, 1, 2, 0.0), DP_ERR_ARG);
    cr_expect_eq(dp_optim_max_norm_apply(NULL, 1, 2, 1.0), DP_ERR_ARG);
    dp_optim_destroy(o);
    dp_optim_destroy(NULL);
}

Test(optim, kind_names_round_trip_and_unknown_lists_valid_names)
{
    for (int k = 0; k < DP_OPTIM_KIND_COUNT_; k++) {
        dp_optim_kind got;
        cr_expect_eq(dp_optim_kind_from_name(dp_optim_kind_name((dp_optim_kind)k), &got), DP_OK);
        cr_expect_eq((int)got, k);
    }
    dp_optim_kind got;
    cr_expect_eq(dp_optim_kind_from_name("lamb", &got), DP_ERR_UNSUPPORTED);
    const char *msg = dp_error_message();
    cr_expect_not_null(strstr(msg, "'lamb'"), "%s", msg);
    const char *names[] = {"sgd", "adam", "adamw", "adagrad", "adadelta", "rmsprop", "nadam"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cr_expect_not_null(strstr(msg, names[i]), "'%s' not listed in '%s'", names[i], msg);
    }
    cr_expect_eq(dp_optim_kind_from_name("SGD", &got), DP_ERR_UNSUPPORTED, "names are exact");
    cr_expect_str_eq(dp_optim_kind_name((dp_optim_kind)42), "?");
}

// --- cfg ---

static dp_cfg *parse_cfg(const char *text)
{
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_parse(&cfg, text, strlen(text), "t.cfg"), DP_OK, "%s", dp_error_message());
    return cfg;
}

#define NET "[net]\nheight=28\nwidth=28\nchannels=1\n"

Test(optim, config_from_cfg_reads_net_and_train)
{
    dp_cfg *cfg = parse_cfg(NET "learning_rate=0.1\nmomentum=0.8\ndecay=0.0005\n"
                                "[train]\noptimizer=sgd\nnesterov=1\nclip_grad_norm=2.5\n");
    dp_optim_config c;
    cr_assert_eq(dp_optim_config_from_cfg(&c, cfg), DP_OK, "%s", dp_error_message());
    cr_expect(c.kind == DP_OPTIM_SGD && c.nesterov == 1);
    cr_expect(c.lr == 0.1 && c.momentum == 0.8 && c.weight_decay == 0.0005);
    cr_expect(c.clip_global_norm == 2.5 && c.decay_mode == DP_OPTIM_DECAY_L2);
    dp_cfg_destroy(cfg);

    cfg = parse_cfg(NET "[train]\noptimizer=adamw\n");
    cr_assert_eq(dp_optim_config_from_cfg(&c, cfg), DP_OK, "%s", dp_error_message());
    cr_expect(c.kind == DP_OPTIM_ADAMW && c.weight_decay == 1e-2 && c.eps == 1e-8 &&
                  c.decay_mode == DP_OPTIM_DECAY_DECOUPLED,
              "adamw without [net] decay takes PyTorch's defaults");
    dp_cfg_destroy(cfg);

    cfg = parse_cfg(NET "adam=1\nB1=0.85\n");
    cr_assert_eq(dp_optim_config_from_cfg(&c, cfg), DP_OK, "%s", dp_error_message());
    cr_expect(c.kind == DP_OPTIM_ADAM && c.beta1 == 0.85 && c.beta2 == 0.999 && c.eps == 1e-7 &&
                  c.weight_decay == 1e-4 && c.lr == 0.001,
              "Darknet's adam=1 takes Darknet's defaults");
    dp_cfg_destroy(cfg);
}

static void expect_cfg_error(const char *text, dp_status want, const char *frag1, const char *frag2)
{
    dp_cfg *cfg = parse_cfg(text);
    dp_optim_config c;
    cr_expect_eq(dp_optim_config_from_cfg(&c, cfg), want, "status for:\n%s", text);
    cr_expect_not_null(strstr(dp_error_message(), frag1), "'%s' not in '%s'", frag1,
                       dp_error_message());
    if (frag2 != NULL) {
        cr_expect_not_null(strstr(dp_error_message(), frag2), "'%s' not in '%s'", frag2,
                           dp_error_message());
    }
    dp_cfg_destroy(cfg);
}

Test(optim, config_from_cfg_errors_name_file_line_and_key)
{
    expect_cfg_error(NET "adam=1\n[train]\noptimizer=sgd\n", DP_ERR_CFG,
                     "t.cfg:7: [train] "
                     "optimizer",
                     "t.cfg:5");
    expect_cfg_error(NET "momentum=0\n[train]\nnesterov=1\n", DP_ERR_CFG,
                     "t.cfg:7: [train] nesterov", NULL);
    expect_cfg_error(NET "[train]\nclip_grad_norm=-1\n", DP_ERR_CFG,
                     "t.cfg:6: [train] clip_grad_norm", NULL);
    expect_cfg_error(NET "[train]\nweight_decay_mode=l1\n", DP_ERR_CFG,
                     "t.cfg:6: [train] weight_decay_mode", "unknown value 'l1'");
    expect_cfg_error(NET "B2=1\n", DP_ERR_CFG, "t.cfg:5: [net] B2", NULL);
    expect_cfg_error(NET "[train]\noptimizer=lamb\n", DP_ERR_CFG, "t.cfg:6: [train] optimizer",
                     NULL);
}
