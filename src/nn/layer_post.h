// What follows a linear map in a layer: optional batch norm (Darknet's batch_normalize=1;
// ghost batch norm per micro-batch) and an activation, shared by [convolutional], [connected],
// [batchnorm] and [activation]. The layer computes its raw output z (n, C, hw) where
// dp__post_raw says, then dp__post_forward turns it into y; backward turns dy into dz in scratch.
#ifndef DP_NN_LAYER_POST_H
#define DP_NN_LAYER_POST_H

#include "nn/cpu/activation.h"
#include "nn/cpu/conv.h"
#include "nn/layer.h"

typedef struct dp__post {
    int bn; // batch norm after the linear map
    dp_act act;
    float slope; // leaky slope
    int scales;  // index in l->params of the batch-norm scales (gamma), or -1
    int shifts;  // ... of the shifts (beta), or -1
    int prelu;   // ... of the PReLU slopes, or -1
    int running; // index in l->buffers of the running mean (variance follows), or -1
} dp__post;

// Reads activation= (default def) and slope=, resolving the name; an unknown name is
// DP_ERR_UNSUPPORTED naming file:line and the activation.
dp_status dp__post_parse(dp_layer *l, const dp_cfg_section *s, const char *def, int bn,
                         dp__post *post);

// Adds the batch-norm parameters and buffers and the PReLU slopes for C channels (called from
// infer_shape after the layer's own parameters).
void dp__post_add_params(dp_layer *l, dp__post *post, int C);

// Saved-state bytes for n samples of C x hw.
size_t dp__post_state_bytes(const dp__post *post, int n, int C, size_t hw);

// Where the layer must write its raw output z: into the saved state when backward needs it,
// else straight into y (the activation then runs in place).
float *dp__post_raw(dp_layer *l, const dp__post *post);

// y = act(bn(z)) with z at dp__post_raw. Training uses batch statistics of this micro-batch and
// updates the running statistics; evaluation uses the running statistics.
dp_status dp__post_forward(dp_layer *l, const dp__post *post, const dp_step *s, int C, size_t hw);

// For a kernel that can finish its output image by image (the convolution's epilogue): fills
// ep with what it should do while each image is in cache (batch-norm plane statistics in
// training; in evaluation the whole batch norm and the activation; the activation alone when
// backward needs only y) and returns where the kernel writes its raw output. The layer then
// calls dp__post_finish with the same ep, which does the rest.
float *dp__post_prepare(dp_layer *l, const dp__post *post, const dp_step *s, int C, size_t hw,
                        dp_conv_epilogue *ep);
dp_status dp__post_finish(dp_layer *l, const dp__post *post, const dp_step *s, int C, size_t hw,
                          const dp_conv_epilogue *ep);

// dz from l->dy, into step scratch (or l->dy itself when nothing follows the linear map), and
// the batch-norm / PReLU parameter gradients. Returns dz in *dz.
dp_status dp__post_backward(dp_layer *l, const dp__post *post, const dp_step *s, int C, size_t hw,
                            const float **dz);

// As dp__post_backward, for a kernel that can take dz as a map of what *dz points to
// (dp_conv_dy_map): when batch norm is followed by a fusable activation, map->coef is set and
// dz is not materialized; otherwise map->coef is NULL and *dz is dz.
dp_status dp__post_backward_map(dp_layer *l, const dp__post *post, const dp_step *s, int C,
                                size_t hw, dp_conv_dy_map *map, const float **dz);

#endif
