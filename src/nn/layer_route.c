// [route] (concatenate the outputs of earlier layers along channels; they must share H and W)
// and [shortcut] (residual add of an earlier layer to the previous one, Darknet's semantics:
// the output has the previous layer's shape; when the shapes differ the added layer is sampled
// with a stride and only the common channels are added).
#include <string.h>

#include "core/error.h"
#include "nn/cpu/elementwise.h"
#include "nn/layer_internal.h"
#include "nn/layer_post.h"
#include "nn/net.h"

typedef struct shortcut_priv {
    double alpha, beta;
    dp__post post;        // the activation after the add
    dp_shortcut_params p; // N set per step
} shortcut_priv;

static dp_status read_refs(dp_layer *l, const dp_cfg_section *s, const char *key, int first)
{
    long refs[DP_LAYER_MAX_INPUTS];
    int n;
    DP_TRY(dp_cfg_get_int_list(s, key, refs, DP_LAYER_MAX_INPUTS - first, &n));
    for (int i = 0; i < n; i++) {
        l->inputs[first + i] = dp__layer_ref(l, refs[i]);
    }
    l->n_inputs = first + n;
    return DP_OK;
}

static dp_status route_parse(dp_layer *l, const dp_cfg_section *s)
{
    return read_refs(l, s, "layers", 0);
}

static dp_status route_infer(dp_layer *l, const dp_net *net)
{
    dp_shape first = dp_net_shape_of(net, l->inputs[0]);
    int64_t channels = 0;
    for (int i = 0; i < l->n_inputs; i++) {
        dp_shape s = dp_net_shape_of(net, l->inputs[i]);
        if (s.dims[1] != first.dims[1] || s.dims[2] != first.dims[2]) {
            char a[64];
            return dp_layer_error(l, DP_ERR_SHAPE,
                                  "expected layer %d to be %lldx%lld like layer %d, got %s",
                                  l->inputs[i], (long long)first.dims[1], (long long)first.dims[2],
                                  l->inputs[0], dp_layer_shape_str(&s, a, sizeof a));
        }
        channels += s.dims[0];
        l->in_count[i] = dp_shape_count(&s);
    }
    l->out_shape = dp_chw(channels, first.dims[1], first.dims[2]);
    return DP_OK;
}

// y = (x_0, x_1, ...) along channels.
static dp_status route_forward(dp_layer *l, const dp_step *s)
{
    int C = (int)l->out_shape.dims[0], at = 0;
    size_t hw = (size_t)(l->out_shape.dims[1] * l->out_shape.dims[2]);
    for (int k = 0; k < l->n_inputs; k++) {
        int ck = (int)(l->in_count[k] / (int64_t)hw);
        DP_TRY(dp_cpu_channel_copy(l->y, C, at, l->x[k], ck, 0, ck, s->n, hw, 0));
        at += ck;
    }
    return DP_OK;
}

static dp_status route_backward(dp_layer *l, const dp_step *s)
{
    int C = (int)l->out_shape.dims[0], at = 0;
    size_t hw = (size_t)(l->out_shape.dims[1] * l->out_shape.dims[2]);
    for (int k = 0; k < l->n_inputs; k++) {
        int ck = (int)(l->in_count[k] / (int64_t)hw);
        if (l->dx[k] != NULL) {
            DP_TRY(dp_cpu_channel_copy(l->dx[k], ck, 0, l->dy, C, at, ck, s->n, hw,
                                       l->dx_accumulate[k]));
        }
        at += ck;
    }
    return DP_OK;
}

static dp_status shortcut_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(shortcut_priv)));
    shortcut_priv *p = l->priv;
    DP_TRY(read_refs(l, s, "from", 1));
    if (l->n_inputs != 2) {
        return dp_layer_error(l, DP_ERR_UNSUPPORTED, "from= must name exactly one layer");
    }
    DP_TRY(dp__post_parse(l, s, "linear", 0, &p->post));
    DP_TRY(dp_cfg_get_float(s, "alpha", 1.0, &p->alpha));
    DP_TRY(dp_cfg_get_float(s, "beta", 1.0, &p->beta));
    return DP_OK;
}

static dp_status shortcut_infer(dp_layer *l, const dp_net *net)
{
    dp_shape from = dp_net_shape_of(net, l->inputs[1]);
    int64_t fh = from.dims[1], fw = from.dims[2], h = l->in_shape.dims[1], w = l->in_shape.dims[2];
    // Darknet samples the larger map with an integer stride; the ratio must be an integer.
    if ((fh >= h ? fh % h : h % fh) != 0 || (fw >= w ? fw % w : w % fw) != 0) {
        char a[64], b[64];
        return dp_layer_error(l, DP_ERR_SHAPE,
                              "expected layer %d's output (%s) to be an integer multiple or "
                              "fraction of the previous layer's (%s)",
                              l->inputs[1], dp_layer_shape_str(&from, a, sizeof a),
                              dp_layer_shape_str(&l->in_shape, b, sizeof b));
    }
    l->out_shape = l->in_shape;
    shortcut_priv *p = l->priv;
    dp__post_add_params(l, &p->post, (int)l->in_shape.dims[0]);
    dp_shortcut_params q = {.N = 1,
                            .C = (int)l->in_shape.dims[0],
                            .H = (int)h,
                            .W = (int)w,
                            .from_C = (int)from.dims[0],
                            .from_H = (int)fh,
                            .from_W = (int)fw,
                            .alpha = (float)p->alpha,
                            .beta = (float)p->beta};
    if (dp_shortcut_params_check(&q) != DP_OK) {
        return dp_layer_error(l, DP_ERR_SHAPE, "%s", dp_error_message());
    }
    p->p = q;
    return DP_OK;
}

static size_t shortcut_state_bytes(const dp_layer *l, int n)
{
    const shortcut_priv *p = l->priv;
    return dp__post_state_bytes(&p->post, n, p->p.C, (size_t)p->p.H * (size_t)p->p.W);
}

// Same shapes and a linear, relu or leaky activation: one fused pass each way on the pool.
static int shortcut_fused(const shortcut_priv *p)
{
    const dp_shortcut_params *q = &p->p;
    return !p->post.bn && q->from_C == q->C && q->from_H == q->H && q->from_W == q->W &&
           (p->post.act == DP_ACT_LINEAR || p->post.act == DP_ACT_RELU ||
            p->post.act == DP_ACT_LEAKY);
}

const dp_shortcut_params *dp__shortcut_params(const dp_layer *l)
{
    return &((const shortcut_priv *)l->priv)->p;
}

const dp__post *dp__shortcut_post(const dp_layer *l)
{
    return &((const shortcut_priv *)l->priv)->post;
}

int dp__shortcut_fused(const dp_layer *l)
{
    return shortcut_fused(l->priv);
}

static dp_status shortcut_forward(dp_layer *l, const dp_step *s)
{
    shortcut_priv *p = l->priv;
    dp_shortcut_params q = p->p;
    q.N = s->n;
    if (shortcut_fused(p)) {
        return dp_cpu_shortcut_act_forward(l->y, l->x[0], l->x[1], &q, p->post.act, p->post.slope,
                                           s->pool);
    }
    DP_TRY(dp_cpu_shortcut_forward(dp__post_raw(l, &p->post), l->x[0], l->x[1], &q));
    return dp__post_forward(l, &p->post, s, q.C, (size_t)q.H * (size_t)q.W);
}

static dp_status shortcut_backward(dp_layer *l, const dp_step *s)
{
    shortcut_priv *p = l->priv;
    dp_shortcut_params q = p->p;
    q.N = s->n;
    if (shortcut_fused(p)) {
        return dp_cpu_shortcut_act_backward(l->dx[0], l->dx[1], l->dy, l->y, &q, p->post.act,
                                            p->post.slope, l->dx_accumulate[0], l->dx_accumulate[1],
                                            s->pool);
    }
    const float *dz;
    DP_TRY(dp__post_backward(l, &p->post, s, q.C, (size_t)q.H * (size_t)q.W, &dz));
    return dp_cpu_shortcut_backward(l->dx[0], l->dx[1], dz, &q, l->dx_accumulate[0],
                                    l->dx_accumulate[1]);
}

const dp_layer_ops dp_layer_route_ops = {
    .name = "route",
    .parse = route_parse,
    .infer_shape = route_infer,
    .forward = route_forward,
    .backward = route_backward,
};

const dp_layer_ops dp_layer_shortcut_ops = {
    .name = "shortcut",
    .parse = shortcut_parse,
    .infer_shape = shortcut_infer,
    .state_bytes = shortcut_state_bytes,
    .forward = shortcut_forward,
    .backward = shortcut_backward,
};
