// Optimizers over the flat parameter buffer: SGD (momentum, dampening, Nesterov), Adagrad,
// Adadelta, RMSprop, Adam (AMSGrad), AdamW and NAdam, each following PyTorch's torch.optim
// update rule (the algorithm boxes of its docs; NAdam as PyTorch >= 2.0, see optim.c), plus
// gradient clipping by global norm and a max-norm constraint on rows of weight matrices.
// One dp_optim owns its state buffers, allocated at create; a step allocates nothing and visits
// the n parameters in index order with float32 arithmetic, so it is deterministic.
// Not here: the learning-rate schedule (schedule.h) and the GPU path (a backend op).
#ifndef DP_NN_OPTIM_H
#define DP_NN_OPTIM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cfg.h"
#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef enum dp_optim_kind {
    DP_OPTIM_SGD,
    DP_OPTIM_ADAGRAD,
    DP_OPTIM_ADADELTA,
    DP_OPTIM_RMSPROP,
    DP_OPTIM_ADAM,
    DP_OPTIM_ADAMW,
    DP_OPTIM_NADAM,
    DP_OPTIM_KIND_COUNT_
} dp_optim_kind;

// How weight_decay acts.
typedef enum dp_optim_decay {
    DP_OPTIM_DECAY_DEFAULT,   // the kind's PyTorch behaviour: DECOUPLED for AdamW, else L2
    DP_OPTIM_DECAY_L2,        // g += weight_decay * p before the update (torch's weight_decay=)
    DP_OPTIM_DECAY_DECOUPLED, // p *= 1 - lr * weight_decay before the update (AdamW)
} dp_optim_decay;

// "Use the kind's PyTorch default" for the fields marked so below.
#define DP_OPTIM_UNSET NAN

// Hyperparameters. Doubles, as PyTorch keeps them (Python floats): the scalar arithmetic of a
// step (bias corrections, 1 - beta) is done in double and rounded to float where torch does.
typedef struct dp_optim_config {
    dp_optim_kind kind;
    double lr;           // base rate, informational: dp_optim_step takes each step's rate.
                         // UNSET: the kind's default (sgd 0.01, adagrad 0.01, adadelta 1,
                         // rmsprop 0.01, adam/adamw 0.001, nadam 0.002)
    double momentum;     // sgd, rmsprop; >= 0
    double dampening;    // sgd; 0 with nesterov
    int nesterov;        // sgd; needs momentum > 0 and dampening 0 (as torch)
    double beta1, beta2; // adam, adamw, nadam; in [0, 1)
    double eps;          // UNSET: adagrad 1e-10, adadelta 1e-6, others 1e-8
    int amsgrad;         // adam, adamw
    double weight_decay; // >= 0; UNSET: 0.01 for adamw, else 0
    dp_optim_decay decay_mode;
    double rho;                       // adadelta, in [0, 1]
    double alpha;                     // rmsprop smoothing constant, >= 0
    int centered;                     // rmsprop
    double lr_decay;                  // adagrad, >= 0
    double initial_accumulator_value; // adagrad, >= 0
    double momentum_decay;            // nadam, >= 0
    double clip_global_norm; // > 0: scale gradients so their global L2 norm is at most this
    double max_norm;         // > 0: renorm the rows registered with dp_optim_set_max_norm_rows
} dp_optim_config;

#define DP_OPTIM_CONFIG_INIT                                                                       \
    {                                                                                              \
        .kind = DP_OPTIM_SGD, .lr = DP_OPTIM_UNSET, .momentum = 0, .dampening = 0, .nesterov = 0,  \
        .beta1 = 0.9, .beta2 = 0.999, .eps = DP_OPTIM_UNSET, .amsgrad = 0,                         \
        .weight_decay = DP_OPTIM_UNSET, .decay_mode = DP_OPTIM_DECAY_DEFAULT, .rho = 0.9,          \
        .alpha = 0.99, .centered = 0, .lr_decay = 0, .initial_accumulator_value = 0,               \
        .momentum_decay = 4e-3, .clip_global_norm = 0, .max_norm = 0                               \
    }

// A weight matrix inside the flat buffer, for the max-norm constraint: rows (output units) of
// cols elements each, row-major from params[offset]. A conv weight (K, C, R, S) is K rows of
// C R S; a connected weight (out, in) is out rows of in.
typedef struct dp_optim_rows {
    size_t offset; // elements from the start of the flat buffer
    size_t rows;
    size_t cols;
} dp_optim_rows;

typedef struct dp_optim dp_optim;

// Creates an optimizer for n parameters from cfg (copied; UNSET fields resolved to the kind's
// defaults) and allocates its state, zeroed (Adagrad's sum: initial_accumulator_value), plus a
// gradient scratch of n floats when clip_global_norm > 0. Returns DP_ERR_ARG, naming the field,
// for a value PyTorch rejects (negative lr/eps/weight_decay, beta outside [0, 1), nesterov
// without momentum or with dampening, ...), n == 0, or an unknown kind; DP_ERR_NOMEM. On
// success the caller owns *out (dp_optim_destroy).
DP_MUST_CHECK dp_status dp_optim_create(dp_optim **out, const dp_optim_config *cfg, size_t n);

// Accepts NULL.
void dp_optim_destroy(dp_optim *opt);

// One update of the n parameters with learning rate lr, in index order:
//   1. if clip_global_norm > 0: norm = ||grads||_2 (in double, fixed order); the gradients
//      used below are grads * min(1, clip / (norm + 1e-6)) (torch.nn.utils.clip_grad_norm_),
//      written to the optimizer's scratch; grads itself is never written;
//   2. weight decay (L2 or decoupled), skipped where decay_mask[i] == 0;
//   3. the kind's rule, updating params and the state;
//   4. if max_norm > 0: the registered rows are renormed (dp_optim_max_norm_apply).
//   params      (n), host, updated
//   grads       (n), host, the averaged gradient of the loss
//   decay_mask  (n), host, 1 = decay this parameter, 0 = not (biases, norm scales); NULL = all
//   lr          this step's rate (the schedule's value), finite and >= 0
// The step counter advances by one. Returns DP_ERR_ARG for a NULL buffer or a bad lr, and
// DP_ERR_DATA when clipping finds a gradient norm that is not finite; on error nothing is
// changed. Not thread-safe on one optimizer; allocates nothing.
DP_MUST_CHECK dp_status dp_optim_step(dp_optim *opt, float *params, const float *grads,
                                      const uint8_t *decay_mask, float lr);

// Registers the weight matrices that max_norm constrains (copied; replaces an earlier set).
// Returns DP_ERR_ARG when a block lies outside the n parameters or is empty, DP_ERR_NOMEM.
DP_MUST_CHECK dp_status dp_optim_set_max_norm_rows(dp_optim *opt, const dp_optim_rows *blocks,
                                                   int count);

// The max-norm constraint on one matrix, torch.renorm(w, p=2, dim=0, maxnorm=max_norm): every
// row whose L2 norm (in double) exceeds max_norm is scaled by max_norm / (norm + 1e-7).
//   w  (rows, cols) row-major, host, updated
// Returns DP_ERR_ARG for a NULL w or a max_norm that is not > 0.
DP_MUST_CHECK dp_status dp_optim_max_norm_apply(float *w, size_t rows, size_t cols,
                                                double max_norm);

// The L2 norm of g (n), summed in double in index order.
double dp_optim_grad_norm(const float *g, size_t n);

// The global gradient norm found by the last step that clipped (0 before any).
double dp_optim_last_grad_norm(const dp_optim *opt);

// The configuration with the kind's defaults filled in; valid as long as opt.
const dp_optim_config *dp_optim_config_get(const dp_optim *opt);
size_t dp_optim_param_count(const dp_optim *opt);

// --- state, for checkpoints ---
// The state is the step counter plus named float buffers, in a fixed order per kind (PyTorch's
// state names): sgd with momentum "momentum_buffer"; adagrad "sum"; adadelta "square_avg",
// "acc_delta"; rmsprop "square_avg" [, "momentum_buffer"] [, "grad_avg"]; adam/adamw "exp_avg",
// "exp_avg_sq" [, "max_exp_avg_sq"]; nadam "exp_avg", "exp_avg_sq", "mu_product" (1 float).
// A checkpoint writes each buffer under its name and reads it back into the same pointer.

// Number of state buffers (0 for plain SGD).
int dp_optim_state_count(const dp_optim *opt);

// Buffer i: its name (static string), data (owned by opt, valid as long as opt, writable for a
// restore) and element count. Returns DP_ERR_ARG when i is out of range.
DP_MUST_CHECK dp_status dp_optim_state_at(dp_optim *opt, int i, const char **name, float **data,
                                          size_t *n);

// Updates taken so far (restored from a checkpoint with dp_optim_step_count_set). SGD's first
// step, which copies the gradient into the momentum buffer, is the one with count 0.
long dp_optim_step_count(const dp_optim *opt);
DP_MUST_CHECK dp_status dp_optim_step_count_set(dp_optim *opt, long count);

// Zeroes the state (Adagrad: initial_accumulator_value; NAdam: mu_product 1) and the counter.
void dp_optim_reset(dp_optim *opt);

// --- names and cfg ---

// "sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamw", "nadam" -> kind. Anything else is
// DP_ERR_UNSUPPORTED with a message listing the valid names.
DP_MUST_CHECK dp_status dp_optim_kind_from_name(const char *name, dp_optim_kind *kind);

// The name of kind ("adamw"), or "?" for an invalid value.
const char *dp_optim_kind_name(dp_optim_kind kind);

// Fills *out (starting from DP_OPTIM_CONFIG_INIT) from the cfg: [train] optimizer (default
// "adam" when [net] adam=1, else "sgd"), nesterov, and the proposed [train] keys dampening,
// amsgrad, weight_decay_mode (l2|decoupled), rho, alpha, centered, lr_decay, momentum_decay,
// clip_grad_norm, max_norm; [net] learning_rate (Darknet default 0.001), momentum (0.9),
// decay (the weight decay, 0.0001), B1, B2, eps (Darknet's 1e-7 when [net] adam=1, else the
// kind's default). Errors are DP_ERR_CFG naming file:line and the key (the cfg getters');
// [net] adam=1 with a [train] optimizer other than adam is one.
DP_MUST_CHECK dp_status dp_optim_config_from_cfg(dp_optim_config *out, const dp_cfg *cfg);

DP_EXTERN_C_END

#endif
