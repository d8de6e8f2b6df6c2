// Helpers shared by the layer_<type>.c files.
#ifndef DP_NN_LAYER_INTERNAL_H
#define DP_NN_LAYER_INTERNAL_H

#include "nn/layer.h"

// The ops tables of the layer types (layer_registry.c lists them by section name).
extern const dp_layer_ops dp_layer_conv_ops;
extern const dp_layer_ops dp_layer_connected_ops;
extern const dp_layer_ops dp_layer_maxpool_ops;
extern const dp_layer_ops dp_layer_avgpool_ops;
extern const dp_layer_ops dp_layer_dropout_ops;
extern const dp_layer_ops dp_layer_softmax_ops;
extern const dp_layer_ops dp_layer_cost_ops;
extern const dp_layer_ops dp_layer_shortcut_ops;
extern const dp_layer_ops dp_layer_route_ops;
extern const dp_layer_ops dp_layer_batchnorm_ops;
extern const dp_layer_ops dp_layer_activation_ops;
extern const dp_layer_ops dp_layer_flatten_ops;
extern const dp_layer_ops dp_layer_crop_ops;

// Allocates l->priv of bytes, zeroed. DP_ERR_NOMEM naming the layer.
dp_status dp__layer_alloc_priv(dp_layer *l, size_t bytes);

// Darknet layer references: v < 0 is relative to this layer, v >= 0 absolute.
int dp__layer_ref(const dp_layer *l, long v);

// Appends a parameter to l->params.
void dp__layer_add_param(dp_layer *l, const char *name, dp_shape shape, dp_param_init init,
                         int fan_in, int fan_out, int decay);

// Appends a non-trainable tensor (batch-norm running statistics) to l->buffers, filled with
// value at initialization.
void dp__layer_add_buffer(dp_layer *l, const char *name, dp_shape shape, float value);

// dst = src, or dst += src when accumulate (n floats).
void dp__copy_or_add(float *dst, const float *src, size_t n, int accumulate);

// The loss layer's last metrics, and its label smoothing (layer_softmax.c).
void dp__softmax_stats(const dp_layer *l, double *loss_sum, long *top1, long *top5, int *n);
void dp__softmax_set_smoothing(dp_layer *l, double eps);

#endif
