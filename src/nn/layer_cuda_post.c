// What follows a linear map on the device (layer_post.c's twin over the launchers of
// src/nn/cuda/ops.h): batch norm with the micro-batch's statistics in training and the running
// ones in evaluation, the activation fused into the batch-norm pass where the CPU fuses it,
// PReLU apart; and the [batchnorm] and [activation] layers, which are that alone. The same
// decisions as the CPU's (which tensors are saved, which activations fuse), so the results
// differ from the CPU's only by the kernels' own rounding (ops.h states it).
#include <string.h>

#include "core/error.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/batchnorm.h"
#include "nn/cpu/bn_act.h"
#include "nn/cuda/ops.h"
#include "nn/layer_cuda.h"
#include "nn/layer_internal.h"
#include "nn/layer_post.h"

enum { ALIGN = 256 };

static size_t up(size_t bytes)
{
    return (bytes + ALIGN - 1) / ALIGN * ALIGN;
}

static int needs_input(const dp__post *post)
{
    return post->act != DP_ACT_LINEAR && dp_act_backward_needs_input(post->act);
}

typedef struct post_state {
    void *z, *a;
    float *mean, *inv_std, *scale, *coef;
} post_state;

// The state's parts in the order of dp__cuda_post_state_bytes; base NULL only counts.
static size_t layout_state(post_state *st, char *base, const dp__post *post, int n, int C,
                           size_t hw, dp_cuda_dtype dtype)
{
    size_t plane = up((size_t)n * (size_t)C * hw * dp_cuda_dtype_size(dtype)), at = 0;
    memset(st, 0, sizeof *st);
    if (post->bn || needs_input(post)) {
        st->z = base != NULL ? base + at : NULL;
        at += plane;
    }
    if (post->bn && needs_input(post)) {
        st->a = base != NULL ? base + at : NULL;
        at += plane;
    } else if (!post->bn && needs_input(post)) {
        st->a = st->z; // the activation's input is z itself
    }
    if (post->bn) {
        size_t c = up((size_t)C * sizeof(float));
        float **parts[3] = {&st->mean, &st->inv_std, &st->scale};
        for (int i = 0; i < 3; i++) {
            *parts[i] = base != NULL ? (float *)(void *)(base + at) : NULL;
            at += c;
        }
        st->coef = base != NULL ? (float *)(void *)(base + at) : NULL;
        at += up((size_t)C * 4 * sizeof(float));
    }
    return at;
}

static dp_bn_params bn_params(int n, int C, size_t hw)
{
    dp_bn_params p = DP_BN_PARAMS_INIT;
    p.N = n;
    p.C = C;
    p.H = 1;
    p.W = (int)hw;
    return p;
}

size_t dp__cuda_post_state_bytes(const dp__post *post, int n, int C, size_t hw, dp_cuda_dtype dtype)
{
    post_state st;
    return layout_state(&st, NULL, post, n, C, hw, dtype);
}

size_t dp__cuda_post_workspace_bytes(const dp__post *post, int n, int C, size_t hw,
                                     dp_cuda_layout layout)
{
    size_t ws = 0;
    if (post->bn) {
        dp_bn_params p = bn_params(n, C, hw);
        ws = dp_cuda_bn_workspace_bytes(&p, layout);
    }
    if (post->prelu >= 0) {
        size_t w = dp_cuda_prelu_workspace_bytes(n, C, hw, layout);
        ws = ws > w ? ws : w;
    }
    return ws;
}

void *dp__cuda_post_raw(const dp_layer_cuda *d, const dp__post *post)
{
    return (post->bn || needs_input(post)) ? d->state : d->y;
}

static post_state state_of(const dp_layer_cuda *d, const dp__post *post, const dp_cuda_step *s,
                           int C, size_t hw)
{
    post_state st;
    layout_state(&st, d->state, post, s->N, C, hw, s->dtype);
    return st;
}

// --- forward ---

static dp_status act_only_forward(dp_layer_cuda *d, const dp__post *post, const dp_cuda_step *s,
                                  post_state st, int C, size_t hw)
{
    size_t count = (size_t)s->N * (size_t)C * hw;
    const void *in = needs_input(post) ? st.z : d->y;
    if (post->act == DP_ACT_PRELU) {
        return dp_cuda_prelu_forward(s->ctx, d->y, in, d->param[post->prelu], s->N, C, hw,
                                     s->layout, s->dtype);
    }
    if (post->act == DP_ACT_LINEAR) {
        return DP_OK; // the raw output is y already
    }
    return dp_cuda_act_forward(s->ctx, d->y, in, count, post->act, post->slope, s->dtype);
}

dp_status dp__cuda_post_forward(dp_layer_cuda *d, const dp__post *post, const dp_cuda_step *s,
                                int C, size_t hw)
{
    post_state st = state_of(d, post, s, C, hw);
    if (!post->bn) {
        return act_only_forward(d, post, s, st, C, hw);
    }
    dp_bn_params p = bn_params(s->N, C, hw);
    const float *gamma = d->param[post->scales], *beta = d->param[post->shifts];
    float *rmean = d->buffer[post->running], *rvar = d->buffer[post->running + 1];
    const float *mean = rmean;
    if (s->host->train) {
        DP_TRY(dp_cuda_bn_stats(s->ctx, st.mean, st.inv_std, rmean, rvar, st.scale, st.z, gamma, &p,
                                s->layout, s->dtype, s->ws));
        mean = st.mean;
    } else {
        DP_TRY(dp_cuda_bn_eval_scale(s->ctx, st.scale, gamma, rvar, C, p.eps));
    }
    if (post->act == DP_ACT_PRELU) {
        // PReLU needs its input: the batch-norm output into a, then y.
        DP_TRY(dp_cuda_bn_act_forward(s->ctx, st.a, NULL, st.z, mean, st.scale, beta, DP_ACT_LINEAR,
                                      0.0f, &p, s->layout, s->dtype));
        return dp_cuda_prelu_forward(s->ctx, d->y, st.a, d->param[post->prelu], s->N, C, hw,
                                     s->layout, s->dtype);
    }
    return dp_cuda_bn_act_forward(s->ctx, d->y, needs_input(post) ? st.a : NULL, st.z, mean,
                                  st.scale, beta, post->act, post->slope, &p, s->layout, s->dtype);
}

// --- backward ---

dp_status dp__cuda_post_backward(dp_layer_cuda *d, const dp__post *post, const dp_cuda_step *s,
                                 int C, size_t hw, const void **dz)
{
    post_state st = state_of(d, post, s, C, hw);
    size_t count = (size_t)s->N * (size_t)C * hw;
    unsigned accum_params = s->host->accumulate ? DP_ACCUM_DPARAMS : DP_ACCUM_NONE;
    const void *g = d->dy;
    dp_act bn_act = post->act; // the activation the batch-norm kernels apply to g themselves
    if (post->act == DP_ACT_PRELU) {
        const void *x = post->bn ? st.a : st.z;
        DP_TRY(dp_cuda_prelu_backward(s->ctx, s->scratch[0], d->grad[post->prelu], g, x,
                                      d->param[post->prelu], s->N, C, hw, accum_params, s->layout,
                                      s->dtype, s->ws));
        g = s->scratch[0];
        bn_act = DP_ACT_LINEAR;
    } else if (post->act != DP_ACT_LINEAR && !(post->bn && dp_bn_act_fusable(post->act))) {
        const void *x = needs_input(post) ? st.a : NULL;
        DP_TRY(dp_cuda_act_backward(s->ctx, s->scratch[0], g, x, needs_input(post) ? NULL : d->y,
                                    count, post->act, post->slope, s->dtype));
        g = s->scratch[0];
        bn_act = DP_ACT_LINEAR;
    }
    if (!post->bn) {
        *dz = g;
        return DP_OK;
    }
    dp_bn_params p = bn_params(s->N, C, hw);
    const void *y = bn_act == DP_ACT_LINEAR ? NULL : d->y;
    DP_TRY(dp_cuda_bn_act_backward_coef(s->ctx, st.coef, d->grad[post->scales],
                                        d->grad[post->shifts], g, y, st.z, d->param[post->scales],
                                        st.mean, st.inv_std, bn_act, post->slope, &p, accum_params,
                                        s->layout, s->dtype, s->ws));
    DP_TRY(dp_cuda_bn_act_backward_apply(s->ctx, s->scratch[1], g, y, st.z, st.coef, bn_act,
                                         post->slope, &p, 0, s->layout, s->dtype));
    *dz = s->scratch[1];
    return DP_OK;
}

// --- [batchnorm] and [activation]: the post-processing alone ---

static int channels(const dp_layer *l)
{
    return (int)l->in_shape.dims[0];
}

static size_t hw_of(const dp_layer *l)
{
    return (size_t)(l->in_shape.dims[1] * l->in_shape.dims[2]);
}

static size_t simple_state_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype)
{
    return dp__cuda_post_state_bytes(dp__simple_post(d->l), n, channels(d->l), hw_of(d->l), dtype);
}

static size_t simple_workspace_bytes(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype,
                                     dp_cuda_layout layout)
{
    (void)dtype;
    return dp__cuda_post_workspace_bytes(dp__simple_post(d->l), n, channels(d->l), hw_of(d->l),
                                         layout);
}

// The raw output is a copy of x (the post-processing may work in place on it).
static dp_status simple_forward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const dp__post *post = dp__simple_post(d->l);
    size_t count = (size_t)s->N * (size_t)dp_shape_count(&d->l->in_shape);
    DP_TRY(dp_cuda_copy_dtype(s->ctx, dp__cuda_post_raw(d, post), d->x[0], count, s->dtype));
    return dp__cuda_post_forward(d, post, s, channels(d->l), hw_of(d->l));
}

static dp_status simple_backward(dp_layer_cuda *d, const dp_cuda_step *s)
{
    const dp__post *post = dp__simple_post(d->l);
    const void *dz;
    DP_TRY(dp__cuda_post_backward(d, post, s, channels(d->l), hw_of(d->l), &dz));
    if (d->dx[0] == NULL) {
        return DP_OK;
    }
    size_t count = (size_t)s->N * (size_t)dp_shape_count(&d->l->in_shape);
    if (d->l->dx_accumulate[0]) {
        return dp_cuda_add_dtype(s->ctx, d->dx[0], d->dx[0], dz, count, s->dtype);
    }
    return dp_cuda_copy_dtype(s->ctx, d->dx[0], dz, count, s->dtype);
}

const dp_layer_cuda_ops dp__layer_cuda_batchnorm = {
    .cpu = &dp_layer_batchnorm_ops,
    .state_bytes = simple_state_bytes,
    .workspace_bytes = simple_workspace_bytes,
    .forward = simple_forward,
    .backward = simple_backward,
};

const dp_layer_cuda_ops dp__layer_cuda_activation = {
    .cpu = &dp_layer_activation_ops,
    .state_bytes = simple_state_bytes,
    .workspace_bytes = simple_workspace_bytes,
    .forward = simple_forward,
    .backward = simple_backward,
};
