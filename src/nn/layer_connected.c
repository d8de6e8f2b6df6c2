// [connected]: a fully connected layer over the flattened input (C*H*W -> output), weights
// (output, inputs) row-major as PyTorch. Darknet's keys and defaults (output=1,
// activation=logistic, batch_normalize=0).
#include <string.h>

#include "core/error.h"
#include "nn/cpu/init.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/dense.h"
#include "nn/layer_internal.h"
#include "nn/layer_post.h"

typedef struct connected_priv {
    int outputs;
    int inputs;
    int batch_normalize;
    int bias;
    const char *init;
    dp__post post;
} connected_priv;

dp_dense_params dp__connected_params(const dp_layer *l, int n)
{
    const connected_priv *c = l->priv;
    dp_dense_params p = {n, c->inputs, c->outputs};
    return p;
}

int dp__connected_has_bias(const dp_layer *l)
{
    return ((const connected_priv *)l->priv)->bias;
}

const dp__post *dp__connected_post(const dp_layer *l)
{
    return &((const connected_priv *)l->priv)->post;
}

static dp_status connected_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(connected_priv)));
    connected_priv *c = l->priv;
    long outputs;
    DP_TRY(dp_cfg_get_int(s, "output", 1, &outputs));
    DP_TRY(dp_cfg_get_bool(s, "batch_normalize", 0, &c->batch_normalize));
    DP_TRY(dp_cfg_get_bool(s, "bias", !c->batch_normalize, &c->bias));
    DP_TRY(dp__post_parse(l, s, "logistic", c->batch_normalize, &c->post));
    DP_TRY(dp_cfg_get_str(s, "init", "default", &c->init));
    c->outputs = (int)outputs;
    return DP_OK;
}

static dp_status connected_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    connected_priv *c = l->priv;
    int64_t inputs = dp_shape_count(&l->in_shape);
    l->out_shape = dp_chw(c->outputs, 1, 1);
    int64_t dims[2] = {c->outputs, inputs}, k[1] = {c->outputs};
    dp__layer_add_param(l, "weights", dp_shape_make(2, dims), DP_PARAM_INIT_WEIGHT, (int)inputs,
                        c->outputs, 1);
    if (c->bias) {
        dp__layer_add_param(l, "biases", dp_shape_make(1, k), DP_PARAM_INIT_BIAS, (int)inputs, 0,
                            0);
    }
    l->params[0].spec.init_name = strcmp(c->init, "default") == 0 ? NULL : c->init;
    l->params[0].spec.gain = dp_init_gain(c->post.act, c->post.slope);
    dp__post_add_params(l, &c->post, c->outputs);
    c->inputs = (int)inputs;
    l->flops = 2.0 * (double)inputs * c->outputs;
    return DP_OK;
}

static size_t connected_state_bytes(const dp_layer *l, int n)
{
    const connected_priv *c = l->priv;
    return dp__post_state_bytes(&c->post, n, c->outputs, 1);
}

static dp_status connected_forward(dp_layer *l, const dp_step *s)
{
    connected_priv *c = l->priv;
    dp_dense_params p = {s->n, c->inputs, c->outputs};
    const float *b = c->bias ? l->params[1].data : NULL;
    DP_TRY(dp_cpu_dense_forward_pool(dp__post_raw(l, &c->post), l->x[0], l->params[0].data, b, &p,
                                     s->pool));
    return dp__post_forward(l, &c->post, s, c->outputs, 1);
}

static dp_status connected_backward(dp_layer *l, const dp_step *s)
{
    connected_priv *c = l->priv;
    dp_dense_params p = {s->n, c->inputs, c->outputs};
    const float *dz;
    DP_TRY(dp__post_backward(l, &c->post, s, c->outputs, 1, &dz));
    unsigned accum =
        (l->dx_accumulate[0] ? DP_ACCUM_DX : 0u) | (s->accumulate ? DP_ACCUM_DPARAMS : 0u);
    float *db = c->bias ? l->params[1].grad : NULL;
    return dp_cpu_dense_backward_pool(l->dx[0], l->params[0].grad, db, dz, l->x[0],
                                      l->params[0].data, &p, accum, s->pool);
}

const dp_layer_ops dp_layer_connected_ops = {
    .name = "connected",
    .parse = connected_parse,
    .infer_shape = connected_infer,
    .state_bytes = connected_state_bytes,
    .forward = connected_forward,
    .backward = connected_backward,
};
