// The trainer on the GPU (backend=cuda) end to end on a small synthetic set, against itself and
// the CPU:
//   - gradients summed with NCCL (comm=nccl, one rank: the bucketed all-reduces overlapping
//     backward, the stream waits, the watchdog) give bitwise the parameters of the host path
//     (comm=mpi): a one-rank sum changes no bit, so any difference is an ordering bug (a bucket
//     read before backward wrote it, an update before the sums);
//   - deterministic mode with 4 micro-batches and batch norm (the device's micro-batch tree for
//     gradients and running statistics): bitwise run to run, bitwise the same with comm=nccl
//     and comm=mpi, and the test loss (which reads the running statistics) within 1e-3 of the
//     CPU's deterministic run of the same cfg;
//   - the default mode's test loss within 1e-3 of the CPU's.
// Exits 77 (SKIP) with the reason when the build has no CUDA or no device is usable; a plain C
// main (no Criterion), run by meson in the cuda suite.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"
#include "train/trainer.h"

enum { EXIT_SKIP = 77 };

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

static const char *tiny = "[net]\nbatch=32\nsubdivisions=1\nheight=8\nwidth=8\nchannels=1\n"
                          "learning_rate=0.05\nmomentum=0.9\npolicy=constant\n"
                          "[data]\nsource=synthetic\nsamples=128\ntest_samples=64\n"
                          "[train]\nepochs=3\nlog_every=1000\nseed=5\nthreads=1\n"
                          "precision=fp32\n"
                          "[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\n"
                          "activation=relu\n"
                          "[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\n"
                          "activation=relu\n"
                          "[maxpool]\nsize=2\nstride=2\n"
                          "[connected]\noutput=4\nactivation=linear\n"
                          "[softmax]\n";

// Trains tiny with the assignments sets (NULL-terminated) in a fresh output directory.
static int run(const char *const *sets, dp_train_result *res, const char *what)
{
    dp_cfg *cfg = NULL;
    dp_status st = dp_cfg_parse(&cfg, tiny, strlen(tiny), "tiny.cfg");
    for (int i = 0; st == DP_OK && sets[i] != NULL; i++) {
        st = dp_cfg_set(cfg, sets[i]);
    }
    if (st == DP_OK) {
        st = dp_cfg_validate(cfg);
    }
    char dir[] = "/tmp/dptrain_cuda_test_XXXXXX";
    if (st == DP_OK && mkdtemp(dir) == NULL) {
        st = dp_error_set(DP_ERR_IO, "mkdtemp failed");
    }
    if (st == DP_OK) {
        dp_train_options opt = DP_TRAIN_OPTIONS_INIT;
        opt.out_dir = dir;
        st = dp_train_run(cfg, &opt, res);
    }
    dp_cfg_destroy(cfg);
    if (st != DP_OK) {
        fprintf(stderr, "FAIL %s: %s\n", what, dp_error_message());
        failures++;
        return 0;
    }
    printf("%-28s test_loss=%.6f test_top1=%.4f sha256=%.16s...\n", what, res->test_loss,
           res->test_top1, res->params_sha256);
    return 1;
}

static void close_loss(const dp_train_result *gpu, const dp_train_result *cpu, const char *what)
{
    double d = fabs(gpu->test_loss - cpu->test_loss);
    CHECK(isfinite(gpu->test_loss) && d <= 1e-3 * (1.0 + fabs(cpu->test_loss)),
          "%s: test loss GPU %.6f, CPU %.6f", what, gpu->test_loss, cpu->test_loss);
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
    dp_train_result cpu, mpi, nccl, det_cpu, det_a, det_b, det_nccl;
    const char *s_cpu[] = {"train.backend=cpu", "train.precision=auto", NULL};
    const char *s_mpi[] = {"train.backend=cuda", "train.comm=mpi", NULL};
    const char *s_nccl[] = {"train.backend=cuda", "train.comm=nccl", "train.bucket_mb=0.004",
                            NULL};
    const char *d_cpu[] = {"train.backend=cpu", "train.precision=auto", "train.deterministic=1",
                           "train.micro_batch=8", NULL};
    const char *d_gpu[] = {"train.backend=cuda", "train.comm=mpi", "train.deterministic=1",
                           "train.micro_batch=8", NULL};
    const char *d_nccl[] = {"train.backend=cuda", "train.comm=nccl", "train.deterministic=1",
                            "train.micro_batch=8", NULL};
    int ok_cpu = run(s_cpu, &cpu, "cpu");
    int ok_mpi = run(s_mpi, &mpi, "cuda comm=mpi");
    int ok_nccl = run(s_nccl, &nccl, "cuda comm=nccl (buckets)");
    if (ok_mpi && ok_nccl) {
        CHECK(strcmp(mpi.params_sha256, nccl.params_sha256) == 0,
              "comm=nccl on one rank changed the parameters: %s vs %s", nccl.params_sha256,
              mpi.params_sha256);
    }
    if (ok_cpu && ok_mpi) {
        close_loss(&mpi, &cpu, "default mode");
    }
    int ok_dc = run(d_cpu, &det_cpu, "cpu deterministic");
    int ok_da = run(d_gpu, &det_a, "cuda deterministic");
    int ok_db = run(d_gpu, &det_b, "cuda deterministic again");
    int ok_dn = run(d_nccl, &det_nccl, "cuda deterministic nccl");
    if (ok_da && ok_db) {
        CHECK(strcmp(det_a.params_sha256, det_b.params_sha256) == 0,
              "deterministic GPU runs differ: %s vs %s", det_a.params_sha256,
              det_b.params_sha256);
    }
    if (ok_da && ok_dn) {
        CHECK(strcmp(det_a.params_sha256, det_nccl.params_sha256) == 0,
              "deterministic: comm=nccl %s, comm=mpi %s", det_nccl.params_sha256,
              det_a.params_sha256);
    }
    if (ok_da && ok_dc) {
        close_loss(&det_a, &det_cpu, "deterministic, 4 micro-batches");
    }
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
