// The CUDA side of the layers that move or combine activations: [maxpool], [avgpool] (windows
// and global), [shortcut] (fused with its activation where the CPU fuses it, else followed by
// layer_cuda_post.c), [route] (channel copies) and [flatten] (NHWC to the CPU's C H W order).
// Each calls the launchers of src/nn/cuda/ops.h with the CPU layer's parameters (the
// accessors of layer_internal.h), over the network's batch (dp_cuda_step.N).
#include "core/error.h"
#include "nn/cuda/ops.h"
#include "nn/cuda/step/step_ops.h"
#include "nn/layer_cuda.h"
#include "nn/layer_internal.h"
#include "nn/layer_post.h"

static dp_status named(const dp_layer_cuda *d, dp_status st)
{
    return st == DP_OK ? DP_OK : dp_layer_error(d->l, st, "%s", dp_error_message());
}

static size_t out_count(const dp_layer_cuda *d, int n)
{
    return (size_t)n * (size_t)dp_shape_count(&d->l->out_shape);
}

// --- [maxpool]: the state is the argmax of every output (int32) ---

static dp_pool_params pool_at(const dp_layer_cuda *d, int n)
{
    dp_pool_params p = *dp__pool_params(d->l);
    p.N = n;
    return p;
}

static size_t maxpool_state_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype)
{
    (void)dtype;
    return out_count(d, n) * sizeof(int32_t);
}

static dp_status maxpool_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    dp_pool_params p = pool_at(d, s->N);
    return named(d,
                 dp_cuda_maxpool_forward(s->ctx, d->y, d->state, d->x[0], &p, s->layout, s->dtype));
}

static dp_status maxpool_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    if (d->dx[0] == NULL) {
        return DP_OK;
    }
    dp_pool_params p = pool_at(d, s->N);
    return named(d, dp_cuda_maxpool_backward(s->ctx, d->dx[0], d->dy, d->state, &p,
                                             d->l->dx_accumulate[0], s->layout, s->dtype));
}

const dp_layer_cuda_ops dp__layer_cuda_maxpool = {
    .cpu = &dp_layer_maxpool_ops,
    .state_bytes = maxpool_state_bytes,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
};

// --- [avgpool] ---

static size_t plane_of(const dp_layer *l)
{
    return (size_t)(l->in_shape.dims[1] * l->in_shape.dims[2]);
}

static dp_status avgpool_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    if (dp__pool_global(d->l)) {
        return named(d, dp_cuda_global_avgpool_forward(s->ctx, d->y, d->x[0], s->N,
                                                       (int)d->l->in_shape.dims[0], plane_of(d->l),
                                                       s->layout, s->dtype));
    }
    dp_pool_params p = pool_at(d, s->N);
    return named(d, dp_cuda_avgpool_forward(s->ctx, d->y, d->x[0], &p, s->layout, s->dtype));
}

static dp_status avgpool_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    if (d->dx[0] == NULL) {
        return DP_OK;
    }
    int acc = d->l->dx_accumulate[0];
    if (dp__pool_global(d->l)) {
        return named(d, dp_cuda_global_avgpool_backward(s->ctx, d->dx[0], d->dy, s->N,
                                                        (int)d->l->in_shape.dims[0], plane_of(d->l),
                                                        acc, s->layout, s->dtype));
    }
    dp_pool_params p = pool_at(d, s->N);
    return named(d,
                 dp_cuda_avgpool_backward(s->ctx, d->dx[0], d->dy, &p, acc, s->layout, s->dtype));
}

const dp_layer_cuda_ops dp__layer_cuda_avgpool = {
    .cpu = &dp_layer_avgpool_ops,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};

// --- [shortcut]: y = act(alpha x + beta from) ---

static dp_shortcut_params shortcut_at(const dp_layer_cuda *d, int n)
{
    dp_shortcut_params q = *dp__shortcut_params(d->l);
    q.N = n;
    return q;
}

static size_t shortcut_state_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype)
{
    const dp_shortcut_params *q = dp__shortcut_params(d->l);
    return dp__cuda_post_state_bytes(dp__shortcut_post(d->l), n, q->C, (size_t)q->H * (size_t)q->W,
                                     dtype);
}

static size_t shortcut_workspace_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype,
                                       dp_cuda_layout layout)
{
    (void)dtype;
    const dp_shortcut_params *q = dp__shortcut_params(d->l);
    return dp__cuda_post_workspace_bytes(dp__shortcut_post(d->l), n, q->C,
                                         (size_t)q->H * (size_t)q->W, layout);
}

static dp_status shortcut_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const dp__post *post = dp__shortcut_post(d->l);
    dp_shortcut_params q = shortcut_at(d, s->N);
    if (dp__shortcut_fused(d->l)) {
        return named(d, dp_cuda_shortcut_act_forward(s->ctx, d->y, d->x[0], d->x[1], &q, post->act,
                                                     post->slope, s->dtype));
    }
    dp_status st = dp_cuda_shortcut_forward(s->ctx, dp__cuda_post_raw(d, post), d->x[0], d->x[1],
                                            &q, s->layout, s->dtype);
    if (st == DP_OK) {
        st = dp__cuda_post_forward(d, post, s, q.C, (size_t)q.H * (size_t)q.W);
    }
    return named(d, st);
}

static dp_status shortcut_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const dp__post *post = dp__shortcut_post(d->l);
    dp_shortcut_params q = shortcut_at(d, s->N);
    int acc0 = d->l->dx_accumulate[0], acc1 = d->l->dx_accumulate[1];
    if (dp__shortcut_fused(d->l)) {
        return named(d,
                     dp_cuda_shortcut_act_backward(s->ctx, d->dx[0], d->dx[1], d->dy, d->y, &q,
                                                   post->act, post->slope, acc0, acc1, s->dtype));
    }
    const void *dz = NULL;
    dp_status st = dp__cuda_post_backward(d, post, s, q.C, (size_t)q.H * (size_t)q.W, &dz);
    if (st == DP_OK) {
        st = dp_cuda_shortcut_backward(s->ctx, d->dx[0], d->dx[1], dz, &q, acc0, acc1, s->layout,
                                       s->dtype);
    }
    return named(d, st);
}

const dp_layer_cuda_ops dp__layer_cuda_shortcut = {
    .cpu = &dp_layer_shortcut_ops,
    .state_bytes = shortcut_state_bytes,
    .workspace_bytes = shortcut_workspace_bytes,
    .forward = shortcut_forward,
    .backward = shortcut_backward,
};

// --- [route]: the inputs' channels one after the other ---

static dp_status route_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const dp_layer *l = d->l;
    int C = (int)l->out_shape.dims[0], at = 0;
    size_t hw = (size_t)(l->out_shape.dims[1] * l->out_shape.dims[2]);
    for (int k = 0; k < l->n_inputs; k++) {
        int ck = (int)(l->in_count[k] / (int64_t)hw);
        DP_TRY(named(d, dp_cuda_channel_copy(s->ctx, d->y, C, at, d->x[k], ck, 0, ck, s->N, hw, 0,
                                             s->layout, s->dtype)));
        at += ck;
    }
    return DP_OK;
}

static dp_status route_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const dp_layer *l = d->l;
    int C = (int)l->out_shape.dims[0], at = 0;
    size_t hw = (size_t)(l->out_shape.dims[1] * l->out_shape.dims[2]);
    for (int k = 0; k < l->n_inputs; k++) {
        int ck = (int)(l->in_count[k] / (int64_t)hw);
        if (d->dx[k] != NULL) {
            DP_TRY(named(d, dp_cuda_channel_copy(s->ctx, d->dx[k], ck, 0, d->dy, C, at, ck, s->N,
                                                 hw, l->dx_accumulate[k], s->layout, s->dtype)));
        }
        at += ck;
    }
    return DP_OK;
}

const dp_layer_cuda_ops dp__layer_cuda_route = {
    .cpu = &dp_layer_route_ops,
    .forward = route_forward,
    .backward = route_backward,
};

// --- [flatten]: (N, C, H, W) in the layout to (N, C H W) in the CPU's order ---

static dp_status flatten_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const dp_shape *in = &d->l->in_shape;
    return named(d, dp_cuda_convert(s->ctx, d->y, DP_CUDA_NCHW, s->dtype, d->x[0], s->layout,
                                    s->dtype, s->N, (int)in->dims[0], plane_of(d->l)));
}

static dp_status flatten_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    if (d->dx[0] == NULL) {
        return DP_OK;
    }
    const dp_shape *in = &d->l->in_shape;
    size_t count = out_count(d, s->N);
    if (d->l->dx_accumulate[0]) {
        // convert cannot add: through the scratch, then the typed add.
        DP_TRY(named(d, dp_cuda_convert(s->ctx, s->scratch[0], s->layout, s->dtype, d->dy,
                                        DP_CUDA_NCHW, s->dtype, s->N, (int)in->dims[0],
                                        plane_of(d->l))));
        return named(d,
                     dp_cuda_add_dtype(s->ctx, d->dx[0], d->dx[0], s->scratch[0], count, s->dtype));
    }
    return named(d, dp_cuda_convert(s->ctx, d->dx[0], s->layout, s->dtype, d->dy, DP_CUDA_NCHW,
                                    s->dtype, s->N, (int)in->dims[0], plane_of(d->l)));
}

const dp_layer_cuda_ops dp__layer_cuda_flatten = {
    .cpu = &dp_layer_flatten_ops,
    .forward = flatten_forward,
    .backward = flatten_backward,
};
