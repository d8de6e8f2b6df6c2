// [softmax] (the loss: softmax + cross-entropy with optional label smoothing, over the
// flattened input) and [cost]. In Darknet a [cost] after [softmax] passes the softmax delta
// (truth - p) through unchanged, so training it is softmax cross-entropy; dptrain keeps that
// meaning and treats [cost] as a pass-through.
#include <string.h>

#include "core/error.h"
#include "nn/cpu/softmax_xent.h"
#include "nn/layer_internal.h"
#include "nn/net.h"

typedef struct softmax_priv {
    double label_smoothing;
    dp_xent_stats stats; // of the last forward with labels
    int n;               // samples of the last forward
} softmax_priv;

static dp_status softmax_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(softmax_priv)));
    softmax_priv *p = l->priv;
    long groups;
    DP_TRY(dp_cfg_get_int(s, "groups", 1, &groups));
    if (groups != 1) {
        return dp_layer_error(l, DP_ERR_UNSUPPORTED,
                              "groups=%ld: only a single softmax over all outputs is supported",
                              groups);
    }
    double temperature;
    DP_TRY(dp_cfg_get_float(s, "temperature", 1.0, &temperature));
    if (temperature != 1.0) {
        return dp_layer_error(l, DP_ERR_UNSUPPORTED, "temperature=%g: only 1 is supported",
                              temperature);
    }
    DP_TRY(dp_cfg_get_float(s, "label_smoothing", 0.0, &p->label_smoothing));
    return DP_OK;
}

void dp__softmax_set_smoothing(dp_layer *l, double eps)
{
    ((softmax_priv *)l->priv)->label_smoothing = eps;
}

double dp__softmax_smoothing(const dp_layer *l)
{
    return ((const softmax_priv *)l->priv)->label_smoothing;
}

void dp__softmax_stats_set(dp_layer *l, const dp_xent_stats *stats, int n)
{
    softmax_priv *p = l->priv;
    p->stats = *stats;
    p->n = n;
}

void dp__softmax_stats(const dp_layer *l, double *loss_sum, long *top1, long *top5, int *n)
{
    const softmax_priv *p = l->priv;
    *loss_sum = p->stats.loss_sum;
    *top1 = (long)p->stats.top1;
    *top5 = (long)p->stats.top5;
    *n = p->n;
}

static size_t softmax_state_bytes(const dp_layer *l, int n)
{
    return (size_t)n * (size_t)dp_shape_count(&l->out_shape) * sizeof(float); // dlogits
}

// Mixed targets: loss_i = lambda_i xent(a_i) + (1 - lambda_i) xent(b_i), whose gradient is the
// same mix of the two gradients. top1/top5 count against the first labels.
static dp_status mixed_loss(dp_layer *l, const dp_step *s, const dp_xent_params *xp)
{
    softmax_priv *p = l->priv;
    size_t classes = (size_t)xp->classes, n = (size_t)s->n;
    DP_ASSERT(2 * n <= s->scratch_floats && n * classes <= s->scratch_floats);
    float *da = l->state, *db = s->scratch[0], *loss_a = s->scratch[1], *loss_b = loss_a + n;
    dp_status st = dp_cpu_softmax_xent(da, loss_a, &p->stats, l->x[0], s->labels, xp);
    if (st == DP_OK) {
        st = dp_cpu_softmax_xent(db, loss_b, NULL, l->x[0], s->labels_b, xp);
    }
    if (st != DP_OK) {
        return dp_layer_error(l, st, "%s", dp_error_message());
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        float lam = s->mix_lambda[i];
        sum += (double)lam * loss_a[i] + (1.0 - (double)lam) * loss_b[i];
        for (size_t j = 0; j < classes; j++) {
            da[i * classes + j] = lam * da[i * classes + j] + (1.0f - lam) * db[i * classes + j];
        }
    }
    p->stats.loss_sum = sum;
    p->n = s->n;
    return DP_OK;
}

// y = softmax(x); with labels also the loss, the metrics and (training) dlogits, saved for
// backward.
static dp_status softmax_forward(dp_layer *l, const dp_step *s)
{
    softmax_priv *p = l->priv;
    int classes = (int)dp_shape_count(&l->in_shape);
    DP_TRY(dp_cpu_softmax_forward(l->y, l->x[0], s->n, classes));
    memset(&p->stats, 0, sizeof p->stats);
    p->n = 0;
    if (s->labels == NULL) {
        return DP_OK;
    }
    dp_xent_params xp = {s->n, classes, (float)p->label_smoothing, s->loss_scale};
    if (s->labels_b != NULL && s->train) {
        return mixed_loss(l, s, &xp);
    }
    dp_status st =
        dp_cpu_softmax_xent(s->train ? l->state : NULL, NULL, &p->stats, l->x[0], s->labels, &xp);
    if (st != DP_OK) {
        return dp_layer_error(l, st, "%s", dp_error_message());
    }
    p->n = s->n;
    return DP_OK;
}

static dp_status softmax_backward(dp_layer *l, const dp_step *s)
{
    if (s->labels == NULL) {
        return dp_layer_error(l, DP_ERR_ARG, "backward needs the labels of the forward pass");
    }
    if (l->dx[0] == NULL) {
        return DP_OK;
    }
    size_t count = (size_t)s->n * (size_t)dp_shape_count(&l->in_shape);
    const float *g = l->state;
    if (!l->dx_accumulate[0]) {
        memcpy(l->dx[0], g, count * sizeof(float));
        return DP_OK;
    }
    for (size_t i = 0; i < count; i++) {
        l->dx[0][i] += g[i];
    }
    return DP_OK;
}

static dp_status same_shape(dp_layer *l, const dp_net *net)
{
    (void)net;
    l->out_shape = l->in_shape;
    return DP_OK;
}

// [cost] after [softmax]: y = x; backward never runs (the loss is the softmax's).
static dp_status cost_forward(dp_layer *l, const dp_step *s)
{
    memcpy(l->y, l->x[0], (size_t)s->n * (size_t)dp_shape_count(&l->out_shape) * sizeof(float));
    return DP_OK;
}

static dp_status cost_backward(dp_layer *l, const dp_step *s)
{
    (void)s;
    return dp_layer_error(l, DP_ERR_INTERNAL, "backward of [cost] is never run");
}

static dp_status cost_parse(dp_layer *l, const dp_cfg_section *s)
{
    const char *type;
    DP_TRY(dp_cfg_get_str(s, "type", "sse", &type));
    (void)type;
    if (l->index == 0) {
        return dp_layer_error(l, DP_ERR_CFG, "[cost] must follow a [softmax] layer");
    }
    return DP_OK;
}

static dp_status cost_infer(dp_layer *l, const dp_net *net)
{
    const dp_layer *prev = dp_net_layer(net, l->index - 1);
    if (prev->ops != &dp_layer_softmax_ops) {
        return dp_layer_error(l, DP_ERR_UNSUPPORTED,
                              "[cost] is supported only right after [softmax] (got [%s] before "
                              "it)",
                              prev->ops->name);
    }
    return same_shape(l, net);
}

const dp_layer_ops dp_layer_softmax_ops = {
    .name = "softmax",
    .parse = softmax_parse,
    .infer_shape = same_shape,
    .state_bytes = softmax_state_bytes,
    .forward = softmax_forward,
    .backward = softmax_backward,
};

const dp_layer_ops dp_layer_cost_ops = {
    .name = "cost",
    .parse = cost_parse,
    .infer_shape = cost_infer,
    .forward = cost_forward,
    .backward = cost_backward,
};
