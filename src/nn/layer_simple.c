// Layers that keep or merely reshape their input: [dropout], [batchnorm], [activation],
// [flatten], [crop] (a crop_height x crop_width window: random offset and flip in training,
// centred in evaluation).
#include "core/error.h"
#include "nn/layer_internal.h"

typedef struct dropout_priv {
    double probability;
    int alpha;
} dropout_priv;

typedef struct activation_priv {
    const char *activation;
    double slope;
} activation_priv;

typedef struct crop_priv {
    int height, width, flip;
} crop_priv;

static dp_status same_shape(dp_layer *l, const dp_net *net)
{
    (void)net;
    l->out_shape = l->in_shape;
    return DP_OK;
}

static dp_status dropout_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(dropout_priv)));
    dropout_priv *p = l->priv;
    DP_TRY(dp_cfg_get_float(s, "probability", 0.5, &p->probability));
    DP_TRY(dp_cfg_get_bool(s, "alpha", 0, &p->alpha));
    return DP_OK;
}

static dp_status no_keys(dp_layer *l, const dp_cfg_section *s)
{
    (void)l;
    (void)s;
    return DP_OK;
}

static dp_status batchnorm_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    l->out_shape = l->in_shape;
    int64_t c[1] = {l->in_shape.dims[0]};
    dp__layer_add_param(l, "scales", dp_shape_make(1, c), DP_PARAM_INIT_ONE, 0, 0, 0);
    dp__layer_add_param(l, "biases", dp_shape_make(1, c), DP_PARAM_INIT_ZERO, 0, 0, 0);
    return DP_OK;
}

static dp_status activation_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(activation_priv)));
    activation_priv *p = l->priv;
    DP_TRY(dp_cfg_get_str(s, "activation", "linear", &p->activation));
    DP_TRY(dp_cfg_get_float(s, "slope", 0.1, &p->slope));
    return DP_OK;
}

static dp_status flatten_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    l->out_shape = dp_chw(dp_shape_count(&l->in_shape), 1, 1);
    return DP_OK;
}

static dp_status crop_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(crop_priv)));
    crop_priv *p = l->priv;
    long h, w;
    DP_TRY(dp_cfg_get_int(s, "crop_height", 1, &h));
    DP_TRY(dp_cfg_get_int(s, "crop_width", 1, &w));
    DP_TRY(dp_cfg_get_bool(s, "flip", 0, &p->flip));
    p->height = (int)h;
    p->width = (int)w;
    return DP_OK;
}

static dp_status crop_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    crop_priv *p = l->priv;
    if (p->height > l->in_shape.dims[1] || p->width > l->in_shape.dims[2]) {
        char a[64];
        return dp_layer_error(l, DP_ERR_SHAPE, "expected an input of at least %dx%d, got %s",
                              p->height, p->width, dp_layer_shape_str(&l->in_shape, a, sizeof a));
    }
    l->out_shape = dp_chw(l->in_shape.dims[0], p->height, p->width);
    return DP_OK;
}

const dp_layer_ops dp_layer_dropout_ops = {
    .name = "dropout",
    .parse = dropout_parse,
    .infer_shape = same_shape,
};

const dp_layer_ops dp_layer_batchnorm_ops = {
    .name = "batchnorm",
    .parse = no_keys,
    .infer_shape = batchnorm_infer,
};

const dp_layer_ops dp_layer_activation_ops = {
    .name = "activation",
    .parse = activation_parse,
    .infer_shape = same_shape,
};

const dp_layer_ops dp_layer_flatten_ops = {
    .name = "flatten",
    .parse = no_keys,
    .infer_shape = flatten_infer,
};

const dp_layer_ops dp_layer_crop_ops = {
    .name = "crop",
    .parse = crop_parse,
    .infer_shape = crop_infer,
};
