// The layer interface: a small common header (struct dp_layer) plus one static ops table per
// layer type (layer_<type>.c), found by Darknet's section name. Layers hold views into the
// network's flat parameter and gradient buffers and into its planned activation memory; they
// never allocate in forward or backward. See net.h for the network that owns them.
#ifndef DP_NN_LAYER_H
#define DP_NN_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "core/cfg.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/threadpool.h"

DP_EXTERN_C_BEGIN

enum { DP_LAYER_MAX_INPUTS = 16, DP_LAYER_MAX_PARAMS = 4, DP_LAYER_MAX_BUFFERS = 2 };

typedef struct dp_layer dp_layer;
typedef struct dp_layer_ops dp_layer_ops;
typedef struct dp_net dp_net;
typedef struct dp_step dp_step;

// How a parameter is initialized: weights by the layer's initializer (fan_in, fan_out), the
// others to a constant.
typedef enum dp_param_init {
    DP_PARAM_INIT_WEIGHT = 0,
    DP_PARAM_INIT_BIAS,  // PyTorch default: U(+-1/sqrt(fan_in)); zero for the other initializers
    DP_PARAM_INIT_ZERO,
    DP_PARAM_INIT_ONE,
    DP_PARAM_INIT_CONST, // value
} dp_param_init;

typedef struct dp_param_spec {
    const char *name; // "weights", "biases", "scales", ...
    dp_shape shape;
    dp_param_init init;
    float value;      // DP_PARAM_INIT_CONST
    int fan_in;
    int fan_out;
    int decay;        // 1: weight decay applies (weights), 0: not (biases, norm scales)
    const char *init_name; // DP_PARAM_INIT_WEIGHT: the layer's init= key, or NULL (network default)
    float gain;            // DP_PARAM_INIT_WEIGHT: gain of the activation that follows (Kaiming)
} dp_param_spec;

typedef struct dp_param {
    dp_param_spec spec;
    size_t offset; // elements from the start of the flat buffers
    float *data;   // view into the flat parameter buffer (NULL until allocated)
    float *grad;   // view into the flat gradient buffer
} dp_param;

// What one forward or backward pass of a micro-batch needs to know. Memory it points to is
// planned by the network; nothing here is allocated per step.
struct dp_step {
    int n;                // samples in this micro-batch
    int train;            // 1: batch statistics, dropout, a backward pass follows
    int accumulate;       // 1: add parameter gradients to those already there
    long step;            // optimizer step (keys dropout masks)
    uint64_t seed;        // run seed (keys dropout masks)
    int64_t first_sample; // global index of sample 0 of this micro-batch
    const int32_t *labels; // (n) class indices, host
    const int32_t *labels_b; // (n) second labels of mixed samples (mixup/cutmix), or NULL
    const float *mix_lambda; // (n) weight of labels; 1 - weight of labels_b; NULL with labels_b
    float loss_scale;     // dL/dlogit factor: 1 / global batch, so summed gradients average
    float *scratch[2];    // two shared host buffers of scratch_floats each
    size_t scratch_floats;
    float *ws;            // shared kernel workspace, host: what workspace_bytes asked for
    size_t ws_bytes;
    dp_threadpool *pool;  // the network's CPU threads (NULL: the caller alone)
};

struct dp_layer {
    const dp_layer_ops *ops;
    int index;
    char name[48];                 // "3_convolutional", or the cfg's name= key
    const dp_cfg_section *section; // where it came from (file:line via dp_cfg_where)
    int n_inputs;
    int inputs[DP_LAYER_MAX_INPUTS]; // producer layer indices; -1 is the network input
    int64_t in_count[DP_LAYER_MAX_INPUTS]; // elements per sample of each input (multi-input)
    dp_shape in_shape;               // (C, H, W) per sample of inputs[0]
    dp_shape out_shape;              // (C, H, W) per sample
    double flops;                    // forward FLOPs per sample (2 per multiply-add)
    int n_params;
    dp_param params[DP_LAYER_MAX_PARAMS];
    int n_buffers; // non-trainable tensors kept with the model (batch-norm running statistics)
    dp_param buffers[DP_LAYER_MAX_BUFFERS]; // grad is NULL
    void *priv; // the type's own state, owned by the layer (ops->destroy)

    // --- planned memory, set by the network before the first step ---
    float *x[DP_LAYER_MAX_INPUTS];  // inputs: the producers' outputs (n, C_k, H_k, W_k), host
    float *dx[DP_LAYER_MAX_INPUTS]; // their gradients, or NULL for the network input
    int dx_accumulate[DP_LAYER_MAX_INPUTS]; // 1: add into dx[k] (another consumer wrote it)
    float *y;    // (n, out_shape) output, host
    float *dy;   // (n, out_shape) gradient of the output, host; NULL outside training
    void *state; // state_bytes(l, n) bytes of the layer's own saved tensors, 64-byte aligned
};

struct dp_layer_ops {
    const char *name; // Darknet's section name
    // Reads the section's keys into l->priv (allocated here) and sets l->inputs when the layer
    // does not simply read the previous layer. Errors name the file:line and key.
    dp_status (*parse)(dp_layer *l, const dp_cfg_section *s);
    // From the input shapes (net gives every earlier layer's out_shape): sets l->out_shape,
    // l->flops and l->params[].spec. A mismatch is DP_ERR_SHAPE via dp_layer_error.
    dp_status (*infer_shape)(dp_layer *l, const dp_net *net);
    // Scratch bytes one forward or backward of a batch of n samples needs when its kernels run
    // on `threads` threads (shared by layers); NULL: none.
    size_t (*workspace_bytes)(const dp_layer *l, int n, int threads);
    // Bytes of tensors saved from forward for backward, for n samples; NULL: none.
    size_t (*state_bytes)(const dp_layer *l, int n);
    // y from x (and the parameters); in training also what backward needs into state.
    dp_status (*forward)(dp_layer *l, const dp_step *step);
    // From dy: parameter gradients (added when step->accumulate) and dx[k] (added when
    // dx_accumulate[k]); dx[k] may be NULL.
    dp_status (*backward)(dp_layer *l, const dp_step *step);
    void (*destroy)(dp_layer *l); // frees l->priv; NULL when priv needs only free()
};

// The ops of the layer type for a canonical section name, or NULL if dptrain cannot build it.
const dp_layer_ops *dp_layer_ops_find(const char *section_name);

// Sets DP_ERR_* st with "file:line [layer N type]: message" and returns st.
dp_status dp_layer_error(const dp_layer *l, dp_status st, const char *fmt, ...) DP_PRINTF(3, 4);

// Writes "CxHxW" as Darknet prints it, "HxWxC", into buf.
char *dp_layer_shape_str(const dp_shape *chw, char *buf, size_t size);

// Convenience: (C, H, W) per-sample shape, and its element count.
static inline dp_shape dp_chw(int64_t c, int64_t h, int64_t w)
{
    dp_shape s = {3, {c, h, w, 0, 0, 0}};
    return s;
}

DP_EXTERN_C_END

#endif
