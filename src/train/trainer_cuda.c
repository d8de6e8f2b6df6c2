// The trainer on one CUDA device per rank (compiled only with CUDA; trainer_nocuda.c
// otherwise): the context on the rank's device, the network's device side (net_cuda.h), the
// optimizer as fused kernels over the flat device buffers, and the step loop's device work:
// micro-batches staged one ahead on the H2D stream, forward and backward enqueued without
// host syncs, the update skipped on the device when a gradient is not finite. The loss stats
// and the step guards stay on the device until the log interval reads them all at once; the
// host waits per step only for the input copies (so the pipeline's buffer can be reused),
// which lets the device run up to about two steps behind the host.
//
// Gradients of several ranks ([train] comm=auto|nccl|mpi):
//   - nccl (auto's choice on several ranks when the build has NCCL): the default mode sums
//     them in buckets as backward writes them: after each layer's backward the finished
//     gradient prefix grows (the flat buffer holds the last layer first); every bucket_mb of it
//     gets an event on the compute stream and an ncclAllReduce on the communication stream that
//     waits for that event, overlapping the rest of backward; the optimizer's stream waits for
//     the last one. No host sync. The deterministic mode runs comm_nccl.h's fixed tree
//     (recursive halving/doubling over send/recv) on the whole buffer after the micro-batch
//     tree: bitwise the MPI path's. comm=nccl on one rank runs the same path (a test of it on a
//     single GPU).
//   - mpi: host staging (device -> host, the CPU path's MPI all-reduce, host -> device) after
//     backward; one device sync per step.
// Deterministic mode combines micro-batch gradients in the CPU's fixed tree with the device add
// kernel, and the batch-norm running statistics as the CPU does (trainer_dist.c): each
// micro-batch's update starts from the step's saved state, the updates are tree-summed, summed
// across ranks in the fixed tree and divided by the number of micro-batches of the global batch.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "comm/comm_nccl.h"
#include "nn/cuda/cuda_ctx.h"
#include "nn/cuda/step/step_ops.h"
#include "nn/net_cuda.h"
#include "train/trainer_internal.h"

enum { MAX_PENDING_STEPS = 1024, MAX_TREE_LEVELS = 16 };
// Event slots of the trainer (net_cuda.c uses the first few): the compute stream's point where a
// gradient bucket (or the batch-norm buffers) is final. One slot is enough: the communication
// stream's wait is enqueued before the slot is recorded again.
enum { EV_GRADS = 64 };

struct dp__train_cuda {
    dp_cuda_ctx *ctx;
    dp_net_cuda *nc;
    dp_cuda_optim *opt;
    dp_precision precision;     // backend.h values, which dp_cuda_precision shares
    dp_cuda_loss_scaler scaler; // fp16 only
    int next_slot;
    // Per step since the last flush: its guard (device) and number, and per micro-batch a stats
    // slot of the network.
    dp_cuda_guard *guards; // [MAX_PENDING_STEPS], device
    long guard_step[MAX_PENDING_STEPS];
    int n_guards;
    int n_stats_cap, n_stats;
    dp_xent_stats *stats_host; // [n_stats_cap]
    // deterministic micro-batch tree (subdivisions > 1)
    float *levels[MAX_TREE_LEVELS]; // device, n_params floats each
    int n_levels;
    // deterministic batch-norm statistics (buffers exist, several micro-batches or ranks)
    int bn_tree;                       // 1: the step combines the buffers (see the top)
    float *bn_saved;                   // device, n_buffers: the state at the start of the step
    float *bn_levels[MAX_TREE_LEVELS]; // device, n_buffers each (subdivisions > 1)
    int n_bn_levels;
    // NCCL (comm=nccl, or auto on several ranks)
    dp_comm_nccl *nccl;
    size_t *prefix; // [layers]: gradient prefix final once layer i has run backward
    size_t bucket_started;
};

static dp_status check_cuda(const trainer *t)
{
    if (t->cuda == NULL) {
        return dp_error_set(DP_ERR_INTERNAL, "the CUDA trainer was not started");
    }
    return DP_OK;
}

// --- set-up ---

static dp_status alloc_levels(dp__train_cuda *tc, float **levels, int n, size_t count,
                              int *n_done)
{
    for (int i = 0; i < n; i++) {
        void *p = NULL;
        DP_TRY(dp_cuda_malloc(tc->ctx, &p, count * sizeof(float)));
        levels[i] = p;
        *n_done = i + 1;
    }
    return DP_OK;
}

static dp_status alloc_tree(trainer *t, dp__train_cuda *tc)
{
    if (!t->deterministic) {
        return DP_OK;
    }
    size_t nb = dp_net_buffer_count(t->net);
    tc->bn_tree = nb > 0 && (t->subdivisions > 1 || t->world > 1);
    if (t->subdivisions == 1) {
        return DP_OK;
    }
    int levels = 1;
    while ((1 << (levels - 1)) < t->subdivisions) {
        levels++;
    }
    if (levels > MAX_TREE_LEVELS) {
        return dp_error_set(DP_ERR_UNSUPPORTED,
                            "%d micro-batches per step: at most %d on the "
                            "GPU in deterministic mode",
                            t->subdivisions, 1 << (MAX_TREE_LEVELS - 1));
    }
    DP_TRY(alloc_levels(tc, tc->levels, levels, dp_net_param_count(t->net), &tc->n_levels));
    if (nb > 0) {
        void *p = NULL;
        DP_TRY(dp_cuda_malloc(tc->ctx, &p, nb * sizeof(float)));
        tc->bn_saved = p;
        DP_TRY(alloc_levels(tc, tc->bn_levels, levels, nb, &tc->n_bn_levels));
    }
    return DP_OK;
}

// [train] comm: NCCL for the gradients when asked, or by default on several ranks when this
// build has it; the host-staged MPI path otherwise.
static dp_status start_comm(trainer *t, dp__train_cuda *tc)
{
    const dp_cfg_section *train = dp_cfg_find(t->cfg, "train");
    const char *comm = "auto";
    if (train != NULL) {
        DP_TRY(dp_cfg_get_str(train, "comm", "auto", &comm));
    }
    int forced = strcmp(comm, "nccl") == 0;
    if (strcmp(comm, "mpi") == 0 || (!forced && t->world == 1)) {
        return DP_OK;
    }
    const char *why = NULL;
    if (!dp_backend_have_nccl()) {
        why = "this dptrain was built without NCCL";
    } else if (t->deterministic && (t->world & (t->world - 1)) != 0) {
        why = "the deterministic NCCL reduction needs a power-of-two number of ranks";
    }
    if (why != NULL) {
        if (forced) {
            // Not UNSUPPORTED: backend=auto would take that as "train on the CPU instead".
            return dp_error_set(DP_ERR_CFG, "%s: [train] comm=nccl: %s (use comm=mpi)",
                                dp_cfg_path(t->cfg), why);
        }
        DP_LOG_INFO("gradients summed over MPI through the host: %s", why);
        return DP_OK;
    }
    DP_TRY(dp_comm_nccl_create(t->comm, t->backend.device, dp_cuda_ctx_comm_stream(tc->ctx),
                               &tc->nccl));
    size_t np = dp_net_param_count(t->net), nb = dp_net_buffer_count(t->net);
    if (t->deterministic) {
        DP_TRY(dp_comm_nccl_reserve(tc->nccl, np > nb ? np : nb));
    }
    int layers = dp_net_layer_count(t->net);
    tc->prefix = calloc((size_t)layers + 1, sizeof *tc->prefix);
    if (tc->prefix == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "out of memory for %d layer offsets", layers);
    }
    for (int i = layers - 1; i >= 0; i--) {
        const dp_layer *l = dp_net_layer(t->net, i);
        size_t end = tc->prefix[i + 1];
        for (int p = 0; p < l->n_params; p++) {
            size_t e = l->params[p].offset + (size_t)dp_shape_count(&l->params[p].spec.shape);
            end = end > e ? end : e;
        }
        tc->prefix[i] = end;
    }
    DP_LOG_INFO("gradients summed with NCCL on the GPU (%s, %d rank%s)",
                t->deterministic ? "deterministic tree" : "buckets overlapping backward", t->world,
                t->world == 1 ? "" : "s");
    return DP_OK;
}

dp_status dp__train_cuda_start(trainer *t)
{
    dp__train_cuda *tc = calloc(1, sizeof *tc);
    if (tc == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "out of memory for the CUDA trainer");
    }
    t->cuda = tc;
    tc->precision = t->backend.precision;
    dp_cuda_loss_scaler scaler = DP_CUDA_LOSS_SCALER_INIT;
    tc->scaler = scaler;
    // bf16/fp16 run channels-last: what cuDNN's tensor-core convolutions want.
    int half = tc->precision == DP_PRECISION_BF16 || tc->precision == DP_PRECISION_FP16;
    dp_cuda_ctx_params cp = {.device = t->backend.device,
                             .precision = (dp_cuda_precision)tc->precision,
                             .deterministic = t->deterministic,
                             .nhwc = half};
    DP_TRY(dp_cuda_ctx_create(&tc->ctx, &cp));
    long per_step = t->subdivisions;
    long cap = (t->log_every > 0 ? t->log_every : 1) * per_step;
    cap = cap < per_step ? per_step : cap > 4096 ? (4096 / per_step) * per_step : cap;
    if (cap < per_step) {
        cap = per_step;
    }
    tc->n_stats_cap = (int)cap;
    tc->stats_host = calloc((size_t)cap, sizeof *tc->stats_host);
    if (tc->stats_host == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "out of memory for %ld loss stats", cap);
    }
    DP_TRY(dp_net_cuda_create(&tc->nc, t->net, tc->ctx, tc->n_stats_cap));
    dp_optim_config oc;
    DP_TRY(dp_optim_config_from_cfg(&oc, t->cfg));
    DP_TRY(dp_cuda_optim_create(&tc->opt, tc->ctx, &oc, dp_net_param_count(t->net)));
    void *g = NULL;
    DP_TRY(dp_cuda_malloc(tc->ctx, &g, MAX_PENDING_STEPS * sizeof(dp_cuda_guard)));
    tc->guards = g;
    DP_TRY(alloc_tree(t, tc));
    DP_TRY(start_comm(t, tc));
    DP_LOG_INFO("GPU: %s, %zu MiB of network memory", t->backend.device_name,
                dp_net_cuda_memory_bytes(tc->nc) >> 20);
    return DP_OK;
}

void dp__train_cuda_stop(trainer *t)
{
    dp__train_cuda *tc = t->cuda;
    if (tc == NULL) {
        return;
    }
    dp_comm_nccl_destroy(tc->nccl); // before the context: its stream is the context's
    free(tc->prefix);
    for (int i = 0; i < tc->n_levels; i++) {
        dp_cuda_free(tc->ctx, tc->levels[i]);
    }
    for (int i = 0; i < tc->n_bn_levels; i++) {
        dp_cuda_free(tc->ctx, tc->bn_levels[i]);
    }
    if (tc->bn_saved != NULL) {
        dp_cuda_free(tc->ctx, tc->bn_saved);
    }
    if (tc->guards != NULL) {
        dp_cuda_free(tc->ctx, tc->guards);
    }
    dp_cuda_optim_destroy(tc->opt);
    dp_net_cuda_destroy(tc->nc);
    dp_cuda_ctx_destroy(tc->ctx);
    free(tc->stats_host);
    free(tc);
    t->cuda = NULL;
}

void *dp__train_cuda_host_alloc(size_t bytes, void *ctx)
{
    (void)ctx;
    void *p = NULL;
    return dp_cuda_host_alloc(&p, bytes) == DP_OK ? p : NULL;
}

void dp__train_cuda_host_free(void *ptr, void *ctx)
{
    (void)ctx;
    dp_cuda_host_free(ptr);
}

// The compute stream waits for the NCCL operations of the step: a host wait on it must run
// the communicator's watchdog (a peer that never comes is an error naming it, not a hang).
static dp_status drain(dp__train_cuda *tc)
{
    if (tc->nccl == NULL) {
        return DP_OK;
    }
    return dp_comm_nccl_sync_stream(tc->nccl, dp_cuda_ctx_compute_stream(tc->ctx));
}

// --- host mirror ---

// The optimizer state between the host optimizer (checkpoints) and the device one.
static dp_status move_optim_state(trainer *t, int to_device)
{
    dp__train_cuda *tc = t->cuda;
    int n = dp_optim_state_count(t->optim);
    if (n != dp_cuda_optim_state_count(tc->opt)) {
        return dp_error_set(DP_ERR_INTERNAL,
                            "host and device optimizers have %d and %d state "
                            "buffers",
                            n, dp_cuda_optim_state_count(tc->opt));
    }
    for (int i = 0; i < n; i++) {
        const char *name, *dname;
        float *host, *dev;
        size_t count, dcount;
        DP_TRY(dp_optim_state_at(t->optim, i, &name, &host, &count));
        DP_TRY(dp_cuda_optim_state_at(tc->opt, i, &dname, &dev, &dcount));
        if (count != dcount || strcmp(name, dname) != 0) {
            return dp_error_set(DP_ERR_INTERNAL,
                                "optimizer state %d: host %s (%zu), device %s "
                                "(%zu)",
                                i, name, count, dname, dcount);
        }
        if (to_device) {
            DP_TRY(dp_cuda_h2d_sync(tc->ctx, dev, host, count * sizeof(float)));
        } else {
            DP_TRY(dp_cuda_d2h_sync(tc->ctx, host, dev, count * sizeof(float)));
        }
    }
    if (to_device) {
        return dp_cuda_optim_step_count_set(tc->opt, dp_optim_step_count(t->optim));
    }
    return dp_optim_step_count_set(t->optim, dp_cuda_optim_step_count(tc->opt));
}

dp_status dp__train_cuda_upload(trainer *t)
{
    DP_TRY(check_cuda(t));
    DP_TRY(drain(t->cuda));
    DP_TRY(dp_net_cuda_upload(t->cuda->nc));
    return move_optim_state(t, 1);
}

dp_status dp__train_cuda_download(trainer *t)
{
    DP_TRY(check_cuda(t));
    DP_TRY(drain(t->cuda));
    DP_TRY(dp_net_cuda_download(t->cuda->nc));
    return move_optim_state(t, 0);
}

dp_status dp__train_cuda_buffers(trainer *t, int to_device)
{
    DP_TRY(check_cuda(t));
    DP_TRY(drain(t->cuda));
    size_t nb = dp_net_buffer_count(t->net);
    float *dev = dp_net_cuda_buffers(t->cuda->nc), *host = dp_net_buffers(t->net);
    if (nb == 0) {
        return DP_OK;
    }
    return to_device ? dp_cuda_h2d_sync(t->cuda->ctx, dev, host, nb * sizeof(float))
                     : dp_cuda_d2h_sync(t->cuda->ctx, host, dev, nb * sizeof(float));
}

// --- metrics and guards ---

dp_status dp__train_cuda_flush(trainer *t)
{
    DP_TRY(check_cuda(t));
    dp__train_cuda *tc = t->cuda;
    DP_TRY(drain(tc));
    double sums[2] = {0, 0};
    if (tc->n_stats > 0) {
        DP_TRY(dp_net_cuda_read_stats(tc->nc, 0, tc->n_stats, t->micro, tc->stats_host));
        for (int i = 0; i < tc->n_stats; i++) {
            sums[0] += tc->stats_host[i].loss_sum;
            sums[1] += (double)tc->stats_host[i].top1;
        }
    }
    int n_steps = tc->n_guards;
    long first = n_steps > 0 ? tc->guard_step[0] : t->step;
    tc->n_stats = 0;
    tc->n_guards = 0;
    DP_TRY(dp__train_dist_sum(t, sums, 2));
    t->win_loss += sums[0];
    t->win_correct += sums[1];
    t->ep_loss += sums[0];
    t->ep_correct += sums[1];
    if (!isfinite(sums[0])) {
        DP_TRY(dp_net_cuda_download_grads(tc->nc));
        return dp__train_non_finite_error(t, "the training loss of one of the steps since the "
                                             "last report is not finite");
    }
    for (int i = 0; i < n_steps && tc->precision != DP_PRECISION_FP16; i++) {
        dp_cuda_guard g;
        DP_TRY(dp_cuda_guard_read(tc->ctx, &g, &tc->guards[i]));
        if (dp_cuda_guard_skips(&g)) {
            dp_status st = dp_cuda_guard_check(&g);
            DP_TRY(dp_net_cuda_download_grads(tc->nc));
            char what[1024];
            snprintf(what, sizeof what, "step %ld (of steps %ld..%ld) was skipped on the GPU: %s",
                     tc->guard_step[i], first, first + n_steps - 1,
                     st != DP_OK ? dp_error_message() : "non-finite gradient norm");
            return dp__train_non_finite_error(t, what);
        }
    }
    return DP_OK;
}

// --- the step ---

static dp_net_run micro_run(const trainer *t, const dp_pipeline_batch *b, int m)
{
    dp_net_run run = DP_NET_RUN_INIT;
    run.train = 1;
    run.accumulate = m > 0 && !t->deterministic;
    run.step = t->step;
    run.seed = t->seed;
    run.first_sample = b->index * t->global_batch + (int64_t)t->rank * t->subdivisions * t->micro +
                       (int64_t)m * t->micro;
    run.loss_scale = 1.0f / (float)t->global_batch;
    return run;
}

// Starts an NCCL all-reduce for every full bucket of the finished gradient prefix [0, done)
// (final: for all of what is left).
static dp_status start_buckets(trainer *t, size_t done, int final)
{
    dp__train_cuda *tc = t->cuda;
    float *grads = dp_net_cuda_grads(tc->nc);
    while (tc->bucket_started < done &&
           (final || done - tc->bucket_started >= t->bucket_floats)) {
        size_t count = done - tc->bucket_started;
        if (!final && count > t->bucket_floats) {
            count = t->bucket_floats;
        }
        DP_TRY(dp_cuda_event_record(tc->ctx, EV_GRADS, DP_CUDA_COMPUTE));
        DP_TRY(dp_comm_nccl_allreduce_start(tc->nccl, grads + tc->bucket_started, count,
                                            dp_cuda_event_handle(tc->ctx, EV_GRADS), NULL));
        tc->bucket_started += count;
    }
    return DP_OK;
}

static dp_status layer_done(void *ctx, int layer)
{
    trainer *t = ctx;
    return start_buckets(t, t->cuda->prefix[layer], 0);
}

// Forward and backward of micro-batch m, staged into the next input slot. overlap: start the
// gradient buckets' all-reduces during backward.
static dp_status micro_batch(trainer *t, const dp_pipeline_batch *b, int m, dp_cuda_tree_acc *acc,
                             dp_cuda_tree_acc *bn_acc, int overlap)
{
    dp__train_cuda *tc = t->cuda;
    size_t off = (size_t)m * (size_t)t->micro;
    int slot = tc->next_slot;
    tc->next_slot = (tc->next_slot + 1) % DP_NET_CUDA_SLOTS;
    DP_TRY(dp_net_cuda_stage(tc->nc, slot, b->images + off * t->in_count, b->labels + off,
                             b->labels_b != NULL ? b->labels_b + off : NULL,
                             b->mix_lambda != NULL ? b->mix_lambda + off : NULL, t->micro));
    dp_net_run run = micro_run(t, b, m);
    DP_TRY(dp_net_cuda_forward(tc->nc, slot, &run, 1, tc->n_stats++));
    if (overlap) {
        tc->bucket_started = 0;
        DP_TRY(dp_net_cuda_backward_hook(tc->nc, slot, &run, layer_done, t));
    } else {
        DP_TRY(dp_net_cuda_backward(tc->nc, slot, &run));
    }
    DP_TRY(dp_net_cuda_release(tc->nc, slot));
    if (acc != NULL) {
        DP_TRY(dp_cuda_tree_acc_push(tc->ctx, acc, dp_net_cuda_grads(tc->nc)));
    }
    if (bn_acc != NULL) { // this micro-batch's statistics update, then the step's start again
        float *buf = dp_net_cuda_buffers(tc->nc);
        DP_TRY(dp_cuda_tree_acc_push(tc->ctx, bn_acc, buf));
        DP_TRY(dp_cuda_copy(tc->ctx, buf, tc->bn_saved, dp_net_buffer_count(t->net)));
    }
    return DP_OK;
}

// Sums the gradients over the ranks through the host (MPI): one device sync per step.
static dp_status allreduce_host(trainer *t)
{
    dp__train_cuda *tc = t->cuda;
    size_t n = dp_net_param_count(t->net);
    DP_TRY(dp_net_cuda_download_grads(tc->nc));
    float *g = dp_net_grads(t->net);
    if (t->deterministic) {
        DP_TRY(dp_comm_allreduce_sum_deterministic(t->comm, g, n));
    } else {
        DP_TRY(dp_comm_allreduce_sum(t->comm, g, n));
    }
    return dp_cuda_h2d_sync(tc->ctx, dp_net_cuda_grads(tc->nc), g, n * sizeof(float));
}

// Deterministic sum over the ranks of count floats of device memory, in comm.h's fixed tree:
// with NCCL on the device, else through the host.
static dp_status allreduce_det(trainer *t, float *dev, float *host, size_t count)
{
    dp__train_cuda *tc = t->cuda;
    if (tc->nccl != NULL) {
        DP_TRY(dp_cuda_event_record(tc->ctx, EV_GRADS, DP_CUDA_COMPUTE));
        return dp_comm_nccl_allreduce_deterministic_start(
            tc->nccl, dev, count, dp_cuda_event_handle(tc->ctx, EV_GRADS), NULL);
    }
    DP_TRY(dp_cuda_d2h_sync(tc->ctx, host, dev, count * sizeof(float)));
    DP_TRY(dp_comm_allreduce_sum_deterministic(t->comm, host, count));
    return dp_cuda_h2d_sync(tc->ctx, dev, host, count * sizeof(float));
}

// Deterministic mode, after the micro-batches: the batch-norm buffers become the tree sum of
// the micro-batches' updates over the global batch, divided by their number (trainer_dist.c's
// finish_deterministic, operation for operation).
static dp_status finish_bn_tree(trainer *t, dp_cuda_tree_acc *bn_acc)
{
    dp__train_cuda *tc = t->cuda;
    size_t nb = dp_net_buffer_count(t->net);
    float *buf = dp_net_cuda_buffers(tc->nc);
    if (bn_acc != NULL) {
        float *sum = NULL;
        DP_TRY(dp_cuda_tree_acc_result(bn_acc, &sum));
        DP_TRY(dp_cuda_copy(tc->ctx, buf, sum, nb));
    }
    if (t->world > 1) {
        DP_TRY(allreduce_det(t, buf, dp_net_buffers(t->net), nb));
    }
    float inv = 1.0f / (float)(t->subdivisions * t->world);
    return dp_cuda_scale(tc->ctx, buf, nb, inv);
}

// The update, skipped on the device when the guard reports a non-finite gradient. fp16: the
// gradients are unscaled first and the scaler reads the guard now (a sync per step).
static dp_status update(trainer *t, dp_cuda_guard *guard)
{
    dp__train_cuda *tc = t->cuda;
    size_t n = dp_net_param_count(t->net);
    float *grads = dp_net_cuda_grads(tc->nc);
    DP_TRY(dp_cuda_guard_reset(tc->ctx, guard));
    if (tc->precision == DP_PRECISION_FP16) {
        DP_TRY(dp_cuda_unscale_check(tc->ctx, guard, grads, n, 1.0f / tc->scaler.scale, 0));
    } else {
        DP_TRY(dp_cuda_check_finite(tc->ctx, guard, grads, n, 0));
    }
    float lr = dp_schedule_lr(&t->schedule, t->step);
    DP_TRY(dp_cuda_optim_step(tc->opt, dp_net_cuda_params(tc->nc), grads,
                              t->decay_norm ? NULL : dp_net_cuda_decay_mask(tc->nc), lr, guard));
    DP_TRY(dp_net_cuda_params_changed(tc->nc));
    if (tc->precision == DP_PRECISION_FP16) {
        dp_cuda_guard g;
        int skipped = 0;
        DP_TRY(dp_cuda_guard_read(tc->ctx, &g, guard));
        DP_TRY(dp_cuda_loss_scaler_update(&tc->scaler, &g, &skipped));
        if (skipped) {
            DP_TRY(dp_cuda_optim_unstep(tc->opt));
        }
        dp_net_cuda_set_grad_mult(tc->nc, tc->scaler.scale);
    }
    return DP_OK;
}

dp_status dp__train_cuda_step(trainer *t, const dp_pipeline_batch *b)
{
    DP_TRY(check_cuda(t));
    dp__train_cuda *tc = t->cuda;
    if (tc->n_stats + t->subdivisions > tc->n_stats_cap || tc->n_guards == MAX_PENDING_STEPS) {
        DP_TRY(dp__train_cuda_flush(t)); // a long log interval: read what is there
    }
    dp_comm_set_step(t->comm, t->step);
    if (tc->precision == DP_PRECISION_FP16) {
        dp_net_cuda_set_grad_mult(tc->nc, tc->scaler.scale);
    }
    size_t np = dp_net_param_count(t->net), nb = dp_net_buffer_count(t->net);
    float *grads = dp_net_cuda_grads(tc->nc);
    dp_cuda_tree_acc acc, *accp = NULL, bn_acc, *bn_accp = NULL;
    if (tc->n_levels > 0) {
        DP_TRY(dp_cuda_tree_acc_init(&acc, tc->levels, tc->n_levels, np));
        accp = &acc;
    }
    if (tc->n_bn_levels > 0) {
        DP_TRY(dp_cuda_tree_acc_init(&bn_acc, tc->bn_levels, tc->n_bn_levels, nb));
        bn_accp = &bn_acc;
        DP_TRY(dp_cuda_copy(tc->ctx, tc->bn_saved, dp_net_cuda_buffers(tc->nc), nb));
    }
    int buckets = tc->nccl != NULL && !t->deterministic;
    for (int m = 0; m < t->subdivisions; m++) {
        DP_TRY(micro_batch(t, b, m, accp, bn_accp, buckets && m == t->subdivisions - 1));
    }
    if (accp != NULL) {
        float *sum = NULL;
        DP_TRY(dp_cuda_tree_acc_result(accp, &sum));
        DP_TRY(dp_cuda_copy(tc->ctx, grads, sum, np));
    }
    if (tc->nccl != NULL) {
        if (buckets) {
            DP_TRY(start_buckets(t, np, 1));
        } else {
            DP_TRY(allreduce_det(t, grads, NULL, np));
        }
    } else if (t->world > 1) {
        DP_TRY(allreduce_host(t));
    }
    if (tc->bn_tree) {
        DP_TRY(finish_bn_tree(t, bn_accp));
    }
    if (tc->nccl != NULL) { // the update reads the sums: the compute stream waits for them
        DP_TRY(dp_comm_nccl_stream_wait(tc->nccl, dp_cuda_ctx_compute_stream(tc->ctx), 0));
        DP_TRY(dp_comm_nccl_poll(tc->nccl, NULL));
    }
    tc->guard_step[tc->n_guards] = t->step;
    DP_TRY(update(t, &tc->guards[tc->n_guards++]));
    // Every rank decides the same about stopping (a signal may reach only one of them).
    double stop = t->opt.stop != NULL && *t->opt.stop != 0 ? 1.0 : 0.0;
    DP_TRY(dp__train_dist_sum(t, &stop, 1));
    t->stop_now = stop > 0;
    // The pipeline reuses b's memory once this returns: its copies must be done. (The H2D
    // stream waits on the compute stream, which may wait on NCCL: under the watchdog then.)
    if (tc->nccl != NULL) {
        DP_TRY(dp_comm_nccl_sync_stream(tc->nccl, dp_cuda_ctx_h2d_stream(tc->ctx)));
    } else {
        DP_TRY(dp_cuda_stream_sync(tc->ctx, DP_CUDA_H2D));
    }
    t->win_samples += t->global_batch;
    t->win_steps++;
    t->ep_samples += t->global_batch;
    t->samples_total += t->global_batch;
    t->step++;
    if (t->replica_check_every > 0 && t->world > 1 && t->step % t->replica_check_every == 0) {
        DP_TRY(drain(tc));
        DP_TRY(dp_net_cuda_download(tc->nc));
        DP_TRY(dp_comm_check_equal(t->comm, dp_net_params(t->net),
                                   dp_net_param_count(t->net) * sizeof(float),
                                   "the replica's parameters (replica drift)"));
    }
    return DP_OK;
}

// Waits for everything enqueued (timing of --bench).
dp_status dp__train_cuda_sync(trainer *t)
{
    DP_TRY(check_cuda(t));
    DP_TRY(drain(t->cuda));
    return dp_cuda_stream_sync(t->cuda->ctx, DP_CUDA_COMPUTE);
}

// --- evaluation ---

dp_status dp__train_cuda_eval_batch(trainer *t, const float *images, const int32_t *labels, int n,
                                    int read, dp_net_metrics *out)
{
    DP_TRY(check_cuda(t));
    dp__train_cuda *tc = t->cuda;
    if (tc->n_stats > 0 || tc->n_guards > 0) {
        DP_TRY(dp__train_cuda_flush(t));
    }
    DP_TRY(drain(tc));
    int slot = tc->next_slot;
    tc->next_slot = (tc->next_slot + 1) % DP_NET_CUDA_SLOTS;
    DP_TRY(dp_net_cuda_stage(tc->nc, slot, images, labels, NULL, NULL, n));
    dp_net_run run = DP_NET_RUN_INIT;
    run.n = n;
    DP_TRY(dp_net_cuda_forward(tc->nc, slot, &run, labels != NULL, 0));
    DP_TRY(dp_net_cuda_release(tc->nc, slot));
    memset(out, 0, sizeof *out);
    if (read && labels != NULL) {
        dp_xent_stats s;
        DP_TRY(dp_net_cuda_read_stats(tc->nc, 0, 1, n, &s));
        out->loss_sum = s.loss_sum;
        out->top1 = (long)s.top1;
        out->top5 = (long)s.top5;
        out->n = n;
    }
    // The caller reuses the host batch.
    return dp_cuda_stream_sync(tc->ctx, DP_CUDA_H2D);
}
