// Running the network: the memory plan (one arena sized by a planning pass: flat parameters,
// gradients and buffers, every layer's output, output gradient and saved state, shared scratch
// and kernel workspace), parameter initialization, forward over all layers and backward from
// the loss layer to the first. Nothing is allocated after dp_net_alloc.
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "nn/cpu/blas.h"
#include "nn/cpu/init.h"
#include "nn/layer_internal.h"
#include "nn/net_internal.h"

static size_t out_floats(const dp_layer *l, int n)
{
    return (size_t)n * (size_t)dp_shape_count(&l->out_shape);
}

// Carves every block from arena (a planner the first time, the real arena the second).
static dp_status carve(dp_net *net, dp_arena *a)
{
    int n = net->batch;
    void *p;
    DP_TRY(dp_arena_alloc(a, net->n_params * sizeof(float), &p));
    net->params = p;
    DP_TRY(dp_arena_alloc(a, net->n_params, &p));
    net->decay_mask = p;
    DP_TRY(dp_arena_alloc(a, net->n_buffers * sizeof(float), &p));
    net->buffers = p;
    net->grads = NULL;
    if (net->train) {
        DP_TRY(dp_arena_alloc(a, net->n_params * sizeof(float), &p));
        net->grads = p;
    }
    size_t scratch = 0, ws = 0;
    for (int i = 0; i < net->n_layers; i++) {
        dp_layer *l = &net->layers[i];
        DP_TRY(dp_arena_alloc(a, out_floats(l, n) * sizeof(float), &p));
        l->y = p;
        l->dy = NULL;
        if (net->train) {
            DP_TRY(dp_arena_alloc(a, out_floats(l, n) * sizeof(float), &p));
            l->dy = p;
        }
        l->state = NULL;
        if (l->ops->state_bytes != NULL) {
            DP_TRY(dp_arena_alloc(a, l->ops->state_bytes(l, n), &l->state));
        }
        size_t in = (size_t)n * (size_t)dp_shape_count(&l->in_shape);
        scratch = scratch > in ? scratch : in;
        scratch = scratch > out_floats(l, n) ? scratch : out_floats(l, n);
        if (l->ops->workspace_bytes != NULL) {
            size_t w = l->ops->workspace_bytes(l, n, dp_threadpool_size(net->pool));
            ws = ws > w ? ws : w;
        }
    }
    net->scratch_floats = scratch;
    for (int k = 0; k < 2; k++) {
        DP_TRY(dp_arena_alloc(a, scratch * sizeof(float), &p));
        net->scratch[k] = p;
    }
    net->ws_bytes = ws;
    DP_TRY(dp_arena_alloc(a, ws, &p));
    net->ws = p;
    return DP_OK;
}

// Whether input k of layer i has had its gradient written when layer i runs backward: by a
// later layer (those run backward first) or by an earlier input slot of layer i itself.
static int written_before(const dp_net *net, int i, int k)
{
    int src = net->layers[i].inputs[k];
    for (int j = net->n_layers - 1; j >= i; j--) {
        const dp_layer *c = &net->layers[j];
        int slots = j == i ? k : c->n_inputs;
        for (int m = 0; m < slots; m++) {
            if (c->inputs[m] == src && (j <= net->loss_layer || net->loss_layer < 0)) {
                return 1;
            }
        }
    }
    return 0;
}

// Points parameter views into the flat buffers and input/gradient views at the producers'
// outputs. A producer read by several consumers gets its gradient written by the consumer that
// runs backward first (the last one) and added to by the others.
static void wire(dp_net *net)
{
    size_t buf_offset = 0;
    for (int i = net->n_layers - 1; i >= 0; i--) {
        dp_layer *l = &net->layers[i];
        for (int p = 0; p < l->n_params; p++) {
            dp_param *prm = &l->params[p];
            prm->data = net->params + prm->offset;
            prm->grad = net->grads != NULL ? net->grads + prm->offset : NULL;
            memset(net->decay_mask + prm->offset, prm->spec.decay ? 1 : 0,
                   (size_t)dp_shape_count(&prm->spec.shape));
        }
        for (int b = 0; b < l->n_buffers; b++) {
            l->buffers[b].offset = buf_offset;
            l->buffers[b].data = net->buffers + buf_offset;
            buf_offset += (size_t)dp_shape_count(&l->buffers[b].spec.shape);
        }
    }
    for (int i = net->n_layers - 1; i >= 0; i--) {
        dp_layer *l = &net->layers[i];
        for (int k = 0; k < l->n_inputs; k++) {
            int src = l->inputs[k];
            l->x[k] = src >= 0 ? net->layers[src].y : NULL; // the input: set per forward
            l->dx[k] = src >= 0 ? net->layers[src].dy : NULL;
            l->dx_accumulate[k] = src >= 0 && written_before(net, i, k);
        }
    }
}

dp_status dp_net_alloc(dp_net *net, int train)
{
    DP_ASSERT(net->arena == NULL);
    net->train = train;
    for (int i = 0; i < net->n_layers; i++) {
        for (int b = 0; b < net->layers[i].n_buffers; b++) {
            net->n_buffers += (size_t)dp_shape_count(&net->layers[i].buffers[b].spec.shape);
        }
    }
    int threads = dp_blas_threads();
    if (threads > 1) {
        DP_TRY(dp_threadpool_create(&net->pool, threads));
        dp_blas_set_threads(threads); // OpenBLAS: 1 thread per pool thread
    }
    dp_arena *plan = NULL;
    DP_TRY(dp_arena_create(&plan, "network plan", 0));
    dp_status st = carve(net, plan);
    size_t need = dp_arena_used_bytes(plan);
    dp_arena_destroy(plan);
    DP_TRY(st);
    DP_TRY(dp_arena_create(&net->arena, "network", need));
    DP_TRY(carve(net, net->arena));
    wire(net);
    return DP_OK;
}

size_t dp_net_memory_bytes(const dp_net *net)
{
    return net->arena != NULL ? dp_arena_capacity_bytes(net->arena) : 0;
}

float *dp_net_params(dp_net *net)
{
    return net->params;
}

float *dp_net_grads(dp_net *net)
{
    return net->grads;
}

float *dp_net_buffers(dp_net *net)
{
    return net->buffers;
}

size_t dp_net_buffer_count(const dp_net *net)
{
    return net->n_buffers;
}

const uint8_t *dp_net_decay_mask(const dp_net *net)
{
    return net->decay_mask;
}

static dp_step make_step(dp_net *net, const dp_net_run *run)
{
    dp_step s;
    memset(&s, 0, sizeof s);
    DP_ASSERT(run->n >= 0 && run->n <= net->batch);
    s.n = run->n > 0 ? run->n : net->batch;
    s.train = run->train;
    s.accumulate = run->accumulate;
    s.step = run->step;
    s.seed = run->seed;
    s.first_sample = run->first_sample;
    s.labels = run->labels;
    s.labels_b = run->labels_b;
    s.mix_lambda = run->mix_lambda;
    s.loss_scale = run->loss_scale;
    s.scratch[0] = net->scratch[0];
    s.scratch[1] = net->scratch[1];
    s.scratch_floats = net->scratch_floats;
    s.ws = net->ws;
    s.ws_bytes = net->ws_bytes;
    s.pool = net->pool;
    return s;
}

static void bind_input(dp_layer *l, const float *input)
{
    for (int k = 0; k < l->n_inputs; k++) {
        if (l->inputs[k] < 0) {
            l->x[k] = (float *)input;
        }
    }
}

dp_status dp_net_forward_layer(dp_net *net, int index, const float *input, const dp_net_run *run)
{
    DP_ASSERT(net->arena != NULL && index >= 0 && index < net->n_layers);
    if (run->train && !net->train) {
        return dp_error_set(DP_ERR_ARG, "forward in training mode on a network built for "
                                        "evaluation only");
    }
    dp_step s = make_step(net, run);
    dp_layer *l = &net->layers[index];
    bind_input(l, input);
    return l->ops->forward(l, &s);
}

dp_status dp_net_backward_layer(dp_net *net, int index, const dp_net_run *run)
{
    DP_ASSERT(net->arena != NULL && net->train && index >= 0 && index < net->n_layers);
    dp_step s = make_step(net, run);
    return net->layers[index].ops->backward(&net->layers[index], &s);
}

dp_status dp_net_forward(dp_net *net, const float *input, const dp_net_run *run)
{
    for (int i = 0; i < net->n_layers; i++) {
        DP_TRY(dp_net_forward_layer(net, i, input, run));
    }
    return DP_OK;
}

dp_status dp_net_backward(dp_net *net, const dp_net_run *run)
{
    if (net->loss_layer < 0) {
        return dp_error_set(DP_ERR_CFG, "%s: the network has no [softmax] layer to compute a loss",
                            dp_cfg_path(net->cfg));
    }
    for (int i = net->loss_layer; i >= 0; i--) {
        DP_TRY(dp_net_backward_layer(net, i, run));
    }
    return DP_OK;
}

dp_status dp_net_metrics_get(const dp_net *net, dp_net_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (net->loss_layer < 0) {
        return dp_error_set(DP_ERR_CFG, "%s: the network has no [softmax] layer to compute a loss",
                            dp_cfg_path(net->cfg));
    }
    dp__softmax_stats(&net->layers[net->loss_layer], &out->loss_sum, &out->top1, &out->top5,
                      &out->n);
    return DP_OK;
}

dp_status dp_net_set_label_smoothing(dp_net *net, double eps)
{
    if (net->loss_layer < 0) {
        return dp_error_set(DP_ERR_CFG, "%s: the network has no [softmax] layer to compute a loss",
                            dp_cfg_path(net->cfg));
    }
    if (eps < 0 || eps >= 1) {
        return dp_error_set(DP_ERR_ARG, "label smoothing %g is outside [0, 1)", eps);
    }
    dp__softmax_set_smoothing(&net->layers[net->loss_layer], eps);
    return DP_OK;
}

static dp_status fill_const(float *w, size_t n, float value)
{
    for (size_t i = 0; i < n; i++) {
        w[i] = value;
    }
    return DP_OK;
}

static dp_status init_param(const dp_layer *l, int index, uint64_t seed, dp_init fallback)
{
    const dp_param *prm = &l->params[index];
    size_t n = (size_t)dp_shape_count(&prm->spec.shape);
    dp_init_params ip = {.kind = fallback,
                         .fan_in = prm->spec.fan_in,
                         .fan_out = prm->spec.fan_out,
                         .gain = prm->spec.gain,
                         .seed = seed,
                         .layer = (uint32_t)l->index,
                         .param = (uint32_t)index};
    switch (prm->spec.init) {
    case DP_PARAM_INIT_WEIGHT:
        if (prm->spec.init_name != NULL &&
            dp_init_from_name(prm->spec.init_name, &ip.kind) != DP_OK) {
            return dp_layer_error(l, DP_ERR_CFG, "init=%s: unknown initializer",
                                  prm->spec.init_name);
        }
        if (ip.gain <= 0) {
            ip.gain = 1.0f;
        }
        return dp_cpu_init_fill(prm->data, n, &ip);
    case DP_PARAM_INIT_BIAS:
        // PyTorch draws biases like its default weights; the other initializers start at 0.
        if (fallback != DP_INIT_PYTORCH || (l->params[0].spec.init_name != NULL &&
                                            strcmp(l->params[0].spec.init_name, "pytorch") != 0)) {
            return fill_const(prm->data, n, 0.0f);
        }
        ip.kind = DP_INIT_PYTORCH;
        return dp_cpu_init_fill(prm->data, n, &ip);
    case DP_PARAM_INIT_ZERO:
        return fill_const(prm->data, n, 0.0f);
    case DP_PARAM_INIT_ONE:
        return fill_const(prm->data, n, 1.0f);
    case DP_PARAM_INIT_CONST:
        return fill_const(prm->data, n, prm->spec.value);
    }
    DP_ASSERT(!"unknown parameter init");
}

dp_status dp_net_init_params(dp_net *net, uint64_t seed, const char *default_init)
{
    DP_ASSERT(net->arena != NULL);
    dp_init fallback;
    if (dp_init_from_name(default_init, &fallback) != DP_OK) {
        return dp_error_set(DP_ERR_CFG,
                            "%s: init=%s: unknown initializer (expected pytorch, "
                            "kaiming_normal, kaiming_uniform, xavier_normal, "
                            "xavier_uniform, lecun_normal, lecun_uniform)",
                            dp_cfg_path(net->cfg), default_init);
    }
    for (int i = 0; i < net->n_layers; i++) {
        dp_layer *l = &net->layers[i];
        for (int p = 0; p < l->n_params; p++) {
            DP_TRY(init_param(l, p, seed, fallback));
        }
        for (int b = 0; b < l->n_buffers; b++) {
            DP_TRY(fill_const(l->buffers[b].data, (size_t)dp_shape_count(&l->buffers[b].spec.shape),
                              l->buffers[b].spec.value));
        }
    }
    return DP_OK;
}
