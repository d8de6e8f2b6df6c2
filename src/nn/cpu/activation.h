// Elementwise activations on the CPU, forward and backward, with Darknet's names and formulas
// for Darknet's activations (src/activations.h of pjreddie/darknet; swish, mish, gelu and relu6
// as in AlexeyAB/darknet) and PReLU with a learned slope per channel. Needs no workspace.
#ifndef DP_NN_CPU_ACTIVATION_H
#define DP_NN_CPU_ACTIVATION_H

#include <stddef.h>

#include "core/status.h"
#include "core/threadpool.h"

DP_EXTERN_C_BEGIN

typedef enum dp_act {
    DP_ACT_LINEAR = 0, // x
    DP_ACT_LOGISTIC,   // 1 / (1 + e^-x)
    DP_ACT_LOGGY,      // 2 / (1 + e^-x) - 1
    DP_ACT_RELU,       // max(x, 0)
    DP_ACT_LEAKY,      // x > 0 ? x : slope x (slope from the caller, Darknet's default 0.1)
    DP_ACT_PRELU,      // x > 0 ? x : a_c x, a_c learned per channel: dp_cpu_prelu_*
    DP_ACT_ELU,        // x >= 0 ? x : e^x - 1
    DP_ACT_SELU,       // lambda (x >= 0 ? x : alpha (e^x - 1)), Klambauer et al. constants
    DP_ACT_RELIE,      // x > 0 ? x : 0.01 x
    DP_ACT_RAMP,       // max(x, 0) + 0.1 x
    DP_ACT_TANH,       // tanh(x)
    DP_ACT_PLSE,       // 0.01 (x + 4) below -4, 0.125 x + 0.5 on [-4, 4], 0.01 (x - 4) + 1 above
    DP_ACT_STAIR,      // Darknet's stair: flat on [2k, 2k+1), slope 1 on [2k+1, 2k+2)
    DP_ACT_HARDTAN,    // clamp(x, -1, 1)
    DP_ACT_LHTAN,      // 0.001 x below 0, x on [0, 1], 0.001 (x - 1) + 1 above
    DP_ACT_RELU6,      // clamp(x, 0, 6)
    DP_ACT_SWISH,      // x sigmoid(x) (SiLU)
    DP_ACT_MISH,       // x tanh(softplus(x)), softplus(x) = x above 20 (AlexeyAB's threshold)
    DP_ACT_GELU,       // tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
                       // AlexeyAB's "gelu" and PyTorch's GELU(approximate='tanh')
    DP_ACT_GELU_ERF,   // exact: x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default GELU
    DP_ACT_COUNT_
} dp_act;

// SELU's constants (Klambauer et al. 2017, to float precision). Darknet rounds them to 1.0507
// and 1.6732; the difference is below 1e-4 relative.
#define DP_SELU_LAMBDA 1.0507009873554804934f
#define DP_SELU_ALPHA 1.6732632423543772848f

// Looks up a cfg name ("leaky", "relu", "mish", "gelu", "gelu_erf", "prelu", ...; the names are
// the enum's in lower case) and stores the activation in *out. Returns DP_ERR_UNSUPPORTED for an
// unknown name (the message names it; the caller adds file:line), DP_ERR_ARG for NULL.
DP_MUST_CHECK dp_status dp_act_from_name(const char *name, dp_act *out);

// The cfg name of act ("leaky"), or "unknown".
const char *dp_act_name(dp_act act);

// Whether dp_cpu_act_backward needs the forward input x (PReLU, swish, mish, gelu, gelu_erf);
// all others need only the output y, so their forward may run in place (y == x).
int dp_act_backward_needs_input(dp_act act);

// Activations need no scratch.
static inline size_t dp_cpu_act_workspace_bytes(void)
{
    return 0;
}

// y[i] = f(x[i]) for i in [0, n).
//   y, x  (n), host, any layout; y may equal x
//   slope the negative slope of DP_ACT_LEAKY (>= 0; ignored by the others)
// Returns DP_ERR_ARG for NULL, a negative leaky slope, an unknown act or DP_ACT_PRELU (which has
// per-channel parameters: dp_cpu_prelu_forward).
DP_MUST_CHECK dp_status dp_cpu_act_forward(float *y, const float *x, size_t n, dp_act act,
                                           float slope);

// dx[i] = dy[i] f'(x[i]).
//   dx, dy (n), host; dx may equal dy
//   x      (n), host: the forward input, when dp_act_backward_needs_input(act); else may be NULL
//   y      (n), host: the forward output, when !dp_act_backward_needs_input(act); else may be NULL
// At a kink the derivative is Darknet's (relu'(0) = 0, hardtan'(+-1) = 0, ...).
DP_MUST_CHECK dp_status dp_cpu_act_backward(float *dx, const float *dy, const float *x,
                                            const float *y, size_t n, dp_act act, float slope);

// dp_cpu_act_forward and dp_cpu_act_backward split into blocks over the threads of pool (NULL:
// the caller alone); elementwise, so the results do not depend on the threads.
DP_MUST_CHECK dp_status dp_cpu_act_forward_pool(float *y, const float *x, size_t n, dp_act act,
                                                float slope, dp_threadpool *pool);
DP_MUST_CHECK dp_status dp_cpu_act_backward_pool(float *dx, const float *dy, const float *x,
                                                 const float *y, size_t n, dp_act act, float slope,
                                                 dp_threadpool *pool);

// PReLU: y = x > 0 ? x : slope[c] x, per channel.
//   y, x  (N, C, hw) NCHW with hw = H W, host; y may equal x
//   slope (C), host (C = 1 with hw = C H W for one shared slope)
DP_MUST_CHECK dp_status dp_cpu_prelu_forward(float *y, const float *x, const float *slope, int N,
                                             int C, size_t hw);

// PReLU backward: dx = dy (x > 0 ? 1 : slope[c]); dslope[c] = sum over x <= 0 of dy x (double,
// fixed order). accum: DP_ACCUM_DX adds to dx, DP_ACCUM_DPARAMS adds to dslope.
//   dx     (N, C, hw), host, or NULL when not needed; may equal dy unless accumulating
//   dslope (C), host
//   dy, x  (N, C, hw), host (x: the forward input)
//   slope  (C), host
DP_MUST_CHECK dp_status dp_cpu_prelu_backward(float *dx, float *dslope, const float *dy,
                                              const float *x, const float *slope, int N, int C,
                                              size_t hw, unsigned accum);

DP_EXTERN_C_END

#endif
