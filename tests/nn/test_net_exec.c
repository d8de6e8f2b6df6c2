// The network run end to end on the CPU: gradients of the whole net against central finite
// differences of its loss (so the wiring of inputs, accumulation into shared producers and the
// flat buffers is checked, not only each kernel), gradient accumulation over micro-batches,
// evaluation mode, and errors from the loss layer.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "nn/cpu/blas.h"
#include "nn/net.h"

typedef struct fixture {
    dp_cfg *cfg;
    dp_net *net;
    float *input;
    int32_t labels[32];
    int n;
} fixture;

// A small net that uses every wired layer kind: conv + batch norm + leaky, max pool, a second
// conv read by both the next layer and a route (so its gradient is accumulated), route,
// batchnorm and activation layers, global average pool, connected, softmax.
static const char *small_net = "[net]\nbatch=4\nheight=6\nwidth=6\nchannels=2\n"
                               "[convolutional]\nfilters=3\nsize=3\npad=1\nbatch_normalize=1\n"
                               "activation=leaky\n"
                               "[maxpool]\nsize=2\nstride=2\n"
                               "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=swish\n"
                               "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n"
                               "[route]\nlayers=-1,-2\n"
                               "[batchnorm]\n"
                               "[activation]\nactivation=tanh\n"
                               "[avgpool]\n"
                               "[connected]\noutput=5\nactivation=linear\n"
                               "[softmax]\n";

// Shortcuts (same shape, and a strided one from a larger map with fewer channels), dropout and a
// random crop with flips: all keyed by the step, so repeated forwards are identical.
static const char *residual_net = "[net]\nbatch=3\nheight=8\nwidth=8\nchannels=2\n"
                                  "[crop]\ncrop_height=6\ncrop_width=6\nflip=1\n"
                                  "[convolutional]\nfilters=3\nsize=3\npad=1\n"
                                  "activation=linear\n"
                                  "[convolutional]\nfilters=3\nsize=3\npad=1\n"
                                  "activation=leaky\n"
                                  "[shortcut]\nfrom=-2\nactivation=logistic\n"
                                  "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\n"
                                  "activation=linear\n"
                                  "[shortcut]\nfrom=-2\nalpha=0.5\nbeta=2\n"
                                  "[dropout]\nprobability=0.3\n"
                                  "[connected]\noutput=4\nactivation=linear\n"
                                  "[softmax]\n";

// ResNet blocks as fmnist-resnet20 has them: conv + batch norm + relu, conv + batch norm +
// linear, shortcut + relu; a strided block with a 1x1 projection (route back, conv, shortcut).
// Exercises the fused batch-norm paths and both convolution kernels (direct for stride 1).
static const char *resnet_net = "[net]\nbatch=5\nheight=9\nwidth=9\nchannels=3\n"
                                "[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\n"
                                "activation=relu\n"
                                "[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\n"
                                "activation=relu\n"
                                "[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\n"
                                "activation=linear\n"
                                "[shortcut]\nfrom=-3\nactivation=relu\n"
                                "[convolutional]\nfilters=12\nsize=3\nstride=2\npad=1\n"
                                "batch_normalize=1\nactivation=relu\n"
                                "[convolutional]\nfilters=12\nsize=3\npad=1\nbatch_normalize=1\n"
                                "activation=linear\n"
                                "[route]\nlayers=-3\n"
                                "[convolutional]\nfilters=12\nsize=1\nstride=2\n"
                                "batch_normalize=1\nactivation=linear\n"
                                "[shortcut]\nfrom=-3\nactivation=relu\n"
                                "[avgpool]\n"
                                "[connected]\noutput=4\nactivation=linear\n"
                                "[softmax]\n";

static void build(fixture *f, const char *text)
{
    memset(f, 0, sizeof *f);
    dp_log_set_level(DP_LOG_LEVEL_ERROR);
    cr_assert_eq(dp_cfg_parse(&f->cfg, text, strlen(text), "t.cfg"), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_cfg_validate(f->cfg), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_net_create(&f->net, f->cfg, NULL), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_net_alloc(f->net, 1), DP_OK, "%s", dp_error_message());
    f->n = dp_net_batch(f->net);
    dp_shape in = dp_net_input_shape(f->net);
    size_t count = (size_t)f->n * (size_t)dp_shape_count(&in);
    f->input = malloc(count * sizeof *f->input);
    cr_assert_not_null(f->input);
    dp_rng_fill_normal(f->input, count, 0, 1, 11, 0, 0, 0);
    dp_rng_fill_uniform(dp_net_params(f->net), dp_net_param_count(f->net), -0.5f, 0.5f, 12, 0, 0,
                        0);
    dp_shape out = dp_net_output_shape(f->net);
    for (int i = 0; i < f->n; i++) {
        f->labels[i] = (i * 3) % (int)out.dims[0];
    }
}

static void destroy(fixture *f)
{
    free(f->input);
    dp_net_destroy(f->net);
    dp_cfg_destroy(f->cfg);
}

static double loss_of(fixture *f, dp_net_run *run)
{
    cr_assert_eq(dp_net_forward(f->net, f->input, run), DP_OK, "%s", dp_error_message());
    dp_net_metrics m;
    cr_assert_eq(dp_net_metrics_get(f->net, &m), DP_OK);
    return m.loss_sum * run->loss_scale;
}

// Whole-net gradients against central differences of half-width step. outliers: how many
// parameters may exceed the tolerance (a relu kink within the step of an activation makes a
// single difference wrong; a wrong kernel spoils whole layers).
static void check_gradients_outliers(const char *text, int mixed, float step, size_t outliers)
{
    fixture f;
    build(&f, text);
    dp_net_run run = DP_NET_RUN_INIT;
    run.train = 1;
    run.labels = f.labels;
    int32_t labels_b[8];
    float lambda[8];
    if (mixed) {
        for (int i = 0; i < f.n; i++) {
            labels_b[i] = (f.labels[i] + 1 + i) % (int)dp_net_output_shape(f.net).dims[0];
            lambda[i] = 0.2f + 0.15f * (float)i;
        }
        run.labels_b = labels_b;
        run.mix_lambda = lambda;
    }
    run.loss_scale = 1.0f / (float)f.n;
    run.seed = 5;
    run.step = 3;
    loss_of(&f, &run);
    cr_assert_eq(dp_net_backward(f.net, &run), DP_OK, "%s", dp_error_message());
    size_t n = dp_net_param_count(f.net);
    float *grad = malloc(n * sizeof *grad);
    cr_assert_not_null(grad);
    memcpy(grad, dp_net_grads(f.net), n * sizeof *grad);
    float *p = dp_net_params(f.net);
    double worst = 0;
    size_t worst_i = 0, over = 0;
    for (size_t i = 0; i < n; i++) {
        const float eps = step;
        float keep = p[i];
        p[i] = keep + eps;
        double up = loss_of(&f, &run);
        p[i] = keep - eps;
        double down = loss_of(&f, &run);
        p[i] = keep;
        double fd = (up - down) / (2.0 * eps);
        double err = fabs(fd - grad[i]) / (1e-2 + fabs(fd));
        if (err >= 3e-2) {
            over++;
            continue;
        }
        if (err > worst) {
            worst = err;
            worst_i = i;
        }
    }
    cr_expect_leq(over, outliers, "%zu of %zu parameters with relative error >= 3e-2", over, n);
    cr_expect_lt(worst, 3e-2, "max relative error %g at parameter %zu (of %zu)", worst, worst_i, n);
    free(grad);
    destroy(&f);
}

static void check_gradients_mixed(const char *text, int mixed)
{
    check_gradients_outliers(text, mixed, 2e-3f, 0);
}

static void check_gradients(const char *text)
{
    check_gradients_mixed(text, 0);
}

Test(net_exec, mixed_targets_gradients_match_finite_differences)
{
    check_gradients_mixed(small_net, 1);
}

Test(net_exec, whole_net_gradients_match_finite_differences)
{
    check_gradients(small_net);
}

Test(net_exec, residual_dropout_crop_gradients_match_finite_differences)
{
    check_gradients(residual_net);
}

Test(net_exec, resnet_blocks_gradients_match_finite_differences_on_3_threads, .timeout = 120)
{
    dp_blas_set_threads(3);
    // 8 of the 3796 differences cross a relu kink (the same 8 as before the kernels were fused
    // and threaded, with the same analytic gradients to 1e-7)
    check_gradients_outliers(resnet_net, 0, 5e-4f, 12);
}

typedef struct run_result {
    double loss, eval_loss;
    float *grads, *buffers, *eval_out;
} run_result;

// One training step (forward + backward) and one evaluation forward of text with `threads`
// CPU threads; batch overrides [net] batch when > 0.
static run_result run_once(const char *text, int threads, int batch)
{
    dp_blas_set_threads(threads);
    fixture f;
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s", text);
    if (batch > 0) {
        char *b = strstr(cfg, "batch=");
        cr_assert_not_null(b);
        char tail[4096];
        snprintf(tail, sizeof tail, "%s", strchr(b, '\n'));
        snprintf(b, sizeof cfg - (size_t)(b - cfg), "batch=%d%s", batch, tail);
    }
    build(&f, cfg);
    dp_net_run run = DP_NET_RUN_INIT;
    run.train = 1;
    run.labels = f.labels;
    run.loss_scale = 1.0f / (float)f.n;
    run.seed = 9;
    run_result r;
    r.loss = loss_of(&f, &run);
    cr_assert_eq(dp_net_backward(f.net, &run), DP_OK, "%s", dp_error_message());
    size_t n = dp_net_param_count(f.net), nb = dp_net_buffer_count(f.net);
    r.grads = malloc(n * sizeof(float));
    r.buffers = malloc(nb * sizeof(float));
    dp_shape out = dp_net_output_shape(f.net);
    size_t nout = (size_t)f.n * (size_t)dp_shape_count(&out);
    r.eval_out = malloc(nout * sizeof(float));
    cr_assert(r.grads && r.buffers && r.eval_out);
    memcpy(r.grads, dp_net_grads(f.net), n * sizeof(float));
    memcpy(r.buffers, dp_net_buffers(f.net), nb * sizeof(float));
    run.train = 0;
    r.eval_loss = loss_of(&f, &run);
    const dp_layer *last = dp_net_layer(f.net, dp_net_layer_count(f.net) - 1);
    memcpy(r.eval_out, last->y, nout * sizeof(float));
    destroy(&f);
    return r;
}

// Bitwise (memcmp): the thread count changes how work is split, never a result.
static void expect_same_for_threads(const char *name, const char *text, int batch)
{
    run_result one = run_once(text, 1, batch);
    for (int threads = 2; threads <= 3; threads++) {
        run_result r = run_once(text, threads, batch);
        fixture f;
        build(&f, text);
        size_t n = dp_net_param_count(f.net), nb = dp_net_buffer_count(f.net);
        dp_shape out = dp_net_output_shape(f.net);
        int batch_n = batch > 0 ? batch : f.n;
        size_t nout = (size_t)batch_n * (size_t)dp_shape_count(&out);
        destroy(&f);
        cr_expect(memcmp(&r.loss, &one.loss, sizeof r.loss) == 0, "%s: loss, %d threads", name,
                  threads);
        cr_expect(memcmp(r.grads, one.grads, n * sizeof(float)) == 0, "%s: grads, %d threads", name,
                  threads);
        cr_expect(memcmp(r.buffers, one.buffers, nb * sizeof(float)) == 0,
                  "%s: running statistics, %d threads", name, threads);
        cr_expect(memcmp(&r.eval_loss, &one.eval_loss, sizeof r.eval_loss) == 0 &&
                      memcmp(r.eval_out, one.eval_out, nout * sizeof(float)) == 0,
                  "%s: evaluation, %d threads", name, threads);
        free(r.grads);
        free(r.buffers);
        free(r.eval_out);
    }
    free(one.grads);
    free(one.buffers);
    free(one.eval_out);
}

Test(net_exec, results_are_bitwise_the_same_for_1_2_and_3_threads, .timeout = 120)
{
    expect_same_for_threads("small", small_net, 0);
    expect_same_for_threads("residual", residual_net, 0);
    expect_same_for_threads("resnet", resnet_net, 0);
    expect_same_for_threads("resnet batch 29", resnet_net, 29);
}

Test(net_exec, accumulate_adds_micro_batch_gradients)
{
    fixture f;
    build(&f, small_net);
    dp_net_run run = DP_NET_RUN_INIT;
    run.train = 1;
    run.labels = f.labels;
    run.loss_scale = 0.25f;
    size_t n = dp_net_param_count(f.net);
    float *once = malloc(n * sizeof *once);
    cr_assert_not_null(once);
    loss_of(&f, &run);
    cr_assert_eq(dp_net_backward(f.net, &run), DP_OK);
    memcpy(once, dp_net_grads(f.net), n * sizeof *once);
    run.accumulate = 1;
    loss_of(&f, &run);
    cr_assert_eq(dp_net_backward(f.net, &run), DP_OK);
    const float *twice = dp_net_grads(f.net);
    for (size_t i = 0; i < n; i++) {
        cr_assert_float_eq(twice[i], 2.0f * once[i], 1e-5f + 1e-5f * fabsf(once[i]),
                           "parameter %zu: %g vs 2 x %g", i, twice[i], once[i]);
    }
    free(once);
    destroy(&f);
}

Test(net_exec, eval_mode_uses_running_statistics_and_counts_top1)
{
    fixture f;
    build(&f, small_net);
    dp_net_run run = DP_NET_RUN_INIT;
    run.labels = f.labels;
    run.loss_scale = 1.0f;
    double first = loss_of(&f, &run);
    double again = loss_of(&f, &run);
    cr_expect_eq(first, again, "evaluation is a pure function of the inputs");
    dp_net_metrics m;
    cr_assert_eq(dp_net_metrics_get(f.net, &m), DP_OK);
    cr_expect_eq(m.n, 4);
    cr_expect(m.top1 >= 0 && m.top1 <= m.top5 && m.top5 <= 4);
    run.train = 1;
    double train = loss_of(&f, &run);
    cr_expect_neq(train, first, "training uses batch statistics");
    destroy(&f);
}

Test(net_exec, label_out_of_range_names_the_layer_and_sample)
{
    fixture f;
    build(&f, small_net);
    f.labels[2] = 7;
    dp_net_run run = DP_NET_RUN_INIT;
    run.labels = f.labels;
    cr_expect_eq(dp_net_forward(f.net, f.input, &run), DP_ERR_DATA);
    cr_expect_not_null(strstr(dp_error_message(), "[layer 9 softmax]"), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_message(), "7"), "%s", dp_error_message());
    destroy(&f);
}

Test(net_exec, init_params_is_a_function_of_the_seed)
{
    fixture f;
    build(&f, small_net);
    size_t n = dp_net_param_count(f.net);
    float *first = malloc(n * sizeof *first);
    cr_assert_not_null(first);
    cr_assert_eq(dp_net_init_params(f.net, 42, "default"), DP_OK, "%s", dp_error_message());
    memcpy(first, dp_net_params(f.net), n * sizeof *first);
    cr_assert_eq(dp_net_init_params(f.net, 42, "default"), DP_OK);
    cr_expect_eq(memcmp(first, dp_net_params(f.net), n * sizeof *first), 0,
                 "bitwise: same seed, same weights");
    cr_assert_eq(dp_net_init_params(f.net, 43, "default"), DP_OK);
    cr_expect_neq(memcmp(first, dp_net_params(f.net), n * sizeof *first), 0);
    // Batch-norm scales start at 1, shifts at 0, running variance at 1 (layer 0: conv + BN).
    const dp_layer *conv = dp_net_layer(f.net, 0);
    cr_expect_str_eq(conv->params[1].spec.name, "scales");
    cr_expect_eq(conv->params[1].data[0], 1.0f);
    cr_expect_eq(conv->params[2].data[2], 0.0f);
    cr_expect_eq(conv->buffers[1].data[1], 1.0f);
    cr_expect_eq(dp_net_init_params(f.net, 1, "glorot"), DP_ERR_CFG);
    cr_expect_not_null(strstr(dp_error_message(), "init=glorot"), "%s", dp_error_message());
    free(first);
    destroy(&f);
}
