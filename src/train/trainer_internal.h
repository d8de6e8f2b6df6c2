// The trainer's state, shared by trainer.c (set-up, step loop, evaluation, --bench) and the
// files that add to it (checkpoints, output).
#ifndef DP_TRAIN_TRAINER_INTERNAL_H
#define DP_TRAIN_TRAINER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/metrics.h"
#include "io/tensorboard.h"
#include "io/pipeline.h"
#include "nn/net.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "train/trainer.h"

typedef struct trainer {
    const dp_cfg *cfg;
    dp_train_options opt;

    // settings
    long global_batch;  // [net] batch: samples per optimizer step over all ranks
    int subdivisions;   // micro-batches per step
    int micro;          // samples per micro-batch (the network's batch)
    long max_batches;   // [net] max_batches (0: none)
    long epochs;
    uint64_t seed;
    long log_every, eval_every;
    double label_smoothing;
    int decay_norm; // [train] weight_decay_norm: decay biases and norm parameters too
    const char *init;
    int threads, workers, prefetch, crop_pad, flip, synthetic, cutout;
    float mixup, cutmix, mix_prob;

    // parts
    dp_net *net;
    size_t in_count; // floats per sample of the input
    int classes;
    dp_optim *optim;
    dp_schedule schedule;
    const char *train_path, *test_path;
    dp_dataset *train_ds, *test_ds;
    dp_pipeline_synthetic syn_train, syn_test;
    dp_pipeline *train_pipe;

    // outputs
    char out_dir[1024];
    dp_metrics *metrics;
    dp_tb *tb;
    long checkpoint_every; // steps; 0: at the end of every epoch
    int keep_checkpoints;
    int monitor_loss;      // early stopping / best on test_loss (else test_top1)
    long patience;         // epochs without improvement before stopping; 0: off
    double min_delta;
    double best;           // best monitored value so far (NaN: none)
    long bad_epochs;
    char last_ckpt[1100];
    dp_sampler_state resume_state;
    int resumed;

    // progress
    long step, steps_per_epoch, total_steps;
    double run_start_s;
    double win_start_s, win_wait_s, win_loss, win_correct;
    long win_samples, win_steps;
    double wait_total_s;
    long samples_total;
} trainer;

// trainer_io.c: output directory, metrics.jsonl, TensorBoard, checkpoints.
dp_status dp__train_read_output_settings(trainer *t);
dp_status dp__train_open_outputs(trainer *t);
void dp__train_close_outputs(trainer *t);
dp_status dp__train_log(trainer *t, const dp_train_progress *p);
// Writes ckpt-step<N>.h5 (and ckpt-best.h5 when best), keeps the newest keep_checkpoints.
dp_status dp__train_save_checkpoint(trainer *t, int best);
// Loads parameters, buffers, optimizer state, step and sampler state from path into the built
// network and optimizer.
dp_status dp__train_load_checkpoint(trainer *t, const char *path, int with_optimizer);

#endif
