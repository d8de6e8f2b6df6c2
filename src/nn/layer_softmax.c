// [softmax] (the loss: softmax + cross-entropy with optional label smoothing, over the
// flattened input) and [cost]. In Darknet a [cost] after [softmax] passes the softmax delta
// (truth - p) through unchanged, so training it is softmax cross-entropy; dptrain keeps that
// meaning and treats [cost] as a pass-through.
#include "core/error.h"
#include "nn/layer_internal.h"
#include "nn/net.h"

typedef struct softmax_priv {
    double temperature;
    double label_smoothing;
} softmax_priv;

static dp_status softmax_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(softmax_priv)));
    softmax_priv *p = l->priv;
    long groups;
    DP_TRY(dp_cfg_get_int(s, "groups", 1, &groups));
    if (groups != 1) {
        return dp_layer_error(l, DP_ERR_UNSUPPORTED,
                              "groups=%ld: only a single softmax over all outputs is supported",
                              groups);
    }
    DP_TRY(dp_cfg_get_float(s, "temperature", 1.0, &p->temperature));
    DP_TRY(dp_cfg_get_float(s, "label_smoothing", 0.0, &p->label_smoothing));
    return DP_OK;
}

static dp_status same_shape(dp_layer *l, const dp_net *net)
{
    (void)net;
    l->out_shape = l->in_shape;
    return DP_OK;
}

static dp_status cost_parse(dp_layer *l, const dp_cfg_section *s)
{
    const char *type;
    DP_TRY(dp_cfg_get_str(s, "type", "sse", &type));
    (void)type;
    if (l->index == 0) {
        return dp_layer_error(l, DP_ERR_CFG, "[cost] must follow a [softmax] layer");
    }
    return DP_OK;
}

static dp_status cost_infer(dp_layer *l, const dp_net *net)
{
    const dp_layer *prev = dp_net_layer(net, l->index - 1);
    if (prev->ops != &dp_layer_softmax_ops) {
        return dp_layer_error(l, DP_ERR_UNSUPPORTED,
                              "[cost] is supported only right after [softmax] (got [%s] before "
                              "it)",
                              prev->ops->name);
    }
    return same_shape(l, net);
}

const dp_layer_ops dp_layer_softmax_ops = {
    .name = "softmax",
    .parse = softmax_parse,
    .infer_shape = same_shape,
};

const dp_layer_ops dp_layer_cost_ops = {
    .name = "cost",
    .parse = cost_parse,
    .infer_shape = cost_infer,
};
