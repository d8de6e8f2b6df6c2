// Learning-rate schedules: PyTorch's schedulers (tests/data/torch/schedule_ref.txt: StepLR,
// MultiStepLR, ExponentialLR, PolynomialLR, CosineAnnealingLR, OneCycleLR, LinearLR warmup)
// with a relative tolerance of TOL per step; Darknet's get_current_rate on hand-computed values
// (burn_in, step, steps with its early return, exp, poly, sigmoid, counted from b = step + 1);
// the scaling rule; building from a cfg and its errors (file:line and key).
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "core/error.h"
#include "nn/schedule.h"
#include "ref_text.h"

#define TOL 1e-6

enum { MAXSTEPS = 128 };

static void set_field(dp_schedule *s, const char *key, const char *val)
{
    double v = strtod(val, NULL);
    if (strcmp(key, "kind") == 0) {
        const char *names[] = {"constant", "step",    "steps",  "exp",
                               "poly",     "sigmoid", "cosine", "one_cycle"};
        int found = 0;
        for (int k = 0; k < 8; k++) {
            if (strcmp(val, names[k]) == 0) {
                s->kind = (dp_schedule_kind)k;
                found = 1;
            }
        }
        cr_assert(found, "unknown kind '%s'", val);
    } else if (strcmp(key, "lr") == 0) {
        s->lr = v;
    } else if (strcmp(key, "step_size") == 0) {
        s->step_size = (long)v;
    } else if (strcmp(key, "scale") == 0) {
        s->scale = v;
    } else if (strcmp(key, "steps") == 0) {
        double tmp[DP_SCHEDULE_STEPS_MAX];
        s->n_steps = ref_parse_doubles(val, tmp, DP_SCHEDULE_STEPS_MAX);
        for (int i = 0; i < s->n_steps; i++) {
            s->steps[i] = (long)tmp[i];
        }
    } else if (strcmp(key, "scales") == 0) {
        cr_assert_eq(ref_parse_doubles(val, s->scales, DP_SCHEDULE_STEPS_MAX), s->n_steps);
    } else if (strcmp(key, "gamma") == 0) {
        s->gamma = v;
    } else if (strcmp(key, "power") == 0) {
        s->power = v;
    } else if (strcmp(key, "max_steps") == 0) {
        s->max_steps = (long)v;
    } else if (strcmp(key, "min_lr") == 0) {
        s->min_lr = v;
    } else if (strcmp(key, "pct_start") == 0) {
        s->pct_start = v;
    } else if (strcmp(key, "div_factor") == 0) {
        s->div_factor = v;
    } else if (strcmp(key, "final_div_factor") == 0) {
        s->final_div_factor = v;
    } else if (strcmp(key, "warmup_steps") == 0) {
        s->warmup_steps = (long)v;
    } else {
        cr_assert_fail("unknown key '%s' in schedule_ref.txt", key);
    }
}

// Checks one "sched NAME k=v ..." line against the "lr ..." line after it; returns the worst
// relative error.
static double check_torch_case(char *sched_line, const char *lr_line)
{
    char name[64];
    int off = 0;
    cr_assert_eq(sscanf(sched_line, "sched %63s %n", name, &off), 1);
    dp_schedule s = DP_SCHEDULE_INIT;
    s.power = 1.0; // PolynomialLR's default; the cases that use power set it
    for (char *save = NULL, *tok = strtok_r(sched_line + off, " ", &save); tok != NULL;
         tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        cr_assert_not_null(eq);
        *eq = '\0';
        set_field(&s, tok, eq + 1);
    }
    cr_assert_eq(dp_schedule_check(&s), DP_OK, "%s: %s", name, dp_error_message());
    cr_assert_eq(strncmp(lr_line, "lr ", 3), 0);
    double want[MAXSTEPS];
    int n = ref_parse_doubles(lr_line + 3, want, MAXSTEPS);
    cr_assert_gt(n, 0);
    double worst = 0.0;
    for (int k = 0; k < n; k++) {
        double got = dp_schedule_lr(&s, k);
        double err = fabs(got - want[k]) / fmax(fabs(want[k]), 1e-12);
        if (want[k] == 0.0) {
            err = fabs(got);
        }
        cr_expect_leq(err, TOL, "%s step %d: %.9g vs torch %.9g (rel error %.3g)", name, k, got,
                      want[k], err);
        worst = fmax(worst, err);
    }
    fprintf(stderr, "schedule %-20s %3d steps, max rel error %.3g (tolerance %g)\n", name, n, worst,
            TOL);
    return worst;
}

Test(schedule, pytorch_schedulers_match)
{
    char *text = ref_load("tests/data/torch/schedule_ref.txt");
    char *cursor = text, *line, *pending = NULL;
    int cases = 0;
    while ((line = ref_next_line(&cursor)) != NULL) {
        if (strncmp(line, "sched ", 6) == 0) {
            pending = line;
        } else if (strncmp(line, "lr ", 3) == 0) {
            cr_assert_not_null(pending, "lr line without a sched line");
            check_torch_case(pending, line);
            pending = NULL;
            cases++;
        }
    }
    free(text);
    cr_expect_geq(cases, 8, "only %d cases in schedule_ref.txt", cases);
}

// --- Darknet ---

static dp_schedule darknet(dp_schedule_kind kind)
{
    dp_schedule s = DP_SCHEDULE_INIT;
    s.kind = kind;
    s.darknet = 1;
    s.lr = 0.1;
    return s;
}

static void expect_lr(const dp_schedule *s, long step, double want)
{
    cr_assert_eq(dp_schedule_check(s), DP_OK, "%s", dp_error_message());
    double got = dp_schedule_lr(s, step);
    cr_expect(fabs(got - want) <= TOL * fabs(want) + 1e-30, "kind %d step %ld: %.9g, want %.9g",
              (int)s->kind, step, got, want);
}

Test(schedule, darknet_burn_in_counts_from_one)
{
    dp_schedule s = darknet(DP_SCHEDULE_CONSTANT);
    s.burn_in = 4;
    s.power = 4;
    expect_lr(&s, 0, 0.1 * pow(0.25, 4)); // b = 1
    expect_lr(&s, 2, 0.1 * pow(0.75, 4)); // b = 3
    expect_lr(&s, 3, 0.1);                // b = 4: the policy
    s.darknet = 0;
    expect_lr(&s, 0, 0.0); // PyTorch counting: b = 0
}

Test(schedule, darknet_step_exp_poly_sigmoid)
{
    dp_schedule s = darknet(DP_SCHEDULE_STEP);
    s.step_size = 3;
    s.scale = 0.5;
    expect_lr(&s, 1, 0.1);   // b = 2
    expect_lr(&s, 2, 0.05);  // b = 3
    expect_lr(&s, 5, 0.025); // b = 6
    s = darknet(DP_SCHEDULE_EXP);
    s.gamma = 0.5;
    expect_lr(&s, 0, 0.05);
    expect_lr(&s, 2, 0.0125);
    s = darknet(DP_SCHEDULE_POLY);
    s.max_steps = 10;
    s.power = 2;
    expect_lr(&s, 0, 0.1 * 0.81);
    expect_lr(&s, 4, 0.1 * 0.25);
    expect_lr(&s, 9, 0.0);
    expect_lr(&s, 50, 0.0);
    s = darknet(DP_SCHEDULE_SIGMOID);
    s.gamma = 0.5;
    s.step_size = 4;
    expect_lr(&s, 3, 0.05);
    expect_lr(&s, 5, 0.1 / (1.0 + exp(1.0)));
}

Test(schedule, darknet_steps_stops_at_the_first_milestone_above)
{
    dp_schedule s = darknet(DP_SCHEDULE_STEPS);
    s.n_steps = 3;
    s.steps[0] = 10, s.steps[1] = 5, s.steps[2] = 20; // unsorted on purpose
    s.scales[0] = 0.1, s.scales[1] = 0.5, s.scales[2] = 0.1;
    expect_lr(&s, 3, 0.1);
    expect_lr(&s, 8, 0.1);     // b = 9: steps[0] = 10 > 9 returns before steps[1] = 5
    expect_lr(&s, 9, 0.005);   // b = 10: 0.1 * 0.1 * 0.5
    expect_lr(&s, 19, 0.0005); // b = 20: all three
    s.darknet = 0;             // PyTorch: every milestone <= b counts
    expect_lr(&s, 8, 0.05);
    expect_lr(&s, 10, 0.005);
}

// --- PyTorch-side details beyond the reference ---

Test(schedule, past_the_end_and_negative_steps)
{
    dp_schedule s = DP_SCHEDULE_INIT;
    s.lr = 0.1;
    s.kind = DP_SCHEDULE_COSINE;
    s.max_steps = 10;
    s.min_lr = 0.002;
    expect_lr(&s, 10, 0.002);
    expect_lr(&s, 1000, 0.002);
    expect_lr(&s, -5, 0.1);
    s.kind = DP_SCHEDULE_ONE_CYCLE;
    s.max_steps = 20;
    expect_lr(&s, 19, 0.1 / 25 / 1e4);
    expect_lr(&s, 500, 0.1 / 25 / 1e4);
}

Test(schedule, warmup_multiplies_the_running_policy)
{
    dp_schedule s = DP_SCHEDULE_INIT;
    s.kind = DP_SCHEDULE_COSINE;
    s.lr = 0.1;
    s.max_steps = 100;
    s.warmup_steps = 4;
    const double pi = 3.14159265358979323846;
    expect_lr(&s, 0, 0.1 * 0.25);
    expect_lr(&s, 1, 0.1 * (1 + cos(pi * 1 / 100)) / 2 * 0.5);
    expect_lr(&s, 3, 0.1 * (1 + cos(pi * 3 / 100)) / 2);
    expect_lr(&s, 4, 0.1 * (1 + cos(pi * 4 / 100)) / 2);
}

Test(schedule, linear_scaling_rule_scales_lr_not_min_lr)
{
    dp_schedule s = DP_SCHEDULE_INIT;
    s.kind = DP_SCHEDULE_COSINE;
    s.lr = 0.1;
    s.min_lr = 0.001;
    s.max_steps = 10;
    s.global_batch = 512;
    s.reference_batch = 256;
    expect_lr(&s, 0, 0.2);
    expect_lr(&s, 10, 0.001);
    s.kind = DP_SCHEDULE_ONE_CYCLE;
    expect_lr(&s, 0, 0.2 / 25);
    s.reference_batch = 0;
    expect_lr(&s, 0, 0.1 / 25);
}

static void expect_check_error(const dp_schedule *s, const char *frag)
{
    cr_expect_eq(dp_schedule_check(s), DP_ERR_ARG, "expected an error naming %s", frag);
    cr_expect_not_null(strstr(dp_error_message(), frag), "'%s' not in '%s'", frag,
                       dp_error_message());
}

Test(schedule, check_rejects_inconsistent_schedules)
{
    dp_schedule s = DP_SCHEDULE_INIT;
    s.kind = DP_SCHEDULE_COSINE;
    expect_check_error(&s, "max_steps");
    s.kind = DP_SCHEDULE_ONE_CYCLE;
    s.max_steps = 3; // 0.3 * 3 < 1: no rising phase
    expect_check_error(&s, "max_steps");
    s.max_steps = 100;
    s.pct_start = 1.0;
    expect_check_error(&s, "pct_start");
    s = (dp_schedule)DP_SCHEDULE_INIT;
    s.kind = DP_SCHEDULE_STEP;
    s.step_size = 0;
    expect_check_error(&s, "step_size");
    s = (dp_schedule)DP_SCHEDULE_INIT;
    s.lr = -1;
    expect_check_error(&s, "lr");
    s = (dp_schedule)DP_SCHEDULE_INIT;
    s.n_steps = DP_SCHEDULE_STEPS_MAX + 1;
    expect_check_error(&s, "n_steps");
    s = (dp_schedule)DP_SCHEDULE_INIT;
    s.reference_batch = 256;
    expect_check_error(&s, "global_batch");
}

// --- cfg ---

#define NET "[net]\nheight=28\nwidth=28\nchannels=1\n"

static dp_cfg *parse_cfg(const char *text)
{
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_parse(&cfg, text, strlen(text), "t.cfg"), DP_OK, "%s", dp_error_message());
    return cfg;
}

static dp_schedule from_cfg(const char *text, long spe, long total)
{
    dp_cfg *cfg = parse_cfg(text);
    dp_schedule s;
    cr_assert_eq(dp_schedule_from_cfg(&s, cfg, spe, total), DP_OK, "%s", dp_error_message());
    dp_cfg_destroy(cfg);
    return s;
}

Test(schedule, from_cfg_pytorch_cosine_with_warmup)
{
    dp_schedule s = from_cfg(NET "learning_rate=0.1\npolicy=cosine\n"
                                 "[train]\nschedule=cosine\nwarmup_epochs=1.5\nmin_lr=0.001\n",
                             100, 1200);
    cr_expect(s.kind == DP_SCHEDULE_COSINE && s.darknet == 0);
    cr_expect(s.lr == 0.1 && s.min_lr == 0.001 && s.max_steps == 1200 && s.warmup_steps == 150,
              "lr %g min %g T %ld warmup %ld", s.lr, s.min_lr, s.max_steps, s.warmup_steps);
}

Test(schedule, from_cfg_darknet_resnet50)
{
    dp_schedule s = from_cfg(NET "burn_in=1000\nlearning_rate=0.1\npolicy=poly\npower=4\n"
                                 "max_batches=800000\n",
                             5000, 450000);
    cr_expect(s.kind == DP_SCHEDULE_POLY && s.darknet == 1 && s.burn_in == 1000 &&
              s.max_steps == 800000 && s.power == 4);
    expect_lr(&s, 0, 0.1 * pow(1.0 / 1000, 4));
    expect_lr(&s, 999, 0.1 * pow(1.0 - 1000.0 / 800000, 4));
}

Test(schedule, from_cfg_darknet_steps_and_defaults)
{
    dp_schedule s = from_cfg(NET "learning_rate=0.05\npolicy=steps\nsteps=100,200\n"
                                 "scales=.1,.5\n[train]\nschedule=darknet\n",
                             10, 300);
    cr_expect(s.kind == DP_SCHEDULE_STEPS && s.darknet == 1 && s.n_steps == 2);
    expect_lr(&s, 98, 0.05);
    expect_lr(&s, 99, 0.005);
    expect_lr(&s, 199, 0.0025);
    s = from_cfg(NET, 10, 300);
    cr_expect(s.kind == DP_SCHEDULE_CONSTANT && s.darknet == 1 && s.lr == 0.001,
              "no policy, no [train]: Darknet's constant 0.001");
}

Test(schedule, from_cfg_linear_scaling_rule)
{
    dp_schedule s = from_cfg(NET "batch=512\nlearning_rate=0.1\n"
                                 "[train]\nschedule=constant\nlr_scaling_reference_batch=256\n",
                             10, 100);
    cr_expect(s.global_batch == 512 && s.reference_batch == 256);
    expect_lr(&s, 0, 0.2);
}

static void expect_cfg_error(const char *text, dp_status want, const char *frag1, const char *frag2)
{
    dp_cfg *cfg = parse_cfg(text);
    dp_schedule s;
    cr_expect_eq(dp_schedule_from_cfg(&s, cfg, 10, 100), want, "status %s for:\n%s",
                 dp_status_name(dp_error_status()), text);
    cr_expect_not_null(strstr(dp_error_message(), frag1), "'%s' not in '%s'", frag1,
                       dp_error_message());
    if (frag2 != NULL) {
        cr_expect_not_null(strstr(dp_error_message(), frag2), "'%s' not in '%s'", frag2,
                           dp_error_message());
    }
    dp_cfg_destroy(cfg);
}

Test(schedule, from_cfg_errors_name_file_line_and_key)
{
    expect_cfg_error(NET "policy=steps\nsteps=10,20\n", DP_ERR_CFG, "t.cfg:1: [net] scales",
                     "steps and scales");
    expect_cfg_error(NET "policy=steps\nscales=.1\n", DP_ERR_CFG, "t.cfg:1: [net] steps", NULL);
    expect_cfg_error(NET "policy=steps\nsteps=10,20\nscales=.1\n", DP_ERR_CFG,
                     "t.cfg:7: [net] scales", "1 values for 2 steps");
    expect_cfg_error(NET "policy=random\n", DP_ERR_UNSUPPORTED, "t.cfg:5: [net] policy",
                     "'random'");
    expect_cfg_error(NET "policy=sgdr\n", DP_ERR_UNSUPPORTED, "t.cfg:5: [net] policy", NULL);
    expect_cfg_error(NET "burn_in=100\n[train]\nwarmup_epochs=2\n", DP_ERR_CFG,
                     "t.cfg:7: [train] warmup_epochs", "t.cfg:5");
    expect_cfg_error(NET "learning_rate=abc\n", DP_ERR_CFG, "t.cfg:5: [net] learning_rate", NULL);
    expect_cfg_error(NET "[train]\nschedule=poly\none_cycle_div=0\n", DP_ERR_CFG,
                     "t.cfg:7: [train] one_cycle_div", NULL);
    expect_cfg_error(NET "[train]\nlr_scaling_reference_batch=-2\n", DP_ERR_CFG,
                     "t.cfg:6: [train] lr_scaling_reference_batch", NULL);
    dp_cfg *cfg = parse_cfg(NET);
    dp_schedule s;
    cr_expect_eq(dp_schedule_from_cfg(&s, cfg, 0, 100), DP_ERR_ARG);
    dp_cfg_destroy(cfg);
}
