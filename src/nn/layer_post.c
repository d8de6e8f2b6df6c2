// Batch norm + activation after a linear map (see layer_post.h), on the network's threads.
// Saved state layout, for n samples of C x hw: z (raw output, when batch norm or the
// activation's backward needs it), a (batch-norm output, when the activation's backward needs
// its input), then with batch norm: mean, inv_std, scale (C each), the backward map (C, 4) and
// the plane statistics (n, C, 2) in double.
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/batchnorm.h"
#include "nn/cpu/bn_act.h"
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

// Floats of the per-channel block: mean, inv_std, scale (C each), coef (4 C), rounded up to an
// even count so that the double statistics after it are aligned.
static size_t channel_floats(int C)
{
    return ((size_t)7 * (size_t)C + 1) / 2 * 2;
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
        bytes += channel_floats(C) * sizeof(float) + (size_t)n * (size_t)C * 2 * sizeof(double);
    }
    return bytes;
}

typedef struct post_state {
    float *z, *a, *mean, *inv_std, *scale, *coef;
    double *stats; // (n, C, 2)
} post_state;

static post_state state_of(dp_layer *l, const dp__post *post, int n, int C, size_t hw)
{
    post_state st = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
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
        st.scale = p + 2 * C;
        st.coef = p + 3 * C;
        st.stats = (double *)(void *)(p + channel_floats(C));
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

// scale[c] = gamma[c] / sqrt(running_var[c] + eps) in double, as dp_cpu_bn_forward_eval.
static void eval_scale(float *scale, const dp_layer *l, const dp__post *post, int C, float eps)
{
    const float *gamma = l->params[post->scales].data, *rvar = l->buffers[post->running + 1].data;
    for (int c = 0; c < C; c++) {
        scale[c] = (float)(gamma[c] * (1.0 / sqrt((double)rvar[c] + (double)eps)));
    }
}

// --- forward ---

float *dp__post_prepare(dp_layer *l, const dp__post *post, const dp_step *s, int C, size_t hw,
                        dp_conv_epilogue *ep)
{
    post_state st = state_of(l, post, s->n, C, hw);
    memset(ep, 0, sizeof *ep);
    ep->act = DP_ACT_LINEAR;
    const dp_act act = post->act == DP_ACT_PRELU ? DP_ACT_LINEAR : post->act;
    if (post->bn && s->train) {
        ep->plane_stats = st.stats; // statistics while the output is in cache
        return st.z;
    }
    if (post->bn) { // evaluation: the whole batch norm and the activation, into y
        dp_bn_params p = bn_params(s->n, C, hw);
        eval_scale(st.scale, l, post, C, p.eps);
        ep->mean = l->buffers[post->running].data;
        ep->scale = st.scale;
        ep->shift = l->params[post->shifts].data;
        ep->act = act;
        ep->slope = post->slope;
        return l->y;
    }
    if (post->act != DP_ACT_PRELU && (!s->train || !needs_input(post))) {
        ep->act = act; // in place on y: backward needs only y
        ep->slope = post->slope;
        return l->y;
    }
    return dp__post_raw(l, post);
}

// y = act(z) (z = dp__post_raw) on the pool, for the layers without a batch norm.
static dp_status act_only_forward(dp_layer *l, const dp__post *post, const dp_step *s,
                                  post_state st, int C, size_t hw)
{
    size_t count = (size_t)s->n * (size_t)C * hw;
    const float *in = needs_input(post) ? st.z : l->y;
    if (post->act == DP_ACT_PRELU) {
        return dp_cpu_prelu_forward(l->y, in, l->params[post->prelu].data, s->n, C, hw);
    }
    if (post->act == DP_ACT_LINEAR) {
        return DP_OK; // raw output is y already
    }
    return dp_cpu_act_forward_pool(l->y, in, count, post->act, post->slope, s->pool);
}

dp_status dp__post_finish(dp_layer *l, const dp__post *post, const dp_step *s, int C, size_t hw,
                          const dp_conv_epilogue *ep)
{
    post_state st = state_of(l, post, s->n, C, hw);
    if (!post->bn) {
        if (ep != NULL && ep->act == post->act) {
            return DP_OK; // done by the kernel
        }
        return act_only_forward(l, post, s, st, C, hw);
    }
    dp_bn_params p = bn_params(s->n, C, hw);
    const float *beta = l->params[post->shifts].data;
    const float *mean = l->buffers[post->running].data;
    const int prelu = post->act == DP_ACT_PRELU;
    if (!s->train && ep != NULL && ep->mean != NULL) {
        // The kernel normalized and activated y; PReLU is left.
        return prelu ? dp_cpu_prelu_forward(l->y, l->y, l->params[post->prelu].data, s->n, C, hw)
                     : DP_OK;
    }
    if (s->train) {
        if (ep == NULL || ep->plane_stats == NULL) {
            dp_cpu_bn_plane_stats_pool(st.stats, st.z, &p, s->pool);
        }
        float *rmean = l->buffers[post->running].data, *rvar = l->buffers[post->running + 1].data;
        DP_TRY(dp_cpu_bn_stats_finish(st.mean, st.inv_std, rmean, rvar, st.stats, &p));
        const float *gamma = l->params[post->scales].data;
        for (int c = 0; c < C; c++) {
            st.scale[c] = gamma[c] * st.inv_std[c];
        }
        mean = st.mean;
    } else {
        eval_scale(st.scale, l, post, C, p.eps);
    }
    if (prelu) {
        // PReLU needs its input: batch-norm output into a, then y.
        DP_TRY(dp_cpu_bn_act_forward(st.a, NULL, st.z, mean, st.scale, beta, DP_ACT_LINEAR, 0.0f,
                                     &p, s->pool));
        return dp_cpu_prelu_forward(l->y, st.a, l->params[post->prelu].data, s->n, C, hw);
    }
    return dp_cpu_bn_act_forward(l->y, needs_input(post) ? st.a : NULL, st.z, mean, st.scale, beta,
                                 post->act, post->slope, &p, s->pool);
}

dp_status dp__post_forward(dp_layer *l, const dp__post *post, const dp_step *s, int C, size_t hw)
{
    return dp__post_finish(l, post, s, C, hw, NULL);
}

// --- backward ---

dp_status dp__post_backward_map(dp_layer *l, const dp__post *post, const dp_step *s, int C,
                                size_t hw, dp_conv_dy_map *map, const float **dz)
{
    post_state st = state_of(l, post, s->n, C, hw);
    size_t count = (size_t)s->n * (size_t)C * hw;
    DP_ASSERT(count <= s->scratch_floats);
    unsigned accum_params = s->accumulate ? DP_ACCUM_DPARAMS : DP_ACCUM_NONE;
    if (map != NULL) {
        memset(map, 0, sizeof *map);
    }
    const float *g = l->dy;
    dp_act bn_act = post->act; // the activation the batch-norm kernels apply to g themselves
    if (post->act == DP_ACT_PRELU) {
        const float *x = post->bn ? st.a : st.z;
        DP_TRY(dp_cpu_prelu_backward(s->scratch[0], l->params[post->prelu].grad, g, x,
                                     l->params[post->prelu].data, s->n, C, hw, accum_params));
        g = s->scratch[0];
        bn_act = DP_ACT_LINEAR;
    } else if (post->act != DP_ACT_LINEAR && !(post->bn && dp_bn_act_fusable(post->act))) {
        const float *x = needs_input(post) ? st.a : NULL;
        DP_TRY(dp_cpu_act_backward_pool(s->scratch[0], g, x, needs_input(post) ? NULL : l->y, count,
                                        post->act, post->slope, s->pool));
        g = s->scratch[0];
        bn_act = DP_ACT_LINEAR;
    }
    if (!post->bn) {
        *dz = g;
        return DP_OK;
    }
    dp_bn_params p = bn_params(s->n, C, hw);
    const float *y = bn_act == DP_ACT_LINEAR ? NULL : l->y;
    DP_TRY(dp_cpu_bn_act_backward_coef(st.coef, l->params[post->scales].grad,
                                       l->params[post->shifts].grad, g, y, st.z,
                                       l->params[post->scales].data, st.mean, st.inv_std, bn_act,
                                       post->slope, &p, accum_params, s->pool));
    if (map != NULL) {
        *map = (dp_conv_dy_map){
            .y = y, .z = st.z, .coef = st.coef, .act = bn_act, .slope = post->slope};
        *dz = g; // the kernel maps it image by image
        return DP_OK;
    }
    DP_TRY(dp_cpu_bn_act_backward_apply(s->scratch[1], g, y, st.z, st.coef, bn_act, post->slope, &p,
                                        0, s->pool));
    *dz = s->scratch[1];
    return DP_OK;
}

dp_status dp__post_backward(dp_layer *l, const dp__post *post, const dp_step *s, int C, size_t hw,
                            const float **dz)
{
    return dp__post_backward_map(l, post, s, C, hw, NULL, dz);
}
