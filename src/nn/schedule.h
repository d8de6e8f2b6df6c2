// Learning-rate schedules: a plain value (dp_schedule) and a pure function from the update
// index to the rate. Darknet's policies (constant, step, steps, exp, poly, sigmoid, with its
// burn_in) exactly as get_current_rate computes them, and PyTorch's per-step forms of the same
// plus cosine annealing, OneCycleLR, a linear warmup and the linear scaling rule.
// Not here: momentum cycling of OneCycleLR, Darknet's random and sgdr policies.
#ifndef DP_NN_SCHEDULE_H
#define DP_NN_SCHEDULE_H

#include "core/cfg.h"
#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef enum dp_schedule_kind {
    DP_SCHEDULE_CONSTANT,  // lr
    DP_SCHEDULE_STEP,      // lr * scale^floor(b / step_size)
    DP_SCHEDULE_STEPS,     // lr * prod of scales[i] over the milestones steps[i] <= b
    DP_SCHEDULE_EXP,       // lr * gamma^b
    DP_SCHEDULE_POLY,      // lr * (1 - b / max_steps)^power, 0 from max_steps on
    DP_SCHEDULE_SIGMOID,   // lr / (1 + exp(gamma (b - step_size)))
    DP_SCHEDULE_COSINE,    // min_lr + (lr - min_lr) (1 + cos(pi b / max_steps)) / 2, then min_lr
    DP_SCHEDULE_ONE_CYCLE, // PyTorch OneCycleLR (anneal cos, two phases) with max_lr = lr
} dp_schedule_kind;

enum { DP_SCHEDULE_STEPS_MAX = 64 };

// The rate of update `step` (0 for the first update) is computed at the counter b:
//   darknet = 1: b = step + 1, Darknet's batch number (its `seen` advances before
//                update_network); `steps` stops at the first milestone above b, as Darknet's
//                loop returns early (the same as PyTorch's rule for sorted milestones);
//   darknet = 0: b = step, as PyTorch's schedulers count per step (MultiStepLR, StepLR, ...).
// Then, in this order:
//   burn_in > 0 and b < burn_in: lr * (b / burn_in)^power replaces the policy (Darknet);
//   warmup_steps > 0 and step < warmup_steps: the policy's rate times (step + 1) / warmup_steps
//     (PyTorch's LinearLR with start_factor 1 / warmup_steps, total_iters warmup_steps - 1),
//     running concurrently with the policy (its clock does not wait for the warmup).
// The linear scaling rule multiplies lr (one-cycle: max_lr, and so its initial and final rates;
// not min_lr) by global_batch / reference_batch when reference_batch > 0.
typedef struct dp_schedule {
    dp_schedule_kind kind;
    int darknet;    // counting and `steps` semantics, see above
    double lr;      // the base rate (one-cycle: max_lr)
    long step_size; // step, sigmoid: Darknet's `step`; >= 1
    double scale;   // step: Darknet's `scale`
    int n_steps;    // steps: milestones (b) and their factors
    long steps[DP_SCHEDULE_STEPS_MAX];
    double scales[DP_SCHEDULE_STEPS_MAX];
    double gamma;            // exp, sigmoid
    double power;            // poly and burn_in exponent (Darknet's `power`, default 4)
    long max_steps;          // poly, cosine, one-cycle: the schedule's length T in updates
    double min_lr;           // cosine: the rate at T and after
    double pct_start;        // one-cycle: fraction of T spent rising
    double div_factor;       // one-cycle: initial rate = max_lr / div_factor
    double final_div_factor; // one-cycle: final rate = initial / final_div_factor
    long burn_in;            // Darknet burn-in length in b; 0 = off
    long warmup_steps;       // linear warmup length in updates; 0 = off
    long global_batch;       // linear scaling rule: samples per update over all ranks
    long reference_batch;    // ... and the batch the base rate was tuned for; 0 = off
} dp_schedule;

#define DP_SCHEDULE_INIT                                                                           \
    {                                                                                              \
        .kind = DP_SCHEDULE_CONSTANT, .darknet = 0, .lr = 0.001, .step_size = 1, .scale = 1.0,     \
        .n_steps = 0, .gamma = 1.0, .power = 4.0, .max_steps = 0, .min_lr = 0.0, .pct_start = 0.3, \
        .div_factor = 25.0, .final_div_factor = 1e4, .burn_in = 0, .warmup_steps = 0,              \
        .global_batch = 0, .reference_batch = 0                                                    \
    }

// Checks a schedule: lr >= 0 and finite, step_size >= 1, 0 <= n_steps <= STEPS_MAX, max_steps
// >= 1 for poly, cosine and one-cycle (one-cycle: each phase at least one update,
// 0 < pct_start < 1, div factors > 0), non-negative lengths, global_batch >= 1 when the scaling
// rule is on. Returns DP_ERR_ARG naming the field.
DP_MUST_CHECK dp_status dp_schedule_check(const dp_schedule *s);

// The learning rate of update `step` (>= 0; 0 is the first), computed in double. Pure and
// thread-safe; s must pass dp_schedule_check. Past max_steps: poly gives 0, cosine min_lr,
// one-cycle its final rate.
float dp_schedule_lr(const dp_schedule *s, long step);

// Builds *out from the cfg:
//   [train] schedule: darknet (the default: [net] policy, Darknet semantics, darknet = 1) or
//     constant|step|steps|exp|poly|sigmoid|cosine|one_cycle (PyTorch semantics, darknet = 0);
//   [net] learning_rate (default 0.001), step (1), scale (1), steps + scales (both, same
//     count), gamma (1), power (4), max_batches (the length for poly/cosine/one-cycle; absent
//     or 0: total_steps), burn_in (Darknet's warmup, either mode);
//   [train] warmup_epochs (linear warmup of warmup_epochs * steps_per_epoch updates, rounded),
//     min_lr (cosine), and the proposed keys one_cycle_pct (0.3), one_cycle_div (25),
//     one_cycle_final_div (1e4), lr_scaling_reference_batch (0 = off; the global batch is
//     [net] batch).
// Errors are DP_ERR_CFG naming file:line and the key (missing steps or scales, counts that
// differ, burn_in together with warmup_epochs, ...); Darknet's random and sgdr policies are
// DP_ERR_UNSUPPORTED naming file:line. steps_per_epoch and total_steps must be >= 1
// (DP_ERR_ARG).
DP_MUST_CHECK dp_status dp_schedule_from_cfg(dp_schedule *out, const dp_cfg *cfg,
                                             long steps_per_epoch, long total_steps);

DP_EXTERN_C_END

#endif
