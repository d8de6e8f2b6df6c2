// fmnist-resnet20 against PyTorch: the same weights and input (exported by
// tests/data/torch/make_resnet20_ref.py from ../shared/bench/nets.py) must give the same logits,
// loss, parameter gradients, batch-norm running statistics and, after one SGD step (Nesterov,
// momentum 0.9, weight decay 5e-4 on all parameters), the same parameters.
// Tolerances: float32 with different summation orders; errors are relative to the largest
// magnitude of each tensor: logits 1e-4, gradients 2e-3, running statistics 1e-4, parameters
// after the step 1e-5.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"
#include "nn/net.h"
#include "nn/optim.h"

enum { MAX_ENTRIES = 400 };

typedef struct entry {
    char kind[32], name[96];
    long offset, count;
} entry;

static entry entries[MAX_ENTRIES];
static int n_entries;
static unsigned char *blob;

static void load_reference(void)
{
    const char *root = getenv("DP_SOURCE_ROOT");
    cr_assert_not_null(root, "DP_SOURCE_ROOT is not set (run through meson test)");
    char path[1024], line[512];
    snprintf(path, sizeof path, "%s/tests/data/torch/resnet20_ref.txt", root);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    n_entries = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        entry e;
        char dtype[8], shape[64];
        if (line[0] == '#' ||
            sscanf(line, "%31s %95s %7s %63s %ld %ld", e.kind, e.name, dtype, shape, &e.offset,
                   &e.count) != 6) {
            continue;
        }
        cr_assert_lt(n_entries, MAX_ENTRIES);
        entries[n_entries++] = e;
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/tests/data/torch/resnet20_ref.bin", root);
    f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    blob = malloc((size_t)size);
    cr_assert_not_null(blob);
    cr_assert_eq(fread(blob, 1, (size_t)size, f), (size_t)size);
    fclose(f);
}

// The i-th entry of a kind (0-based), as floats.
static const float *ref(const char *kind, int i, long *count)
{
    for (int k = 0; k < n_entries; k++) {
        if (strcmp(entries[k].kind, kind) == 0 && i-- == 0) {
            *count = entries[k].count;
            return (const float *)(blob + entries[k].offset);
        }
    }
    cr_assert_fail("no entry %d of kind %s", i, kind);
    return NULL;
}

static double max_abs(const float *x, long n)
{
    double m = 0;
    for (long i = 0; i < n; i++) {
        m = fmax(m, fabs(x[i]));
    }
    return m;
}

// Max |a - b| over the largest |b|, reported with its index.
static void expect_close(const float *got, const float *want, long n, double tol,
                         const char *what)
{
    double scale = fmax(max_abs(want, n), 1e-12), worst = 0;
    long at = 0;
    for (long i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / scale;
        if (e > worst) {
            worst = e;
            at = i;
        }
    }
    cr_expect_leq(worst, tol, "%s: relative error %g at %ld (got %g, want %g)", what, worst, at,
                  got[at], want[at]);
}

Test(resnet20_torch, forward_backward_and_sgd_step_match_pytorch)
{
    load_reference();
    dp_log_set_level(DP_LOG_LEVEL_ERROR);
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/fmnist-resnet20.cfg", getenv("DP_SOURCE_ROOT"));
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_load(&cfg, path), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    dp_net_config nc = DP_NET_CONFIG_INIT;
    nc.batch = 4;
    dp_net *net = NULL;
    cr_assert_eq(dp_net_create(&net, cfg, &nc), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_net_alloc(net, 1), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_net_init_params(net, 0, "default"), DP_OK);

    // Parameters, in layer order, then the batch-norm buffers' fresh state.
    int pi = 0, bi = 0;
    for (int i = 0; i < dp_net_layer_count(net); i++) {
        const dp_layer *l = dp_net_layer(net, i);
        for (int p = 0; p < l->n_params; p++, pi++) {
            long n;
            const float *w = ref("param", pi, &n);
            cr_assert_eq(n, dp_shape_count(&l->params[p].spec.shape), "param %d (layer %d)", pi,
                         i);
            memcpy(l->params[p].data, w, (size_t)n * sizeof(float));
        }
        bi += l->n_buffers / 2;
    }
    cr_assert_eq(pi, 65);
    cr_assert_eq(bi, 21);

    long n;
    const float *x = ref("input", 0, &n);
    const int32_t *y = (const int32_t *)ref("labels", 0, &n);
    dp_net_run run = DP_NET_RUN_INIT;
    run.train = 1;
    run.labels = y;
    run.loss_scale = 0.25f;
    cr_assert_eq(dp_net_forward(net, x, &run), DP_OK, "%s", dp_error_message());
    const dp_layer *fc = dp_net_layer(net, dp_net_layer_count(net) - 2);
    const float *logits = ref("logits", 0, &n);
    expect_close(fc->y, logits, n, 1e-4, "logits");
    dp_net_metrics m;
    cr_assert_eq(dp_net_metrics_get(net, &m), DP_OK);
    const float *loss = ref("loss", 0, &n);
    cr_expect_float_eq(m.loss_sum / 4.0, loss[0], 1e-5, "loss %g vs %g", m.loss_sum / 4.0,
                       loss[0]);

    cr_assert_eq(dp_net_backward(net, &run), DP_OK, "%s", dp_error_message());
    pi = 0;
    bi = 0;
    for (int i = 0; i < dp_net_layer_count(net); i++) {
        const dp_layer *l = dp_net_layer(net, i);
        for (int p = 0; p < l->n_params; p++, pi++) {
            char what[128];
            snprintf(what, sizeof what, "grad of layer %d %s", i, l->params[p].spec.name);
            const float *g = ref("grad", pi, &n);
            expect_close(l->params[p].grad, g, n, 2e-3, what);
        }
        if (l->n_buffers == 2) {
            char what[128];
            snprintf(what, sizeof what, "running mean of layer %d", i);
            const float *mean = ref("bn_mean_after", bi, &n);
            expect_close(l->buffers[0].data, mean, n, 1e-4, what);
            snprintf(what, sizeof what, "running variance of layer %d", i);
            const float *var = ref("bn_var_after", bi, &n);
            expect_close(l->buffers[1].data, var, n, 1e-4, what);
            bi++;
        }
    }

    dp_optim_config oc = DP_OPTIM_CONFIG_INIT;
    oc.kind = DP_OPTIM_SGD;
    oc.momentum = 0.9;
    oc.nesterov = 1;
    oc.weight_decay = 5e-4;
    dp_optim *opt = NULL;
    cr_assert_eq(dp_optim_create(&opt, &oc, dp_net_param_count(net)), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_optim_step(opt, dp_net_params(net), dp_net_grads(net), NULL, 0.1f), DP_OK,
                 "%s", dp_error_message());
    pi = 0;
    for (int i = 0; i < dp_net_layer_count(net); i++) {
        const dp_layer *l = dp_net_layer(net, i);
        for (int p = 0; p < l->n_params; p++, pi++) {
            char what[128];
            snprintf(what, sizeof what, "layer %d %s after SGD", i, l->params[p].spec.name);
            const float *want = ref("param_sgd", pi, &n);
            expect_close(l->params[p].data, want, n, 1e-5, what);
        }
    }
    dp_optim_destroy(opt);
    dp_net_destroy(net);
    dp_cfg_destroy(cfg);
    free(blob);
}
