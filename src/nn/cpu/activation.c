// Elementwise activations (see activation.h). One loop per activation, the switch outside it,
// so that the simple ones vectorize. Derivatives are taken from the output y where Darknet does
// (so those forwards can run in place) and from the input x otherwise.
#include "nn/cpu/activation.h"

#include <math.h>
#include <string.h>

#include "core/error.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/cpu_internal.h"

static const char *const act_names[DP_ACT_COUNT_] = {
    [DP_ACT_LINEAR] = "linear", [DP_ACT_LOGISTIC] = "logistic", [DP_ACT_LOGGY] = "loggy",
    [DP_ACT_RELU] = "relu",     [DP_ACT_LEAKY] = "leaky",       [DP_ACT_PRELU] = "prelu",
    [DP_ACT_ELU] = "elu",       [DP_ACT_SELU] = "selu",         [DP_ACT_RELIE] = "relie",
    [DP_ACT_RAMP] = "ramp",     [DP_ACT_TANH] = "tanh",         [DP_ACT_PLSE] = "plse",
    [DP_ACT_STAIR] = "stair",   [DP_ACT_HARDTAN] = "hardtan",   [DP_ACT_LHTAN] = "lhtan",
    [DP_ACT_RELU6] = "relu6",   [DP_ACT_SWISH] = "swish",       [DP_ACT_MISH] = "mish",
    [DP_ACT_GELU] = "gelu",     [DP_ACT_GELU_ERF] = "gelu_erf",
};

dp_status dp_act_from_name(const char *name, dp_act *out)
{
    if (name == NULL || out == NULL) {
        return dp_error_set(DP_ERR_ARG, "activation: name or out is NULL");
    }
    for (int a = 0; a < DP_ACT_COUNT_; a++) {
        if (strcmp(name, act_names[a]) == 0) {
            *out = (dp_act)a;
            return DP_OK;
        }
    }
    return dp_error_set(DP_ERR_UNSUPPORTED, "unknown activation '%s'", name);
}

const char *dp_act_name(dp_act act)
{
    return (act >= 0 && act < DP_ACT_COUNT_) ? act_names[act] : "unknown";
}

int dp_act_backward_needs_input(dp_act act)
{
    return act == DP_ACT_PRELU || act == DP_ACT_SWISH || act == DP_ACT_MISH || act == DP_ACT_GELU ||
           act == DP_ACT_GELU_ERF;
}

// --- scalar forms ---

#define GELU_K0 0.7978845608028654f // sqrt(2 / pi)
#define GELU_K1 0.044715f
#define MISH_THRESHOLD 20.0f

static inline float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static inline float stair(float x)
{
    float n = floorf(x);
    return fmodf(n, 2.0f) == 0.0f ? floorf(x / 2.0f) : (x - n) + floorf(x / 2.0f);
}

static inline float plse(float x)
{
    if (x < -4.0f) {
        return 0.01f * (x + 4.0f);
    }
    return x > 4.0f ? 0.01f * (x - 4.0f) + 1.0f : 0.125f * x + 0.5f;
}

static inline float lhtan(float x)
{
    if (x < 0.0f) {
        return 0.001f * x;
    }
    return x > 1.0f ? 0.001f * (x - 1.0f) + 1.0f : x;
}

static inline float swish_grad(float x)
{
    float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}

// mish(x) = x tanh(softplus(x)) = x n / (n + 2) with n = e^x (e^x + 2): one exp instead of
// exp, log1p and tanh. Above MISH_THRESHOLD softplus(x) = x (AlexeyAB's threshold) and
// tanh(x) rounds to 1, so mish(x) = x there.
static inline float mish(float x)
{
    if (x > MISH_THRESHOLD) {
        return x;
    }
    float e = expf(x), n = e * (e + 2.0f);
    return x * n / (n + 2.0f);
}

// d/dx [x n / (n + 2)] = n / (n + 2) + x 4 e (e + 1) / (n + 2)^2.
static inline float mish_grad(float x)
{
    if (x > MISH_THRESHOLD) {
        return 1.0f;
    }
    float e = expf(x), n = e * (e + 2.0f), d = n + 2.0f;
    return n / d + x * 4.0f * e * (e + 1.0f) / (d * d);
}

// 0.5 x (1 + tanh(u)) = x sigmoid(2u): no cancellation for large negative x.
static inline float gelu(float x)
{
    return x * sigmoid(2.0f * GELU_K0 * (x + GELU_K1 * x * x * x));
}

static inline float gelu_grad(float x)
{
    float s = sigmoid(2.0f * GELU_K0 * (x + GELU_K1 * x * x * x));
    return s + 2.0f * x * s * (1.0f - s) * GELU_K0 * (1.0f + 3.0f * GELU_K1 * x * x);
}

// x Phi(x) with Phi(x) = 0.5 erfc(-x / sqrt 2): erfc keeps the tail for negative x.
static inline float gelu_erf(float x)
{
    return 0.5f * x * erfcf(-x * 0.70710678118654752f);
}

static inline float gelu_erf_grad(float x)
{
    const float inv_sqrt2 = 0.70710678118654752f, inv_sqrt_2pi = 0.39894228040143268f;
    return 0.5f * erfcf(-x * inv_sqrt2) + x * inv_sqrt_2pi * expf(-0.5f * x * x);
}

// --- forward ---

#define MAP(out, in, expr)                                                                         \
    for (size_t i = 0; i < n; i++) {                                                               \
        const float v = (in)[i];                                                                   \
        (out)[i] = (expr);                                                                         \
    }                                                                                              \
    break

static dp_status check_act(dp_act act, float slope, const char *kernel)
{
    if (act < 0 || act >= DP_ACT_COUNT_) {
        return dp_error_set(DP_ERR_ARG, "%s: unknown activation %d", kernel, (int)act);
    }
    if (act == DP_ACT_PRELU) {
        return dp_error_set(DP_ERR_ARG, "%s: prelu has per-channel slopes; use dp_cpu_prelu_*",
                            kernel);
    }
    if (act == DP_ACT_LEAKY && !(slope >= 0.0f)) {
        return dp_error_set(DP_ERR_ARG, "%s: leaky slope %g must be >= 0", kernel, (double)slope);
    }
    return DP_OK;
}

dp_status dp_cpu_act_forward(float *y, const float *x, size_t n, dp_act act, float slope)
{
    DP_TRY(check_act(act, slope, "activation forward"));
    DP_CPU_NEED(y, "activation forward");
    DP_CPU_NEED(x, "activation forward");
    const float lambda = DP_SELU_LAMBDA, la = DP_SELU_LAMBDA * DP_SELU_ALPHA;
    switch (act) {
    case DP_ACT_LINEAR:
        MAP(y, x, v);
    case DP_ACT_LOGISTIC:
        MAP(y, x, sigmoid(v));
    case DP_ACT_LOGGY:
        MAP(y, x, 2.0f * sigmoid(v) - 1.0f);
    case DP_ACT_RELU:
        MAP(y, x, v > 0.0f ? v : 0.0f);
    case DP_ACT_LEAKY:
        MAP(y, x, v > 0.0f ? v : slope * v);
    case DP_ACT_ELU:
        MAP(y, x, v >= 0.0f ? v : expm1f(v));
    case DP_ACT_SELU:
        MAP(y, x, v >= 0.0f ? lambda * v : la * expm1f(v));
    case DP_ACT_RELIE:
        MAP(y, x, v > 0.0f ? v : 0.01f * v);
    case DP_ACT_RAMP:
        MAP(y, x, (v > 0.0f ? v : 0.0f) + 0.1f * v);
    case DP_ACT_TANH:
        MAP(y, x, tanhf(v));
    case DP_ACT_PLSE:
        MAP(y, x, plse(v));
    case DP_ACT_STAIR:
        MAP(y, x, stair(v));
    case DP_ACT_HARDTAN:
        MAP(y, x, v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v));
    case DP_ACT_LHTAN:
        MAP(y, x, lhtan(v));
    case DP_ACT_RELU6:
        MAP(y, x, v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v));
    case DP_ACT_SWISH:
        MAP(y, x, v * sigmoid(v));
    case DP_ACT_MISH:
        MAP(y, x, mish(v));
    case DP_ACT_GELU:
        MAP(y, x, gelu(v));
    case DP_ACT_GELU_ERF:
        MAP(y, x, gelu_erf(v));
    case DP_ACT_PRELU:
    case DP_ACT_COUNT_:
        break;
    }
    return DP_OK;
}

// --- backward ---

// dx[i] = dy[i] * g, g an expression of v = src[i] (x or y).
#define GRAD(src, g)                                                                               \
    for (size_t i = 0; i < n; i++) {                                                               \
        const float v = (src)[i];                                                                  \
        dx[i] = dy[i] * (g);                                                                       \
    }                                                                                              \
    break

dp_status dp_cpu_act_backward(float *dx, const float *dy, const float *x, const float *y, size_t n,
                              dp_act act, float slope)
{
    static const char kernel[] = "activation backward";
    DP_TRY(check_act(act, slope, kernel));
    DP_CPU_NEED(dx, kernel);
    DP_CPU_NEED(dy, kernel);
    if (dp_act_backward_needs_input(act)) {
        DP_CPU_NEED(x, kernel);
    } else if (act != DP_ACT_LINEAR) {
        DP_CPU_NEED(y, kernel);
    }
    const float lambda = DP_SELU_LAMBDA, la = DP_SELU_LAMBDA * DP_SELU_ALPHA;
    switch (act) {
    case DP_ACT_LINEAR:
        for (size_t i = 0; i < n; i++) {
            dx[i] = dy[i];
        }
        break;
    case DP_ACT_LOGISTIC:
        GRAD(y, (1.0f - v) * v);
    case DP_ACT_LOGGY:
        GRAD(y, 2.0f * (1.0f - 0.5f * (v + 1.0f)) * 0.5f * (v + 1.0f));
    case DP_ACT_RELU:
        GRAD(y, v > 0.0f ? 1.0f : 0.0f);
    case DP_ACT_LEAKY:
        GRAD(y, v > 0.0f ? 1.0f : slope);
    case DP_ACT_ELU:
        GRAD(y, v >= 0.0f ? 1.0f : v + 1.0f);
    case DP_ACT_SELU:
        GRAD(y, v >= 0.0f ? lambda : v + la);
    case DP_ACT_RELIE:
        GRAD(y, v > 0.0f ? 1.0f : 0.01f);
    case DP_ACT_RAMP:
        GRAD(y, (v > 0.0f ? 1.0f : 0.0f) + 0.1f);
    case DP_ACT_TANH:
        GRAD(y, 1.0f - v * v);
    case DP_ACT_PLSE:
        GRAD(y, (v < 0.0f || v > 1.0f) ? 0.01f : 0.125f);
    case DP_ACT_STAIR:
        GRAD(y, floorf(v) == v ? 0.0f : 1.0f);
    case DP_ACT_HARDTAN:
        GRAD(y, (v > -1.0f && v < 1.0f) ? 1.0f : 0.0f);
    case DP_ACT_LHTAN:
        GRAD(y, (v > 0.0f && v < 1.0f) ? 1.0f : 0.001f);
    case DP_ACT_RELU6:
        GRAD(y, (v > 0.0f && v < 6.0f) ? 1.0f : 0.0f);
    case DP_ACT_SWISH:
        GRAD(x, swish_grad(v));
    case DP_ACT_MISH:
        GRAD(x, mish_grad(v));
    case DP_ACT_GELU:
        GRAD(x, gelu_grad(v));
    case DP_ACT_GELU_ERF:
        GRAD(x, gelu_erf_grad(v));
    case DP_ACT_PRELU:
    case DP_ACT_COUNT_:
        break;
    }
    return DP_OK;
}

// --- on the pool ---

enum { ACT_BLOCK = 16384 }; // elements per task

typedef struct act_job {
    float *out;
    const float *a, *b, *c; // forward: x; backward: dy, x, y
    size_t n;
    dp_act act;
    float slope;
    int backward;
} act_job;

static void act_task(void *arg, long t, int thread)
{
    (void)thread;
    const act_job *j = arg;
    size_t lo = (size_t)t * ACT_BLOCK, len = j->n - lo < ACT_BLOCK ? j->n - lo : ACT_BLOCK;
    dp_status st;
    if (j->backward) {
        st = dp_cpu_act_backward(j->out + lo, j->a + lo, j->b != NULL ? j->b + lo : NULL,
                                 j->c != NULL ? j->c + lo : NULL, len, j->act, j->slope);
    } else {
        st = dp_cpu_act_forward(j->out + lo, j->a + lo, len, j->act, j->slope);
    }
    DP_ASSERT(st == DP_OK);
}

dp_status dp_cpu_act_forward_pool(float *y, const float *x, size_t n, dp_act act, float slope,
                                  dp_threadpool *pool)
{
    DP_TRY(check_act(act, slope, "activation forward"));
    DP_CPU_NEED(y, "activation forward");
    DP_CPU_NEED(x, "activation forward");
    act_job j = {y, x, NULL, NULL, n, act, slope, 0};
    dp_threadpool_for(pool, (long)((n + ACT_BLOCK - 1) / ACT_BLOCK), act_task, &j);
    return DP_OK;
}

dp_status dp_cpu_act_backward_pool(float *dx, const float *dy, const float *x, const float *y,
                                   size_t n, dp_act act, float slope, dp_threadpool *pool)
{
    static const char kernel[] = "activation backward";
    DP_TRY(check_act(act, slope, kernel));
    DP_CPU_NEED(dx, kernel);
    DP_CPU_NEED(dy, kernel);
    if (dp_act_backward_needs_input(act)) {
        DP_CPU_NEED(x, kernel);
    } else if (act != DP_ACT_LINEAR) {
        DP_CPU_NEED(y, kernel);
    }
    act_job j = {dx, dy, x, y, n, act, slope, 1};
    dp_threadpool_for(pool, (long)((n + ACT_BLOCK - 1) / ACT_BLOCK), act_task, &j);
    return DP_OK;
}

// --- PReLU ---

dp_status dp_cpu_prelu_forward(float *y, const float *x, const float *slope, int N, int C,
                               size_t hw)
{
    DP_CPU_NEED(y, "prelu forward");
    DP_CPU_NEED(x, "prelu forward");
    DP_CPU_NEED(slope, "prelu forward");
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const size_t off = ((size_t)n * C + c) * hw;
            const float a = slope[c];
            for (size_t i = 0; i < hw; i++) {
                float v = x[off + i];
                y[off + i] = v > 0.0f ? v : a * v;
            }
        }
    }
    return DP_OK;
}

dp_status dp_cpu_prelu_backward(float *dx, float *dslope, const float *dy, const float *x,
                                const float *slope, int N, int C, size_t hw, unsigned accum)
{
    DP_CPU_NEED(dslope, "prelu backward");
    DP_CPU_NEED(dy, "prelu backward");
    DP_CPU_NEED(x, "prelu backward");
    DP_CPU_NEED(slope, "prelu backward");
    const int add_dx = (accum & DP_ACCUM_DX) != 0;
    for (int c = 0; c < C; c++) {
        const float a = slope[c];
        double sum = 0.0;
        for (int n = 0; n < N; n++) {
            const size_t off = ((size_t)n * C + c) * hw;
            float part = 0.0f;
            for (size_t i = 0; i < hw; i++) {
                float v = x[off + i], g = dy[off + i];
                part += v > 0.0f ? 0.0f : g * v;
                if (dx != NULL) {
                    float d = v > 0.0f ? g : a * g;
                    dx[off + i] = add_dx ? dx[off + i] + d : d;
                }
            }
            sum += part;
        }
        dslope[c] = (accum & DP_ACCUM_DPARAMS) ? (float)(dslope[c] + sum) : (float)sum;
    }
    return DP_OK;
}
