// [maxpool] and [avgpool]. Max pooling follows Darknet: stride=1, size=stride, padding=size-1
// (total, split as padding/2 before), out = (H + padding - size) / stride + 1. [avgpool]
// without size is Darknet's global average (out 1x1xC); with size it averages windows with
// padding on each side, out = (H + 2 padding - size) / stride + 1.
#include "core/error.h"
#include "nn/cpu/pool.h"
#include "nn/layer_internal.h"

typedef struct pool_priv {
    int size, stride, padding;
    int global;
    dp_pool_params p; // N set per step
} pool_priv;

const dp_pool_params *dp__pool_params(const dp_layer *l)
{
    return &((const pool_priv *)l->priv)->p;
}

int dp__pool_global(const dp_layer *l)
{
    return ((const pool_priv *)l->priv)->global;
}

static dp_status maxpool_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(pool_priv)));
    pool_priv *p = l->priv;
    long stride, size, padding;
    DP_TRY(dp_cfg_get_int(s, "stride", 1, &stride));
    DP_TRY(dp_cfg_get_int(s, "size", stride, &size));
    DP_TRY(dp_cfg_get_int(s, "padding", size - 1, &padding));
    p->size = (int)size;
    p->stride = (int)stride;
    p->padding = (int)padding;
    return DP_OK;
}

static dp_status pool_window_check(dp_layer *l, int64_t H, int64_t W, int64_t padded_extra)
{
    pool_priv *p = l->priv;
    if (H + padded_extra < p->size || W + padded_extra < p->size) {
        return dp_layer_error(l, DP_ERR_SHAPE,
                              "expected an input of at least %lldx%lld for a %dx%d window, got "
                              "%lldx%lld",
                              (long long)(p->size - padded_extra),
                              (long long)(p->size - padded_extra), p->size, p->size, (long long)H,
                              (long long)W);
    }
    return DP_OK;
}

static dp_status maxpool_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    pool_priv *p = l->priv;
    int64_t C = l->in_shape.dims[0], H = l->in_shape.dims[1], W = l->in_shape.dims[2];
    DP_TRY(pool_window_check(l, H, W, p->padding));
    l->out_shape = dp_chw(C, (H + p->padding - p->size) / p->stride + 1,
                          (W + p->padding - p->size) / p->stride + 1);
    if (dp_pool_params_darknet(&p->p, 1, (int)C, (int)H, (int)W, p->size, p->stride, p->padding) !=
        DP_OK) {
        return dp_layer_error(l, DP_ERR_SHAPE, "%s", dp_error_message());
    }
    return DP_OK;
}

static dp_pool_params pool_at(const dp_layer *l, int n)
{
    dp_pool_params p = ((const pool_priv *)l->priv)->p;
    p.N = n;
    return p;
}

static size_t maxpool_state_bytes(const dp_layer *l, int n)
{
    return (size_t)n * (size_t)dp_shape_count(&l->out_shape) * sizeof(int32_t);
}

static dp_status maxpool_forward(dp_layer *l, const dp_step *s)
{
    dp_pool_params p = pool_at(l, s->n);
    return dp_cpu_maxpool_forward(l->y, l->state, l->x[0], &p);
}

static dp_status maxpool_backward(dp_layer *l, const dp_step *s)
{
    if (l->dx[0] == NULL) {
        return DP_OK;
    }
    dp_pool_params p = pool_at(l, s->n);
    return dp_cpu_maxpool_backward(l->dx[0], l->dy, l->state, &p, l->dx_accumulate[0]);
}

static dp_status avgpool_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(pool_priv)));
    pool_priv *p = l->priv;
    p->global = !dp_cfg_has(s, "size");
    long size, stride, padding;
    DP_TRY(dp_cfg_get_int(s, "size", 1, &size));
    DP_TRY(dp_cfg_get_int(s, "stride", size, &stride));
    DP_TRY(dp_cfg_get_int(s, "padding", 0, &padding));
    p->size = (int)size;
    p->stride = (int)stride;
    p->padding = (int)padding;
    return DP_OK;
}

static dp_status avgpool_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    pool_priv *p = l->priv;
    int64_t C = l->in_shape.dims[0], H = l->in_shape.dims[1], W = l->in_shape.dims[2];
    if (p->global) {
        l->out_shape = dp_chw(C, 1, 1);
        return DP_OK;
    }
    DP_TRY(pool_window_check(l, H, W, 2 * (int64_t)p->padding));
    l->out_shape = dp_chw(C, (H + 2 * p->padding - p->size) / p->stride + 1,
                          (W + 2 * p->padding - p->size) / p->stride + 1);
    dp_pool_params q = {.N = 1,
                        .C = (int)C,
                        .H = (int)H,
                        .W = (int)W,
                        .size_h = p->size,
                        .size_w = p->size,
                        .stride_h = p->stride,
                        .stride_w = p->stride,
                        .pad_h = 2 * p->padding,
                        .pad_w = 2 * p->padding,
                        .count_include_pad = 1};
    if (dp_pool_params_resolve(&q) != DP_OK) {
        return dp_layer_error(l, DP_ERR_SHAPE, "%s", dp_error_message());
    }
    p->p = q;
    return DP_OK;
}

static dp_status avgpool_forward(dp_layer *l, const dp_step *s)
{
    const pool_priv *p = l->priv;
    if (p->global) {
        return dp_cpu_global_avgpool_forward(l->y, l->x[0], s->n, (int)l->in_shape.dims[0],
                                             (size_t)(l->in_shape.dims[1] * l->in_shape.dims[2]));
    }
    dp_pool_params q = pool_at(l, s->n);
    return dp_cpu_avgpool_forward(l->y, l->x[0], &q);
}

static dp_status avgpool_backward(dp_layer *l, const dp_step *s)
{
    const pool_priv *p = l->priv;
    if (l->dx[0] == NULL) {
        return DP_OK;
    }
    if (p->global) {
        return dp_cpu_global_avgpool_backward(l->dx[0], l->dy, s->n, (int)l->in_shape.dims[0],
                                              (size_t)(l->in_shape.dims[1] * l->in_shape.dims[2]),
                                              l->dx_accumulate[0]);
    }
    dp_pool_params q = pool_at(l, s->n);
    return dp_cpu_avgpool_backward(l->dx[0], l->dy, &q, l->dx_accumulate[0]);
}

const dp_layer_ops dp_layer_maxpool_ops = {
    .name = "maxpool",
    .parse = maxpool_parse,
    .infer_shape = maxpool_infer,
    .state_bytes = maxpool_state_bytes,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
};

const dp_layer_ops dp_layer_avgpool_ops = {
    .name = "avgpool",
    .parse = avgpool_parse,
    .infer_shape = avgpool_infer,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};
