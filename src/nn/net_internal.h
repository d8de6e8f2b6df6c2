// The network's fields, shared by net.c (construction, queries) and net_exec.c (memory plan,
// parameter initialization, forward and backward).
#ifndef DP_NN_NET_INTERNAL_H
#define DP_NN_NET_INTERNAL_H

#include <stdint.h>

#include "core/arena.h"
#include "core/threadpool.h"
#include "nn/net.h"

struct dp_net {
    const dp_cfg *cfg;
    int batch;      // samples per micro-batch
    int train;      // gradients and saved state are allocated
    dp_shape input; // (C, H, W)
    dp_layer *layers;
    int n_layers;
    size_t n_params;
    size_t n_buffers;
    double flops;

    // --- planned memory (dp_net_alloc), all from one arena ---
    dp_arena *arena;
    float *params;       // (n_params) flat, last layer first
    float *grads;        // (n_params) same layout; NULL outside training
    float *buffers;      // (n_buffers) batch-norm running statistics
    uint8_t *decay_mask; // (n_params) 1 where weight decay applies
    float *scratch[2];   // (scratch_floats) each
    size_t scratch_floats;
    float *ws; // kernel workspace
    size_t ws_bytes;
    int loss_layer;      // index of the [softmax] layer that computes the loss, or -1
    dp_threadpool *pool; // CPU threads of the kernels (dp_net_alloc); NULL for one thread
};

#endif
