// [convolutional]: cfg keys, shapes, parameters. Darknet's keys and defaults (filters=1,
// size=1, stride=1, pad=0 or padding=N, groups=1, activation=logistic); pad=1 means "same"
// padding, dilation * (size / 2). batch_normalize=1 adds batch norm after the convolution, whose
// shift (biases) replaces the convolution bias, as in Darknet.
#include "core/error.h"
#include "nn/layer_internal.h"

typedef struct conv_priv {
    int filters, size, stride, padding, dilation, groups;
    int batch_normalize;
    int bias; // the convolution's own bias (off under batch norm)
    const char *activation;
    double slope; // leaky slope
    const char *init;
} conv_priv;

static dp_status conv_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(conv_priv)));
    conv_priv *c = l->priv;
    long filters, size, stride, padding, dilation, groups;
    int pad;
    DP_TRY(dp_cfg_get_int(s, "filters", 1, &filters));
    DP_TRY(dp_cfg_get_int(s, "size", 1, &size));
    DP_TRY(dp_cfg_get_int(s, "stride", 1, &stride));
    DP_TRY(dp_cfg_get_int(s, "dilation", 1, &dilation));
    DP_TRY(dp_cfg_get_bool(s, "pad", 0, &pad));
    DP_TRY(dp_cfg_get_int(s, "padding", 0, &padding));
    DP_TRY(dp_cfg_get_int(s, "groups", 1, &groups));
    DP_TRY(dp_cfg_get_bool(s, "batch_normalize", 0, &c->batch_normalize));
    DP_TRY(dp_cfg_get_bool(s, "bias", !c->batch_normalize, &c->bias));
    DP_TRY(dp_cfg_get_str(s, "activation", "logistic", &c->activation));
    DP_TRY(dp_cfg_get_float(s, "slope", 0.1, &c->slope));
    DP_TRY(dp_cfg_get_str(s, "init", "default", &c->init));
    c->filters = (int)filters;
    c->size = (int)size;
    c->stride = (int)stride;
    c->dilation = (int)dilation;
    c->padding = pad ? (int)(dilation * (size / 2)) : (int)padding;
    c->groups = (int)groups;
    return DP_OK;
}

static dp_status conv_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    conv_priv *c = l->priv;
    int64_t C = l->in_shape.dims[0], H = l->in_shape.dims[1], W = l->in_shape.dims[2];
    if (C % c->groups != 0 || c->filters % c->groups != 0) {
        return dp_layer_error(l, DP_ERR_SHAPE,
                              "groups=%d must divide the input channels (%lld) and filters (%d)",
                              c->groups, (long long)C, c->filters);
    }
    int64_t span = (int64_t)c->dilation * (c->size - 1) + 1;
    int64_t out_h = (H + 2 * c->padding - span) / c->stride + 1;
    int64_t out_w = (W + 2 * c->padding - span) / c->stride + 1;
    if (H + 2 * c->padding < span || W + 2 * c->padding < span) {
        return dp_layer_error(l, DP_ERR_SHAPE,
                              "expected an input of at least %lldx%lld for a %dx%d window "
                              "(dilation %d, padding %d), got %lldx%lld",
                              (long long)(span - 2 * c->padding), (long long)(span - 2 * c->padding),
                              c->size, c->size, c->dilation, c->padding, (long long)H,
                              (long long)W);
    }
    l->out_shape = dp_chw(c->filters, out_h, out_w);
    int64_t cin = C / c->groups;
    int64_t dims[4] = {c->filters, cin, c->size, c->size};
    int fan_in = (int)(cin * c->size * c->size);
    int fan_out = (int)(c->filters / c->groups * c->size * c->size);
    dp__layer_add_param(l, "weights", dp_shape_make(4, dims), DP_PARAM_INIT_WEIGHT, fan_in,
                        fan_out, 1);
    int64_t k[1] = {c->filters};
    if (c->batch_normalize) {
        dp__layer_add_param(l, "scales", dp_shape_make(1, k), DP_PARAM_INIT_ONE, 0, 0, 0);
        dp__layer_add_param(l, "biases", dp_shape_make(1, k), DP_PARAM_INIT_ZERO, 0, 0, 0);
    } else if (c->bias) {
        dp__layer_add_param(l, "biases", dp_shape_make(1, k), DP_PARAM_INIT_BIAS, fan_in, 0, 0);
    }
    l->flops = 2.0 * (double)c->filters * (double)cin * c->size * c->size * (double)out_h *
               (double)out_w;
    return DP_OK;
}

const dp_layer_ops dp_layer_conv_ops = {
    .name = "convolutional",
    .parse = conv_parse,
    .infer_shape = conv_infer,
};
