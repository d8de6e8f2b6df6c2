// The network on one CUDA device: the memory plan (one device allocation carved twice, first
// to count, then for real), the wiring of the layers' device views (the CPU's graph: inputs,
// gradient pass-through and accumulation flags come from the host layers), the host mirror's
// uploads and downloads, the staged input slots ordered by events, forward and backward.
#include "nn/net_cuda.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/cuda/ops.h"
#include "nn/layer_cuda.h"
#include "nn/layer_internal.h"
#include "nn/net_internal.h"

enum {
    ALIGN = 256
}; // cuDNN and vector loads want more than 16 bytes; 256 is what cudaMalloc gives

// Event slots of the context (DP_CUDA_MAX_EVENTS): per input slot, "copied" (H2D stream) and
// "released" (compute stream).
enum { EV_STAGED = 0, EV_RELEASED = EV_STAGED + DP_NET_CUDA_SLOTS };

typedef struct input_slot {
    float *images;     // (batch, C, H, W) NCHW float32, device
    int32_t *labels;   // (batch)
    int32_t *labels_b; // (batch)
    float *mix_lambda; // (batch)
    int n;             // samples staged
    int mixed;         // labels_b and mix_lambda were staged
    int released_once; // the release event has been recorded (else nothing to wait for)
} input_slot;

struct dp_net_cuda {
    dp_net *net;
    dp_cuda_ctx *ctx;
    dp_cuda_dtype dtype;
    dp_cuda_layout layout;
    dp_layer_cuda *layers; // [net->n_layers]
    float grad_mult;

    // --- the device plan ---
    char *base; // the one allocation
    size_t bytes;
    float *params, *grads, *buffers;
    uint8_t *decay_mask;
    input_slot slots[DP_NET_CUDA_SLOTS];
    void *input;      // (batch, C, H, W) in dtype and layout: the staged batch converted, or
                      // NULL when the staged float32 NCHW batch is read as it is
    void *scratch[2]; // each the largest activation (dtype)
    dp_cuda_xent_result *stats; // [n_stats]
    int n_stats;
    void *ws;
    size_t ws_bytes;
};

// A bump carve over base (NULL: only count).
typedef struct carver {
    char *base;
    size_t used;
} carver;

static void *take(carver *c, size_t bytes)
{
    size_t at = (c->used + ALIGN - 1) / ALIGN * ALIGN;
    c->used = at + bytes;
    return c->base != NULL ? c->base + at : NULL;
}

static size_t out_count(const dp_layer *l, int n)
{
    return (size_t)n * (size_t)dp_shape_count(&l->out_shape);
}

static void carve_layer(dp_net_cuda *nc, carver *c, dp_layer_cuda *d, size_t *ws)
{
    const dp_net *net = nc->net;
    dp_layer *l = d->l;
    size_t esize = dp_cuda_dtype_size(nc->dtype);
    if (d->ops->alias) {
        d->y = d->dy = NULL; // wired to the producer's in wire()
    } else {
        d->y = take(c, out_count(l, net->batch) * esize);
        d->dy = net->train ? take(c, out_count(l, net->batch) * esize) : NULL;
    }
    d->state = NULL;
    if (d->ops->state_bytes != NULL) {
        d->state = take(c, d->ops->state_bytes(d, net->batch, nc->dtype));
    }
    if (d->ops->workspace_bytes != NULL) {
        size_t w = d->ops->workspace_bytes(d, net->batch, nc->dtype, nc->layout);
        *ws = *ws > w ? *ws : w;
    }
}

// Carves every block: from NULL to count the bytes, then from the allocation.
static size_t carve(dp_net_cuda *nc, char *base)
{
    const dp_net *net = nc->net;
    carver c = {base, 0};
    nc->params = take(&c, net->n_params * sizeof(float));
    nc->grads = net->train ? take(&c, net->n_params * sizeof(float)) : NULL;
    nc->buffers = take(&c, net->n_buffers * sizeof(float));
    nc->decay_mask = take(&c, net->n_params);
    size_t in = (size_t)net->batch * (size_t)dp_shape_count(&net->input);
    for (int k = 0; k < DP_NET_CUDA_SLOTS; k++) {
        input_slot *s = &nc->slots[k];
        s->images = take(&c, in * sizeof(float));
        s->labels = take(&c, (size_t)net->batch * sizeof(int32_t));
        s->labels_b = take(&c, (size_t)net->batch * sizeof(int32_t));
        s->mix_lambda = take(&c, (size_t)net->batch * sizeof(float));
    }
    nc->input = NULL;
    if (nc->dtype != DP_CUDA_F32 || nc->layout != DP_CUDA_NCHW) {
        nc->input = take(&c, in * dp_cuda_dtype_size(nc->dtype));
    }
    size_t biggest = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const dp_layer *l = &net->layers[i];
        size_t a = (size_t)net->batch * (size_t)dp_shape_count(&l->in_shape);
        size_t b = out_count(l, net->batch);
        biggest = biggest > a ? biggest : a;
        biggest = biggest > b ? biggest : b;
    }
    for (int k = 0; k < 2; k++) {
        nc->scratch[k] = take(&c, biggest * dp_cuda_dtype_size(nc->dtype));
    }
    nc->stats = take(&c, (size_t)nc->n_stats * sizeof(dp_cuda_xent_result));
    size_t ws = 0;
    for (int i = 0; i < net->n_layers; i++) {
        carve_layer(nc, &c, &nc->layers[i], &ws);
    }
    nc->ws_bytes = ws;
    nc->ws = take(&c, ws);
    return c.used;
}

// The device views, as net_exec.c's wire() does on the host: parameters into the flat buffers
// (offsets of the host layers), inputs at the producers' outputs, and an alias layer's output
// and gradient at its producer's.
static dp_status wire(dp_net_cuda *nc)
{
    dp_net *net = nc->net;
    for (int i = 0; i < net->n_layers; i++) {
        dp_layer_cuda *d = &nc->layers[i];
        const dp_layer *l = d->l;
        for (int p = 0; p < l->n_params; p++) {
            d->param[p] = nc->params + l->params[p].offset;
            d->grad[p] = nc->grads != NULL ? nc->grads + l->params[p].offset : NULL;
        }
        for (int b = 0; b < l->n_buffers; b++) {
            d->buffer[b] = nc->buffers + l->buffers[b].offset;
        }
        for (int k = 0; k < l->n_inputs; k++) {
            int src = l->inputs[k];
            d->x[k] = src >= 0 ? nc->layers[src].y : NULL; // the input: bound per forward
            d->dx[k] = src >= 0 ? nc->layers[src].dy : NULL;
        }
        if (d->ops->alias) {
            if (l->n_inputs != 1 || l->inputs[0] < 0) {
                return dp_layer_error(l, DP_ERR_UNSUPPORTED,
                                      "on the GPU this layer must follow another layer");
            }
            d->y = d->x[0];
            d->dy = d->dx[0];
        }
    }
    return DP_OK;
}

static dp_status find_ops(dp_net_cuda *nc)
{
    for (int i = 0; i < nc->net->n_layers; i++) {
        dp_layer *l = &nc->net->layers[i];
        dp_layer_cuda *d = &nc->layers[i];
        d->l = l;
        d->ops = dp__layer_cuda_find(l->ops);
        if (d->ops == NULL) {
            return dp_layer_error(l, DP_ERR_UNSUPPORTED,
                                  "[%s] has no CUDA implementation yet: use backend=cpu",
                                  l->ops->name);
        }
    }
    return DP_OK;
}

static dp_status plan_layers(dp_net_cuda *nc)
{
    for (int i = 0; i < nc->net->n_layers; i++) {
        dp_layer_cuda *d = &nc->layers[i];
        if (d->ops->plan != NULL) {
            DP_TRY(d->ops->plan(d, nc->net->batch, nc->ctx));
        }
    }
    return DP_OK;
}

dp_status dp_net_cuda_create(dp_net_cuda **out, dp_net *net, dp_cuda_ctx *ctx, int n_stats)
{
    *out = NULL;
    if (net->arena == NULL || n_stats < 1) {
        return dp_error_set(DP_ERR_ARG, "the device network needs an allocated host network "
                                        "and at least one stats slot");
    }
    dp_net_cuda *nc = calloc(1, sizeof *nc);
    if (nc == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "%s: out of memory", dp_cfg_path(net->cfg));
    }
    nc->net = net;
    nc->ctx = ctx;
    nc->n_stats = n_stats;
    nc->grad_mult = 1.0f;
    const dp_cuda_ctx_params *cp = dp_cuda_ctx_params_of(ctx);
    nc->dtype = dp_cuda_precision_dtype(cp->precision);
    nc->layout = cp->nhwc ? DP_CUDA_NHWC : DP_CUDA_NCHW;
    dp_status st = DP_OK;
    nc->layers = calloc((size_t)net->n_layers, sizeof *nc->layers);
    if (nc->layers == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "%s: out of memory", dp_cfg_path(net->cfg));
        goto fail;
    }
    DP_TRY_GOTO(find_ops(nc), st, fail);
    DP_TRY_GOTO(plan_layers(nc), st, fail);
    nc->bytes = carve(nc, NULL);
    void *base = NULL;
    DP_TRY_GOTO(dp_cuda_malloc(ctx, &base, nc->bytes), st, fail);
    nc->base = base;
    size_t again = carve(nc, nc->base);
    DP_ASSERT(again == nc->bytes);
    DP_TRY_GOTO(wire(nc), st, fail);
    DP_TRY_GOTO(dp_cuda_h2d_sync(ctx, nc->decay_mask, net->decay_mask, net->n_params), st, fail);
    if (nc->grads != NULL) {
        DP_TRY_GOTO(dp_cuda_memset_async(ctx, nc->grads, 0, net->n_params * sizeof(float)), st,
                    fail);
    }
    *out = nc;
    return DP_OK;
fail:
    dp_net_cuda_destroy(nc);
    return st;
}

void dp_net_cuda_destroy(dp_net_cuda *nc)
{
    if (nc == NULL) {
        return;
    }
    for (int i = 0; nc->layers != NULL && i < nc->net->n_layers; i++) {
        dp_layer_cuda *d = &nc->layers[i];
        if (d->ops != NULL && d->ops->destroy != NULL) {
            d->ops->destroy(d);
        }
    }
    free(nc->layers);
    if (nc->base != NULL) {
        dp_cuda_free(nc->ctx, nc->base);
    }
    free(nc);
}

size_t dp_net_cuda_memory_bytes(const dp_net_cuda *nc)
{
    return nc->bytes;
}

float *dp_net_cuda_params(dp_net_cuda *nc)
{
    return nc->params;
}

float *dp_net_cuda_grads(dp_net_cuda *nc)
{
    return nc->grads;
}

float *dp_net_cuda_buffers(dp_net_cuda *nc)
{
    return nc->buffers;
}

const uint8_t *dp_net_cuda_decay_mask(dp_net_cuda *nc)
{
    return nc->decay_mask;
}

void dp_net_cuda_set_grad_mult(dp_net_cuda *nc, float mult)
{
    nc->grad_mult = mult;
}

// --- host mirror ---

dp_status dp_net_cuda_params_changed(dp_net_cuda *nc)
{
    for (int i = 0; i < nc->net->n_layers; i++) {
        dp_layer_cuda *d = &nc->layers[i];
        if (d->ops->params_changed != NULL) {
            DP_TRY(d->ops->params_changed(d));
        }
    }
    return DP_OK;
}

dp_status dp_net_cuda_upload(dp_net_cuda *nc)
{
    const dp_net *net = nc->net;
    DP_TRY(dp_cuda_h2d_sync(nc->ctx, nc->params, net->params, net->n_params * sizeof(float)));
    DP_TRY(dp_cuda_h2d_sync(nc->ctx, nc->buffers, net->buffers, net->n_buffers * sizeof(float)));
    return dp_net_cuda_params_changed(nc);
}

dp_status dp_net_cuda_download(dp_net_cuda *nc)
{
    const dp_net *net = nc->net;
    DP_TRY(dp_cuda_d2h_sync(nc->ctx, net->params, nc->params, net->n_params * sizeof(float)));
    return dp_cuda_d2h_sync(nc->ctx, net->buffers, nc->buffers, net->n_buffers * sizeof(float));
}

dp_status dp_net_cuda_download_grads(dp_net_cuda *nc)
{
    const dp_net *net = nc->net;
    if (nc->grads == NULL) {
        return dp_error_set(DP_ERR_ARG, "the network was not allocated to train: no gradients");
    }
    return dp_cuda_d2h_sync(nc->ctx, net->grads, nc->grads, net->n_params * sizeof(float));
}

dp_status dp_net_cuda_download_activation(dp_net_cuda *nc, int index, int grad, float *out, int n)
{
    const dp_net *net = nc->net;
    if (index < 0 || index >= net->n_layers || n < 1 || n > net->batch) {
        return dp_error_set(DP_ERR_ARG,
                            "activation of layer %d for %d samples: the network has "
                            "%d layers and batch %d",
                            index, n, net->n_layers, net->batch);
    }
    if (nc->dtype != DP_CUDA_F32 || nc->layout != DP_CUDA_NCHW) {
        return dp_error_set(DP_ERR_UNSUPPORTED, "activations are read back as float32 NCHW only");
    }
    const dp_layer_cuda *d = &nc->layers[index];
    const void *src = grad ? d->dy : d->y;
    if (src == NULL) {
        return dp_layer_error(d->l, DP_ERR_ARG, "keeps no %s on the device",
                              grad ? "output gradient" : "output");
    }
    return dp_cuda_d2h_sync(nc->ctx, out, src, out_count(d->l, n) * sizeof(float));
}

// --- input slots ---

static dp_status check_slot(const dp_net_cuda *nc, int slot)
{
    if (slot < 0 || slot >= DP_NET_CUDA_SLOTS) {
        return dp_error_set(DP_ERR_ARG, "input slot %d is not in 0..%d", slot,
                            DP_NET_CUDA_SLOTS - 1);
    }
    (void)nc;
    return DP_OK;
}

dp_status dp_net_cuda_stage(dp_net_cuda *nc, int slot, const float *images, const int32_t *labels,
                            const int32_t *labels_b, const float *mix_lambda, int n)
{
    DP_TRY(check_slot(nc, slot));
    if (n < 1 || n > nc->net->batch || images == NULL ||
        (labels_b == NULL) != (mix_lambda == NULL)) {
        return dp_error_set(DP_ERR_ARG,
                            "staging %d samples (batch %d): images, and labels_b with "
                            "mix_lambda, are needed",
                            n, nc->net->batch);
    }
    input_slot *s = &nc->slots[slot];
    if (s->released_once) {
        // The compute stream may still read the slot's previous batch.
        DP_TRY(dp_cuda_stream_wait(nc->ctx, DP_CUDA_H2D, EV_RELEASED + slot));
    }
    size_t in = (size_t)n * (size_t)dp_shape_count(&nc->net->input);
    DP_TRY(dp_cuda_h2d_async(nc->ctx, s->images, images, in * sizeof(float)));
    if (n < nc->net->batch) {
        // The layers run whole batches (layer_cuda_linear.c): the tail must hold finite values.
        size_t all = (size_t)nc->net->batch * (size_t)dp_shape_count(&nc->net->input);
        DP_TRY(dp_cuda_memset_async(nc->ctx, s->images + in, 0, (all - in) * sizeof(float)));
    }
    if (labels != NULL) {
        DP_TRY(dp_cuda_h2d_async(nc->ctx, s->labels, labels, (size_t)n * sizeof(int32_t)));
    }
    if (labels_b != NULL) {
        DP_TRY(dp_cuda_h2d_async(nc->ctx, s->labels_b, labels_b, (size_t)n * sizeof(int32_t)));
        DP_TRY(dp_cuda_h2d_async(nc->ctx, s->mix_lambda, mix_lambda, (size_t)n * sizeof(float)));
    }
    s->n = n;
    s->mixed = labels_b != NULL;
    return dp_cuda_event_record(nc->ctx, EV_STAGED + slot, DP_CUDA_H2D);
}

dp_status dp_net_cuda_release(dp_net_cuda *nc, int slot)
{
    DP_TRY(check_slot(nc, slot));
    DP_TRY(dp_cuda_event_record(nc->ctx, EV_RELEASED + slot, DP_CUDA_COMPUTE));
    nc->slots[slot].released_once = 1;
    return DP_OK;
}

// --- forward and backward ---

static dp_status make_steps(dp_net_cuda *nc, int slot, const dp_net_run *run, int with_labels,
                            dp_step *host, dp_cuda_step *dev)
{
    const dp_net *net = nc->net;
    const input_slot *in = &nc->slots[slot];
    int n = run->n > 0 ? run->n : net->batch;
    if (n > in->n) {
        return dp_error_set(DP_ERR_ARG, "a pass over %d samples of slot %d, which holds %d", n,
                            slot, in->n);
    }
    if (run->train && !net->train) {
        return dp_error_set(DP_ERR_ARG, "forward in training mode on a network built for "
                                        "evaluation only");
    }
    if (run->train && n != net->batch) {
        // Batch statistics would include the padded tail of the slot.
        return dp_error_set(DP_ERR_ARG,
                            "training on the GPU takes whole micro-batches of %d, "
                            "not %d samples",
                            net->batch, n);
    }
    memset(host, 0, sizeof *host);
    host->n = n;
    host->train = run->train;
    host->accumulate = run->accumulate;
    host->step = run->step;
    host->seed = run->seed;
    host->first_sample = run->first_sample;
    host->loss_scale = run->loss_scale;
    memset(dev, 0, sizeof *dev);
    dev->host = host;
    dev->ctx = nc->ctx;
    dev->dtype = nc->dtype;
    dev->layout = nc->layout;
    dev->labels = with_labels ? in->labels : NULL;
    dev->labels_b = with_labels && in->mixed ? in->labels_b : NULL;
    dev->mix_lambda = with_labels && in->mixed ? in->mix_lambda : NULL;
    dev->grad_mult = nc->grad_mult;
    dev->ws = nc->ws;
    dev->ws_bytes = nc->ws_bytes;
    dev->scratch[0] = nc->scratch[0];
    dev->scratch[1] = nc->scratch[1];
    dev->N = net->batch;
    return DP_OK;
}

static void bind_input(dp_net_cuda *nc, int slot)
{
    void *x = nc->input != NULL ? nc->input : nc->slots[slot].images;
    for (int i = 0; i < nc->net->n_layers; i++) {
        dp_layer_cuda *d = &nc->layers[i];
        for (int k = 0; k < d->l->n_inputs; k++) {
            if (d->l->inputs[k] < 0) {
                d->x[k] = x;
            }
        }
    }
}

// The staged float32 NCHW batch into the network's storage type and layout (one pass).
static dp_status convert_input(dp_net_cuda *nc, int slot)
{
    if (nc->input == NULL) {
        return DP_OK;
    }
    const dp_shape *in = &nc->net->input;
    return dp_cuda_convert(nc->ctx, nc->input, nc->layout, nc->dtype, nc->slots[slot].images,
                           DP_CUDA_NCHW, DP_CUDA_F32, nc->net->batch, (int)in->dims[0],
                           (size_t)(in->dims[1] * in->dims[2]));
}

dp_status dp_net_cuda_forward(dp_net_cuda *nc, int slot, const dp_net_run *run, int with_labels,
                              int stat)
{
    DP_TRY(check_slot(nc, slot));
    if (stat < 0 || stat >= nc->n_stats) {
        return dp_error_set(DP_ERR_ARG, "stats slot %d is not in 0..%d", stat, nc->n_stats - 1);
    }
    dp_step host;
    dp_cuda_step dev;
    DP_TRY(make_steps(nc, slot, run, with_labels, &host, &dev));
    dev.xent = &nc->stats[stat];
    DP_TRY(dp_cuda_stream_wait(nc->ctx, DP_CUDA_COMPUTE, EV_STAGED + slot));
    DP_TRY(convert_input(nc, slot));
    bind_input(nc, slot);
    for (int i = 0; i < nc->net->n_layers; i++) {
        dp_layer_cuda *d = &nc->layers[i];
        DP_TRY(d->ops->forward(d, &dev));
    }
    return DP_OK;
}

dp_status dp_net_cuda_backward(dp_net_cuda *nc, int slot, const dp_net_run *run)
{
    return dp_net_cuda_backward_hook(nc, slot, run, NULL, NULL);
}

dp_status dp_net_cuda_backward_hook(dp_net_cuda *nc, int slot, const dp_net_run *run,
                                    dp_net_cuda_layer_done_fn done, void *done_ctx)
{
    DP_TRY(check_slot(nc, slot));
    const dp_net *net = nc->net;
    if (net->loss_layer < 0) {
        return dp_error_set(DP_ERR_CFG, "%s: the network has no [softmax] layer to compute a loss",
                            dp_cfg_path(net->cfg));
    }
    if (!net->train) {
        return dp_error_set(DP_ERR_ARG, "backward on a network built for evaluation only");
    }
    dp_step host;
    dp_cuda_step dev;
    DP_TRY(make_steps(nc, slot, run, 1, &host, &dev));
    bind_input(nc, slot);
    for (int i = net->loss_layer; i >= 0; i--) {
        dp_layer_cuda *d = &nc->layers[i];
        DP_TRY(d->ops->backward(d, &dev));
        if (done != NULL) {
            DP_TRY(done(done_ctx, i));
        }
    }
    return DP_OK;
}

// --- metrics ---

dp_status dp_net_cuda_read_stats(dp_net_cuda *nc, int first, int count, int n, dp_xent_stats *out)
{
    const dp_net *net = nc->net;
    if (first < 0 || count < 1 || first + count > nc->n_stats) {
        return dp_error_set(DP_ERR_ARG, "stats slots %d..%d are not in 0..%d", first,
                            first + count - 1, nc->n_stats - 1);
    }
    if (net->loss_layer < 0) {
        return dp_error_set(DP_ERR_CFG, "%s: the network has no [softmax] layer to compute a loss",
                            dp_cfg_path(net->cfg));
    }
    dp_layer *loss = &net->layers[net->loss_layer];
    int classes = (int)dp_shape_count(&loss->in_shape);
    for (int i = 0; i < count; i++) {
        dp_status st = dp_cuda_xent_result_read(nc->ctx, &out[i], &nc->stats[first + i], classes);
        if (st != DP_OK) {
            return dp_layer_error(loss, st, "%s", dp_error_message());
        }
    }
    dp__softmax_stats_set(loss, &out[count - 1], n);
    return DP_OK;
}
