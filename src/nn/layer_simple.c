// Layers that keep or merely reshape their input: [dropout], [batchnorm], [activation],
// [flatten], [crop] (a crop_height x crop_width window: random offset and flip in training,
// centred in evaluation).
#include <string.h>

#include "core/error.h"
#include "nn/layer_internal.h"
#include "nn/layer_post.h"

typedef struct dropout_priv {
    double probability;
    int alpha;
} dropout_priv;

typedef struct activation_priv {
    dp__post post; // [batchnorm]: batch norm alone; [activation]: the activation alone
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

static dp_status batchnorm_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(activation_priv)));
    activation_priv *p = l->priv;
    return dp__post_parse(l, s, "linear", 1, &p->post);
}

static dp_status post_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    activation_priv *p = l->priv;
    l->out_shape = l->in_shape;
    dp__post_add_params(l, &p->post, (int)l->in_shape.dims[0]);
    return DP_OK;
}

static dp_status activation_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(activation_priv)));
    activation_priv *p = l->priv;
    return dp__post_parse(l, s, "linear", 0, &p->post);
}

static size_t hw_of(const dp_layer *l)
{
    return (size_t)(l->in_shape.dims[1] * l->in_shape.dims[2]);
}

static size_t post_state_bytes(const dp_layer *l, int n)
{
    const activation_priv *p = l->priv;
    return dp__post_state_bytes(&p->post, n, (int)l->in_shape.dims[0], hw_of(l));
}

static dp_status post_forward(dp_layer *l, const dp_step *s)
{
    activation_priv *p = l->priv;
    size_t count = (size_t)s->n * (size_t)dp_shape_count(&l->in_shape);
    memcpy(dp__post_raw(l, &p->post), l->x[0], count * sizeof(float));
    return dp__post_forward(l, &p->post, s, (int)l->in_shape.dims[0], hw_of(l));
}

static dp_status post_backward(dp_layer *l, const dp_step *s)
{
    activation_priv *p = l->priv;
    const float *dz;
    DP_TRY(dp__post_backward(l, &p->post, s, (int)l->in_shape.dims[0], hw_of(l), &dz));
    if (l->dx[0] != NULL) {
        size_t count = (size_t)s->n * (size_t)dp_shape_count(&l->in_shape);
        dp__copy_or_add(l->dx[0], dz, count, l->dx_accumulate[0]);
    }
    return DP_OK;
}

static dp_status copy_forward(dp_layer *l, const dp_step *s)
{
    memcpy(l->y, l->x[0], (size_t)s->n * (size_t)dp_shape_count(&l->in_shape) * sizeof(float));
    return DP_OK;
}

static dp_status copy_backward(dp_layer *l, const dp_step *s)
{
    if (l->dx[0] != NULL) {
        dp__copy_or_add(l->dx[0], l->dy, (size_t)s->n * (size_t)dp_shape_count(&l->in_shape),
                        l->dx_accumulate[0]);
    }
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
    .parse = batchnorm_parse,
    .infer_shape = post_infer,
    .state_bytes = post_state_bytes,
    .forward = post_forward,
    .backward = post_backward,
};

const dp_layer_ops dp_layer_activation_ops = {
    .name = "activation",
    .parse = activation_parse,
    .infer_shape = post_infer,
    .state_bytes = post_state_bytes,
    .forward = post_forward,
    .backward = post_backward,
};

const dp_layer_ops dp_layer_flatten_ops = {
    .name = "flatten",
    .parse = no_keys,
    .infer_shape = flatten_infer,
    .forward = copy_forward,
    .backward = copy_backward,
};

const dp_layer_ops dp_layer_crop_ops = {
    .name = "crop",
    .parse = crop_parse,
    .infer_shape = crop_infer,
};
