// Network construction from a cfg: layers in file order, input references resolved, shapes
// inferred front to back, parameters laid out in one flat buffer. The buffer holds the last
// layer's parameters first: backward produces gradients from the last layer to the first, so
// gradient buckets (contiguous slices) complete from the front of the buffer to the back.
#include "nn/net.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg_schema.h"
#include "core/error.h"
#include "nn/layer_internal.h"
#include "nn/net_internal.h"


dp_status dp_layer_error(const dp_layer *l, dp_status st, const char *fmt, ...)
{
    char where[512], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dp_cfg_where(l->section, NULL, where, sizeof where);
    return dp_error_set(st, "%s [layer %d %s]: %s", where, l->index,
                        dp_cfg_section_name(l->section), msg);
}

char *dp_layer_shape_str(const dp_shape *chw, char *buf, size_t size)
{
    snprintf(buf, size, "%lldx%lldx%lld", (long long)chw->dims[1], (long long)chw->dims[2],
             (long long)chw->dims[0]);
    return buf;
}

static dp_status read_input_shape(dp_net *net, const dp_cfg *cfg, const dp_net_config *nc)
{
    const dp_cfg_section *s = dp_cfg_find(cfg, "net");
    long h, w, c, batch, subdivisions;
    DP_TRY(dp_cfg_require_int(s, "height", &h));
    DP_TRY(dp_cfg_require_int(s, "width", &w));
    DP_TRY(dp_cfg_require_int(s, "channels", &c));
    DP_TRY(dp_cfg_get_int(s, "batch", 1, &batch));
    DP_TRY(dp_cfg_get_int(s, "subdivisions", 1, &subdivisions));
    net->input = dp_chw(c, h, w);
    if (nc != NULL && nc->batch > 0) {
        net->batch = nc->batch;
    } else if (batch % subdivisions != 0) {
        char where[256];
        return dp_error_set(DP_ERR_CFG, "%s: [net] subdivisions: %ld does not divide batch %ld",
                            dp_cfg_where(s, "subdivisions", where, sizeof where), subdivisions,
                            batch);
    } else {
        net->batch = (int)(batch / subdivisions);
    }
    return DP_OK;
}

static int is_layer_section(const dp_cfg_section *s)
{
    const dp_cfg_section_spec *spec = dp_cfg_schema_section(dp_cfg_section_name(s));
    return spec != NULL && (spec->flags & DP_CFG_SECTION_LAYER);
}

static dp_status parse_layers(dp_net *net, const dp_cfg *cfg)
{
    int n = 0;
    for (int i = 0; i < dp_cfg_section_count(cfg); i++) {
        n += is_layer_section(dp_cfg_section_at(cfg, i));
    }
    if (n == 0) {
        return dp_error_set(DP_ERR_CFG, "%s: no layers after [net]", dp_cfg_path(cfg));
    }
    net->layers = calloc((size_t)n, sizeof *net->layers);
    if (net->layers == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "%s: out of memory for %d layers", dp_cfg_path(cfg), n);
    }
    for (int i = 0; i < dp_cfg_section_count(cfg); i++) {
        const dp_cfg_section *s = dp_cfg_section_at(cfg, i);
        if (!is_layer_section(s)) {
            continue;
        }
        dp_layer *l = &net->layers[net->n_layers];
        l->index = net->n_layers++;
        l->section = s;
        l->n_inputs = 1;
        l->inputs[0] = l->index - 1;
        const char *name;
        DP_TRY(dp_cfg_get_str(s, "name", NULL, &name));
        if (name != NULL) {
            snprintf(l->name, sizeof l->name, "%s", name);
        } else {
            snprintf(l->name, sizeof l->name, "%d_%s", l->index, dp_cfg_section_name(s));
        }
        l->ops = dp_layer_ops_find(dp_cfg_section_name(s));
        if (l->ops == NULL) {
            return dp_layer_error(l, DP_ERR_CFG, "layer type [%s] is not supported by dptrain",
                                  dp_cfg_section_header(s));
        }
        DP_TRY(l->ops->parse(l, s));
    }
    return DP_OK;
}

static dp_status infer_shapes(dp_net *net)
{
    for (int i = 0; i < net->n_layers; i++) {
        dp_layer *l = &net->layers[i];
        for (int k = 0; k < l->n_inputs; k++) {
            if (l->inputs[k] < -1 || l->inputs[k] >= l->index) {
                return dp_layer_error(l, DP_ERR_CFG,
                                      "refers to layer %d; only layers 0..%d come before it",
                                      l->inputs[k], l->index - 1);
            }
        }
        l->in_shape = dp_net_shape_of(net, l->inputs[0]);
        DP_TRY(l->ops->infer_shape(l, net));
        for (int p = 0; p < l->n_params; p++) {
            net->n_params += (size_t)dp_shape_count(&l->params[p].spec.shape);
        }
        net->flops += l->flops;
        if (l->ops == &dp_layer_softmax_ops) {
            net->loss_layer = i;
        }
    }
    return DP_OK;
}

// Offsets in the flat buffers: last layer first (see the file comment).
static void layout_params(dp_net *net)
{
    size_t offset = 0;
    for (int i = net->n_layers - 1; i >= 0; i--) {
        dp_layer *l = &net->layers[i];
        for (int p = 0; p < l->n_params; p++) {
            l->params[p].offset = offset;
            offset += (size_t)dp_shape_count(&l->params[p].spec.shape);
        }
    }
}

dp_status dp_net_create(dp_net **out, const dp_cfg *cfg, const dp_net_config *nc)
{
    *out = NULL;
    dp_net *net = calloc(1, sizeof *net);
    if (net == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "%s: out of memory", dp_cfg_path(cfg));
    }
    net->cfg = cfg;
    net->loss_layer = -1;
    dp_status st;
    DP_TRY_GOTO(read_input_shape(net, cfg, nc), st, fail);
    DP_TRY_GOTO(parse_layers(net, cfg), st, fail);
    DP_TRY_GOTO(infer_shapes(net), st, fail);
    layout_params(net);
    *out = net;
    return DP_OK;
fail:
    dp_net_destroy(net);
    return st;
}

void dp_net_destroy(dp_net *net)
{
    if (net == NULL) {
        return;
    }
    for (int i = 0; i < net->n_layers; i++) {
        dp_layer *l = &net->layers[i];
        if (l->ops != NULL && l->ops->destroy != NULL) {
            l->ops->destroy(l);
        } else {
            free(l->priv);
        }
    }
    free(net->layers);
    dp_threadpool_destroy(net->pool);
    dp_arena_destroy(net->arena);
    free(net);
}

int dp_net_layer_count(const dp_net *net)
{
    return net->n_layers;
}

const dp_layer *dp_net_layer(const dp_net *net, int index)
{
    return index >= 0 && index < net->n_layers ? &net->layers[index] : NULL;
}

dp_shape dp_net_input_shape(const dp_net *net)
{
    return net->input;
}

dp_shape dp_net_shape_of(const dp_net *net, int index)
{
    return index < 0 ? net->input : net->layers[index].out_shape;
}

dp_shape dp_net_output_shape(const dp_net *net)
{
    return net->layers[net->n_layers - 1].out_shape;
}

size_t dp_net_param_count(const dp_net *net)
{
    return net->n_params;
}

double dp_net_flops(const dp_net *net)
{
    return net->flops;
}

int dp_net_batch(const dp_net *net)
{
    return net->batch;
}

dp_status dp_net_print_summary(const dp_net *net, FILE *f)
{
    char shape[64];
    int bad = fprintf(f, "%5s  %-14s %16s %12s %12s  %s\n", "layer", "type", "output HxWxC",
                      "params", "MFLOPs", "cfg") < 0;
    for (int i = 0; i < net->n_layers && !bad; i++) {
        const dp_layer *l = &net->layers[i];
        size_t params = 0;
        for (int p = 0; p < l->n_params; p++) {
            params += (size_t)dp_shape_count(&l->params[p].spec.shape);
        }
        char where[256];
        bad |= fprintf(f, "%5d  %-14s %16s %12zu %12.3f  %s\n", i, l->ops->name,
                       dp_layer_shape_str(&l->out_shape, shape, sizeof shape), params,
                       l->flops * 1e-6, dp_cfg_where(l->section, NULL, where, sizeof where)) < 0;
    }
    dp_shape out = dp_net_output_shape(net);
    bad |= fprintf(f, "check: layers=%d params=%zu output=%s flops=%.0f\n", net->n_layers,
                   net->n_params, dp_layer_shape_str(&out, shape, sizeof shape), net->flops) < 0;
    if (bad || ferror(f)) {
        return dp_error_set(DP_ERR_IO, "writing the network summary failed");
    }
    return DP_OK;
}
