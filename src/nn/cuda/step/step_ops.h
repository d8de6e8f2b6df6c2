// The training step's own CUDA kernels: softmax cross-entropy (label smoothing, mixed targets,
// top-1/top-5), softmax, dropout (the CPU's Philox mask, bit for bit), the optimizers over the
// flat float32 buffers (one fused kernel per update), the deterministic gradient norm, finite
// checks and fp16 loss scaling, and the element-wise sums of deterministic micro-batch
// accumulation. Each mirrors a CPU function named beside it, so tests compare them directly.
// Not here: convolutions, GEMMs, batch norm, pooling (dnn/, ops/). C ABI, no CUDA types.
//
// Conventions (cuda_ctx.h): pointers marked "device" are device memory of ctx's device; every
// launcher enqueues on ctx's compute stream and returns without synchronizing the host, unless it
// says "blocking". Launchers return DP_ERR_ARG for NULL or inconsistent arguments (checked on the
// host before anything is enqueued) and DP_ERR_CUDA for a failed launch. Nothing here allocates
// except dp_cuda_optim_create. All reductions are deterministic: float sums go through fixed
// trees in double; the only atomics are integer min/max/count, whose results do not depend on
// the order of arrival.
#ifndef DP_NN_CUDA_STEP_STEP_OPS_H
#define DP_NN_CUDA_STEP_STEP_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/cpu/dropout.h"
#include "nn/cpu/softmax_xent.h"
#include "nn/cuda/cuda_ctx.h"
#include "nn/optim.h"

DP_EXTERN_C_BEGIN

// --- the step's guard ---

// What the device found out about one step's gradients, kept in device memory so that kernels
// write it and the optimizer reads it without a host sync: the optimizer skips its update when
// the guard reports a non-finite gradient or norm (the CPU returns DP_ERR_DATA and changes
// nothing there). The host reads it once per step with dp_cuda_guard_read when it synchronizes
// anyway, and turns it into a status with dp_cuda_guard_check. Plain C (the same layout in C and
// CUDA); one guard per step: reset it before the first kernel that writes it.
typedef struct dp_cuda_guard {
    uint64_t first_bad; // lowest index of a non-finite element seen (UINT64_MAX: none)
    uint64_t last_bad;  // highest index of a non-finite element seen (0 when none)
    uint64_t n_bad;     // non-finite elements seen
    double norm;        // global L2 norm of the gradients (dp_cuda_grad_norm), 0 before
    float clip_scale;   // what clipping multiplies the gradients by (1: no clipping)
    int32_t norm_bad;   // 1: the norm was not finite
} dp_cuda_guard;

// Resets *guard (device) to "nothing seen": first_bad UINT64_MAX, clip_scale 1, the rest 0.
DP_MUST_CHECK dp_status dp_cuda_guard_reset(dp_cuda_ctx *ctx, dp_cuda_guard *guard);

// Copies *guard (device) to *out (host). Blocking: waits for the compute stream.
DP_MUST_CHECK dp_status dp_cuda_guard_read(dp_cuda_ctx *ctx, dp_cuda_guard *out,
                                           const dp_cuda_guard *guard);

// DP_OK when the host copy *g says the step's gradients were finite, else DP_ERR_DATA with the
// count and the index range of the non-finite elements (or the norm), "step skipped". The indices
// are those given to the checks (base + i), so the caller names the layer they fall in.
DP_MUST_CHECK dp_status dp_cuda_guard_check(const dp_cuda_guard *g);

// Whether the host copy *g says the optimizer skipped (or will skip) the step.
static inline int dp_cuda_guard_skips(const dp_cuda_guard *g)
{
    return g->n_bad != 0 || g->norm_bad != 0;
}

// --- finite checks and fp16 loss scaling ---

// Records into *guard the non-finite (NaN, +-Inf) elements of x: their count and the lowest and
// highest index, as base + i (base: x's offset in the flat buffer). Accumulates over calls.
//   guard (device), updated;  x (n) float32, device
DP_MUST_CHECK dp_status dp_cuda_check_finite(dp_cuda_ctx *ctx, dp_cuda_guard *guard, const float *x,
                                             size_t n, uint64_t base);

// Unscales fp16-loss-scaled gradients, g[i] *= inv_scale, and records the non-finite results
// into *guard as dp_cuda_check_finite does (the check follows the multiply, so a scale below 1
// that overflows is caught too). inv_scale: 1 / the loss scale (a power of two, so exact).
//   g (n) float32, device, updated;  guard (device), updated
DP_MUST_CHECK dp_status dp_cuda_unscale_check(dp_cuda_ctx *ctx, dp_cuda_guard *guard, float *g,
                                              size_t n, float inv_scale, uint64_t base);

// Dynamic loss scaling for fp16 (host-side state machine, as torch.cuda.amp.GradScaler):
//   - the step's loss gradient is multiplied by scale (the softmax's grad_scale), the parameter
//     gradients are unscaled by 1 / scale (dp_cuda_unscale_check) before clipping and the update;
//   - after each step, dp_cuda_loss_scaler_update with the step's guard: on overflow (any
//     non-finite gradient) the optimizer has skipped the step, scale is multiplied by backoff and
//     the count of good steps restarts; after growth_interval good steps in a row scale is
//     multiplied by growth (not past max_scale).
// An overflow at a scale already at min_scale means the gradients are not finite at any scale
// (the run diverged or a weight went NaN): that is an error, not another skip.
typedef struct dp_cuda_loss_scaler {
    float scale;         // current loss scale (power of two)
    float growth;        // factor after growth_interval good steps (2)
    float backoff;       // factor after an overflow (0.5)
    int growth_interval; // good steps in a row before growing (2000)
    float min_scale;     // floor (2^-14, fp16's smallest normal)
    float max_scale;     // ceiling (2^24)
    int good_steps;      // good steps since the last overflow or growth
    long skipped;        // steps skipped so far
} dp_cuda_loss_scaler;

#define DP_CUDA_LOSS_SCALER_INIT                                                                   \
    {                                                                                              \
        .scale = 65536.0f, .growth = 2.0f, .backoff = 0.5f, .growth_interval = 2000,               \
        .min_scale = 6.103515625e-05f, .max_scale = 16777216.0f, .good_steps = 0, .skipped = 0     \
    }

// Applies one step's outcome (*g: host copy of the step's guard) to *s. *skipped (may be NULL)
// is set to 1 when the step was skipped (the caller then calls dp_cuda_optim_unstep). Returns
// DP_ERR_DATA (s unchanged but for skipped) when the overflow happened at min_scale, DP_ERR_ARG
// for a scaler with bad fields (scale, factors or interval out of range).
DP_MUST_CHECK dp_status dp_cuda_loss_scaler_update(dp_cuda_loss_scaler *s, const dp_cuda_guard *g,
                                                   int *skipped);

// --- deterministic gradient norm ---

// Workspace of dp_cuda_grad_norm for n elements (bytes, device memory).
size_t dp_cuda_grad_norm_workspace_bytes(size_t n);

// guard->norm = ||g||_2 as dp_optim_grad_norm, squares summed in double by a fixed tree: 256
// threads per block of 8192 elements (each thread in index order, then a pairwise tree), the
// blocks' sums by the same tree in one block. The result depends only on g and n, never on the
// grid or the run: bitwise repeatable. It differs from the CPU's index-order sum by the rounding
// of double sums (relative ~1e-15). With clip > 0 it also sets guard->clip_scale =
// (float)(clip / (norm + 1e-6)) when that is < 1 (torch.nn.utils.clip_grad_norm_, as
// dp_optim_step), and guard->norm_bad = 1 when the norm is not finite.
//   guard (device), updated;  g (n) float32, device;  workspace: device, the bytes above
DP_MUST_CHECK dp_status dp_cuda_grad_norm(dp_cuda_ctx *ctx, dp_cuda_guard *guard, const float *g,
                                          size_t n, double clip, void *workspace);

// --- optimizers (src/nn/optim.h on the device) ---

// One optimizer over n parameters on ctx's device: the resolved configuration, the step counter,
// its state buffers in device memory (PyTorch's names, in the CPU's order: see optim.h) and the
// norm workspace when clipping. Each update is one kernel over the flat buffers reproducing
// optim.c's float32 arithmetic operation by operation, without fused multiply-adds, from the same
// host-computed scalars: with the same inputs the results are the CPU's bit for bit, except
// through clipping, whose norm is summed in another order (dp_cuda_grad_norm).
typedef struct dp_cuda_optim dp_cuda_optim;

// Validates and resolves cfg exactly as dp_optim_create (same DP_ERR_ARG messages), allocates the
// state on the device and initializes it as dp_optim_reset (blocking). ctx must outlive the
// optimizer. DP_ERR_NOMEM/DP_ERR_CUDA when the device memory cannot be had.
DP_MUST_CHECK dp_status dp_cuda_optim_create(dp_cuda_optim **out, dp_cuda_ctx *ctx,
                                             const dp_optim_config *cfg, size_t n);
void dp_cuda_optim_destroy(dp_cuda_optim *opt); // NULL is a no-op

// dp_optim_step on the device, enqueued: clipping (grad norm into *guard, then the gradients
// scaled by guard->clip_scale inside the update), weight decay masked by decay_mask, the kind's
// rule, then the max-norm rows. When guard is non-NULL and reports a non-finite gradient or norm,
// the kernels change nothing (the step is skipped on the device); the host counter has advanced
// all the same, so after reading such a guard the caller must call dp_cuda_optim_unstep before
// the next step. guard may be NULL only when clip_global_norm is 0.
//   params     (n) float32, device, updated
//   grads      (n) float32, device, read only (clipping does not write it)
//   decay_mask (n) uint8, device, 1 = decay; NULL = all
//   guard      device, read (and written by the norm when clipping); reset by the caller
// Returns DP_ERR_ARG for NULL buffers or an lr that is not finite and >= 0.
DP_MUST_CHECK dp_status dp_cuda_optim_step(dp_cuda_optim *opt, float *params, const float *grads,
                                           const uint8_t *decay_mask, float lr,
                                           dp_cuda_guard *guard);

// Takes back the host side of the last step (counter, NAdam's mu_product) after the device
// skipped it. DP_ERR_ARG when there is no step to take back (at most one, right after it).
DP_MUST_CHECK dp_status dp_cuda_optim_unstep(dp_cuda_optim *opt);

// As dp_optim_set_max_norm_rows (copied, same checks).
DP_MUST_CHECK dp_status dp_cuda_optim_set_max_norm_rows(dp_cuda_optim *opt,
                                                        const dp_optim_rows *blocks, int count);

// dp_optim_max_norm_apply on the device: rows whose L2 norm (double, fixed tree per row) exceeds
// max_norm are scaled by max_norm / (norm + 1e-7); nothing when guard (may be NULL) reports a
// skip. w (rows, cols) row-major float32, device, updated.
DP_MUST_CHECK dp_status dp_cuda_max_norm_apply(dp_cuda_ctx *ctx, float *w, size_t rows, size_t cols,
                                               double max_norm, const dp_cuda_guard *guard);

const dp_optim_config *dp_cuda_optim_config_get(const dp_cuda_optim *opt);
size_t dp_cuda_optim_param_count(const dp_cuda_optim *opt);
int dp_cuda_optim_state_count(const dp_cuda_optim *opt);

// State buffer i, as dp_optim_state_at but *data is device memory (owned by opt). A checkpoint
// copies each to the host; a restore copies back and then calls dp_cuda_optim_step_count_set.
DP_MUST_CHECK dp_status dp_cuda_optim_state_at(dp_cuda_optim *opt, int i, const char **name,
                                               float **data, size_t *n);

long dp_cuda_optim_step_count(const dp_cuda_optim *opt);

// Sets the counter after a restore and reads NAdam's mu_product back from its device buffer
// (blocking), so call it after the state buffers have been written.
DP_MUST_CHECK dp_status dp_cuda_optim_step_count_set(dp_cuda_optim *opt, long count);

// As dp_optim_reset, on the device (blocking).
DP_MUST_CHECK dp_status dp_cuda_optim_reset(dp_cuda_optim *opt);

// --- softmax cross-entropy (src/nn/cpu/softmax_xent.h) ---

// What dp_cuda_softmax_xent leaves in device memory for the host: the batch's stats (summed by a
// fixed tree, so deterministic) and the first bad label, which the CPU would have refused.
typedef struct dp_cuda_xent_result {
    dp_xent_stats stats;
    int32_t bad_sample; // first sample whose label (or label_b) is outside [0, classes); -1: none
    int32_t bad_label;  // that label
} dp_cuda_xent_result;

// Workspace of the cross-entropy kernels (bytes, device memory): 16 bytes per sample.
size_t dp_cuda_softmax_xent_workspace_bytes(const dp_xent_params *p);

// dp_cpu_softmax_xent on the device: per sample (one warp) the max, log-sum-exp and the smoothed
// target's dot product in double, the rank of the label (ties broken by index as the CPU), the
// loss and grad_scale (softmax(z) - t) rounded to the storage type. A label outside [0, classes)
// cannot stop a kernel: its row gets a NaN loss and a zero gradient, and the result names it, so
// dp_cuda_xent_result_read returns the CPU's DP_ERR_DATA.
//   dlogits (N, classes) row-major, dtype, device, written; NULL in evaluation (may equal logits)
//   loss    (N) float32, device, written; NULL when not needed
//   result  device, written (required)
//   logits  (N, classes) row-major, dtype, device
//   labels  (N) int32, device
//   workspace: dp_cuda_softmax_xent_workspace_bytes(p) bytes, device
DP_MUST_CHECK dp_status dp_cuda_softmax_xent(dp_cuda_ctx *ctx, void *dlogits, float *loss,
                                             dp_cuda_xent_result *result, const void *logits,
                                             const int32_t *labels, const dp_xent_params *p,
                                             dp_cuda_dtype dtype, void *workspace);

// The mixed-target form of layer_softmax.c (mixup, cutmix): loss_i = lambda_i xent(a_i) +
// (1 - lambda_i) xent(b_i) in double from the two float-rounded losses, dlogits = lambda_i da +
// (1 - lambda_i) db in float from the two float-rounded gradients (as the CPU does), top-1/top-5
// against labels. loss (may be NULL) receives the mixed per-sample loss.
//   labels_b (N) int32, device;  lambda (N) float32, device;  the rest as above
DP_MUST_CHECK dp_status dp_cuda_softmax_xent_mixed(dp_cuda_ctx *ctx, void *dlogits, float *loss,
                                                   dp_cuda_xent_result *result, const void *logits,
                                                   const int32_t *labels, const int32_t *labels_b,
                                                   const float *lambda, const dp_xent_params *p,
                                                   dp_cuda_dtype dtype, void *workspace);

// Copies the stats of *result (device) to *out (host). Blocking. DP_ERR_DATA, with the CPU's
// message, when a label was out of range.
DP_MUST_CHECK dp_status dp_cuda_xent_result_read(dp_cuda_ctx *ctx, dp_xent_stats *out,
                                                 const dp_cuda_xent_result *result, int classes);

// dp_cpu_softmax_forward: y = softmax(x) per row, log-sum-exp in double.
//   y (N, classes) dtype, device, written (may equal x);  x (N, classes) dtype, device
DP_MUST_CHECK dp_status dp_cuda_softmax_forward(dp_cuda_ctx *ctx, void *y, const void *x, int N,
                                                int classes, dp_cuda_dtype dtype);

// --- dropout (src/nn/cpu/dropout.h) ---

// Element (c, h, w) of sample n uses word c H W + h W + w of the Philox stream (seed; step,
// first_sample + n, layer) in either memory layout, so the device mask is the CPU's bit for bit
// (the CPU's element order is NCHW). layout NHWC needs C, the channels (sample_size = C H W);
// NCHW ignores it. Standard and alpha dropout, the CPU's affine arithmetic without fused
// multiply-adds: in float32 the outputs equal the CPU's bit for bit.
//   y (N, sample_size) dtype, device, written (may equal x);  x likewise, device
DP_MUST_CHECK dp_status dp_cuda_dropout_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                                const dp_dropout_params *p, dp_cuda_layout layout,
                                                int C, dp_cuda_dtype dtype);

// dx = dy * keep * scale, overwritten or (accumulate != 0) added to dx, with the forward's mask.
//   dx (N, sample_size) dtype, device (may equal dy when not accumulating);  dy likewise
DP_MUST_CHECK dp_status dp_cuda_dropout_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                                 const dp_dropout_params *p, int accumulate,
                                                 dp_cuda_layout layout, int C, dp_cuda_dtype dtype);

// --- [crop]: a window per sample, drawn as the CPU layer draws it ---

// The window of sample n: in evaluation (train = 0) centred (dp_crop_params_center), not
// mirrored; in training words 0, 1, 2 of the Philox stream (seed; step, first_sample + n, layer)
// give off_h = w0 % (H - out_h + 1), off_w = w1 % (W - out_w + 1) and, when flip, a mirror of
// the window's columns when w2 is odd: src/nn/layer_simple.c's crop_at, bit for bit.
typedef struct dp_crop_random_params {
    int N, C, H, W;   // input
    int out_h, out_w; // window
    int train, flip;
    uint64_t seed;
    uint32_t step, first_sample, layer;
} dp_crop_random_params;

// y = the window of x, mirrored where drawn so.
//   y (N, C, out_h, out_w), x (N, C, H, W): layout, dtype, device
DP_MUST_CHECK dp_status dp_cuda_crop_random_forward(dp_cuda_ctx *ctx, void *y, const void *x,
                                                    const dp_crop_random_params *p,
                                                    dp_cuda_layout layout, dp_cuda_dtype dtype);
// dx (+)= dy scattered back into each sample's window (mirrored back), 0 elsewhere (unless
// accumulate). Every element of dx is written by one thread: no atomics, deterministic.
DP_MUST_CHECK dp_status dp_cuda_crop_random_backward(dp_cuda_ctx *ctx, void *dx, const void *dy,
                                                     const dp_crop_random_params *p, int accumulate,
                                                     dp_cuda_layout layout, dp_cuda_dtype dtype);

// --- element-wise float32 buffers (deterministic micro-batch accumulation) ---

// dst[i] = a[i] + b[i], a the left operand (the tree's order: dp_comm_tree_*). dst may be a or b.
DP_MUST_CHECK dp_status dp_cuda_add(dp_cuda_ctx *ctx, float *dst, const float *a, const float *b,
                                    size_t n);
// x[i] *= s
DP_MUST_CHECK dp_status dp_cuda_scale(dp_cuda_ctx *ctx, float *x, size_t n, float s);
// dst[i] = src[i] (device to device, on the compute stream)
DP_MUST_CHECK dp_status dp_cuda_copy(dp_cuda_ctx *ctx, float *dst, const float *src, size_t n);

// The same two on activation gradients of a storage type (route/shortcut fan-in, the loss's
// saved dlogits): the sum in float, rounded to dtype once; the copy bit for bit. n elements.
DP_MUST_CHECK dp_status dp_cuda_add_dtype(dp_cuda_ctx *ctx, void *dst, const void *a, const void *b,
                                          size_t n, dp_cuda_dtype dtype);
DP_MUST_CHECK dp_status dp_cuda_copy_dtype(dp_cuda_ctx *ctx, void *dst, const void *src, size_t n,
                                           dp_cuda_dtype dtype);

// dp_comm_tree_acc over device buffers: pushing micro-batch gradients 0..m-1 (m a power of two)
// and taking the result gives bitwise the host dp_comm_tree_acc's (and dp_comm_tree_sum_local's)
// sum of the same parts: the same additions with the same operands on the left.
typedef struct dp_cuda_tree_acc {
    float *const *levels; // (host array) n_levels device buffers of count floats
    int n_levels;         // up to 2^(n_levels - 1) parts
    size_t count;
    long pushed;
} dp_cuda_tree_acc;

// As dp_comm_tree_acc_init / _push / _result (same checks); push enqueues on the compute stream.
DP_MUST_CHECK dp_status dp_cuda_tree_acc_init(dp_cuda_tree_acc *acc, float *const *levels,
                                              int n_levels, size_t count);
DP_MUST_CHECK dp_status dp_cuda_tree_acc_push(dp_cuda_ctx *ctx, dp_cuda_tree_acc *acc,
                                              const float *part);
DP_MUST_CHECK dp_status dp_cuda_tree_acc_result(const dp_cuda_tree_acc *acc, float **out);

DP_EXTERN_C_END

#endif
