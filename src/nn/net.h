// The network: built once from a cfg (every layer parsed, every shape inferred, parameters laid
// out in one flat buffer), then run forward and backward over planned memory. Opaque.
#ifndef DP_NN_NET_H
#define DP_NN_NET_H

#include <stddef.h>
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

// Prints the layer table (index, type, output HxWxC, parameters, FLOPs per sample, cfg line)
// and, last, exactly "check: layers=L params=N output=HxWxC flops=F". DP_ERR_IO if writing
// fails.
DP_MUST_CHECK dp_status dp_net_print_summary(const dp_net *net, FILE *f);

DP_EXTERN_C_END

#endif
