// The whole fmnist-resnet20 training step on the GPU against the CPU on the same batch and the
// same initial parameters: forward (loss and top-1 of the batch), backward (every parameter
// gradient), one SGD step (Nesterov, weight decay: the cfg's optimizer) and the batch-norm
// running statistics. Then deterministic mode bitwise run to run on the GPU (gradients,
// parameters and loss of two identical steps compared with memcmp).
// Tolerances, as max |gpu - cpu| <= atol + rtol |cpu| per element:
//   fp32 (no TF32): loss rtol 1e-4; gradients atol 1e-4 max|g| + 1e-7, rtol 2e-3 (cuDNN and
//   cuBLAS sum in other orders than the CPU's direct convolutions); parameters after the step
//   atol 1e-6, rtol 1e-5;
//   bf16 (8 bits of mantissa in activations): loss rtol 2e-2; gradients atol 5e-2 max|g|,
//   rtol 0.1; parameters after the step atol 1e-3 lr, rtol 1e-3.
// Exits 77 (SKIP) with the reason when the build has no CUDA or no device is usable; a plain C
// main (no Criterion), run by meson in the cuda suite.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "nn/cuda/cuda_ctx.h"
#include "nn/cuda/step/step_ops.h"
#include "nn/net.h"
#include "nn/net_cuda.h"
#include "nn/optim.h"

enum { EXIT_SKIP = 77, BATCH = 8, CLASSES = 10 };

static int failures;

#define CHECK(ok, ...)                                                                             \
    do {                                                                                           \
        if (!(ok)) {                                                                               \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

// Returns from main's helpers with a failure when a library call fails.
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        dp_status st_ = (expr);                                                                    \
        if (st_ != DP_OK) {                                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #expr,                     \
                    dp_error_message());                                                           \
            failures++;                                                                            \
            return st_;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct tol {
    double loss_rtol, grad_atol_rel, grad_rtol, param_atol, param_rtol;
} tol;

// Largest violation of |a - b| <= atol + rtol |b| over n floats; prints the worst index.
static int compare(const char *what, const float *gpu, const float *cpu, size_t n, double atol,
                   double rtol)
{
    size_t worst = 0;
    double worst_excess = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)gpu[i] - (double)cpu[i]);
        double allowed = atol + rtol * fabs((double)cpu[i]);
        if (!(err <= allowed)) {
            bad = 1;
            if (!(err - allowed <= worst_excess)) {
                worst_excess = err - allowed;
                worst = i;
            }
        }
    }
    if (bad) {
        fprintf(stderr, "FAIL %s: element %zu: gpu %.9g cpu %.9g (atol %g, rtol %g)\n", what, worst,
                gpu[worst], cpu[worst], atol, rtol);
        failures++;
    }
    return bad;
}

static float max_abs(const float *x, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    }
    return m;
}

typedef struct fixture {
    dp_cfg *cfg;
    dp_net *cpu, *gpu_host;
    dp_cuda_ctx *ctx;
    dp_net_cuda *gpu;
    dp_optim *opt;
    dp_cuda_optim *dopt;
    dp_cuda_guard *guard; // device
    float *images;
    int32_t *labels;
} fixture;

static dp_status build_net(dp_net **out, const dp_cfg *cfg)
{
    dp_net_config nc = DP_NET_CONFIG_INIT;
    nc.batch = BATCH;
    TRY(dp_net_create(out, cfg, &nc));
    TRY(dp_net_alloc(*out, 1));
    TRY(dp_net_init_params(*out, 7, "default"));
    return DP_OK;
}

static dp_status setup(fixture *f, dp_cuda_precision precision, int deterministic)
{
    char path[1024];
    const char *root = getenv("DP_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/configs/fmnist-resnet20.cfg", root != NULL ? root : ".");
    TRY(dp_cfg_load(&f->cfg, path));
    TRY(dp_cfg_validate(f->cfg));
    TRY(build_net(&f->cpu, f->cfg));
    TRY(build_net(&f->gpu_host, f->cfg));
    dp_cuda_ctx_params cp = {
        .device = 0, .precision = precision, .deterministic = deterministic, .nhwc = 0};
    TRY(dp_cuda_ctx_create(&f->ctx, &cp));
    TRY(dp_net_cuda_create(&f->gpu, f->gpu_host, f->ctx, 1));
    TRY(dp_net_cuda_upload(f->gpu));
    dp_optim_config oc;
    TRY(dp_optim_config_from_cfg(&oc, f->cfg));
    size_t n = dp_net_param_count(f->cpu);
    TRY(dp_optim_create(&f->opt, &oc, n));
    TRY(dp_cuda_optim_create(&f->dopt, f->ctx, &oc, n));
    void *g = NULL;
    TRY(dp_cuda_malloc(f->ctx, &g, sizeof(dp_cuda_guard)));
    f->guard = g;
    dp_shape in = dp_net_input_shape(f->cpu);
    size_t count = (size_t)BATCH * (size_t)dp_shape_count(&in);
    TRY(dp_cuda_host_alloc((void **)&f->images, count * sizeof(float)));
    TRY(dp_cuda_host_alloc((void **)&f->labels, BATCH * sizeof(int32_t)));
    dp_rng_fill_normal(f->images, count, 0.0f, 1.0f, 11, 1, 2, 3);
    dp_rng r;
    dp_rng_init(&r, 12, 0, 0, 0);
    for (int i = 0; i < BATCH; i++) {
        f->labels[i] = (int32_t)(dp_rng_u32(&r) % CLASSES);
    }
    return DP_OK;
}

static void teardown(fixture *f)
{
    if (f->guard != NULL) {
        dp_cuda_free(f->ctx, f->guard);
    }
    dp_cuda_host_free(f->images);
    dp_cuda_host_free(f->labels);
    dp_cuda_optim_destroy(f->dopt);
    dp_optim_destroy(f->opt);
    dp_net_cuda_destroy(f->gpu);
    dp_cuda_ctx_destroy(f->ctx);
    dp_net_destroy(f->gpu_host);
    dp_net_destroy(f->cpu);
    dp_cfg_destroy(f->cfg);
    memset(f, 0, sizeof *f);
}

static dp_net_run step_run(const fixture *f)
{
    dp_net_run run = DP_NET_RUN_INIT;
    run.train = 1;
    run.step = 0;
    run.seed = 5;
    run.labels = f->labels;
    run.loss_scale = 1.0f / BATCH;
    return run;
}

// One training step on the GPU: forward, backward, the optimizer; the loss stats into *stats.
static dp_status gpu_step(fixture *f, float lr, dp_xent_stats *stats)
{
    dp_net_run run = step_run(f);
    TRY(dp_net_cuda_stage(f->gpu, 0, f->images, f->labels, NULL, NULL, BATCH));
    TRY(dp_net_cuda_forward(f->gpu, 0, &run, 1, 0));
    TRY(dp_net_cuda_backward(f->gpu, 0, &run));
    TRY(dp_net_cuda_release(f->gpu, 0));
    TRY(dp_cuda_guard_reset(f->ctx, f->guard));
    TRY(dp_cuda_optim_step(f->dopt, dp_net_cuda_params(f->gpu), dp_net_cuda_grads(f->gpu),
                           dp_net_cuda_decay_mask(f->gpu), lr, f->guard));
    TRY(dp_net_cuda_params_changed(f->gpu));
    dp_cuda_guard g;
    TRY(dp_cuda_guard_read(f->ctx, &g, f->guard));
    TRY(dp_cuda_guard_check(&g));
    TRY(dp_net_cuda_read_stats(f->gpu, 0, 1, BATCH, stats));
    return DP_OK;
}

// The step on both sides, compared within t.
static dp_status step_matches_cpu(dp_cuda_precision precision, const char *name, tol t)
{
    fixture f = {0};
    dp_status st = setup(&f, precision, 0);
    if (st != DP_OK) {
        teardown(&f);
        return st;
    }
    const float lr = 0.1f;
    size_t n = dp_net_param_count(f.cpu);
    dp_net_run run = step_run(&f);
    TRY(dp_net_forward(f.cpu, f.images, &run));
    TRY(dp_net_backward(f.cpu, &run));
    dp_net_metrics cm;
    TRY(dp_net_metrics_get(f.cpu, &cm));
    dp_xent_stats gs;
    TRY(gpu_step(&f, lr, &gs));
    CHECK(fabs(gs.loss_sum - cm.loss_sum) <= t.loss_rtol * fabs(cm.loss_sum),
          "%s: loss gpu %.9g cpu %.9g", name, gs.loss_sum, cm.loss_sum);
    TRY(dp_net_cuda_download_grads(f.gpu));
    char what[128];
    snprintf(what, sizeof what, "%s: parameter gradients", name);
    float gmax = max_abs(dp_net_grads(f.cpu), n);
    compare(what, dp_net_grads(f.gpu_host), dp_net_grads(f.cpu), n, t.grad_atol_rel * gmax + 1e-7,
            t.grad_rtol);
    TRY(dp_optim_step(f.opt, dp_net_params(f.cpu), dp_net_grads(f.cpu), dp_net_decay_mask(f.cpu),
                      lr));
    TRY(dp_net_cuda_download(f.gpu));
    snprintf(what, sizeof what, "%s: parameters after one SGD step", name);
    compare(what, dp_net_params(f.gpu_host), dp_net_params(f.cpu), n, t.param_atol, t.param_rtol);
    snprintf(what, sizeof what, "%s: batch-norm running statistics", name);
    compare(what, dp_net_buffers(f.gpu_host), dp_net_buffers(f.cpu), dp_net_buffer_count(f.cpu),
            1e-5, 1e-4);
    printf("%s: loss gpu %.7g cpu %.7g; top-1 gpu %lld cpu %ld; max |grad| %.3g\n", name,
           gs.loss_sum, cm.loss_sum, (long long)gs.top1, cm.top1, gmax);
    teardown(&f);
    return DP_OK;
}

// Deterministic mode: two steps from the same state give the same bits.
static dp_status deterministic_bitwise(void)
{
    fixture f = {0};
    dp_status st = setup(&f, DP_CUDA_PREC_FP32, 1);
    if (st != DP_OK) {
        teardown(&f);
        return st;
    }
    size_t n = dp_net_param_count(f.cpu), nb = dp_net_buffer_count(f.cpu);
    float *grads[2], *params[2], *bufs[2];
    dp_xent_stats stats[2];
    for (int k = 0; k < 2; k++) {
        grads[k] = malloc(n * sizeof(float));
        params[k] = malloc(n * sizeof(float));
        bufs[k] = malloc((nb + 1) * sizeof(float));
        if (grads[k] == NULL || params[k] == NULL || bufs[k] == NULL) {
            fprintf(stderr, "FAIL: out of host memory\n");
            return DP_ERR_NOMEM;
        }
        TRY(dp_net_cuda_upload(f.gpu)); // the same starting parameters and statistics
        TRY(dp_cuda_optim_reset(f.dopt));
        TRY(gpu_step(&f, 0.1f, &stats[k]));
        TRY(dp_net_cuda_download_grads(f.gpu));
        memcpy(grads[k], dp_net_grads(f.gpu_host), n * sizeof(float));
        // Download overwrites the host mirror: restore it for the next upload afterwards.
        float *host_params = dp_net_params(f.gpu_host), *host_bufs = dp_net_buffers(f.gpu_host);
        float *keep_p = malloc(n * sizeof(float)), *keep_b = malloc((nb + 1) * sizeof(float));
        if (keep_p == NULL || keep_b == NULL) {
            fprintf(stderr, "FAIL: out of host memory\n");
            return DP_ERR_NOMEM;
        }
        memcpy(keep_p, host_params, n * sizeof(float));
        memcpy(keep_b, host_bufs, nb * sizeof(float));
        TRY(dp_net_cuda_download(f.gpu));
        memcpy(params[k], host_params, n * sizeof(float));
        memcpy(bufs[k], host_bufs, nb * sizeof(float));
        memcpy(host_params, keep_p, n * sizeof(float));
        memcpy(host_bufs, keep_b, nb * sizeof(float));
        free(keep_p);
        free(keep_b);
    }
    CHECK(memcmp(grads[0], grads[1], n * sizeof(float)) == 0, "deterministic: gradients differ "
                                                              "run to run (memcmp)");
    CHECK(memcmp(params[0], params[1], n * sizeof(float)) == 0, "deterministic: parameters "
                                                                "differ run to run (memcmp)");
    CHECK(memcmp(bufs[0], bufs[1], nb * sizeof(float)) == 0, "deterministic: batch-norm "
                                                             "statistics differ run to run");
    CHECK(memcmp(&stats[0].loss_sum, &stats[1].loss_sum, sizeof(double)) == 0,
          "deterministic: loss %.17g then %.17g", stats[0].loss_sum, stats[1].loss_sum);
    for (int k = 0; k < 2; k++) {
        free(grads[k]);
        free(params[k]);
        free(bufs[k]);
    }
    teardown(&f);
    return DP_OK;
}

int main(void)
{
    if (!dp_backend_have_cuda()) {
        printf("SKIP: this build has no CUDA backend (-Dcuda=disabled or no toolkit)\n");
        return EXIT_SKIP;
    }
    dp_cuda_info info;
    if (dp_backend_cuda_query(&info) != DP_OK) {
        printf("SKIP: no CUDA device: %s\n", dp_error_message());
        return EXIT_SKIP;
    }
    dp_log_set_level(DP_LOG_LEVEL_WARN);
    tol fp32 = {.loss_rtol = 1e-4,
                .grad_atol_rel = 1e-4,
                .grad_rtol = 2e-3,
                .param_atol = 1e-6,
                .param_rtol = 1e-5};
    tol bf16 = {.loss_rtol = 2e-2,
                .grad_atol_rel = 5e-2,
                .grad_rtol = 0.1,
                .param_atol = 1e-4,
                .param_rtol = 1e-3};
    (void)step_matches_cpu(DP_CUDA_PREC_FP32, "fp32", fp32);
    if (info.devices[0].cc_major >= 8) {
        (void)step_matches_cpu((dp_cuda_precision)DP_PRECISION_BF16, "bf16", bf16);
    } else {
        printf("bf16: not run, device 0 is cc %d.%d (< 8.0)\n", info.devices[0].cc_major,
               info.devices[0].cc_minor);
    }
    (void)deterministic_bitwise();
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
