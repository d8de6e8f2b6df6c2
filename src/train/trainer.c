// The step loop: pop a batch from the pipeline, run its micro-batches forward and backward
// (gradients accumulate), step the optimizer at the scheduled rate, report, evaluate every
// eval_every epochs. Also --bench (synthetic, timed steps) and the SHA-256 of the parameters.
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/timer.h"
#include "io/dataset.h"
#include "io/pipeline.h"
#include "nn/cpu/blas.h"
#include "nn/net.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "train/trainer_internal.h"

void dp_train_sha256_hex(char out[65], const float *data, size_t n)
{
    unsigned char digest[32];
    unsigned int len = 0;
    if (EVP_Digest(data, n * sizeof(float), digest, &len, EVP_sha256(), NULL) != 1 || len != 32) {
        memset(digest, 0, sizeof digest);
    }
    for (int i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    }
}

// --- set-up ---

// Global batch B over P ranks: B / P samples per rank, in micro-batches of [net] batch /
// subdivisions / P, or of [train] micro_batch in deterministic mode (default 32, so that 1, 2
// and 4 ranks all work with a batch of 128). Every split must be exact.
static dp_status split_batch(trainer *t, const dp_cfg_section *net, const dp_cfg_section *train)
{
    char where[256];
    long B = t->global_batch, P = t->world;
    if (B % P != 0) {
        return dp_error_set(DP_ERR_CFG,
                            "%s: [net] batch: the global batch %ld does not divide over %ld ranks",
                            dp_cfg_where(net, "batch", where, sizeof where), B, P);
    }
    long local = B / P, micro;
    if (t->deterministic) {
        micro = 32;
        if (train != NULL) {
            DP_TRY(dp_cfg_get_int(train, "micro_batch", 32, &micro));
        }
        if (local % micro != 0) {
            return dp_error_set(DP_ERR_CFG,
                                "%s: [train] micro_batch: %ld does not divide the %ld samples per "
                                "rank (global batch %ld over %ld ranks)",
                                train != NULL
                                    ? dp_cfg_where(train, "micro_batch", where, sizeof where)
                                    : dp_cfg_path(t->cfg),
                                micro, local, B, P);
        }
    } else {
        if (local % t->subdivisions != 0) {
            return dp_error_set(DP_ERR_CFG,
                                "%s: [net] subdivisions: %d does not divide the %ld samples per "
                                "rank (global batch %ld over %ld ranks)",
                                dp_cfg_where(net, "subdivisions", where, sizeof where),
                                t->subdivisions, local, B, P);
        }
        micro = local / t->subdivisions;
    }
    t->micro = (int)micro;
    t->subdivisions = (int)(local / micro);
    return DP_OK;
}

// [train] backend= and precision= against this machine: the device is the rank's local rank.
// Errors name where the key was set (the cfg when it was not).
static dp_status choose_backend(trainer *t, const dp_cfg_section *train)
{
    const char *backend = "auto", *precision = "auto";
    if (train != NULL) {
        DP_TRY(dp_cfg_get_str(train, "backend", "auto", &backend));
        DP_TRY(dp_cfg_get_str(train, "precision", "auto", &precision));
    }
    // Where the keys were set: "net.cfg:12", "net.cfg:12, --set train.precision=bf16".
    char where[600] = "", one[256];
    const char *keys[] = {"backend", "precision"};
    for (int i = 0; i < 2; i++) {
        if (train != NULL && dp_cfg_has(train, keys[i])) {
            size_t len = strlen(where);
            snprintf(where + len, sizeof where - len, "%s%s", len > 0 ? ", " : "",
                     dp_cfg_where(train, keys[i], one, sizeof one));
        }
    }
    if (where[0] == '\0') {
        snprintf(where, sizeof where, "%s", dp_cfg_path(t->cfg));
    }
    dp_backend_kind kind;
    dp_precision prec;
    dp_status st = dp_backend_kind_parse(&kind, backend);
    if (st == DP_OK) {
        st = dp_precision_parse(&prec, precision);
    }
    if (st == DP_OK) {
        int local_rank = t->comm != NULL ? dp_comm_local_rank(t->comm) : 0;
        st = dp_backend_select(&t->backend, kind, prec, local_rank);
    }
    if (st != DP_OK) {
        return dp_error_context(st, "%s", where);
    }
    t->backend_asked = kind;
    return DP_OK;
}

static dp_status read_settings(trainer *t)
{
    const dp_cfg_section *net = dp_cfg_find(t->cfg, "net");
    const dp_cfg_section *train = dp_cfg_find(t->cfg, "train");
    const dp_cfg_section *data = dp_cfg_find(t->cfg, "data");
    long batch, subdivisions, max_batches, epochs, seed, threads, log_every, eval_every;
    DP_TRY(dp_cfg_get_int(net, "batch", 1, &batch));
    DP_TRY(dp_cfg_get_int(net, "subdivisions", 1, &subdivisions));
    DP_TRY(dp_cfg_get_int(net, "max_batches", 0, &max_batches));
    t->global_batch = batch;
    t->subdivisions = (int)subdivisions;
    t->max_batches = max_batches;
    epochs = 1;
    seed = 0;
    threads = 0;
    log_every = 50;
    eval_every = 1;
    double smoothing = 0;
    const char *init = "default";
    if (train != NULL) {
        DP_TRY(dp_cfg_get_int(train, "epochs", max_batches > 0 ? 1000000 : 1, &epochs));
        DP_TRY(dp_cfg_get_int(train, "seed", 0, &seed));
        DP_TRY(dp_cfg_get_int(train, "threads", 0, &threads));
        DP_TRY(dp_cfg_get_int(train, "log_every", 50, &log_every));
        DP_TRY(dp_cfg_get_int(train, "eval_every", 1, &eval_every));
        DP_TRY(dp_cfg_get_float(train, "label_smoothing", 0.0, &smoothing));
        DP_TRY(dp_cfg_get_str(train, "init", "default", &init));
        DP_TRY(dp_cfg_get_bool(train, "weight_decay_norm", 0, &t->decay_norm));
        DP_TRY(dp_cfg_get_int(train, "replica_check_every", 0, &t->replica_check_every));
    }
    t->epochs = epochs;
    t->seed = (uint64_t)seed;
    t->log_every = log_every;
    t->eval_every = eval_every;
    t->label_smoothing = smoothing;
    t->init = init;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int local_ranks = t->comm != NULL ? dp_comm_local_size(t->comm) : 1;
    long share = (cores > 0 ? cores : 1) / local_ranks;
    t->threads = threads > 0 ? (int)threads : (int)(share > 0 ? share : 1);
    // The kernels split work into fixed tasks whose results are combined in a fixed order, so
    // the bits do not depend on the thread count (tests/nn/test_net_exec.c checks it): the
    // deterministic mode keeps all threads.
    long workers = 0, prefetch = 4, crop_pad = 0, cutout = 0;
    double mixup = 0, cutmix = 0, mix_prob = 1;
    int flip = 0;
    const char *source = "hdf5";
    if (data != NULL) {
        DP_TRY(dp_cfg_get_int(data, "workers", 0, &workers));
        DP_TRY(dp_cfg_get_int(data, "cutout", 0, &cutout));
        DP_TRY(dp_cfg_get_float(data, "mixup", 0.0, &mixup));
        DP_TRY(dp_cfg_get_float(data, "cutmix", 0.0, &cutmix));
        DP_TRY(dp_cfg_get_float(data, "mix_prob", 1.0, &mix_prob));
        DP_TRY(dp_cfg_get_int(data, "prefetch", 4, &prefetch));
        DP_TRY(dp_cfg_get_int(data, "crop_pad", 0, &crop_pad));
        DP_TRY(dp_cfg_get_bool(data, "flip", 0, &flip));
        DP_TRY(dp_cfg_get_str(data, "source", "hdf5", &source));
    }
    t->cutout = (int)cutout;
    t->mixup = (float)mixup;
    t->cutmix = (float)cutmix;
    t->mix_prob = (float)mix_prob;
    if (workers > 0) {
        t->workers = (int)workers;
    } else {
        DP_TRY(dp_pipeline_default_workers(&t->workers, local_ranks));
    }
    t->prefetch = prefetch < 2 ? 2 : (int)prefetch;
    t->crop_pad = (int)crop_pad;
    t->flip = flip;
    t->synthetic = strcmp(source, "synthetic") == 0;
    DP_TRY(choose_backend(t, train));
    DP_TRY(dp__train_read_output_settings(t));
    return split_batch(t, net, train);
}

static dp_status build_net(trainer *t)
{
    dp_net_config nc = DP_NET_CONFIG_INIT;
    nc.batch = t->micro;
    DP_TRY(dp_net_create(&t->net, t->cfg, &nc));
    DP_TRY(dp_net_alloc(t->net, 1));
    DP_TRY(dp_net_init_params(t->net, t->seed, t->init));
    if (t->label_smoothing > 0) {
        DP_TRY(dp_net_set_label_smoothing(t->net, t->label_smoothing));
    }
    for (int i = 0; i < dp_net_layer_count(t->net); i++) {
        if (strcmp(dp_net_layer(t->net, i)->ops->name, "softmax") == 0) {
            t->loss_layer = i;
        }
    }
    dp_shape in = dp_net_input_shape(t->net), out = dp_net_output_shape(t->net);
    t->in_count = (size_t)dp_shape_count(&in);
    t->classes = (int)dp_shape_count(&out);
    return DP_OK;
}

static dp_status build_optimizer(trainer *t)
{
    dp_optim_config oc;
    DP_TRY(dp_optim_config_from_cfg(&oc, t->cfg));
    DP_TRY(dp_optim_create(&t->optim, &oc, dp_net_param_count(t->net)));
    return DP_OK;
}

// backend=cuda: the device side of the network and optimizer. backend=auto falls back to the
// CPU, saying why, when this network cannot run on the GPU (a layer without a CUDA
// implementation); backend=cuda makes that an error.
static dp_status start_device(trainer *t)
{
    if (t->backend.kind != DP_BACKEND_CUDA) {
        const dp_cfg_section *train = dp_cfg_find(t->cfg, "train");
        const char *comm = "auto";
        if (train != NULL) {
            DP_TRY(dp_cfg_get_str(train, "comm", "auto", &comm));
        }
        if (strcmp(comm, "nccl") == 0) {
            return dp_error_set(DP_ERR_CFG,
                                "%s: [train] comm=nccl needs the GPU, but this run trains on the "
                                "CPU%s%s (use comm=auto or mpi)",
                                dp_cfg_path(t->cfg), t->backend.why_cpu[0] != '\0' ? ": " : "",
                                t->backend.why_cpu);
        }
        return DP_OK;
    }
    dp_status st = dp__train_cuda_start(t);
    if (st == DP_OK) {
        return DP_OK;
    }
    dp__train_cuda_stop(t);
    if (st != DP_ERR_UNSUPPORTED || t->backend_asked != DP_BACKEND_AUTO) {
        return st;
    }
    dp_backend_choice cpu;
    DP_TRY(dp_backend_resolve(&cpu, DP_BACKEND_CPU, DP_PRECISION_AUTO, 0, NULL, NULL));
    snprintf(cpu.why_cpu, sizeof cpu.why_cpu, "GPU %s: %s", t->backend.device_name,
             dp_error_message());
    t->backend = cpu;
    return DP_OK;
}

// The dataset's images must match the network's input, and its classes the output.
static dp_status check_dataset(const trainer *t, const dp_dataset *ds, const char *path)
{
    const dp_dataset_info *info = dp_dataset_get_info(ds);
    dp_shape in = dp_net_input_shape(t->net);
    if (info->h != in.dims[1] || info->w != in.dims[2] || info->c != in.dims[0]) {
        return dp_error_set(DP_ERR_SHAPE,
                            "%s: images are %lldx%lldx%lld (HxWxC) but %s [net] expects "
                            "%lldx%lldx%lld",
                            path, (long long)info->h, (long long)info->w, (long long)info->c,
                            dp_cfg_path(t->cfg), (long long)in.dims[1], (long long)in.dims[2],
                            (long long)in.dims[0]);
    }
    if (info->n_classes != t->classes) {
        return dp_error_set(DP_ERR_SHAPE, "%s: %lld classes but the network of %s outputs %d", path,
                            (long long)info->n_classes, dp_cfg_path(t->cfg), t->classes);
    }
    return DP_OK;
}

static dp_status open_data(trainer *t)
{
    const dp_cfg_section *data = dp_cfg_find(t->cfg, "data");
    long classes = t->classes;
    if (data != NULL) {
        DP_TRY(dp_cfg_get_int(data, "classes", t->classes, &classes));
    }
    if (classes != t->classes) {
        char where[256];
        return dp_error_set(DP_ERR_SHAPE, "%s: [data] classes: %ld, but the network outputs %d",
                            dp_cfg_where(data, "classes", where, sizeof where), classes,
                            t->classes);
    }
    if (t->synthetic) {
        long samples = t->global_batch * 8, test_samples = t->global_batch * 2;
        if (data != NULL) {
            DP_TRY(dp_cfg_get_int(data, "samples", samples, &samples));
            DP_TRY(dp_cfg_get_int(data, "test_samples", test_samples, &test_samples));
        }
        t->syn_train = (dp_pipeline_synthetic){0};
        dp_shape in = dp_net_input_shape(t->net);
        t->syn_train.n = samples;
        t->syn_train.h = in.dims[1];
        t->syn_train.w = in.dims[2];
        t->syn_train.c = in.dims[0];
        t->syn_train.n_classes = t->classes;
        t->syn_train.seed = t->seed;
        t->syn_test = t->syn_train;
        t->syn_test.n = test_samples;
        t->syn_test.seed = t->seed + 1;
        return DP_OK;
    }
    if (data == NULL) {
        return dp_error_set(DP_ERR_CFG,
                            "%s: no [data] section: give train= and test= (HDF5 files "
                            "from dpdata) or source=synthetic",
                            dp_cfg_path(t->cfg));
    }
    DP_TRY(dp_cfg_require_str(data, "train", &t->train_path));
    DP_TRY(dp_cfg_get_str(data, "test", NULL, &t->test_path));
    DP_TRY(dp_dataset_open(&t->train_ds, t->train_path));
    DP_TRY(check_dataset(t, t->train_ds, t->train_path));
    if (t->test_path != NULL) {
        DP_TRY(dp_dataset_open(&t->test_ds, t->test_path));
        DP_TRY(check_dataset(t, t->test_ds, t->test_path));
    }
    return DP_OK;
}

static dp_status start_pipeline(trainer *t, dp_pipeline **out, int eval,
                                const dp_sampler_state *resume)
{
    dp_pipeline_config pc = DP_PIPELINE_CONFIG_INIT;
    pc.dataset = eval ? t->test_ds : t->train_ds;
    if (t->synthetic) {
        pc.dataset = NULL;
        pc.synthetic = eval ? t->syn_test : t->syn_train;
    }
    pc.sampler.global_batch = eval ? (int64_t)t->micro * t->world : t->global_batch;
    pc.sampler.rank = t->rank;
    pc.sampler.world_size = t->world;
    pc.sampler.seed = t->seed;
    pc.sampler.mode = eval ? DP_SAMPLER_EVAL : DP_SAMPLER_TRAIN;
    pc.resume = resume;
    pc.n_workers = t->workers;
    pc.n_buffers = t->prefetch;
    pc.crop_pad = eval ? 0 : t->crop_pad;
    pc.flip = eval ? 0 : t->flip;
    pc.cutout = eval ? 0 : t->cutout;
    pc.mixup_alpha = eval ? 0.0f : t->mixup;
    pc.cutmix_alpha = eval ? 0.0f : t->cutmix;
    pc.mix_prob = t->mix_prob;
    if (t->cuda != NULL) { // pinned buffers: the H2D copies run asynchronously
        pc.alloc = dp__train_cuda_host_alloc;
        pc.free = dp__train_cuda_host_free;
    }
    return dp_pipeline_create(out, &pc);
}

// --- evaluation ---

typedef struct eval_result {
    double loss, top1, top5;
    long samples;
} eval_result;

static dp_status evaluate(trainer *t, eval_result *out)
{
    memset(out, 0, sizeof *out);
    if (t->test_ds == NULL && !t->synthetic) {
        out->loss = out->top1 = out->top5 = NAN;
        return DP_OK;
    }
    DP_TRY(dp__train_dist_sync_buffers(t));
    dp_pipeline *pipe = NULL;
    DP_TRY(start_pipeline(t, &pipe, 1, NULL));
    dp_status st = DP_OK;
    double loss = 0;
    long top1 = 0, top5 = 0, n = 0;
    for (;;) {
        const dp_pipeline_batch *b;
        DP_TRY_GOTO(dp_pipeline_pop(pipe, &b), st, done);
        if (b == NULL) {
            break;
        }
        dp_net_run run = DP_NET_RUN_INIT;
        run.n = (int)b->count;
        run.labels = b->labels;
        if (b->count > 0) {
            dp_net_metrics m;
            memset(&m, 0, sizeof m);
            if (t->cuda != NULL) {
                st = dp__train_cuda_eval_batch(t, b->images, b->labels, (int)b->count, 1, &m);
            } else {
                st = dp_net_forward(t->net, b->images, &run);
                if (st == DP_OK) {
                    st = dp_net_metrics_get(t->net, &m);
                }
            }
            loss += m.loss_sum;
            top1 += m.top1;
            top5 += m.top5;
            n += b->count;
        }
        dp_pipeline_release(pipe, b);
        if (st != DP_OK) {
            goto done;
        }
    }
    double sums[4] = {loss, (double)top1, (double)top5, (double)n};
    DP_TRY_GOTO(dp__train_dist_sum(t, sums, 4), st, done);
    out->samples = (long)sums[3];
    out->loss = sums[3] > 0 ? sums[0] / sums[3] : NAN;
    out->top1 = sums[3] > 0 ? sums[1] / sums[3] : NAN;
    out->top5 = sums[3] > 0 ? sums[2] / sums[3] : NAN;
done:
    dp_pipeline_destroy(pipe);
    return st;
}

// --- the step ---

static int stop_requested(const trainer *t)
{
    return t->opt.stop != NULL && *t->opt.stop != 0;
}

// Names the first layer (in backward order) whose parameter gradients are not finite.
dp_status dp__train_non_finite_error(trainer *t, const char *what)
{
    const float *g = dp_net_grads(t->net);
    for (int i = dp_net_layer_count(t->net) - 1; i >= 0; i--) {
        const dp_layer *l = dp_net_layer(t->net, i);
        for (int p = 0; p < l->n_params; p++) {
            size_t n = (size_t)dp_shape_count(&l->params[p].spec.shape);
            for (size_t k = 0; k < n; k++) {
                if (!isfinite(g[l->params[p].offset + k])) {
                    char where[256];
                    return dp_error_set(DP_ERR_DATA,
                                        "step %ld: %s; the first non-finite gradient (in backward "
                                        "order) is in layer %d %s (%s), parameter %s",
                                        t->step, what, i, l->ops->name,
                                        dp_cfg_where(l->section, NULL, where, sizeof where),
                                        l->params[p].spec.name);
                }
            }
        }
    }
    return dp_error_set(DP_ERR_DATA, "step %ld: %s (every gradient is finite)", t->step, what);
}

static dp_status train_step(trainer *t, const dp_pipeline_batch *b)
{
    if (t->cuda != NULL) {
        return dp__train_cuda_step(t, b);
    }
    double loss = 0;
    long correct = 0;
    dp_comm_set_step(t->comm, t->step);
    dp__train_dist_step_begin(t);
    for (int m = 0; m < t->subdivisions; m++) {
        dp_net_run run = DP_NET_RUN_INIT;
        run.train = 1;
        run.accumulate = m > 0 && !t->deterministic;
        run.step = t->step;
        run.seed = t->seed;
        run.first_sample = b->index * t->global_batch +
                           (int64_t)t->rank * t->subdivisions * t->micro + (int64_t)m * t->micro;
        run.labels = b->labels + (size_t)m * (size_t)t->micro;
        if (b->labels_b != NULL) {
            run.labels_b = b->labels_b + (size_t)m * (size_t)t->micro;
            run.mix_lambda = b->mix_lambda + (size_t)m * (size_t)t->micro;
        }
        run.loss_scale = 1.0f / (float)t->global_batch;
        const float *x = b->images + (size_t)m * (size_t)t->micro * t->in_count;
        DP_TRY(dp_net_forward(t->net, x, &run));
        DP_TRY(dp__train_dist_backward(t, &run, m == t->subdivisions - 1));
        dp__train_dist_micro_end(t, m);
        dp_net_metrics mt;
        DP_TRY(dp_net_metrics_get(t->net, &mt));
        loss += mt.loss_sum;
        correct += mt.top1;
    }
    DP_TRY(dp__train_dist_finish_step(t));
    // One small all-reduce: the global loss and accuracy for the reports, and whether any rank
    // was asked to stop, so that every rank decides the same.
    double sums[3] = {loss, (double)correct, stop_requested(t) ? 1.0 : 0.0};
    DP_TRY(dp__train_dist_sum(t, sums, 3));
    t->stop_now = sums[2] > 0;
    if (!isfinite(sums[0])) {
        return dp__train_non_finite_error(t, "the training loss is not finite");
    }
    float lr = dp_schedule_lr(&t->schedule, t->step);
    dp_status st = dp_optim_step(t->optim, dp_net_params(t->net), dp_net_grads(t->net),
                                 t->decay_norm ? NULL : dp_net_decay_mask(t->net), lr);
    if (st == DP_ERR_DATA) {
        return dp__train_non_finite_error(t, dp_error_message());
    }
    DP_TRY(st);
    t->win_loss += sums[0];
    t->win_correct += sums[1];
    t->win_samples += t->global_batch;
    t->win_steps++;
    t->ep_loss += sums[0];
    t->ep_correct += sums[1];
    t->ep_samples += t->global_batch;
    t->samples_total += t->global_batch;
    t->step++;
    if (t->replica_check_every > 0 && t->world > 1 && t->step % t->replica_check_every == 0) {
        DP_TRY(dp_comm_check_equal(t->comm, dp_net_params(t->net),
                                   dp_net_param_count(t->net) * sizeof(float),
                                   "the replica's parameters (replica drift)"));
    }
    return DP_OK;
}

static void report(trainer *t, dp_train_event event, long epoch, long step_in_epoch,
                   const eval_result *ev)
{
    double now = dp_time_s();
    double span = now - t->win_start_s;
    double loss = t->win_loss, correct = t->win_correct, wait = t->win_wait_s;
    long samples = t->win_samples;
    if (event == DP_TRAIN_EVENT_EPOCH) {
        // The epoch's averages over its training time (evaluation excluded).
        span = t->ep_train_s;
        loss = t->ep_loss;
        correct = t->ep_correct;
        wait = t->ep_wait_s;
        samples = t->ep_samples;
    }
    dp_train_progress p;
    memset(&p, 0, sizeof p);
    p.event = event;
    p.step = t->step;
    p.total_steps = t->total_steps;
    p.epoch = epoch;
    p.epochs = t->epochs;
    p.step_in_epoch = step_in_epoch;
    p.steps_per_epoch = t->steps_per_epoch;
    p.lr = dp_schedule_lr(&t->schedule, t->step > 0 ? t->step - 1 : 0);
    p.train_loss = samples > 0 ? loss / (double)samples : NAN;
    p.train_top1 = samples > 0 ? correct / (double)samples : NAN;
    p.img_per_s = span > 0 ? (double)samples / span : 0;
    p.data_wait_frac = span > 0 ? wait / span : 0;
    p.elapsed_s = now - t->run_start_s;
    double per_step = t->step > 0 ? p.elapsed_s / (double)t->step : 0;
    p.eta_s = per_step * (double)(t->total_steps - t->step);
    if (ev != NULL) {
        p.evaluated = 1;
        p.test_loss = ev->loss;
        p.test_top1 = ev->top1;
        p.test_top5 = ev->top5;
    }
    if (t->opt.progress != NULL && t->rank == 0) {
        t->opt.progress(&p, t->opt.progress_ctx);
    }
    if (t->rank == 0 && dp__train_log(t, &p) != DP_OK) {
        DP_LOG_WARN("%s", dp_error_message()); // a full disk must not stop training
    }
    t->win_start_s = now;
    t->win_wait_s = t->win_loss = t->win_correct = 0;
    t->win_samples = t->win_steps = 0;
}

// --- the run ---

static dp_status plan_steps(trainer *t)
{
    t->steps_per_epoch = dp_pipeline_batches_per_epoch(t->train_pipe);
    t->total_steps = t->steps_per_epoch * t->epochs;
    if (t->max_batches > 0 && t->max_batches < t->total_steps) {
        t->total_steps = t->max_batches;
    }
    return dp_schedule_from_cfg(&t->schedule, t->cfg, t->steps_per_epoch, t->total_steps);
}

static void report_start(trainer *t)
{
    if (t->opt.progress == NULL || t->rank != 0) {
        return;
    }
    char msg[1536], backend[400];
    dp_backend_choice_str(&t->backend, backend, sizeof backend);
    snprintf(msg, sizeof msg,
             "%s: %zu parameters, batch %ld (%d x %d per rank), %ld steps/epoch x %ld epochs = %ld "
             "steps; "
             "%d rank%s%s; backend %s%s%s%s; per rank %d CPU threads (OpenBLAS core %s), %d data "
             "worker%s; data %s",
             dp_cfg_path(t->cfg), dp_net_param_count(t->net), t->global_batch, t->subdivisions,
             t->micro, t->steps_per_epoch, t->epochs, t->total_steps, t->world,
             t->world == 1 ? "" : "s", t->deterministic ? " (deterministic)" : "", backend,
             t->backend.why_cpu[0] != '\0' ? " (" : "", t->backend.why_cpu,
             t->backend.why_cpu[0] != '\0' ? ")" : "", t->threads, dp_blas_corename(), t->workers,
             t->workers == 1 ? "" : "s", t->synthetic ? "synthetic" : t->train_path);
    dp_train_progress p;
    memset(&p, 0, sizeof p);
    p.event = DP_TRAIN_EVENT_START;
    p.message = msg;
    p.total_steps = t->total_steps;
    p.epochs = t->epochs;
    p.steps_per_epoch = t->steps_per_epoch;
    t->opt.progress(&p, t->opt.progress_ctx);
}

// Whether ev improves on the best so far (by min_delta), and so counts as the best checkpoint.
static int improves(trainer *t, const eval_result *ev)
{
    double v = t->monitor_loss ? ev->loss : ev->top1;
    if (!isfinite(v)) {
        return 0;
    }
    int better = isnan(t->best) ||
                 (t->monitor_loss ? v < t->best - t->min_delta : v > t->best + t->min_delta);
    if (better) {
        t->best = v;
        t->bad_epochs = 0;
    } else {
        t->bad_epochs++;
    }
    return better;
}

static dp_status train_loop(trainer *t, dp_train_result *res)
{
    eval_result ev = {NAN, NAN, NAN, 0};
    t->run_start_s = t->win_start_s = dp_time_s();
    long first_epoch = 0, first_in_epoch = 0;
    if (t->resumed) {
        first_epoch = t->resume_state.epoch;
        first_in_epoch = t->resume_state.next_batch;
        if (first_in_epoch >= t->steps_per_epoch) {
            first_epoch++;
            first_in_epoch = 0;
        }
    }
    for (long epoch = first_epoch; epoch < t->epochs && t->step < t->total_steps; epoch++) {
        long in_epoch = epoch == first_epoch ? first_in_epoch : 0;
        t->ep_start_s = dp_time_s();
        t->ep_loss = t->ep_correct = t->ep_wait_s = 0;
        t->ep_samples = 0;
        while (in_epoch < t->steps_per_epoch && t->step < t->total_steps) {
            const dp_pipeline_batch *b;
            double w0 = dp_time_s();
            DP_TRY(dp_pipeline_pop(t->train_pipe, &b));
            double waited = dp_time_s() - w0;
            t->win_wait_s += waited;
            t->ep_wait_s += waited;
            t->wait_total_s += waited;
            dp_status st = train_step(t, b);
            dp_pipeline_release(t->train_pipe, b);
            DP_TRY(st);
            in_epoch++;
            res->steps = t->step;
            if (t->stop_now) {
                res->stopped = 1;
                snprintf(res->stop_reason, sizeof res->stop_reason, "stopped by a signal");
                return dp__train_save_checkpoint(t, 0);
            }
            if (t->checkpoint_every > 0 && t->step % t->checkpoint_every == 0) {
                DP_TRY(dp__train_save_checkpoint(t, 0));
            }
            if (t->log_every > 0 && t->step % t->log_every == 0 && in_epoch < t->steps_per_epoch &&
                t->step < t->total_steps) {
                if (t->cuda != NULL) {
                    DP_TRY(dp__train_cuda_flush(t));
                }
                report(t, DP_TRAIN_EVENT_STEP, epoch + 1, in_epoch, NULL);
            }
        }
        if (t->cuda != NULL) {
            DP_TRY(dp__train_cuda_flush(t)); // the epoch's last stats, before its report
        }
        res->epochs = epoch + 1;
        t->ep_train_s = dp_time_s() - t->ep_start_s;
        int last = epoch + 1 == t->epochs || t->step >= t->total_steps;
        int do_eval = last || (t->eval_every > 0 && (epoch + 1) % t->eval_every == 0);
        int best = 0;
        if (do_eval) {
            DP_TRY(evaluate(t, &ev));
            res->test_top1 = ev.top1;
            res->test_loss = ev.loss;
            best = improves(t, &ev);
        }
        report(t, DP_TRAIN_EVENT_EPOCH, epoch + 1, in_epoch, do_eval ? &ev : NULL);
        if (t->checkpoint_every == 0 || last || best) {
            DP_TRY(dp__train_save_checkpoint(t, best));
        }
        if (t->patience > 0 && t->bad_epochs >= t->patience) {
            res->stopped = 1;
            snprintf(res->stop_reason, sizeof res->stop_reason,
                     "early stopping: no improvement of %s for %ld evaluations",
                     t->monitor_loss ? "test_loss" : "test_top1", t->bad_epochs);
            break;
        }
        if (t->stop_now) {
            res->stopped = 1;
            snprintf(res->stop_reason, sizeof res->stop_reason, "stopped by a signal");
            break;
        }
    }
    return DP_OK;
}

static dp_status eval_only(trainer *t, dp_train_result *res)
{
    DP_TRY(dp__train_load_checkpoint(t, t->opt.eval_only, 0));
    if (t->cuda != NULL) {
        DP_TRY(dp__train_cuda_upload(t));
    }
    eval_result ev;
    double start = dp_time_s();
    DP_TRY(evaluate(t, &ev));
    res->wall_s = dp_time_s() - start;
    res->steps = t->step;
    res->test_top1 = ev.top1;
    res->test_loss = ev.loss;
    return DP_OK;
}

// --bench N: 5 untimed and N timed training steps on one synthetic batch of the cfg's input
// shape (no data pipeline: compute alone, as the reference benchmarks measure), then as many
// evaluation forwards.
static dp_status bench(trainer *t, dp_train_result *res)
{
    size_t count = (size_t)t->global_batch * t->in_count;
    float *images = malloc(count * sizeof *images);
    int32_t *labels = malloc((size_t)t->global_batch * sizeof *labels);
    int64_t *records = malloc((size_t)t->global_batch * sizeof *records);
    if (images == NULL || labels == NULL || records == NULL) {
        free(images);
        free(labels);
        free(records);
        return dp_error_set(DP_ERR_NOMEM, "--bench: out of memory for one batch");
    }
    dp_rng_fill_normal(images, count, 0.0f, 1.0f, t->seed, 0, 0, 0x62656e63u);
    for (long i = 0; i < t->global_batch; i++) {
        labels[i] = (int32_t)(i % t->classes);
        records[i] = i;
    }
    dp_pipeline_batch b = {.epoch = 0,
                           .index = 0,
                           .count = t->global_batch,
                           .records = records,
                           .labels = labels,
                           .images = images};
    dp_status st = DP_OK;
    t->total_steps = 5 + t->opt.bench_steps;
    t->steps_per_epoch = t->total_steps;
    DP_TRY_GOTO(dp_schedule_from_cfg(&t->schedule, t->cfg, t->steps_per_epoch, t->total_steps), st,
                out);
    double start = 0;
    for (long i = 0; i < t->total_steps; i++) {
        if (i == 5) {
            start = dp_time_s();
        }
        DP_TRY_GOTO(train_step(t, &b), st, out);
    }
    if (t->cuda != NULL) { // the device runs behind the host: time until it is done
        DP_TRY_GOTO(dp__train_cuda_flush(t), st, out);
        DP_TRY_GOTO(dp__train_cuda_sync(t), st, out);
    }
    res->bench_train_img_per_s =
        (double)(t->opt.bench_steps * t->global_batch) / (dp_time_s() - start);
    res->steps = t->step;
    dp_net_run run = DP_NET_RUN_INIT;
    run.labels = labels;
    long evals = t->opt.bench_steps * t->subdivisions;
    for (long i = 0; i < evals + 5; i++) {
        if (i == 5) {
            start = dp_time_s();
        }
        if (t->cuda != NULL) {
            dp_net_metrics m;
            DP_TRY_GOTO(dp__train_cuda_eval_batch(t, images, labels, t->micro, 0, &m), st, out);
        } else {
            DP_TRY_GOTO(dp_net_forward(t->net, images, &run), st, out);
        }
    }
    if (t->cuda != NULL) {
        DP_TRY_GOTO(dp__train_cuda_sync(t), st, out);
    }
    res->bench_eval_img_per_s = (double)(evals * t->micro) / (dp_time_s() - start);
out:
    free(images);
    free(labels);
    free(records);
    return st;
}

static void destroy(trainer *t)
{
    dp__train_close_outputs(t);
    dp_pipeline_destroy(t->train_pipe);
    dp_dataset_destroy(t->train_ds);
    dp_dataset_destroy(t->test_ds);
    dp__train_cuda_stop(t); // before the network it points into
    dp_optim_destroy(t->optim);
    dp_net_destroy(t->net);
    dp__train_dist_stop(t);
}

static dp_status train(trainer *t, dp_train_result *res)
{
    DP_TRY(open_data(t));
    if (t->opt.resume != NULL) {
        DP_TRY(dp__train_load_checkpoint(t, t->opt.resume, 1));
    }
    DP_TRY(dp__train_dist_alloc_parts(t));
    char *text = NULL;
    DP_TRY(dp__train_cfg_text(t, &text));
    dp_status st = dp__train_dist_sync_start(t, text);
    free(text);
    DP_TRY(st);
    if (t->cuda != NULL) { // what every rank now holds: rank 0's (or the checkpoint's) state
        DP_TRY(dp__train_cuda_upload(t));
    }
    DP_TRY(start_pipeline(t, &t->train_pipe, 0, t->resumed ? &t->resume_state : NULL));
    DP_TRY(plan_steps(t));
    if (t->rank == 0) {
        DP_TRY(dp__train_open_outputs(t));
        snprintf(res->out_dir, sizeof res->out_dir, "%s", t->out_dir);
    }
    report_start(t);
    st = train_loop(t, res);
    res->wall_s = dp_time_s() - t->run_start_s;
    res->train_img_per_s = res->wall_s > 0 ? (double)t->samples_total / res->wall_s : 0;
    return st;
}

dp_status dp_train_run(const dp_cfg *cfg, const dp_train_options *opt, dp_train_result *res)
{
    memset(res, 0, sizeof *res);
    res->test_top1 = res->test_loss = NAN;
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.opt = *opt;
    t.loss_layer = -1;
    dp_status st;
    DP_TRY_GOTO(dp__train_dist_start(&t), st, out);
    res->rank = t.rank;
    res->world = t.world;
    DP_TRY_GOTO(read_settings(&t), st, out);
    dp_blas_set_threads(t.threads);
    DP_TRY_GOTO(build_net(&t), st, out);
    DP_TRY_GOTO(build_optimizer(&t), st, out);
    DP_TRY_GOTO(start_device(&t), st, out);
    if (opt->bench_steps > 0) {
        DP_TRY_GOTO(dp__train_dist_alloc_parts(&t), st, out);
        if (t.cuda != NULL) {
            DP_TRY_GOTO(dp__train_cuda_upload(&t), st, out);
        }
        DP_TRY_GOTO(bench(&t, res), st, out);
    } else if (opt->eval_only != NULL) {
        DP_TRY_GOTO(open_data(&t), st, out);
        DP_TRY_GOTO(eval_only(&t, res), st, out);
    } else {
        DP_TRY_GOTO(train(&t, res), st, out);
    }
out:
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", t.last_ckpt);
    if (t.cuda != NULL && dp__train_cuda_download(&t) != DP_OK) {
        DP_LOG_WARN("the parameters' checksum is of the host copy: %s", dp_error_message());
    }
    if (t.net != NULL) {
        dp_train_sha256_hex(res->params_sha256, dp_net_params(t.net), dp_net_param_count(t.net));
    }
    if (st != DP_OK && t.world > 1) {
        // The others would wait for this rank forever: end the whole job, saying why first.
        DP_LOG_ERROR("step %ld: %s", t.step, dp_error_message());
        dp_comm_abort(t.comm, 1);
    }
    destroy(&t);
    return st;
}
