// The network on one CUDA device (compiled only with CUDA): the device side of an allocated
// dp_net. The same plan as the CPU's (flat float32 parameters, gradients and buffers in the
// CPU's layout, every layer's output, output gradient and saved state, one shared workspace)
// carved from one device allocation made at creation; nothing is allocated afterwards. The
// host dp_net stays the description and the host mirror of the parameters and buffers, filled
// by explicit downloads (checkpoints, params_sha256, replica checksums) and sent by uploads
// (after initialization, broadcast or resume).
//
// Batches arrive one ahead: dp_net_cuda_stage copies a host batch (pinned for the copy to be
// asynchronous) into one of two device slots on the H2D stream and records an event; forward
// makes the compute stream wait for that event, so the copy of batch t+1 overlaps the step of
// batch t without a host sync. The loss stats of each forward stay on the device, one slot per
// forward, until dp_net_cuda_read_stats reads many at once (once per log interval).
//
// Not thread-safe: one host thread drives a dp_net_cuda. Opaque.
#ifndef DP_NN_NET_CUDA_H
#define DP_NN_NET_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/cpu/softmax_xent.h"
#include "nn/cuda/cuda_ctx.h"
#include "nn/net.h"

DP_EXTERN_C_BEGIN

enum { DP_NET_CUDA_SLOTS = 2 }; // input slots: the batch in use and the one arriving

typedef struct dp_net_cuda dp_net_cuda;

// Plans and allocates the device side of net, which must have been dp_net_alloc'd (its train
// flag decides whether gradients exist), for ctx's storage type and layout. n_stats: loss-stat
// slots kept on the device (>= 1). Errors: DP_ERR_UNSUPPORTED naming the first layer whose
// type has no CUDA implementation yet, DP_ERR_CUDA/DP_ERR_NOMEM naming the bytes when the
// device memory cannot be had. net and ctx must outlive the result. Parameters are not
// uploaded: call dp_net_cuda_upload.
DP_MUST_CHECK dp_status dp_net_cuda_create(dp_net_cuda **out, dp_net *net, dp_cuda_ctx *ctx,
                                           int n_stats);
void dp_net_cuda_destroy(dp_net_cuda *nc); // NULL and half-built are fine

size_t dp_net_cuda_memory_bytes(const dp_net_cuda *nc);

// The flat device buffers (float32, the CPU's layout: dp_net_params and friends).
float *dp_net_cuda_params(dp_net_cuda *nc);
float *dp_net_cuda_grads(dp_net_cuda *nc); // NULL when the net was not allocated to train
float *dp_net_cuda_buffers(dp_net_cuda *nc);
const uint8_t *dp_net_cuda_decay_mask(dp_net_cuda *nc);

// Host mirror <-> device, blocking: parameters and buffers (batch-norm running statistics).
DP_MUST_CHECK dp_status dp_net_cuda_upload(dp_net_cuda *nc);
DP_MUST_CHECK dp_status dp_net_cuda_download(dp_net_cuda *nc);
// The device parameters changed (an optimizer step): refreshes what layers derive from them
// (weight copies in bf16/fp16 and cuDNN's filter layout). Enqueued on the compute stream; the
// upload calls it itself.
DP_MUST_CHECK dp_status dp_net_cuda_params_changed(dp_net_cuda *nc);
// Device gradients into the host net's gradient buffer (tests; naming a non-finite layer).
DP_MUST_CHECK dp_status dp_net_cuda_download_grads(dp_net_cuda *nc);

// Layer index's output (grad = 0) or its gradient (grad = 1) for the first n samples, as float32
// in the CPU's NCHW order (tests, and naming the layer where a value went wrong). Blocking.
// DP_ERR_UNSUPPORTED unless activations are float32 NCHW; DP_ERR_ARG for a bad index, n, or a
// gradient the network does not keep.
//   out (n, out_shape) NCHW float32, host
DP_MUST_CHECK dp_status dp_net_cuda_download_activation(dp_net_cuda *nc, int index, int grad,
                                                        float *out, int n);

// Enqueues the copy of a batch of n samples (1..batch) into input slot `slot` on the H2D
// stream, after the compute stream has released the slot (dp_net_cuda_release). Host arrays
// must stay unchanged until the copy is done: until the next dp_net_cuda_release of the slot,
// or a stream sync. labels_b and mix_lambda: both NULL or both set.
//   images (n, C, H, W) NCHW float32, host;  labels, labels_b (n) int32;  mix_lambda (n) float
DP_MUST_CHECK dp_status dp_net_cuda_stage(dp_net_cuda *nc, int slot, const float *images,
                                          const int32_t *labels, const int32_t *labels_b,
                                          const float *mix_lambda, int n);

// Marks slot `slot` free once the compute stream's work so far is done (record, no host sync):
// call it after the last forward or backward that reads the slot.
DP_MUST_CHECK dp_status dp_net_cuda_release(dp_net_cuda *nc, int slot);

// Forward of all layers over the batch staged in `slot` (the compute stream waits for its
// copy). run as for dp_net_forward (its labels pointers are not used: the staged ones are; a
// forward without labels passes with_labels = 0). The loss stats go to stats slot `stat`
// (0 <= stat < n_stats). Enqueued only: no host sync.
DP_MUST_CHECK dp_status dp_net_cuda_forward(dp_net_cuda *nc, int slot, const dp_net_run *run,
                                            int with_labels, int stat);

// Backward from the loss layer to the first, after dp_net_cuda_forward of the same slot and
// run. Parameter gradients are written, or added when run->accumulate. Enqueued only.
DP_MUST_CHECK dp_status dp_net_cuda_backward(dp_net_cuda *nc, int slot, const dp_net_run *run);

// The same, calling done(done_ctx, i) on the host right after layer i's backward has been
// enqueued (layers from the loss layer down to 0): the gradients of layers i.. are final once
// the compute stream reaches that point, so the caller can record an event and start their
// all-reduce while the rest of backward runs. An error from done stops backward and is returned.
typedef dp_status (*dp_net_cuda_layer_done_fn)(void *done_ctx, int layer);
DP_MUST_CHECK dp_status dp_net_cuda_backward_hook(dp_net_cuda *nc, int slot, const dp_net_run *run,
                                                  dp_net_cuda_layer_done_fn done, void *done_ctx);

// fp16 loss scaling: dL/dlogits is multiplied by mult too (1 by default).
void dp_net_cuda_set_grad_mult(dp_net_cuda *nc, float mult);

// Reads stats slots first..first+count-1 (blocking) into out[0..count-1], and makes the last
// one the host net's metrics (dp_net_metrics_get). n: samples of each of those forwards, for
// the metrics. DP_ERR_DATA with the CPU's message when a label was out of range.
DP_MUST_CHECK dp_status dp_net_cuda_read_stats(dp_net_cuda *nc, int first, int count, int n,
                                               dp_xent_stats *out);

DP_EXTERN_C_END

#endif
