// Helpers shared by the layer_<type>.c files.
#ifndef DP_NN_LAYER_INTERNAL_H
#define DP_NN_LAYER_INTERNAL_H

#include "nn/cpu/conv.h"
#include "nn/cpu/dense.h"
#include "nn/cpu/dropout.h"
#include "nn/cpu/elementwise.h"
#include "nn/cpu/pool.h"
#include "nn/cpu/softmax_xent.h"
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
// For the device network (layer_cuda*.c), which computes the loss on the GPU: the smoothing to
// use, and the metrics of a forward of n samples read back from the device.
double dp__softmax_smoothing(const dp_layer *l);
void dp__softmax_stats_set(dp_layer *l, const dp_xent_stats *stats, int n);

// What the device network needs of a [convolutional] (layer_conv.c) and a [connected]
// (layer_connected.c) layer: the resolved convolution shape (N = 1: the caller sets it), the
// dense dims for n samples, whether the layer has its own bias (params[1]), and what follows the
// linear map (batch norm, activation).
const dp_conv_params *dp__conv_params(const dp_layer *l);
int dp__conv_has_bias(const dp_layer *l);
const struct dp__post *dp__conv_post(const dp_layer *l);
dp_dense_params dp__connected_params(const dp_layer *l, int n);
int dp__connected_has_bias(const dp_layer *l);
const struct dp__post *dp__connected_post(const dp_layer *l);

// ... of [maxpool]/[avgpool] (layer_pool.c): the resolved window (N = 1), and whether an
// [avgpool] is global; of [shortcut] (layer_route.c): its shape (N = 1), what follows the add,
// and whether the CPU runs it as one fused pass; of [batchnorm]/[activation] (layer_simple.c):
// the post-processing that is the whole layer.
const dp_pool_params *dp__pool_params(const dp_layer *l);
int dp__pool_global(const dp_layer *l);
const dp_shortcut_params *dp__shortcut_params(const dp_layer *l);
const struct dp__post *dp__shortcut_post(const dp_layer *l);
int dp__shortcut_fused(const dp_layer *l);
const struct dp__post *dp__simple_post(const dp_layer *l);

// The dropout parameters of a [dropout] layer for a micro-batch (layer_simple.c): the CPU and
// the device draw the same mask from them.
dp_dropout_params dp__dropout_params(const dp_layer *l, const dp_step *s);
// [crop]: whether training mirrors the window (flip=1); its size is the layer's out_shape.
int dp__crop_flip(const dp_layer *l);

#endif
