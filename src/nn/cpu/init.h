// Parameter initializers on the CPU: PyTorch's defaults, Kaiming (He), Xavier (Glorot), LeCun,
// zeros and ones. Every draw comes from Philox keyed by (seed; layer index, parameter index),
// element i being word i of that stream, so one seed gives the same weights on every rank,
// device and run. Needs no workspace.
#ifndef DP_NN_CPU_INIT_H
#define DP_NN_CPU_INIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/cpu/activation.h"

DP_EXTERN_C_BEGIN

typedef enum dp_init {
    DP_INIT_PYTORCH = 0,     // U(-b, b), b = 1 / sqrt(fan_in): PyTorch's Conv/Linear weights
                             // (kaiming_uniform, a = sqrt 5) and biases; cfg "pytorch", "default"
    DP_INIT_KAIMING_NORMAL,  // N(0, gain^2 / fan_in) (Darknet's convolutional init with gain
                             // sqrt 2)
    DP_INIT_KAIMING_UNIFORM, // U(-b, b), b = gain sqrt(3 / fan_in)
    DP_INIT_XAVIER_NORMAL,   // N(0, gain^2 2 / (fan_in + fan_out))
    DP_INIT_XAVIER_UNIFORM,  // U(-b, b), b = gain sqrt(6 / (fan_in + fan_out))
    DP_INIT_LECUN_NORMAL,    // N(0, 1 / fan_in) (SELU networks; plain, not truncated, normal)
    DP_INIT_LECUN_UNIFORM,   // U(-b, b), b = sqrt(3 / fan_in)
    DP_INIT_ZEROS,
    DP_INIT_ONES,
    DP_INIT_COUNT_
} dp_init;

// Third counter word of every initializer stream, so that they never meet the streams of
// dropout or augmentation drawn from the same seed.
#define DP_INIT_RNG_TAG 0x696e6974u // "init"

typedef struct dp_init_params {
    dp_init kind;
    int fan_in;     // inputs per output: C / groups R S (conv), in (dense)
    int fan_out;    // outputs per input (Xavier only): K R S (conv) or K / groups R S, out (dense)
    float gain;     // Kaiming and Xavier: dp_init_gain(act, slope); the others ignore it
    uint64_t seed;  // the run's seed
    uint32_t layer; // layer index (counter word a)
    uint32_t param; // parameter index within the layer (counter word b)
} dp_init_params;

// "pytorch" (also "default"), "kaiming_normal", "kaiming_uniform", "xavier_normal",
// "xavier_uniform", "lecun_normal", "lecun_uniform", "zeros", "ones" -> *out. Returns
// DP_ERR_UNSUPPORTED for any other name (the caller adds file:line), DP_ERR_ARG for NULL.
DP_MUST_CHECK dp_status dp_init_from_name(const char *name, dp_init *out);

// The canonical name of kind ("kaiming_normal"), or "unknown".
const char *dp_init_name(dp_init kind);

// PyTorch's calculate_gain for the activation that follows the layer: sqrt 2 for relu (and
// relu6, relie, ramp), sqrt(2 / (1 + slope^2)) for leaky and prelu, 5/3 for tanh, 3/4 for selu,
// 1 otherwise.
float dp_init_gain(dp_act act, float slope);

// The standard deviation the kind gives (0 for zeros and ones); the target of the tests.
double dp_init_std(const dp_init_params *p);

// Fills w[0, n) by p->kind.
//   w (n), host, written; any layout (the stream runs over the flat index)
// Returns DP_ERR_ARG for NULL, an unknown kind, fan_in < 1 (fan_out < 1 for Xavier) or a gain
// that is not > 0 where the kind uses it.
DP_MUST_CHECK dp_status dp_cpu_init_fill(float *w, size_t n, const dp_init_params *p);

DP_EXTERN_C_END

#endif
