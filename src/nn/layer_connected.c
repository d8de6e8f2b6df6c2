// [connected]: a fully connected layer over the flattened input (C*H*W -> output), weights
// (output, inputs) row-major as PyTorch. Darknet's keys and defaults (output=1,
// activation=logistic, batch_normalize=0).
#include "core/error.h"
#include "nn/layer_internal.h"

typedef struct connected_priv {
    int outputs;
    int batch_normalize;
    int bias;
    const char *activation;
    double slope;
    const char *init;
} connected_priv;

static dp_status connected_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(connected_priv)));
    connected_priv *c = l->priv;
    long outputs;
    DP_TRY(dp_cfg_get_int(s, "output", 1, &outputs));
    DP_TRY(dp_cfg_get_bool(s, "batch_normalize", 0, &c->batch_normalize));
    DP_TRY(dp_cfg_get_bool(s, "bias", !c->batch_normalize, &c->bias));
    DP_TRY(dp_cfg_get_str(s, "activation", "logistic", &c->activation));
    DP_TRY(dp_cfg_get_float(s, "slope", 0.1, &c->slope));
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
    if (c->batch_normalize) {
        dp__layer_add_param(l, "scales", dp_shape_make(1, k), DP_PARAM_INIT_ONE, 0, 0, 0);
        dp__layer_add_param(l, "biases", dp_shape_make(1, k), DP_PARAM_INIT_ZERO, 0, 0, 0);
    } else if (c->bias) {
        dp__layer_add_param(l, "biases", dp_shape_make(1, k), DP_PARAM_INIT_BIAS, (int)inputs, 0,
                            0);
    }
    l->flops = 2.0 * (double)inputs * c->outputs;
    return DP_OK;
}

const dp_layer_ops dp_layer_connected_ops = {
    .name = "connected",
    .parse = connected_parse,
    .infer_shape = connected_infer,
};
