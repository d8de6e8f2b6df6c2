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

DP_EXTERN_C_BEGIN

enum { DP_LAYER_MAX_INPUTS = 16, DP_LAYER_MAX_PARAMS = 4 };

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
} dp_param_spec;

typedef struct dp_param {
    dp_param_spec spec;
    size_t offset; // elements from the start of the flat buffers
    float *data;   // view into the flat parameter buffer (NULL until allocated)
    float *grad;   // view into the flat gradient buffer
} dp_param;

struct dp_layer {
    const dp_layer_ops *ops;
    int index;
    char name[48];                 // "3_convolutional", or the cfg's name= key
    const dp_cfg_section *section; // where it came from (file:line via dp_cfg_where)
    int n_inputs;
    int inputs[DP_LAYER_MAX_INPUTS]; // producer layer indices; -1 is the network input
    dp_shape in_shape;               // (C, H, W) per sample of inputs[0]
    dp_shape out_shape;              // (C, H, W) per sample
    double flops;                    // forward FLOPs per sample (2 per multiply-add)
    int n_params;
    dp_param params[DP_LAYER_MAX_PARAMS];
    void *priv; // the type's own state, owned by the layer (ops->destroy)
};

struct dp_layer_ops {
    const char *name; // Darknet's section name
    // Reads the section's keys into l->priv (allocated here) and sets l->inputs when the layer
    // does not simply read the previous layer. Errors name the file:line and key.
    dp_status (*parse)(dp_layer *l, const dp_cfg_section *s);
    // From the input shapes (net gives every earlier layer's out_shape): sets l->out_shape,
    // l->flops and l->params[].spec. A mismatch is DP_ERR_SHAPE via dp_layer_error.
    dp_status (*infer_shape)(dp_layer *l, const dp_net *net);
    // Scratch bytes one forward or backward of a batch of n samples needs (shared by layers).
    size_t (*workspace_bytes)(const dp_layer *l, int n);
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
