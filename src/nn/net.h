// The network: built once from a cfg (every layer parsed, every shape inferred, parameters laid
// out in one flat buffer), then run forward and backward over planned memory. Opaque.
#ifndef DP_NN_NET_H
#define DP_NN_NET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/cfg.h"
#include "core/status.h"
#include "nn/layer.h"

DP_EXTERN_C_BEGIN

typedef struct dp_net_config {
    int batch; // samples per forward/backward on this process; 0: [net] batch / subdivisions
} dp_net_config;

#define DP_NET_CONFIG_INIT {.batch = 0}

// Builds the network of a validated cfg (dp_cfg_validate): one layer per layer section, in
// order. Errors: DP_ERR_CFG for a bad key or a layer type dptrain cannot build, DP_ERR_SHAPE
// for a shape mismatch, each as "file:line [layer N type]: ...". The cfg must outlive the net.
DP_MUST_CHECK dp_status dp_net_create(dp_net **out, const dp_cfg *cfg, const dp_net_config *nc);

// Accepts NULL and half-built nets.
void dp_net_destroy(dp_net *net);

int dp_net_layer_count(const dp_net *net);
const dp_layer *dp_net_layer(const dp_net *net, int index);
// (C, H, W) per sample of the network input and of the last layer.
dp_shape dp_net_input_shape(const dp_net *net);
dp_shape dp_net_output_shape(const dp_net *net);
// Shape (C, H, W) per sample produced by layer index, or the input for index -1.
dp_shape dp_net_shape_of(const dp_net *net, int index);
// Learnable parameters (elements of the flat buffer), and forward FLOPs per sample.
size_t dp_net_param_count(const dp_net *net);
double dp_net_flops(const dp_net *net);
int dp_net_batch(const dp_net *net);

// --- running ---

// Plans and allocates all memory of the network for its batch, once: flat parameters,
// gradients (train != 0), batch-norm buffers, activations, saved state, scratch. DP_ERR_NOMEM
// naming the bytes if it does not fit.
DP_MUST_CHECK dp_status dp_net_alloc(dp_net *net, int train);

// Bytes of the network's arena (0 before dp_net_alloc).
size_t dp_net_memory_bytes(const dp_net *net);

// Initializes every parameter (weights by the layer's init= key, else default_init: "default"
// is PyTorch's default; biases, norm scales and shifts as their spec says) and resets the
// buffers (running mean 0, variance 1). Each tensor draws from the Philox stream keyed by
// (seed, layer index, parameter index), so the result does not depend on the machine.
DP_MUST_CHECK dp_status dp_net_init_params(dp_net *net, uint64_t seed, const char *default_init);

// The flat buffers (after dp_net_alloc): parameters and gradients (n = dp_net_param_count,
// last layer first), buffers (n = dp_net_buffer_count), and the weight-decay mask (1 where
// decay applies: weights, not biases or norm parameters).
float *dp_net_params(dp_net *net);
float *dp_net_grads(dp_net *net);
float *dp_net_buffers(dp_net *net);
size_t dp_net_buffer_count(const dp_net *net);
const uint8_t *dp_net_decay_mask(const dp_net *net);

typedef struct dp_net_run {
    int n;                 // samples in this call, 1..batch; 0: the full batch
    int train;             // 1: batch statistics and dropout (the net must be allocated to train)
    int accumulate;        // 1: backward adds to the gradients already there (micro-batches)
    long step;             // optimizer step (keys dropout)
    uint64_t seed;         // run seed (keys dropout)
    int64_t first_sample;  // global index of the first sample of this micro-batch
    const int32_t *labels; // (batch) class indices
    // Mixed samples (mixup, cutmix): loss_i = lambda_i xent(labels_i) + (1 - lambda_i)
    // xent(labels_b_i). NULL when the batch is not mixed.
    const int32_t *labels_b;
    const float *mix_lambda;
    float loss_scale;      // dL/dlogits factor: 1 / global batch
} dp_net_run;

#define DP_NET_RUN_INIT {.loss_scale = 1.0f}

// Forward over all layers. input: (batch, C, H, W) NCHW host floats, read only. Labels are
// needed for the loss and metrics; a label out of range is DP_ERR_DATA naming the sample.
DP_MUST_CHECK dp_status dp_net_forward(dp_net *net, const float *input, const dp_net_run *run);

// Backward from the loss layer to the first layer, after dp_net_forward with the same run.
DP_MUST_CHECK dp_status dp_net_backward(dp_net *net, const dp_net_run *run);

// One layer alone (profiling, benchmarks): the layers it reads must have run.
DP_MUST_CHECK dp_status dp_net_forward_layer(dp_net *net, int index, const float *input,
                                             const dp_net_run *run);
DP_MUST_CHECK dp_status dp_net_backward_layer(dp_net *net, int index, const dp_net_run *run);

typedef struct dp_net_metrics {
    double loss_sum; // summed (not averaged) loss of the last forward
    long top1;       // samples whose label is the top class
    long top5;       // ... among the top 5 (top1 when there are fewer than 5 classes)
    int n;           // samples
} dp_net_metrics;

// Metrics of the last forward; DP_ERR_CFG if the network has no loss layer.
DP_MUST_CHECK dp_status dp_net_metrics_get(const dp_net *net, dp_net_metrics *out);

// Overrides the loss layer's label smoothing ([softmax] label_smoothing=, default 0).
DP_MUST_CHECK dp_status dp_net_set_label_smoothing(dp_net *net, double eps);

// Prints the layer table (index, type, output HxWxC, parameters, FLOPs per sample, cfg line)
// and, last, exactly "check: layers=L params=N output=HxWxC flops=F". DP_ERR_IO if writing
// fails.
DP_MUST_CHECK dp_status dp_net_print_summary(const dp_net *net, FILE *f);

DP_EXTERN_C_END

#endif
