// The CUDA side of [convolutional] (cuDNN) and [connected] (cuBLAS): a plan per layer made
// once for the network's batch (algorithms, descriptors, weight copies in the storage type),
// the launchers of src/nn/cuda/dnn/ for forward, backward data and backward filter, and the
// weight copies refreshed whenever the parameters change.
//
// What follows the linear map (batch norm, an activation, PReLU) is layer_cuda_post.c's, with
// the CPU's decisions (layer_post.h): the raw output goes to the saved state when backward needs
// it, and backward maps dy to dz in the shared scratch before the linear map's backward.
//
// Plans are made for the network's batch and the launchers always run it: an evaluation
// micro-batch of n < batch samples computes the tail from the zeroed rest of the input slot,
// and only the first n samples are counted (every layer but batch norm in training is
// per-sample; training always runs full micro-batches).
#include <stdlib.h>

#include "core/error.h"
#include "nn/cpu/accum.h"
#include "nn/cuda/dnn/dnn.h"
#include "nn/layer_cuda.h"
#include "nn/layer_internal.h"
#include "nn/layer_post.h"

// --- [convolutional] ---

static dp_status conv_plan(dp_layer_cuda *d, int n, dp_cuda_ctx *ctx)
{
    dp_conv_params p = *dp__conv_params(d->l);
    p.N = n;
    const dp_cuda_ctx_params *cp = dp_cuda_ctx_params_of(ctx);
    dp_cuda_conv_plan *plan = NULL;
    dp_status st = dp_cuda_conv_plan_create(&plan, ctx, &p, dp_cuda_precision_dtype(cp->precision),
                                            cp->nhwc ? DP_CUDA_NHWC : DP_CUDA_NCHW);
    if (st != DP_OK) {
        return dp_layer_error(d->l, st, "%s", dp_error_message());
    }
    d->plan = plan;
    return DP_OK;
}

static int conv_channels(const dp_layer_cuda *d)
{
    return (int)d->l->out_shape.dims[0];
}

static size_t conv_hw(const dp_layer_cuda *d)
{
    return (size_t)(d->l->out_shape.dims[1] * d->l->out_shape.dims[2]);
}

static size_t conv_state_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype)
{
    return dp__cuda_post_state_bytes(dp__conv_post(d->l), n, conv_channels(d), conv_hw(d), dtype);
}

static size_t conv_workspace_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype,
                                   dp_cuda_layout layout)
{
    (void)dtype;
    size_t a = dp_cuda_conv_plan_workspace_bytes(d->plan);
    size_t b =
        dp__cuda_post_workspace_bytes(dp__conv_post(d->l), n, conv_channels(d), conv_hw(d), layout);
    return a > b ? a : b;
}

static dp_status conv_params_changed(dp_layer_cuda *d)
{
    return dp_cuda_conv_plan_cast_weights(d->plan, d->param[0]);
}

static dp_status conv_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const float *bias = dp__conv_has_bias(d->l) ? d->param[1] : NULL;
    dp_status st =
        dp_cuda_conv_forward(d->plan, d->y, d->x[0], d->param[0], bias, s->ws, s->ws_bytes);
    return st == DP_OK ? DP_OK : dp_layer_error(d->l, st, "%s", dp_error_message());
}

// dx first (it reads the weights the step has not changed yet), then the filter and bias
// gradients, both from the same dy.
static dp_status conv_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const void *dz = NULL;
    dp_status st =
        dp__cuda_post_backward(d, dp__conv_post(d->l), s, conv_channels(d), conv_hw(d), &dz);
    if (st == DP_OK && d->dx[0] != NULL) {
        st = dp_cuda_conv_backward_data(d->plan, d->dx[0], dz, d->param[0], d->l->dx_accumulate[0],
                                        s->ws, s->ws_bytes);
    }
    if (st == DP_OK) {
        float *db = dp__conv_has_bias(d->l) ? d->grad[1] : NULL;
        st = dp_cuda_conv_backward_filter(d->plan, d->grad[0], db, dz, d->x[0], s->host->accumulate,
                                          s->ws, s->ws_bytes);
    }
    return st == DP_OK ? DP_OK : dp_layer_error(d->l, st, "%s", dp_error_message());
}

static void conv_destroy(dp_layer_cuda *d)
{
    dp_cuda_conv_plan_destroy(d->plan);
    d->plan = NULL;
}

const dp_layer_cuda_ops dp__layer_cuda_conv = {
    .cpu = &dp_layer_conv_ops,
    .plan = conv_plan,
    .state_bytes = conv_state_bytes,
    .workspace_bytes = conv_workspace_bytes,
    .params_changed = conv_params_changed,
    .forward = conv_forward,
    .backward = conv_backward,
    .destroy = conv_destroy,
};

// --- [connected] ---

static dp_status connected_plan(dp_layer_cuda *d, int n, dp_cuda_ctx *ctx)
{
    const dp_cuda_ctx_params *cp = dp_cuda_ctx_params_of(ctx);
    const dp_shape *in = &d->l->in_shape;
    if (cp->nhwc && in->dims[1] * in->dims[2] > 1) {
        // cuBLAS reads the input as (N, C H W) in the CPU's order: an NHWC image must be
        // transposed first, which [flatten] does on the GPU.
        return dp_layer_error(d->l, DP_ERR_UNSUPPORTED,
                              "with NHWC activations (bf16/fp16 on the GPU) a [connected] layer "
                              "over an HxW > 1 input needs a [flatten] before it");
    }
    dp_dense_params p = dp__connected_params(d->l, n);
    dp_cuda_dense_plan *plan = NULL;
    dp_status st =
        dp_cuda_dense_plan_create(&plan, ctx, &p, dp_cuda_precision_dtype(cp->precision));
    if (st != DP_OK) {
        return dp_layer_error(d->l, st, "%s", dp_error_message());
    }
    d->plan = plan;
    return DP_OK;
}

static int connected_outputs(const dp_layer_cuda *d)
{
    return (int)d->l->out_shape.dims[0];
}

static size_t connected_state_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype)
{
    return dp__cuda_post_state_bytes(dp__connected_post(d->l), n, connected_outputs(d), 1, dtype);
}

static size_t connected_workspace_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype,
                                        dp_cuda_layout layout)
{
    (void)dtype;
    size_t a = dp_cuda_dense_plan_workspace_bytes(d->plan);
    size_t b =
        dp__cuda_post_workspace_bytes(dp__connected_post(d->l), n, connected_outputs(d), 1, layout);
    return a > b ? a : b;
}

static dp_status connected_params_changed(dp_layer_cuda *d)
{
    return dp_cuda_dense_plan_cast_weights(d->plan, d->param[0]);
}

static dp_status connected_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const dp__post *post = dp__connected_post(d->l);
    const float *b = dp__connected_has_bias(d->l) ? d->param[1] : NULL;
    dp_status st = dp_cuda_dense_forward(d->plan, dp__cuda_post_raw(d, post), d->x[0], d->param[0],
                                         b, s->ws, s->ws_bytes);
    if (st == DP_OK) {
        st = dp__cuda_post_forward(d, post, s, connected_outputs(d), 1);
    }
    return st == DP_OK ? DP_OK : dp_layer_error(d->l, st, "%s", dp_error_message());
}

static dp_status connected_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    unsigned accum =
        (d->l->dx_accumulate[0] ? DP_ACCUM_DX : 0u) | (s->host->accumulate ? DP_ACCUM_DPARAMS : 0u);
    float *db = dp__connected_has_bias(d->l) ? d->grad[1] : NULL;
    const void *dz = NULL;
    dp_status st =
        dp__cuda_post_backward(d, dp__connected_post(d->l), s, connected_outputs(d), 1, &dz);
    if (st == DP_OK) {
        st = dp_cuda_dense_backward(d->plan, d->dx[0], d->grad[0], db, dz, d->x[0], d->param[0],
                                    accum, s->ws, s->ws_bytes);
    }
    return st == DP_OK ? DP_OK : dp_layer_error(d->l, st, "%s", dp_error_message());
}

static void connected_destroy(dp_layer_cuda *d)
{
    dp_cuda_dense_plan_destroy(d->plan);
    d->plan = NULL;
}

const dp_layer_cuda_ops dp__layer_cuda_connected = {
    .cpu = &dp_layer_connected_ops,
    .plan = connected_plan,
    .state_bytes = connected_state_bytes,
    .workspace_bytes = connected_workspace_bytes,
    .params_changed = connected_params_changed,
    .forward = connected_forward,
    .backward = connected_backward,
    .destroy = connected_destroy,
};
