// [route] (concatenate the outputs of earlier layers along channels; they must share H and W)
// and [shortcut] (residual add of an earlier layer to the previous one, Darknet's semantics:
// the output has the previous layer's shape; when the shapes differ the added layer is sampled
// with a stride and only the common channels are added).
#include <string.h>

#include "core/error.h"
#include "nn/layer_internal.h"
#include "nn/net.h"

typedef struct shortcut_priv {
    const char *activation;
    double slope, alpha, beta;
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
                                  l->inputs[i], (long long)first.dims[1],
                                  (long long)first.dims[2], l->inputs[0],
                                  dp_layer_shape_str(&s, a, sizeof a));
        }
        channels += s.dims[0];
        l->in_count[i] = dp_shape_count(&s);
    }
    l->out_shape = dp_chw(channels, first.dims[1], first.dims[2]);
    return DP_OK;
}

// y[n] = (x_0[n], x_1[n], ...) along channels, sample by sample.
static dp_status route_forward(dp_layer *l, const dp_step *s)
{
    size_t out = (size_t)dp_shape_count(&l->out_shape), at = 0;
    for (int k = 0; k < l->n_inputs; k++) {
        size_t len = (size_t)l->in_count[k];
        for (int n = 0; n < s->n; n++) {
            memcpy(l->y + (size_t)n * out + at, l->x[k] + (size_t)n * len, len * sizeof(float));
        }
        at += len;
    }
    return DP_OK;
}

static dp_status route_backward(dp_layer *l, const dp_step *s)
{
    size_t out = (size_t)dp_shape_count(&l->out_shape), at = 0;
    for (int k = 0; k < l->n_inputs; k++) {
        size_t len = (size_t)l->in_count[k];
        for (int n = 0; l->dx[k] != NULL && n < s->n; n++) {
            dp__copy_or_add(l->dx[k] + (size_t)n * len, l->dy + (size_t)n * out + at, len,
                            l->dx_accumulate[k]);
        }
        at += len;
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
    DP_TRY(dp_cfg_get_str(s, "activation", "linear", &p->activation));
    DP_TRY(dp_cfg_get_float(s, "slope", 0.1, &p->slope));
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
    return DP_OK;
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
};
