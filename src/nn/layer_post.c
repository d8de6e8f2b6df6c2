// Batch norm + activation after a linear map (see layer_post.h). Saved state layout, for n
// samples of C x hw: z (raw output, when batch norm or the activation's backward needs it),
// a (batch-norm output, when the activation's backward needs its input), mean (C), inv_std (C).
#include <string.h>

#include "core/error.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/batchnorm.h"
#include "nn/layer_internal.h"
#include "nn/layer_post.h"

dp_status dp__post_parse(dp_layer *l, const dp_cfg_section *s, const char *def, int bn,
                         dp__post *post)
{
    memset(post, 0, sizeof *post);
    post->bn = bn;
    post->scales = post->shifts = post->prelu = post->running = -1;
    const char *name;
    double slope;
    DP_TRY(dp_cfg_get_str(s, "activation", def, &name));
    DP_TRY(dp_cfg_get_float(s, "slope", 0.1, &slope));
    if (dp_act_from_name(name, &post->act) != DP_OK) {
        char where[256];
        return dp_error_set(DP_ERR_UNSUPPORTED, "%s [layer %d %s]: unsupported activation %s",
                            dp_cfg_where(s, "activation", where, sizeof where), l->index,
                            dp_cfg_section_name(s), name);
    }
    if (post->act == DP_ACT_LEAKY && slope < 0) {
        return dp_layer_error(l, DP_ERR_CFG, "slope=%g: a leaky slope must be >= 0", slope);
    }
    post->slope = (float)slope;
    return DP_OK;
}

void dp__post_add_params(dp_layer *l, dp__post *post, int C)
{
    int64_t c[1] = {C};
    if (post->bn) {
        post->scales = l->n_params;
        dp__layer_add_param(l, "scales", dp_shape_make(1, c), DP_PARAM_INIT_ONE, 0, 0, 0);
        post->shifts = l->n_params;
        dp__layer_add_param(l, "biases", dp_shape_make(1, c), DP_PARAM_INIT_ZERO, 0, 0, 0);
        post->running = l->n_buffers;
        dp__layer_add_buffer(l, "rolling_mean", dp_shape_make(1, c), 0.0f);
        dp__layer_add_buffer(l, "rolling_variance", dp_shape_make(1, c), 1.0f);
    }
    if (post->act == DP_ACT_PRELU) {
        post->prelu = l->n_params;
        dp__layer_add_param(l, "prelu_slopes", dp_shape_make(1, c), DP_PARAM_INIT_CONST, 0, 0, 0);
        l->params[post->prelu].spec.value = 0.25f;
    }
}

static int needs_input(const dp__post *post)
{
    return post->act != DP_ACT_LINEAR && dp_act_backward_needs_input(post->act);
}

size_t dp__post_state_bytes(const dp__post *post, int n, int C, size_t hw)
{
    size_t plane = (size_t)n * (size_t)C * hw * sizeof(float);
    size_t bytes = 0;
    if (post->bn || needs_input(post)) {
        bytes += plane; // z
    }
    if (post->bn && needs_input(post)) {
        bytes += plane; // a
    }
    if (post->bn) {
        bytes += 2 * (size_t)C * sizeof(float);
    }
    return bytes;
}

typedef struct post_state {
    float *z, *a, *mean, *inv_std;
} post_state;

static post_state state_of(dp_layer *l, const dp__post *post, int n, int C, size_t hw)
{
    post_state st = {NULL, NULL, NULL, NULL};
    size_t plane = (size_t)n * (size_t)C * hw;
    float *p = l->state;
    if (post->bn || needs_input(post)) {
        st.z = p;
        p += plane;
    }
    if (post->bn && needs_input(post)) {
        st.a = p;
        p += plane;
    } else if (!post->bn && needs_input(post)) {
        st.a = st.z; // the activation's input is z itself
    }
    if (post->bn) {
        st.mean = p;
        st.inv_std = p + C;
    }
    return st;
}

float *dp__post_raw(dp_layer *l, const dp__post *post)
{
    // The state layout depends on n only through offsets after z, and z comes first.
    return (post->bn || needs_input(post)) ? (float *)l->state : l->y;
}

static dp_bn_params bn_params(int n, int C, size_t hw)
{
    dp_bn_params p = DP_BN_PARAMS_INIT;
    p.N = n;
    p.C = C;
    p.H = 1;
    p.W = (int)hw;
    return p;
}

dp_status dp__post_forward(dp_layer *l, const dp__post *post, const dp_step *s, int C, size_t hw)
{
    post_state st = state_of(l, post, s->n, C, hw);
    size_t count = (size_t)s->n * (size_t)C * hw;
    // The batch-norm output goes to a when the activation needs its input, else to y.
    float *act_in = l->y;
    if (post->bn) {
        float *bn_out = needs_input(post) ? st.a : l->y;
        dp_bn_params p = bn_params(s->n, C, hw);
        const float *gamma = l->params[post->scales].data, *beta = l->params[post->shifts].data;
        float *rmean = l->buffers[post->running].data, *rvar = l->buffers[post->running + 1].data;
        if (s->train) {
            DP_TRY(dp_cpu_bn_forward_train(bn_out, st.mean, st.inv_std, rmean, rvar, st.z, gamma,
                                           beta, &p));
        } else {
            DP_TRY(dp_cpu_bn_forward_eval(bn_out, st.z, gamma, beta, rmean, rvar, &p));
        }
        act_in = bn_out;
    } else if (needs_input(post)) {
        act_in = st.z;
    }
    if (post->act == DP_ACT_PRELU) {
        return dp_cpu_prelu_forward(l->y, act_in, l->params[post->prelu].data, s->n, C, hw);
    }
    if (post->act == DP_ACT_LINEAR) {
        if (act_in != l->y) {
            memcpy(l->y, act_in, count * sizeof(float));
        }
        return DP_OK;
    }
    return dp_cpu_act_forward(l->y, act_in, count, post->act, post->slope);
}

dp_status dp__post_backward(dp_layer *l, const dp__post *post, const dp_step *s, int C,
                            size_t hw, const float **dz)
{
    post_state st = state_of(l, post, s->n, C, hw);
    size_t count = (size_t)s->n * (size_t)C * hw;
    DP_ASSERT(count <= s->scratch_floats);
    unsigned accum_params = s->accumulate ? DP_ACCUM_DPARAMS : DP_ACCUM_NONE;
    const float *g = l->dy;
    if (post->act == DP_ACT_PRELU) {
        const float *x = post->bn ? st.a : st.z;
        DP_TRY(dp_cpu_prelu_backward(s->scratch[0], l->params[post->prelu].grad, g, x,
                                     l->params[post->prelu].data, s->n, C, hw, accum_params));
        g = s->scratch[0];
    } else if (post->act != DP_ACT_LINEAR) {
        const float *x = needs_input(post) ? st.a : NULL;
        DP_TRY(dp_cpu_act_backward(s->scratch[0], g, x, needs_input(post) ? NULL : l->y, count,
                                   post->act, post->slope));
        g = s->scratch[0];
    }
    if (post->bn) {
        dp_bn_params p = bn_params(s->n, C, hw);
        DP_TRY(dp_cpu_bn_backward(s->scratch[1], l->params[post->scales].grad,
                                  l->params[post->shifts].grad, g, st.z,
                                  l->params[post->scales].data, st.mean, st.inv_std, &p,
                                  accum_params));
        g = s->scratch[1];
    }
    *dz = g;
    return DP_OK;
}
