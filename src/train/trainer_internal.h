// The trainer's state, shared by trainer.c (set-up, step loop, evaluation, --bench) and the
// files that add to it (checkpoints, output).
#ifndef DP_TRAIN_TRAINER_INTERNAL_H
#define DP_TRAIN_TRAINER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "core/backend.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/metrics.h"
#include "io/tensorboard.h"
#include "io/pipeline.h"
#include "nn/net.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "train/trainer.h"

enum { DP_TRAIN_MAX_BUCKETS = 60 };

typedef struct dp__train_cuda dp__train_cuda; // trainer_cuda.c

typedef struct trainer {
    const dp_cfg *cfg;
    dp_train_options opt;

    // settings
    long global_batch; // [net] batch: samples per optimizer step over all ranks
    int subdivisions;  // micro-batches per step
    int micro;         // samples per micro-batch (the network's batch)
    long max_batches;  // [net] max_batches (0: none)
    long epochs;
    uint64_t seed;
    long log_every, eval_every;
    double label_smoothing;
    int decay_norm; // [train] weight_decay_norm: decay biases and norm parameters too
    const char *init;
    int threads, workers, prefetch, crop_pad, flip, synthetic, cutout;
    dp_backend_choice backend;     // [train] backend= and precision= resolved on this machine
    dp_backend_kind backend_asked; // what the cfg asked for (auto may fall back to the CPU)
    dp__train_cuda *cuda;          // the device side when backend is cuda, else NULL
    float mixup, cutmix, mix_prob;

    // data parallelism (trainer_dist.c)
    dp_comm *comm;
    int rank, world;
    int deterministic;
    size_t bucket_floats;  // all-reduce bucket size
    size_t bucket_started; // gradient prefix whose all-reduce has started
    dp_comm_request *requests[DP_TRAIN_MAX_BUCKETS];
    int n_requests;
    float **parts; // deterministic: [subdivisions] micro-batch gradients
    int n_parts;
    float *bn_saved; // deterministic: batch-norm buffers at the start of the step
    float *bn_parts; // deterministic: [subdivisions][n_buffers] their per-micro-batch updates
    int loss_layer;
    long replica_check_every; // steps between replica checksums (0: start-up only)
    int stop_now; // every rank agreed to stop after this step (a signal reached one of them)

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
    int monitor_loss; // early stopping / best on test_loss (else test_top1)
    long patience;    // epochs without improvement before stopping; 0: off
    double min_delta;
    double best; // best monitored value so far (NaN: none)
    long bad_epochs;
    char last_ckpt[1100];
    dp_sampler_state resume_state;
    int resumed;

    // progress
    long step, steps_per_epoch, total_steps;
    double run_start_s;
    double win_start_s, win_wait_s, win_loss, win_correct;
    long win_samples, win_steps;
    // the current epoch's training part (the epoch line reports these, not the last window)
    double ep_start_s, ep_train_s, ep_wait_s, ep_loss, ep_correct;
    long ep_samples;
    double wait_total_s;
    long samples_total;
} trainer;

// trainer_dist.c: communicator, start-up checks, gradient and batch-norm synchronization.
dp_status dp__train_dist_start(trainer *t);
void dp__train_dist_stop(trainer *t);
dp_status dp__train_dist_sync_start(trainer *t, const char *cfg_text);
dp_status dp__train_dist_alloc_parts(trainer *t);
void dp__train_dist_step_begin(trainer *t);
void dp__train_dist_micro_end(trainer *t, int k);
dp_status dp__train_dist_backward(trainer *t, const dp_net_run *run, int last_micro);
dp_status dp__train_dist_finish_step(trainer *t);
dp_status dp__train_dist_sync_buffers(trainer *t);
dp_status dp__train_dist_sum(trainer *t, double *values, size_t n);

// trainer.c: names the first layer (in backward order) whose host gradients are not finite.
dp_status dp__train_non_finite_error(trainer *t, const char *what);

// trainer_cuda.c (trainer_nocuda.c without CUDA, where each returns DP_ERR_UNSUPPORTED): the
// device side of the run. start after the network and optimizer are built (the host network
// stays the description and the mirror); upload after initialization, broadcast or a load;
// download before checkpoints and checksums; buffers moves the batch-norm statistics alone
// (to_device 0: device -> host). flush reads the loss stats and step guards kept on the
// device since the last call into the report windows (collective with several ranks) and
// turns a skipped step into an error naming the layer.
dp_status dp__train_cuda_start(trainer *t);
void dp__train_cuda_stop(trainer *t);
dp_status dp__train_cuda_upload(trainer *t);
dp_status dp__train_cuda_download(trainer *t);
dp_status dp__train_cuda_buffers(trainer *t, int to_device);
dp_status dp__train_cuda_step(trainer *t, const dp_pipeline_batch *b);
dp_status dp__train_cuda_flush(trainer *t);
dp_status dp__train_cuda_sync(trainer *t);
// Forward of n samples (labels may be NULL); with read, their metrics into *out (blocking).
dp_status dp__train_cuda_eval_batch(trainer *t, const float *images, const int32_t *labels, int n,
                                    int read, dp_net_metrics *out);
// Pinned host memory for the pipeline's batch buffers (its allocator hook).
void *dp__train_cuda_host_alloc(size_t bytes, void *ctx);
void dp__train_cuda_host_free(void *ptr, void *ctx);

// trainer_io.c: output directory, metrics.jsonl, TensorBoard, checkpoints.
dp_status dp__train_read_output_settings(trainer *t);
dp_status dp__train_open_outputs(trainer *t);
void dp__train_close_outputs(trainer *t);
dp_status dp__train_log(trainer *t, const dp_train_progress *p);
// Writes ckpt-step<N>.h5 (and ckpt-best.h5 when best), keeps the newest keep_checkpoints.
dp_status dp__train_save_checkpoint(trainer *t, int best);
// The resolved cfg (--set applied) as text, malloc'd.
dp_status dp__train_cfg_text(const trainer *t, char **out);
// Loads parameters, buffers, optimizer state, step and sampler state from path into the built
// network and optimizer.
dp_status dp__train_load_checkpoint(trainer *t, const char *path, int with_optimizer);

#endif
