// GPU optimizers against src/nn/optim.c: every kind and the options that change its arithmetic,
// 3 steps with fresh gradients and a decay mask, parameters and every state buffer compared.
// Without clipping and max-norm the two do the same float operations in the same order from the
// same host scalars (no fused multiply-adds on either side), so they must agree bit for bit;
// with them the norms are summed in another order (double), so rtol 1e-5. Also: a step the
// guard marks non-finite changes nothing and is taken back; the norm is bitwise repeatable.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/cuda/step/step_ops.h"
#include "nn/optim.h"
#include "step_test.h"

enum { NPARAM = 10007, STEPS = 3 };

typedef struct opt_case {
    const char *name;
    dp_optim_config cfg;
    int exact; // bitwise expected
} opt_case;

static dp_optim_config cfg_of(dp_optim_kind kind)
{
    dp_optim_config c = DP_OPTIM_CONFIG_INIT;
    c.kind = kind;
    return c;
}

static int make_cases(opt_case *cs)
{
    int n = 0;
    dp_optim_config c = cfg_of(DP_OPTIM_SGD);
    cs[n++] = (opt_case){"sgd", c, 1};
    c.momentum = 0.9, c.dampening = 0.1, c.weight_decay = 1e-2;
    cs[n++] = (opt_case){"sgd momentum dampening l2", c, 1};
    c = cfg_of(DP_OPTIM_SGD);
    c.momentum = 0.9, c.nesterov = 1, c.weight_decay = 5e-2,
    c.decay_mode = DP_OPTIM_DECAY_DECOUPLED;
    cs[n++] = (opt_case){"sgd nesterov decoupled", c, 1};
    c = cfg_of(DP_OPTIM_SGD);
    c.momentum = 0.9, c.clip_global_norm = 1.0, c.max_norm = 0.5;
    cs[n++] = (opt_case){"sgd clip max_norm", c, 0};
    c = cfg_of(DP_OPTIM_ADAM);
    cs[n++] = (opt_case){"adam", c, 1};
    c.amsgrad = 1, c.weight_decay = 1e-2;
    cs[n++] = (opt_case){"adam amsgrad l2", c, 1};
    c = cfg_of(DP_OPTIM_ADAMW);
    cs[n++] = (opt_case){"adamw", c, 1};
    c.clip_global_norm = 0.5;
    cs[n++] = (opt_case){"adamw clip", c, 0};
    c = cfg_of(DP_OPTIM_NADAM);
    c.weight_decay = 1e-3;
    cs[n++] = (opt_case){"nadam l2", c, 1};
    c = cfg_of(DP_OPTIM_RMSPROP);
    cs[n++] = (opt_case){"rmsprop", c, 1};
    c.momentum = 0.9, c.centered = 1, c.weight_decay = 1e-2;
    cs[n++] = (opt_case){"rmsprop centered momentum l2", c, 1};
    c = cfg_of(DP_OPTIM_RMSPROP);
    c.centered = 1;
    cs[n++] = (opt_case){"rmsprop centered", c, 1};
    c = cfg_of(DP_OPTIM_ADAGRAD);
    c.lr_decay = 0.1, c.initial_accumulator_value = 0.1, c.weight_decay = 1e-2;
    cs[n++] = (opt_case){"adagrad lr_decay init l2", c, 1};
    c = cfg_of(DP_OPTIM_ADADELTA);
    c.weight_decay = 1e-2, c.decay_mode = DP_OPTIM_DECAY_DECOUPLED;
    cs[n++] = (opt_case){"adadelta decoupled", c, 1};
    return n;
}

// Parameters and state of both optimizers after the same steps: bitwise or within rtol 1e-5.
static void compare_all(dp_cuda_ctx *ctx, const opt_case *oc, dp_optim *cpu, dp_cuda_optim *gpu,
                        const float *p_cpu, const float *d_p, int step)
{
    float *buf = st_alloc(NPARAM * sizeof(float));
    char what[160];
    st_dev_to(ctx, buf, d_p, NPARAM * sizeof(float));
    snprintf(what, sizeof what, "%s: params after step %d", oc->name, step);
    if (oc->exact) {
        st_bitwise(what, buf, p_cpu, NPARAM);
    } else {
        st_close(what, buf, p_cpu, NPARAM, 1e-7, 1e-5);
    }
    st_check(dp_optim_state_count(cpu) == dp_cuda_optim_state_count(gpu),
             "%s: %d state buffers, want %d", oc->name, dp_cuda_optim_state_count(gpu),
             dp_optim_state_count(cpu));
    for (int i = 0; i < dp_optim_state_count(cpu) && i < dp_cuda_optim_state_count(gpu); i++) {
        const char *nc, *ng;
        float *sc, *sg;
        size_t n_c, n_g;
        st_ok(dp_optim_state_at(cpu, i, &nc, &sc, &n_c), "cpu state");
        st_ok(dp_cuda_optim_state_at(gpu, i, &ng, &sg, &n_g), "gpu state");
        st_check(strcmp(nc, ng) == 0 && n_c == n_g, "%s: state %d is %s (%zu), want %s (%zu)",
                 oc->name, i, ng, n_g, nc, n_c);
        if (n_c != n_g) {
            continue;
        }
        st_dev_to(ctx, buf, sg, n_g * sizeof(float));
        snprintf(what, sizeof what, "%s: state %s after step %d", oc->name, nc, step);
        if (oc->exact) {
            st_bitwise(what, buf, sc, n_c);
        } else {
            st_close(what, buf, sc, n_c, 1e-9, 1e-5);
        }
    }
    st_check(dp_optim_step_count(cpu) == dp_cuda_optim_step_count(gpu), "%s: step count", oc->name);
    free(buf);
}

static void check_case(dp_cuda_ctx *ctx, const opt_case *oc)
{
    const size_t bytes = NPARAM * sizeof(float);
    float *p = st_alloc(bytes), *g = st_alloc(bytes);
    uint8_t *mask = st_alloc(NPARAM);
    st_fill_normal(p, NPARAM, 0.0f, 1.0f, 1);
    for (size_t i = 0; i < NPARAM; i++) {
        mask[i] = (i % 5) != 2;
    }
    dp_optim *cpu = NULL;
    dp_cuda_optim *gpu = NULL;
    st_ok(dp_optim_create(&cpu, &oc->cfg, NPARAM), "dp_optim_create");
    st_ok(dp_cuda_optim_create(&gpu, ctx, &oc->cfg, NPARAM), "dp_cuda_optim_create");
    if (cpu == NULL || gpu == NULL) {
        dp_optim_destroy(cpu);
        dp_cuda_optim_destroy(gpu);
        free(p), free(g), free(mask);
        return;
    }
    const dp_optim_rows rows[2] = {{0, 50, 100}, {6000, 10, 400}};
    if (oc->cfg.max_norm > 0) {
        st_ok(dp_optim_set_max_norm_rows(cpu, rows, 2), "cpu max-norm rows");
        st_ok(dp_cuda_optim_set_max_norm_rows(gpu, rows, 2), "gpu max-norm rows");
    }
    float *d_p = st_dev_from(ctx, p, bytes), *d_g = st_dev_from(ctx, NULL, bytes);
    uint8_t *d_mask = st_dev_from(ctx, mask, NPARAM);
    dp_cuda_guard *d_guard = st_dev_from(ctx, NULL, sizeof(dp_cuda_guard));
    const float lr0 = (float)dp_optim_config_get(cpu)->lr;
    for (int step = 1; step <= STEPS; step++) {
        st_fill_normal(g, NPARAM, 0.01f, 0.1f, 100u + (uint64_t)step);
        const float lr = lr0 * (1.0f - 0.25f * (float)(step - 1));
        st_ok(dp_optim_step(cpu, p, g, mask, lr), "dp_optim_step");
        st_dev_set(ctx, d_g, g, bytes);
        st_ok(dp_cuda_guard_reset(ctx, d_guard), "guard reset");
        st_ok(dp_cuda_optim_step(gpu, d_p, d_g, d_mask, lr, d_guard), "dp_cuda_optim_step");
        dp_cuda_guard hg;
        st_ok(dp_cuda_guard_read(ctx, &hg, d_guard), "guard read");
        st_ok(dp_cuda_guard_check(&hg), "guard check");
        if (oc->cfg.clip_global_norm > 0) {
            const double want = dp_optim_last_grad_norm(cpu);
            st_check(fabs(hg.norm - want) <= 1e-12 * want, "%s: norm %.17g, want %.17g", oc->name,
                     hg.norm, want);
        }
        compare_all(ctx, oc, cpu, gpu, p, d_p, step);
    }
    st_dev_free(ctx, d_p), st_dev_free(ctx, d_g), st_dev_free(ctx, d_mask);
    st_dev_free(ctx, d_guard);
    dp_optim_destroy(cpu);
    dp_cuda_optim_destroy(gpu);
    free(p), free(g), free(mask);
}

// A NaN gradient marks the guard: the step changes nothing on the device and is taken back;
// the next step then equals the CPU's first.
static void check_skip(dp_cuda_ctx *ctx)
{
    const size_t bytes = NPARAM * sizeof(float);
    dp_optim_config c = cfg_of(DP_OPTIM_NADAM);
    float *p = st_alloc(bytes), *g = st_alloc(bytes), *got = st_alloc(bytes);
    st_fill_normal(p, NPARAM, 0.0f, 1.0f, 3);
    st_fill_normal(g, NPARAM, 0.0f, 0.1f, 4);
    dp_optim *cpu = NULL;
    dp_cuda_optim *gpu = NULL;
    st_ok(dp_optim_create(&cpu, &c, NPARAM), "dp_optim_create");
    st_ok(dp_cuda_optim_create(&gpu, ctx, &c, NPARAM), "dp_cuda_optim_create");
    if (cpu == NULL || gpu == NULL) {
        dp_optim_destroy(cpu);
        dp_cuda_optim_destroy(gpu);
        free(p), free(g), free(got);
        return;
    }
    float *d_p = st_dev_from(ctx, p, bytes), *d_g = st_dev_from(ctx, g, bytes);
    dp_cuda_guard *d_guard = st_dev_from(ctx, NULL, sizeof(dp_cuda_guard));
    const float nan_at_17 = NAN;
    st_ok(dp_cuda_guard_reset(ctx, d_guard), "guard reset");
    st_dev_set(ctx, d_g + 17, &nan_at_17, sizeof(float));
    st_ok(dp_cuda_check_finite(ctx, d_guard, d_g, NPARAM, 1000), "check finite");
    st_ok(dp_cuda_optim_step(gpu, d_p, d_g, NULL, 0.01f, d_guard), "skipped step");
    dp_cuda_guard hg;
    st_ok(dp_cuda_guard_read(ctx, &hg, d_guard), "guard read");
    st_check(dp_cuda_guard_skips(&hg) && hg.first_bad == 1017 && hg.last_bad == 1017 &&
                 hg.n_bad == 1,
             "guard after a NaN at 17 (base 1000): n_bad %llu, [%llu, %llu]",
             (unsigned long long)hg.n_bad, (unsigned long long)hg.first_bad,
             (unsigned long long)hg.last_bad);
    st_check(dp_cuda_guard_check(&hg) == DP_ERR_DATA, "guard check of a skipped step");
    st_dev_to(ctx, got, d_p, bytes);
    st_bitwise("params after a skipped step", got, p, NPARAM);
    st_ok(dp_cuda_optim_unstep(gpu), "unstep");
    st_check(dp_cuda_optim_step_count(gpu) == 0, "step count after unstep");
    st_check(dp_cuda_optim_unstep(gpu) == DP_ERR_ARG, "a second unstep must be refused");
    st_dev_set(ctx, d_g, g, bytes);
    st_ok(dp_cuda_guard_reset(ctx, d_guard), "guard reset");
    st_ok(dp_cuda_optim_step(gpu, d_p, d_g, NULL, 0.01f, d_guard), "good step");
    st_ok(dp_optim_step(cpu, p, g, NULL, 0.01f), "cpu step");
    opt_case oc = {"nadam after a skipped step", c, 1};
    compare_all(ctx, &oc, cpu, gpu, p, d_p, 1);
    st_dev_free(ctx, d_p), st_dev_free(ctx, d_g), st_dev_free(ctx, d_guard);
    dp_optim_destroy(cpu);
    dp_cuda_optim_destroy(gpu);
    free(p), free(g), free(got);
}

// The CPU's validation and messages; clipping needs a guard.
static void check_args(dp_cuda_ctx *ctx)
{
    dp_cuda_optim *gpu = NULL;
    dp_optim_config c = cfg_of(DP_OPTIM_ADAM);
    c.beta1 = 1.0;
    dp_status st = dp_cuda_optim_create(&gpu, ctx, &c, 10);
    st_check(st == DP_ERR_ARG && strstr(dp_error_message(), "beta1") != NULL && gpu == NULL,
             "beta1 = 1: %s '%s'", dp_status_name(st), dp_error_message());
    c = cfg_of(DP_OPTIM_SGD);
    c.clip_global_norm = 1.0;
    st_ok(dp_cuda_optim_create(&gpu, ctx, &c, 10), "create with clipping");
    float *d = st_dev_from(ctx, NULL, 10 * sizeof(float));
    st_check(dp_cuda_optim_step(gpu, d, d, NULL, 0.1f, NULL) == DP_ERR_ARG,
             "clipping without a guard must be refused");
    st_check(dp_cuda_optim_step(gpu, d, d, NULL, NAN, NULL) == DP_ERR_ARG,
             "a NaN learning rate must be refused");
    st_dev_free(ctx, d);
    dp_cuda_optim_destroy(gpu);
}

int main(void)
{
    dp_cuda_ctx *ctx = st_ctx_or_skip();
    opt_case cases[32];
    const int n = make_cases(cases);
    for (int i = 0; i < n; i++) {
        check_case(ctx, &cases[i]);
    }
    check_skip(ctx);
    check_args(ctx);
    return st_finish(ctx, "test_cuda_step_optim");
}
