// The CUDA side of the loss, mask and window layers ([softmax], [cost], [dropout], [crop]) and
// the table that finds a layer type's device functions. Each calls the step kernels of
// src/nn/cuda/step/ with the parameters the CPU layer would use, so the device computes what the
// CPU does (the dropout mask and the crop windows bit for bit). Layer types with no entry here cannot run on the GPU yet; the
// network says which when it is built (net_cuda.c).
#include <string.h>

#include "core/error.h"
#include "nn/layer_cuda.h"
#include "nn/layer_internal.h"

// --- [softmax]: softmax cross-entropy, the loss ---

// State: dlogits (n, classes) in the storage type, saved by forward for backward.
static size_t softmax_state_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype)
{
    return (size_t)n * (size_t)dp_shape_count(&d->l->in_shape) * dp_cuda_dtype_size(dtype);
}

static dp_xent_params softmax_params(const dp_layer_cuda *d, const dp_cuda_step *s)
{
    dp_xent_params xp = {.N = s->host->n,
                         .classes = (int)dp_shape_count(&d->l->in_shape),
                         .smoothing = (float)dp__softmax_smoothing(d->l),
                         .grad_scale = s->host->loss_scale * s->grad_mult};
    return xp;
}

static size_t softmax_workspace_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype,
                                      dp_cuda_layout layout)
{
    (void)dtype;
    (void)layout;
    dp_xent_params xp = {.N = n, .classes = (int)dp_shape_count(&d->l->in_shape)};
    return dp_cuda_softmax_xent_workspace_bytes(&xp);
}

// y = softmax(x); with labels also the loss stats into s->xent and (training) dlogits into the
// state. The stats stay on the device: the trainer reads them once per log interval.
static dp_status softmax_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    dp_xent_params xp = softmax_params(d, s);
    DP_TRY(dp_cuda_softmax_forward(s->ctx, d->y, d->x[0], xp.N, xp.classes, s->dtype));
    if (s->labels == NULL) {
        return DP_OK;
    }
    if (s->xent == NULL) {
        return dp_layer_error(d->l, DP_ERR_ARG,
                              "a forward with labels needs a place for the "
                              "loss stats");
    }
    void *dlogits = s->host->train ? d->state : NULL;
    dp_status st;
    if (s->labels_b != NULL && s->host->train) {
        st = dp_cuda_softmax_xent_mixed(s->ctx, dlogits, NULL, s->xent, d->x[0], s->labels,
                                        s->labels_b, s->mix_lambda, &xp, s->dtype, s->ws);
    } else {
        st = dp_cuda_softmax_xent(s->ctx, dlogits, NULL, s->xent, d->x[0], s->labels, &xp, s->dtype,
                                  s->ws);
    }
    return st == DP_OK ? DP_OK : dp_layer_error(d->l, st, "%s", dp_error_message());
}

// dx = dlogits (saved by forward), or dx += dlogits.
static dp_status softmax_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    if (s->labels == NULL) {
        return dp_layer_error(d->l, DP_ERR_ARG, "backward needs the labels of the forward pass");
    }
    if (d->dx[0] == NULL) {
        return DP_OK;
    }
    size_t count = (size_t)s->host->n * (size_t)dp_shape_count(&d->l->in_shape);
    if (d->l->dx_accumulate[0]) {
        return dp_cuda_add_dtype(s->ctx, d->dx[0], d->dx[0], d->state, count, s->dtype);
    }
    return dp_cuda_copy_dtype(s->ctx, d->dx[0], d->state, count, s->dtype);
}

static const dp_layer_cuda_ops softmax_cuda = {
    .cpu = &dp_layer_softmax_ops,
    .state_bytes = softmax_state_bytes,
    .workspace_bytes = softmax_workspace_bytes,
    .forward = softmax_forward,
    .backward = softmax_backward,
};

// --- [cost] after [softmax]: y is the softmax's output itself; backward never runs ---

static dp_status cost_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    (void)d;
    (void)s;
    return DP_OK;
}

static dp_status cost_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    (void)s;
    return dp_layer_error(d->l, DP_ERR_INTERNAL, "backward of [cost] is never run");
}

static const dp_layer_cuda_ops cost_cuda = {
    .cpu = &dp_layer_cost_ops,
    .alias = 1,
    .forward = cost_forward,
    .backward = cost_backward,
};

// --- [dropout]: the CPU's Philox mask, keyed by (seed; step, global sample, layer) ---

static int channels_of(const dp_layer *l)
{
    return (int)l->in_shape.dims[0];
}

// Training: the mask. Evaluation: the identity, as dropout with p = 0 (every element kept,
// scaled by exactly 1), so no other kernel is needed.
static dp_status dropout_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    dp_dropout_params q = dp__dropout_params(d->l, s->host);
    if (!s->host->train) {
        q.p = 0.0f;
        q.kind = DP_DROPOUT_STANDARD;
    }
    return dp_cuda_dropout_forward(s->ctx, d->y, d->x[0], &q, s->layout, channels_of(d->l),
                                   s->dtype);
}

static dp_status dropout_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    if (d->dx[0] == NULL) {
        return DP_OK;
    }
    dp_dropout_params q = dp__dropout_params(d->l, s->host);
    return dp_cuda_dropout_backward(s->ctx, d->dx[0], d->dy, &q, d->l->dx_accumulate[0], s->layout,
                                    channels_of(d->l), s->dtype);
}

static const dp_layer_cuda_ops dropout_cuda = {
    .cpu = &dp_layer_dropout_ops,
    .forward = dropout_forward,
    .backward = dropout_backward,
};

// --- [crop]: the CPU's window and flip per sample (step/crop.cu) ---

static dp_crop_random_params crop_params(const dp_layer_cuda *d, const dp_cuda_step *s)
{
    const dp_layer *l = d->l;
    dp_crop_random_params p = {.N = s->N,
                               .C = (int)l->in_shape.dims[0],
                               .H = (int)l->in_shape.dims[1],
                               .W = (int)l->in_shape.dims[2],
                               .out_h = (int)l->out_shape.dims[1],
                               .out_w = (int)l->out_shape.dims[2],
                               .train = s->host->train,
                               .flip = dp__crop_flip(l),
                               .seed = s->host->seed,
                               .step = (uint32_t)s->host->step,
                               .first_sample = (uint32_t)s->host->first_sample,
                               .layer = (uint32_t)l->index};
    return p;
}

static dp_status crop_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    dp_crop_random_params p = crop_params(d, s);
    return dp_cuda_crop_random_forward(s->ctx, d->y, d->x[0], &p, s->layout, s->dtype);
}

static dp_status crop_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    if (d->dx[0] == NULL) {
        return DP_OK;
    }
    dp_crop_random_params p = crop_params(d, s);
    return dp_cuda_crop_random_backward(s->ctx, d->dx[0], d->dy, &p, d->l->dx_accumulate[0],
                                        s->layout, s->dtype);
}

static const dp_layer_cuda_ops crop_cuda = {
    .cpu = &dp_layer_crop_ops,
    .forward = crop_forward,
    .backward = crop_backward,
};

// --- the table ---

static const dp_layer_cuda_ops *const table[] = {&dp__layer_cuda_conv,
                                                 &dp__layer_cuda_connected,
                                                 &dp__layer_cuda_batchnorm,
                                                 &dp__layer_cuda_activation,
                                                 &dp__layer_cuda_maxpool,
                                                 &dp__layer_cuda_avgpool,
                                                 &dp__layer_cuda_shortcut,
                                                 &dp__layer_cuda_route,
                                                 &dp__layer_cuda_flatten,
                                                 &softmax_cuda,
                                                 &cost_cuda,
                                                 &dropout_cuda,
                                                 &crop_cuda};

const dp_layer_cuda_ops *dp__layer_cuda_find(const dp_layer_ops *cpu)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i]->cpu == cpu) {
            return table[i];
        }
    }
    return NULL;
}
