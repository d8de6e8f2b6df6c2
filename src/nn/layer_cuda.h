// The CUDA side of the layers (compiled only with CUDA): per layer type one static table of
// device functions beside the CPU's dp_layer_ops, found by that ops pointer, and the device views
// a layer reads and writes. The host dp_layer stays the description (shapes, parameters' specs,
// cfg keys through the accessors of layer_internal.h); nothing here changes the CPU path.
//
// Memory: every pointer below is device memory of the network's context, planned once by
// net_cuda.c. Activations and their gradients are in the context's storage type (float32,
// bfloat16 or float16) and layout (NCHW or NHWC); parameters, their gradients and buffers are
// float32 views into the flat device buffers, which have the CPU's layout.
#ifndef DP_NN_LAYER_CUDA_H
#define DP_NN_LAYER_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/cuda/cuda_ctx.h"
#include "nn/cuda/step/step_ops.h"
#include "nn/layer.h"

DP_EXTERN_C_BEGIN

typedef struct dp_layer_cuda dp_layer_cuda;
typedef struct dp_layer_cuda_ops dp_layer_cuda_ops;

// What one forward or backward of a micro-batch on the device needs besides the host step
// (which keeps n, train, accumulate, step, seed, first_sample, loss_scale).
typedef struct dp_cuda_step {
    const dp_step *host; // n, train, accumulate, dropout keys, loss_scale; host pointers unused
    dp_cuda_ctx *ctx;
    dp_cuda_dtype dtype;       // storage type of activations
    dp_cuda_layout layout;     // of activations
    const int32_t *labels;     // (n) device, or NULL (no loss)
    const int32_t *labels_b;   // (n) device, or NULL when the batch is not mixed
    const float *mix_lambda;   // (n) device, with labels_b
    float grad_mult;           // extra factor of dL/dlogits (the fp16 loss scale; 1 otherwise)
    dp_cuda_xent_result *xent; // where the loss layer writes this forward's stats (device)
    void *ws;                  // shared device workspace: the largest workspace_bytes of the layers
    size_t ws_bytes;
    void *scratch[2]; // two shared buffers, each the largest activation, dtype
    // Samples every launch runs: the network's batch, whatever host->n (the plans are made
    // for it; an evaluation tail of fewer samples runs on the zeroed rest of the input slot).
    int N;
} dp_cuda_step;

struct dp_layer_cuda {
    const dp_layer_cuda_ops *ops;
    dp_layer *l;                         // the host description
    void *x[DP_LAYER_MAX_INPUTS];        // producers' outputs (n, C_k, H_k, W_k), dtype, layout
    void *dx[DP_LAYER_MAX_INPUTS];       // their gradients, or NULL (the network input)
    void *y;                             // (n, out_shape), dtype, layout
    void *dy;                            // its gradient; NULL outside training
    void *state;                         // state_bytes, 256-byte aligned
    float *param[DP_LAYER_MAX_PARAMS];   // float32 views into the flat device parameters
    float *grad[DP_LAYER_MAX_PARAMS];    // ... and gradients (NULL outside training)
    float *buffer[DP_LAYER_MAX_BUFFERS]; // ... and buffers (batch-norm running statistics)
    void *plan; // the type's own device-side plan (algorithms, descriptors), owned by the ops
};

struct dp_layer_cuda_ops {
    const dp_layer_ops *cpu; // the layer type this implements
    // 1: y is x[0] itself (no memory of its own, forward and backward do nothing but the
    // gradient's pass-through, which the network wires as dx[0] = dy).
    int alias;
    // Chooses algorithms for batches of n (may run cudnnFind*, so only at set-up) into d->plan.
    // NULL: nothing to plan.
    dp_status (*plan)(dp_layer_cuda *d, int n, dp_cuda_ctx *ctx);
    // Device bytes of saved tensors for n samples; NULL: none.
    size_t (*state_bytes)(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype);
    // Shared workspace bytes one forward or backward of n samples needs; NULL: none.
    size_t (*workspace_bytes)(const dp_layer_cuda *d, int n, dp_cuda_dtype dtype,
                              dp_cuda_layout layout);
    // The parameters changed (upload, optimizer step): refresh what the plan derives from them
    // (weight copies in the storage type). Enqueued on the compute stream. NULL: nothing.
    dp_status (*params_changed)(dp_layer_cuda *d);
    dp_status (*forward)(dp_layer_cuda *d, const dp_cuda_step *s);
    dp_status (*backward)(dp_layer_cuda *d, const dp_cuda_step *s);
    void (*destroy)(dp_layer_cuda *d); // frees d->plan; NULL when there is none
};

// The device functions of a layer type, or NULL when the type has no CUDA implementation.
const dp_layer_cuda_ops *dp__layer_cuda_find(const dp_layer_ops *cpu);

// --- what follows a linear map (layer_post.h) on the device: layer_cuda_post.c ---
// The device state of a dp__post for n samples of C x hw: z (raw output, when batch norm or the
// activation's backward needs it), a (batch-norm output, when the activation's backward needs
// its input), then with batch norm mean, inv_std, scale (C float each) and coef (4 C float).
struct dp__post;
size_t dp__cuda_post_state_bytes(const struct dp__post *post, int n, int C, size_t hw,
                                 dp_cuda_dtype dtype);
size_t dp__cuda_post_workspace_bytes(const struct dp__post *post, int n, int C, size_t hw,
                                     dp_cuda_layout layout);
// Where the layer writes its raw output: into the state when backward needs it, else y.
void *dp__cuda_post_raw(const dp_layer_cuda *d, const struct dp__post *post);
// y = act(bn(z)) as dp__post_forward (batch statistics and the running update in training).
dp_status dp__cuda_post_forward(dp_layer_cuda *d, const struct dp__post *post,
                                const dp_cuda_step *s, int C, size_t hw);
// dz from d->dy (in s->scratch[0] or [1], or d->dy itself when nothing follows the map) and
// the batch-norm / PReLU parameter gradients, as dp__post_backward.
dp_status dp__cuda_post_backward(dp_layer_cuda *d, const struct dp__post *post,
                                 const dp_cuda_step *s, int C, size_t hw, const void **dz);

// The tables of layer_cuda_linear.c ([convolutional], [connected]), layer_cuda_post.c
// ([batchnorm], [activation]) and layer_cuda_misc.c (pooling, [shortcut], [route], [flatten]).
extern const dp_layer_cuda_ops dp__layer_cuda_conv;
extern const dp_layer_cuda_ops dp__layer_cuda_connected;
extern const dp_layer_cuda_ops dp__layer_cuda_batchnorm;
extern const dp_layer_cuda_ops dp__layer_cuda_activation;
extern const dp_layer_cuda_ops dp__layer_cuda_maxpool;
extern const dp_layer_cuda_ops dp__layer_cuda_avgpool;
extern const dp_layer_cuda_ops dp__layer_cuda_shortcut;
extern const dp_layer_cuda_ops dp__layer_cuda_route;
extern const dp_layer_cuda_ops dp__layer_cuda_flatten;

DP_EXTERN_C_END

#endif
