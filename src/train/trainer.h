// The trainer: the step loop that ties the network, the data pipeline, the optimizer and LR
// schedule, evaluation, metrics and checkpoints together. It prints nothing itself: progress
// goes to a callback and the result to a struct, so the CLI decides what a terminal, a pipe or a
// SLURM log gets.
#ifndef DP_TRAIN_TRAINER_H
#define DP_TRAIN_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "core/cfg.h"
#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef enum dp_train_event {
    DP_TRAIN_EVENT_START = 0, // the run's settings are known (net, data, threads)
    DP_TRAIN_EVENT_STEP,      // every log_every steps
    DP_TRAIN_EVENT_EPOCH,     // an epoch ended (evaluation included when it ran)
} dp_train_event;

typedef struct dp_train_progress {
    dp_train_event event;
    long step, total_steps;   // optimizer steps done, and planned
    long epoch, epochs;       // epoch (from 1) and planned
    long step_in_epoch, steps_per_epoch;
    double lr;
    double train_loss;        // mean over the steps since the last report
    double train_top1;        // fraction
    double img_per_s;         // training images per second since the last report
    double data_wait_frac;    // fraction of that time spent waiting for data
    double elapsed_s, eta_s;
    int evaluated;            // EPOCH: 1 if the test set was evaluated
    double test_loss, test_top1, test_top5;
    const char *message;      // START: a summary line (threads, data, params)
} dp_train_progress;

typedef void (*dp_train_progress_fn)(const dp_train_progress *p, void *ctx);

typedef struct dp_train_options {
    const char *out_dir;   // NULL: runs/<cfg name>-<UTC time>
    long bench_steps;      // > 0: --bench N (synthetic data, no output directory)
    const char *resume;    // checkpoint to continue from, or NULL
    const char *eval_only; // checkpoint to evaluate (no training), or NULL
    // Set to non-zero (from a signal handler) to stop after the current step with a checkpoint.
    volatile sig_atomic_t *stop;
    dp_train_progress_fn progress;
    void *progress_ctx;
} dp_train_options;

#define DP_TRAIN_OPTIONS_INIT                                                                      \
    {.out_dir = NULL, .bench_steps = 0, .resume = NULL, .eval_only = NULL, .stop = NULL,           \
     .progress = NULL, .progress_ctx = NULL}

typedef struct dp_train_result {
    long epochs, steps;
    double test_top1, test_loss; // last evaluation (NaN if none ran)
    double train_img_per_s;      // over the whole run, waits included
    double wall_s;               // from the first step to the end
    char params_sha256[65];      // of the flat parameter buffer, hex
    // --bench only
    double bench_train_img_per_s, bench_eval_img_per_s;
    char out_dir[1024];
    int stopped;               // 1: stopped early (signal, or early stopping)
    char stop_reason[128];
    char checkpoint[1100];     // the last checkpoint written ("" if none)
    int rank, world;           // this process in the job (0 and 1 outside MPI)
} dp_train_result;

// Trains the network of a validated cfg. Returns the first error of any part (data, layers,
// optimizer, a non-finite loss naming the step, ...); *res is filled as far as the run got.
DP_MUST_CHECK dp_status dp_train_run(const dp_cfg *cfg, const dp_train_options *opt,
                                     dp_train_result *res);

// Hex SHA-256 of n floats as they lie in memory (little-endian on the machines dptrain runs on).
void dp_train_sha256_hex(char out[65], const float *data, size_t n);

DP_EXTERN_C_END

#endif
