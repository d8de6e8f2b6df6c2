// [convolutional]: cfg keys, shapes, parameters. Darknet's keys and defaults (filters=1,
// size=1, stride=1, pad=0 or padding=N, groups=1, activation=logistic); pad=1 means "same"
// padding, dilation * (size / 2). batch_normalize=1 adds batch norm after the convolution, whose
// shift (biases) replaces the convolution bias, as in Darknet.
#include <string.h>

#include "core/error.h"
#include "nn/cpu/init.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/conv.h"
#include "nn/layer_internal.h"
#include "nn/layer_post.h"

typedef struct conv_priv {
    int filters, size, stride, padding, dilation, groups;
    int batch_normalize;
    int bias; // the convolution's own bias (off under batch norm)
    const char *init;
    dp__post post;
    dp_conv_params p; // N set per step
} conv_priv;

const dp_conv_params *dp__conv_params(const dp_layer *l)
{
    return &((const conv_priv *)l->priv)->p;
}

int dp__conv_has_bias(const dp_layer *l)
{
    return ((const conv_priv *)l->priv)->bias;
}

const dp__post *dp__conv_post(const dp_layer *l)
{
    return &((const conv_priv *)l->priv)->post;
}

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
    DP_TRY(dp__post_parse(l, s, "logistic", c->batch_normalize, &c->post));
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
                              (long long)(span - 2 * c->padding),
                              (long long)(span - 2 * c->padding), c->size, c->size, c->dilation,
                              c->padding, (long long)H, (long long)W);
    }
    l->out_shape = dp_chw(c->filters, out_h, out_w);
    int64_t cin = C / c->groups;
    int64_t dims[4] = {c->filters, cin, c->size, c->size};
    int fan_in = (int)(cin * c->size * c->size);
    int fan_out = (int)(c->filters / c->groups * c->size * c->size);
    dp__layer_add_param(l, "weights", dp_shape_make(4, dims), DP_PARAM_INIT_WEIGHT, fan_in, fan_out,
                        1);
    int64_t k[1] = {c->filters};
    if (c->bias) {
        dp__layer_add_param(l, "biases", dp_shape_make(1, k), DP_PARAM_INIT_BIAS, fan_in, 0, 0);
    }
    l->params[0].spec.init_name = strcmp(c->init, "default") == 0 ? NULL : c->init;
    l->params[0].spec.gain = dp_init_gain(c->post.act, c->post.slope);
    dp__post_add_params(l, &c->post, c->filters);
    l->flops =
        2.0 * (double)c->filters * (double)cin * c->size * c->size * (double)out_h * (double)out_w;
    dp_conv_params p = DP_CONV_PARAMS_INIT;
    p.N = 1;
    p.C = (int)C;
    p.H = (int)H;
    p.W = (int)W;
    p.K = c->filters;
    p.R = p.S = c->size;
    p.stride_h = p.stride_w = c->stride;
    p.pad_h = p.pad_w = c->padding;
    p.dil_h = p.dil_w = c->dilation;
    p.groups = c->groups;
    if (dp_conv_params_resolve(&p) != DP_OK) {
        return dp_layer_error(l, DP_ERR_SHAPE, "%s", dp_error_message());
    }
    c->p = p;
    return DP_OK;
}

static size_t conv_workspace_bytes(const dp_layer *l, int n, int threads)
{
    const conv_priv *c = l->priv;
    dp_conv_params p = c->p;
    p.N = n;
    return dp_cpu_conv_pool_workspace_bytes(&p, threads);
}

static size_t conv_state_bytes(const dp_layer *l, int n)
{
    const conv_priv *c = l->priv;
    return dp__post_state_bytes(&c->post, n, c->filters, (size_t)(c->p.out_h * c->p.out_w));
}

static dp_status conv_forward(dp_layer *l, const dp_step *s)
{
    conv_priv *c = l->priv;
    dp_conv_params p = c->p;
    p.N = s->n;
    const float *bias = c->bias ? l->params[1].data : NULL;
    const size_t ohw = (size_t)p.out_h * (size_t)p.out_w;
    dp_conv_epilogue ep;
    float *raw = dp__post_prepare(l, &c->post, s, c->filters, ohw, &ep);
    DP_TRY(dp_cpu_conv_forward_pool(raw, l->x[0], l->params[0].data, bias, &p, &ep, s->pool, s->ws,
                                    s->ws_bytes));
    return dp__post_finish(l, &c->post, s, c->filters, ohw, &ep);
}

static dp_status conv_backward(dp_layer *l, const dp_step *s)
{
    conv_priv *c = l->priv;
    dp_conv_params p = c->p;
    p.N = s->n;
    float *db = c->bias ? l->params[1].grad : NULL;
    const float *dz;
    dp_conv_dy_map map; // with a bias the map cannot give the bias gradient: materialize dz
    DP_TRY(dp__post_backward_map(l, &c->post, s, c->filters, (size_t)(p.out_h * p.out_w),
                                 db == NULL ? &map : NULL, &dz));
    unsigned accum =
        (s->accumulate ? DP_ACCUM_DPARAMS : 0u) | (l->dx_accumulate[0] ? DP_ACCUM_DX : 0u);
    return dp_cpu_conv_backward_pool(
        l->dx[0], l->params[0].grad, db, dz, l->x[0], l->params[0].data, &p,
        db == NULL && map.coef != NULL ? &map : NULL, accum, s->pool, s->ws, s->ws_bytes);
}

const dp_layer_ops dp_layer_conv_ops = {
    .name = "convolutional",
    .parse = conv_parse,
    .infer_shape = conv_infer,
    .workspace_bytes = conv_workspace_bytes,
    .state_bytes = conv_state_bytes,
    .forward = conv_forward,
    .backward = conv_backward,
};
