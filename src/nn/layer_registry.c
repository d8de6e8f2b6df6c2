// The layer types dptrain builds, by Darknet section name, and helpers common to all layers.
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/layer_internal.h"

static const struct {
    const char *section;
    const dp_layer_ops *ops;
} registry[] = {
    {"convolutional", &dp_layer_conv_ops}, {"connected", &dp_layer_connected_ops},
    {"maxpool", &dp_layer_maxpool_ops},    {"avgpool", &dp_layer_avgpool_ops},
    {"dropout", &dp_layer_dropout_ops},    {"softmax", &dp_layer_softmax_ops},
    {"cost", &dp_layer_cost_ops},          {"shortcut", &dp_layer_shortcut_ops},
    {"route", &dp_layer_route_ops},        {"batchnorm", &dp_layer_batchnorm_ops},
    {"activation", &dp_layer_activation_ops}, {"flatten", &dp_layer_flatten_ops},
    {"crop", &dp_layer_crop_ops},
};

const dp_layer_ops *dp_layer_ops_find(const char *section_name)
{
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++) {
        if (strcmp(registry[i].section, section_name) == 0) {
            return registry[i].ops;
        }
    }
    return NULL;
}

dp_status dp__layer_alloc_priv(dp_layer *l, size_t bytes)
{
    l->priv = calloc(1, bytes);
    if (l->priv == NULL) {
        return dp_layer_error(l, DP_ERR_NOMEM, "out of memory");
    }
    return DP_OK;
}

int dp__layer_ref(const dp_layer *l, long v)
{
    return v < 0 ? l->index + (int)v : (int)v;
}

void dp__layer_add_param(dp_layer *l, const char *name, dp_shape shape, dp_param_init init,
                         int fan_in, int fan_out, int decay)
{
    DP_ASSERT(l->n_params < DP_LAYER_MAX_PARAMS);
    dp_param *p = &l->params[l->n_params++];
    memset(p, 0, sizeof *p);
    p->spec.name = name;
    p->spec.shape = shape;
    p->spec.init = init;
    p->spec.fan_in = fan_in;
    p->spec.fan_out = fan_out;
    p->spec.decay = decay;
}

void dp__layer_add_buffer(dp_layer *l, const char *name, dp_shape shape, float value)
{
    DP_ASSERT(l->n_buffers < DP_LAYER_MAX_BUFFERS);
    dp_param *p = &l->buffers[l->n_buffers++];
    memset(p, 0, sizeof *p);
    p->spec.name = name;
    p->spec.shape = shape;
    p->spec.init = DP_PARAM_INIT_CONST;
    p->spec.value = value;
}

void dp__copy_or_add(float *dst, const float *src, size_t n, int accumulate)
{
    if (!accumulate) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        dst[i] += src[i];
    }
}
