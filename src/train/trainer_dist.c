// Data parallelism in the trainer: the communicator, the start-up checks (parameters broadcast
// from rank 0, then the replica and cfg checksums compared), gradient synchronization and the
// batch-norm statistics. Two ways to sum gradients:
//   - default: backward runs layer by layer from the last; the flat gradient buffer holds the
//     last layer first, so the finished gradients are a growing prefix; each time the prefix
//     grows by a bucket (bucket_mb), an async all-reduce of that slice starts and overlaps the
//     rest of backward (progress calls between layers);
//   - deterministic: each micro-batch's gradient is kept apart, the micro-batches are combined
//     in one fixed binary tree (inside the rank, then across ranks by recursive halving and
//     doubling), so the bits do not depend on the number of ranks. Batch-norm running statistics
//     follow the same tree: each micro-batch's update starts from the same saved state and the
//     updates are tree-summed.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "dp_config.h"
#include "train/trainer_internal.h"

dp_status dp__train_dist_start(trainer *t)
{
    const dp_cfg_section *train = dp_cfg_find(t->cfg, "train");
    dp_comm_config cc = DP_COMM_CONFIG_INIT;
    double timeout = DP_COMM_TIMEOUT_DEFAULT_S, bucket_mb = 2.0;
    t->deterministic = 0;
    if (train != NULL) {
        DP_TRY(dp_cfg_get_float(train, "collective_timeout", timeout, &timeout));
        DP_TRY(dp_cfg_get_float(train, "bucket_mb", bucket_mb, &bucket_mb));
        DP_TRY(dp_cfg_get_bool(train, "deterministic", 0, &t->deterministic));
    }
    cc.collective_timeout_s = timeout;
    DP_TRY(dp_comm_create(&t->comm, &cc));
    t->rank = dp_comm_rank(t->comm);
    t->world = dp_comm_size(t->comm);
    t->bucket_floats = (size_t)(bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (t->bucket_floats < 1024) {
        t->bucket_floats = 1024;
    }
    dp_log_set_rank(t->rank);
    return DP_OK;
}

void dp__train_dist_stop(trainer *t)
{
    for (int i = 0; i < t->n_parts; i++) {
        free(t->parts[i]);
    }
    free(t->parts);
    free(t->bn_saved);
    free(t->bn_parts);
    t->parts = NULL;
    t->n_parts = 0;
    dp_comm_destroy(t->comm);
    t->comm = NULL;
}

// Rank 0's parameters and buffers go to every rank; then every rank's replica and cfg text are
// compared with rank 0's by checksum, naming the ranks that differ.
dp_status dp__train_dist_sync_start(trainer *t, const char *cfg_text)
{
    if (t->world == 1) {
        return DP_OK;
    }
    size_t np = dp_net_param_count(t->net), nb = dp_net_buffer_count(t->net);
    DP_TRY(dp_comm_bcast(t->comm, dp_net_params(t->net), np * sizeof(float), 0));
    DP_TRY(dp_comm_bcast(t->comm, dp_net_buffers(t->net), nb * sizeof(float), 0));
    // The same binary everywhere: version and build time stamp.
    static const char build_id[] = DP_VERSION " " __DATE__ " " __TIME__;
    DP_TRY(dp_comm_check_equal(t->comm, build_id, sizeof build_id, "the dptrain build"));
    DP_TRY(dp_comm_check_equal(t->comm, cfg_text, strlen(cfg_text), "the cfg text"));
    return dp_comm_check_equal(t->comm, dp_net_params(t->net), np * sizeof(float),
                               "the replica's parameters");
}

// --- deterministic mode: per-micro-batch gradient and batch-norm parts ---

dp_status dp__train_dist_alloc_parts(trainer *t)
{
    if (!t->deterministic) {
        return DP_OK;
    }
    int m = t->subdivisions;
    if ((m & (m - 1)) != 0) {
        return dp_error_set(DP_ERR_CFG,
                            "%s: deterministic=1 needs a power-of-two number of micro-batches per "
                            "rank, got %d (global batch %ld / %d ranks / micro_batch %d)",
                            dp_cfg_path(t->cfg), m, t->global_batch, t->world, t->micro);
    }
    if (t->cuda != NULL) {
        return DP_OK; // the device keeps its own tree (trainer_cuda.c)
    }
    size_t np = dp_net_param_count(t->net), nb = dp_net_buffer_count(t->net);
    t->parts = calloc((size_t)m, sizeof *t->parts);
    t->bn_parts = calloc((size_t)m * (nb > 0 ? nb : 1), sizeof(float));
    t->bn_saved = calloc(nb > 0 ? nb : 1, sizeof(float));
    if (t->parts == NULL || t->bn_parts == NULL || t->bn_saved == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "out of memory for %d micro-batch gradients", m);
    }
    t->n_parts = m;
    for (int i = 0; i < m; i++) {
        t->parts[i] = malloc(np * sizeof(float));
        if (t->parts[i] == NULL) {
            return dp_error_set(DP_ERR_NOMEM, "out of memory for %d micro-batch gradients", m);
        }
    }
    return DP_OK;
}

// Before the micro-batches of a step: remember the batch-norm buffers.
void dp__train_dist_step_begin(trainer *t)
{
    if (t->deterministic) {
        memcpy(t->bn_saved, dp_net_buffers(t->net), dp_net_buffer_count(t->net) * sizeof(float));
    }
}

// After micro-batch k's backward (deterministic mode): keep its gradient and its batch-norm
// update, and put the saved buffers back for the next micro-batch.
void dp__train_dist_micro_end(trainer *t, int k)
{
    if (!t->deterministic) {
        return;
    }
    size_t np = dp_net_param_count(t->net), nb = dp_net_buffer_count(t->net);
    memcpy(t->parts[k], dp_net_grads(t->net), np * sizeof(float));
    float *buf = dp_net_buffers(t->net);
    memcpy(t->bn_parts + (size_t)k * nb, buf, nb * sizeof(float));
    memcpy(buf, t->bn_saved, nb * sizeof(float));
}

// Deterministic combination: gradients and batch-norm buffers as tree sums over all the global
// batch's micro-batches (the buffers averaged: each micro-batch's update started from the same
// state, so their mean is the update from the mean statistics).
static dp_status finish_deterministic(trainer *t)
{
    size_t np = dp_net_param_count(t->net), nb = dp_net_buffer_count(t->net);
    DP_TRY(dp_comm_tree_sum_local(t->parts, t->n_parts, np, dp_net_grads(t->net)));
    DP_TRY(dp_comm_allreduce_sum_deterministic(t->comm, dp_net_grads(t->net), np));
    if (nb == 0) {
        return DP_OK;
    }
    float *rows[64];
    DP_ASSERT(t->n_parts <= 64);
    for (int k = 0; k < t->n_parts; k++) {
        rows[k] = t->bn_parts + (size_t)k * nb;
    }
    float *buf = dp_net_buffers(t->net);
    DP_TRY(dp_comm_tree_sum_local(rows, t->n_parts, nb, buf));
    DP_TRY(dp_comm_allreduce_sum_deterministic(t->comm, buf, nb));
    float inv = 1.0f / (float)(t->n_parts * t->world);
    for (size_t i = 0; i < nb; i++) {
        buf[i] *= inv;
    }
    return DP_OK;
}

// --- default mode: buckets overlapping backward ---

// Called after each layer's backward of the last micro-batch with the length of the finished
// gradient prefix; starts an all-reduce for every full bucket.
static dp_status grads_ready(trainer *t, size_t done, int final)
{
    while (t->bucket_started < done && (final || done - t->bucket_started >= t->bucket_floats)) {
        size_t count = done - t->bucket_started;
        if (!final && count > t->bucket_floats) {
            count = t->bucket_floats;
        }
        DP_ASSERT(t->n_requests < DP_TRAIN_MAX_BUCKETS);
        DP_TRY(dp_comm_allreduce_start(t->comm, dp_net_grads(t->net) + t->bucket_started, count,
                                       &t->requests[t->n_requests++]));
        t->bucket_started += count;
    }
    return dp_comm_progress(t->comm);
}

// Length of the gradient prefix that is final once layer i has run backward: the parameters of
// layers i.. (the flat buffer holds the last layer first).
static size_t prefix_after(const trainer *t, int i)
{
    size_t end = 0;
    for (int j = i; j < dp_net_layer_count(t->net); j++) {
        const dp_layer *l = dp_net_layer(t->net, j);
        for (int p = 0; p < l->n_params; p++) {
            size_t e = l->params[p].offset + (size_t)dp_shape_count(&l->params[p].spec.shape);
            end = end > e ? end : e;
        }
    }
    return end;
}

dp_status dp__train_dist_backward(trainer *t, const dp_net_run *run, int last_micro)
{
    int overlap = last_micro && t->world > 1 && !t->deterministic;
    if (overlap) {
        t->bucket_started = 0;
        t->n_requests = 0;
    }
    for (int i = t->loss_layer; i >= 0; i--) {
        DP_TRY(dp_net_backward_layer(t->net, i, run));
        if (overlap) {
            DP_TRY(grads_ready(t, prefix_after(t, i), 0));
        }
    }
    return DP_OK;
}

dp_status dp__train_dist_finish_step(trainer *t)
{
    if (t->deterministic) {
        return finish_deterministic(t);
    }
    if (t->world == 1) {
        return DP_OK;
    }
    DP_TRY(grads_ready(t, dp_net_param_count(t->net), 1));
    for (int i = 0; i < t->n_requests; i++) {
        DP_TRY(dp_comm_wait(&t->requests[i]));
    }
    t->n_requests = 0;
    return DP_OK;
}

// Every rank's batch-norm running statistics averaged, so the replicas stay identical (before
// an evaluation and a checkpoint; the deterministic mode keeps them identical already).
dp_status dp__train_dist_sync_buffers(trainer *t)
{
    size_t nb = dp_net_buffer_count(t->net);
    if (t->world == 1 || t->deterministic || nb == 0) {
        return DP_OK;
    }
    if (t->cuda != NULL) {
        DP_TRY(dp__train_cuda_buffers(t, 0));
    }
    float *buf = dp_net_buffers(t->net);
    DP_TRY(dp_comm_allreduce_sum(t->comm, buf, nb));
    float inv = 1.0f / (float)t->world;
    for (size_t i = 0; i < nb; i++) {
        buf[i] *= inv;
    }
    return t->cuda != NULL ? dp__train_cuda_buffers(t, 1) : DP_OK;
}

dp_status dp__train_dist_sum(trainer *t, double *values, size_t n)
{
    return t->world == 1 ? DP_OK : dp_comm_allreduce_sum_f64(t->comm, values, n);
}
