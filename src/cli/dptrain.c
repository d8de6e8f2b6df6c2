// main() of dptrain: parses the command line and calls the library. Exit status: 0 on
// success, 1 on any error (printed once as "dptrain: error: ..."), 2 on wrong usage.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/mpi_info.h"
#include "core/backend.h"
#include "core/cfg.h"
#include "core/cfg_schema.h"
#include "core/error.h"
#include "dp_config.h"
#include "io/h5_info.h"
#include "nn/cpu/blas.h"
#include "nn/net.h"
#include "train/trainer.h"

enum { EXIT_USAGE = 2, MAX_SETS = 256 };

typedef struct options {
    const char *cfg_path;
    int check;
    const char *out_dir;
    long bench_steps;
    const char *resume;
    const char *eval_only;
    const char *sets[MAX_SETS];
    int n_sets;
} options;

static const char usage_line[] =
    "usage: dptrain [--check] CFG [--set section.key=value ...] [--out DIR] [--resume CKPT]\n"
    "               [--eval-only CKPT] [--bench N]\n"
    "       dptrain --help | --version\n";

static void print_help(void)
{
    printf("%s", usage_line);
    printf("\n"
           "Trains the network described by the Darknet-style cfg file CFG, on one process or,\n"
           "under mpirun/srun, data-parallel over all ranks.\n"
           "\n"
           "options:\n"
           "  --check CFG              parse and validate CFG, print what it describes, and exit\n"
           "  --set section.key=value  override (or add) a key of the first section of that\n"
           "                           name; repeatable, e.g. --set net.learning_rate=0.05\n"
           "  --out DIR                output directory (default runs/<cfg name>-<UTC time>)\n"
           "  --resume CKPT            continue the run saved in checkpoint CKPT (same cfg);\n"
           "                           with the same threads the result is bitwise the same as\n"
           "                           an uninterrupted run\n"
           "  --eval-only CKPT         evaluate checkpoint CKPT on the test set\n"
           "  --bench N                time N training steps (after 5 untimed) and N\n"
           "                           evaluation batches on synthetic data of the cfg's input\n"
           "                           shape; prints RESULT train_img_per_s= and eval_img_per_s=\n"
           "  --version                version and build features (CUDA devices, NCCL, MPI,\n"
           "                           OpenBLAS core and threads, HDF5)\n"
           "  -h, --help               this text\n"
           "\n"
           "signals: SIGINT, SIGTERM or SIGUSR1 finish the current step, write a checkpoint and\n"
           "exit 0 (a second SIGINT exits at once; checkpoints are written atomically)\n"
           "\n"
           "environment:\n"
           "  DP_LOG_LEVEL             error | warn | info | debug (default info)\n"
           "\n"
           "The last line of a run is\n"
           "  final: epochs=E steps=S test_top1=T test_loss=L train_img_per_s=R wall_s=W "
           "params_sha256=H\n"
           "\n"
           "exit status: 0 success, 1 error, 2 wrong usage\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "dptrain: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage_line);
    return EXIT_USAGE;
}

static int fail(void)
{
    fprintf(stderr, "dptrain: error: %s\n", dp_error_message());
    return 1;
}

static void print_version(void)
{
    char buf[512];
    printf("dptrain %s\n", DP_VERSION);
    dp_cuda_info cuda;
    if (!dp_backend_have_cuda()) {
        printf("  cuda:     no (built without CUDA)\n");
    } else if (dp_backend_cuda_query(&cuda) != DP_OK) {
        printf("  cuda:     yes (runtime %d.%d); no device usable: %s\n",
               cuda.runtime_version / 1000, cuda.runtime_version % 1000 / 10, dp_error_message());
    } else {
        printf("  cuda:     yes (runtime %d.%d, driver %d.%d), %d device%s\n",
               cuda.runtime_version / 1000, cuda.runtime_version % 1000 / 10,
               cuda.driver_version / 1000, cuda.driver_version % 1000 / 10, cuda.device_count,
               cuda.device_count == 1 ? "" : "s");
        for (int i = 0; i < cuda.device_count && i < DP_MAX_CUDA_DEVICES; i++) {
            const dp_cuda_device_info *d = &cuda.devices[i];
            printf("            device %d: %s, compute capability %d.%d, %.1f GiB, %d SMs\n",
                   d->ordinal, d->name, d->cc_major, d->cc_minor,
                   (double)d->total_mem_bytes / (1024.0 * 1024.0 * 1024.0), d->multiprocessors);
        }
    }
    int nccl = 0;
    if (dp_backend_nccl_version(&nccl) == DP_OK) {
        printf("  nccl:     %d.%d.%d\n", nccl / 10000, nccl / 100 % 100, nccl % 100);
    } else {
        printf("  nccl:     no\n");
    }
    dp_comm_mpi_library_version(buf, sizeof buf);
    printf("  mpi:      %s\n", buf);
    printf("  openblas: core %s, %d thread%s\n", dp_blas_corename(), dp_blas_threads(),
           dp_blas_threads() == 1 ? "" : "s");
    dp_io_h5_version(buf, sizeof buf);
    printf("  hdf5:     %s\n", buf);
    dp_error_clear();
}

// Prints the sections that are not layers ([net], [data], [train]) with their keys; the layer
// table follows from dp_net_print_summary.
static void print_settings(const dp_cfg *cfg)
{
    printf("cfg %s\n", dp_cfg_path(cfg));
    for (int i = 0; i < dp_cfg_section_count(cfg); i++) {
        const dp_cfg_section *s = dp_cfg_section_at(cfg, i);
        const dp_cfg_section_spec *spec = dp_cfg_schema_section(dp_cfg_section_name(s));
        if (spec != NULL && (spec->flags & DP_CFG_SECTION_LAYER)) {
            continue;
        }
        char name[64];
        snprintf(name, sizeof name, "[%s]", dp_cfg_section_name(s));
        printf("%-8s", name);
        for (int k = 0; k < dp_cfg_section_key_count(s); k++) {
            const char *value;
            const char *key = dp_cfg_section_key_at(s, k, &value, NULL);
            printf(" %s=%s", key, value);
        }
        printf("\n");
    }
}

static int run_check(const options *opt)
{
    dp_cfg *cfg = NULL;
    if (dp_cfg_load(&cfg, opt->cfg_path) != DP_OK) {
        return fail();
    }
    for (int i = 0; i < opt->n_sets; i++) {
        if (dp_cfg_set(cfg, opt->sets[i]) != DP_OK) {
            dp_cfg_destroy(cfg);
            return fail();
        }
    }
    if (dp_cfg_validate(cfg) != DP_OK) {
        dp_cfg_destroy(cfg);
        return fail();
    }
    dp_net *net = NULL;
    if (dp_net_create(&net, cfg, NULL) != DP_OK) {
        dp_cfg_destroy(cfg);
        return fail();
    }
    print_settings(cfg);
    dp_status st = dp_net_print_summary(net, stdout);
    dp_net_destroy(net);
    dp_cfg_destroy(cfg);
    return st == DP_OK ? 0 : fail();
}

// Returns -1 when parsing succeeded, else the exit status to return (0 for --help/--version).
static int parse_args(options *opt, int argc, char **argv)
{
    memset(opt, 0, sizeof *opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_help();
            return 0;
        } else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            print_version();
            return 0;
        } else if (strcmp(a, "--check") == 0) {
            opt->check = 1;
        } else if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (v == NULL) {
                return usage_error("option --set needs section.key=value%s", "");
            }
            if (opt->n_sets == MAX_SETS) {
                return usage_error("too many --set options (at most 256)%s", "");
            }
            opt->sets[opt->n_sets++] = v;
        } else if (strcmp(a, "--out") == 0) {
            if (i + 1 >= argc) {
                return usage_error("option --out needs a directory%s", "");
            }
            opt->out_dir = argv[++i];
        } else if (strcmp(a, "--resume") == 0 || strcmp(a, "--eval-only") == 0) {
            if (i + 1 >= argc) {
                return usage_error("option %s needs a checkpoint file", a);
            }
            if (a[2] == 'r') {
                opt->resume = argv[++i];
            } else {
                opt->eval_only = argv[++i];
            }
        } else if (strcmp(a, "--bench") == 0) {
            char *end = NULL;
            opt->bench_steps = i + 1 < argc ? strtol(argv[++i], &end, 10) : 0;
            if (end == NULL || *end != '\0' || opt->bench_steps < 1) {
                return usage_error("option --bench needs a step count >= 1%s", "");
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option '%s'", a);
        } else if (opt->cfg_path == NULL) {
            opt->cfg_path = a;
        } else {
            return usage_error("unexpected argument '%s' (one CFG only)", a);
        }
    }
    if (opt->cfg_path == NULL) {
        return usage_error("missing CFG%s", "");
    }
    return -1;
}

// --- training output ---

typedef struct progress_ctx {
    int tty; // stdout is a terminal: the step line updates in place
} progress_ctx;

static void print_progress(const dp_train_progress *p, void *vctx)
{
    progress_ctx *ctx = vctx;
    switch (p->event) {
    case DP_TRAIN_EVENT_START:
        printf("%s\n", p->message);
        break;
    case DP_TRAIN_EVENT_STEP:
        printf("%sepoch %ld/%ld step %ld/%ld loss %.4f top1 %.4f lr %.5g %.1f img/s data wait "
               "%.1f%% eta %.0fs%s",
               ctx->tty ? "\r\033[K" : "", p->epoch, p->epochs, p->step_in_epoch,
               p->steps_per_epoch, p->train_loss, p->train_top1, p->lr, p->img_per_s,
               100.0 * p->data_wait_frac, p->eta_s, ctx->tty ? "" : "\n");
        break;
    case DP_TRAIN_EVENT_EPOCH:
        printf("%sepoch %ld/%ld done: step %ld loss %.4f top1 %.4f lr %.5g %.1f img/s", 
               ctx->tty ? "\r\033[K" : "", p->epoch, p->epochs, p->step, p->train_loss,
               p->train_top1, p->lr, p->img_per_s);
        if (p->evaluated) {
            printf(" | test loss %.4f top1 %.4f top5 %.4f", p->test_loss, p->test_top1,
                   p->test_top5);
        }
        printf(" | %.0fs elapsed\n", p->elapsed_s);
        break;
    }
    fflush(stdout);
}

static volatile sig_atomic_t stop_flag;

// First SIGINT/SIGTERM/SIGUSR1: stop after this step with a checkpoint. Second SIGINT: now.
static void on_signal(int sig)
{
    if (stop_flag && sig == SIGINT) {
        _exit(130);
    }
    stop_flag = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

static int run_train(const options *opt)
{
    dp_cfg *cfg = NULL;
    if (dp_cfg_load(&cfg, opt->cfg_path) != DP_OK) {
        return fail();
    }
    for (int i = 0; i < opt->n_sets; i++) {
        if (dp_cfg_set(cfg, opt->sets[i]) != DP_OK) {
            dp_cfg_destroy(cfg);
            return fail();
        }
    }
    if (dp_cfg_validate(cfg) != DP_OK) {
        dp_cfg_destroy(cfg);
        return fail();
    }
    // In-place progress on a terminal only: under mpirun or srun stdout may be a pseudo-terminal
    // of the launcher's even when the job's output goes to a file, so ranks print plain lines.
    int launched = dp_comm_backend_detect() != DP_COMM_BACKEND_NONE;
    progress_ctx ctx = {isatty(STDOUT_FILENO) && !launched};
    dp_train_options to = DP_TRAIN_OPTIONS_INIT;
    to.out_dir = opt->out_dir;
    to.bench_steps = opt->bench_steps;
    to.resume = opt->resume;
    to.eval_only = opt->eval_only;
    to.stop = &stop_flag;
    install_signals();
    to.progress = print_progress;
    to.progress_ctx = &ctx;
    dp_train_result res;
    dp_status st = dp_train_run(cfg, &to, &res);
    dp_cfg_destroy(cfg);
    if (st != DP_OK) {
        int rc = fail();
        if (res.checkpoint[0] != '\0') {
            fprintf(stderr, "dptrain: the last good checkpoint is %s\n", res.checkpoint);
        }
        return rc;
    }
    if (res.rank != 0) {
        return 0; // rank 0 speaks for the job
    }
    if (res.stopped) {
        printf("%s at step %ld; %s%s\n", res.stop_reason, res.steps,
               res.checkpoint[0] ? "checkpoint: " : "no checkpoint written",
               res.checkpoint);
    } else if (res.out_dir[0] != '\0') {
        printf("outputs in %s%s%s\n", res.out_dir, res.checkpoint[0] ? "; last checkpoint: " : "",
               res.checkpoint);
    }
    if (opt->bench_steps > 0) {
        printf("RESULT train_img_per_s=%.1f\n", res.bench_train_img_per_s);
        printf("RESULT eval_img_per_s=%.1f\n", res.bench_eval_img_per_s);
    }
    printf("final: epochs=%ld steps=%ld test_top1=%.4f test_loss=%.4f train_img_per_s=%.1f "
           "wall_s=%.1f params_sha256=%s\n",
           res.epochs, res.steps, res.test_top1, res.test_loss, res.train_img_per_s, res.wall_s,
           res.params_sha256);
    return 0;
}

int main(int argc, char **argv)
{
    options opt;
    int rc = parse_args(&opt, argc, argv);
    if (rc >= 0) {
        return rc;
    }
    if (opt.check) {
        return run_check(&opt);
    }
    return run_train(&opt);
}
