// Layers that keep or merely reshape their input: [dropout], [batchnorm], [activation],
// [flatten], [crop] (a crop_height x crop_width window: random offset and flip in training,
// centred in evaluation).
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "nn/cpu/dropout.h"
#include "nn/cpu/elementwise.h"
#include "nn/layer_internal.h"
#include "nn/layer_post.h"

typedef struct dropout_priv {
    double probability;
    int alpha;
} dropout_priv;

typedef struct activation_priv {
    dp__post post; // [batchnorm]: batch norm alone; [activation]: the activation alone
} activation_priv;

typedef struct crop_priv {
    int height, width, flip;
} crop_priv;

static dp_status same_shape(dp_layer *l, const dp_net *net)
{
    (void)net;
    l->out_shape = l->in_shape;
    return DP_OK;
}

static dp_status dropout_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(dropout_priv)));
    dropout_priv *p = l->priv;
    DP_TRY(dp_cfg_get_float(s, "probability", 0.5, &p->probability));
    DP_TRY(dp_cfg_get_bool(s, "alpha", 0, &p->alpha));
    return DP_OK;
}

dp_dropout_params dp__dropout_params(const dp_layer *l, const dp_step *s)
{
    const dropout_priv *p = l->priv;
    dp_dropout_params q = {.N = s->n,
                           .sample_size = (size_t)dp_shape_count(&l->in_shape),
                           .p = (float)p->probability,
                           .kind = p->alpha ? DP_DROPOUT_ALPHA : DP_DROPOUT_STANDARD,
                           .seed = s->seed,
                           .step = (uint32_t)s->step,
                           .first_sample = (uint32_t)s->first_sample,
                           .layer = (uint32_t)l->index};
    return q;
}

// Training: a mask keyed by (seed; step, global sample, layer). Evaluation: the identity.
static dp_status dropout_forward(dp_layer *l, const dp_step *s)
{
    if (!s->train) {
        memcpy(l->y, l->x[0], (size_t)s->n * (size_t)dp_shape_count(&l->in_shape) * sizeof(float));
        return DP_OK;
    }
    dp_dropout_params q = dp__dropout_params(l, s);
    return dp_cpu_dropout_forward(l->y, l->x[0], &q);
}

static dp_status dropout_backward(dp_layer *l, const dp_step *s)
{
    if (l->dx[0] == NULL) {
        return DP_OK;
    }
    dp_dropout_params q = dp__dropout_params(l, s);
    return dp_cpu_dropout_backward(l->dx[0], l->dy, &q, l->dx_accumulate[0]);
}

static dp_status no_keys(dp_layer *l, const dp_cfg_section *s)
{
    (void)l;
    (void)s;
    return DP_OK;
}

static dp_status batchnorm_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(activation_priv)));
    activation_priv *p = l->priv;
    return dp__post_parse(l, s, "linear", 1, &p->post);
}

static dp_status post_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    activation_priv *p = l->priv;
    l->out_shape = l->in_shape;
    dp__post_add_params(l, &p->post, (int)l->in_shape.dims[0]);
    return DP_OK;
}

const dp__post *dp__simple_post(const dp_layer *l)
{
    return &((const activation_priv *)l->priv)->post;
}

static dp_status activation_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(activation_priv)));
    activation_priv *p = l->priv;
    return dp__post_parse(l, s, "linear", 0, &p->post);
}

static size_t hw_of(const dp_layer *l)
{
    return (size_t)(l->in_shape.dims[1] * l->in_shape.dims[2]);
}

static size_t post_state_bytes(const dp_layer *l, int n)
{
    const activation_priv *p = l->priv;
    return dp__post_state_bytes(&p->post, n, (int)l->in_shape.dims[0], hw_of(l));
}

static dp_status post_forward(dp_layer *l, const dp_step *s)
{
    activation_priv *p = l->priv;
    size_t count = (size_t)s->n * (size_t)dp_shape_count(&l->in_shape);
    memcpy(dp__post_raw(l, &p->post), l->x[0], count * sizeof(float));
    return dp__post_forward(l, &p->post, s, (int)l->in_shape.dims[0], hw_of(l));
}

static dp_status post_backward(dp_layer *l, const dp_step *s)
{
    activation_priv *p = l->priv;
    const float *dz;
    DP_TRY(dp__post_backward(l, &p->post, s, (int)l->in_shape.dims[0], hw_of(l), &dz));
    if (l->dx[0] != NULL) {
        size_t count = (size_t)s->n * (size_t)dp_shape_count(&l->in_shape);
        dp__copy_or_add(l->dx[0], dz, count, l->dx_accumulate[0]);
    }
    return DP_OK;
}

static dp_status copy_forward(dp_layer *l, const dp_step *s)
{
    memcpy(l->y, l->x[0], (size_t)s->n * (size_t)dp_shape_count(&l->in_shape) * sizeof(float));
    return DP_OK;
}

static dp_status copy_backward(dp_layer *l, const dp_step *s)
{
    if (l->dx[0] != NULL) {
        dp__copy_or_add(l->dx[0], l->dy, (size_t)s->n * (size_t)dp_shape_count(&l->in_shape),
                        l->dx_accumulate[0]);
    }
    return DP_OK;
}

static dp_status flatten_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    l->out_shape = dp_chw(dp_shape_count(&l->in_shape), 1, 1);
    return DP_OK;
}

static dp_status crop_parse(dp_layer *l, const dp_cfg_section *s)
{
    DP_TRY(dp__layer_alloc_priv(l, sizeof(crop_priv)));
    crop_priv *p = l->priv;
    long h, w;
    DP_TRY(dp_cfg_get_int(s, "crop_height", 1, &h));
    DP_TRY(dp_cfg_get_int(s, "crop_width", 1, &w));
    DP_TRY(dp_cfg_get_bool(s, "flip", 0, &p->flip));
    p->height = (int)h;
    p->width = (int)w;
    return DP_OK;
}

static dp_status crop_infer(dp_layer *l, const dp_net *net)
{
    (void)net;
    crop_priv *p = l->priv;
    if (p->height > l->in_shape.dims[1] || p->width > l->in_shape.dims[2]) {
        char a[64];
        return dp_layer_error(l, DP_ERR_SHAPE, "expected an input of at least %dx%d, got %s",
                              p->height, p->width, dp_layer_shape_str(&l->in_shape, a, sizeof a));
    }
    l->out_shape = dp_chw(l->in_shape.dims[0], p->height, p->width);
    return DP_OK;
}

int dp__crop_flip(const dp_layer *l)
{
    return ((const crop_priv *)l->priv)->flip;
}

// Where sample i of this step is cut, and whether it is mirrored: centred in evaluation; in
// training drawn from Philox keyed by (seed; step, global sample, layer), as Darknet draws
// a random window and flip per image.
static dp_crop_params crop_at(const dp_layer *l, const dp_step *s, int i, int *flip)
{
    const crop_priv *p = l->priv;
    dp_crop_params q = {.N = 1,
                        .C = (int)l->in_shape.dims[0],
                        .H = (int)l->in_shape.dims[1],
                        .W = (int)l->in_shape.dims[2],
                        .out_h = p->height,
                        .out_w = p->width};
    dp_crop_params_center(&q);
    *flip = 0;
    if (s->train) {
        dp_rng r;
        dp_rng_init(&r, s->seed, (uint32_t)s->step, (uint32_t)(s->first_sample + i),
                    (uint32_t)l->index);
        q.off_h = (int)(dp_rng_u32(&r) % (uint32_t)(q.H - q.out_h + 1));
        q.off_w = (int)(dp_rng_u32(&r) % (uint32_t)(q.W - q.out_w + 1));
        *flip = p->flip && (dp_rng_u32(&r) & 1u);
    }
    return q;
}

// Mirrors every row of (C, h, w) in place.
static void mirror_rows(float *x, int C, int h, int w)
{
    for (int r = 0; r < C * h; r++) {
        float *row = x + (size_t)r * (size_t)w;
        for (int a = 0, b = w - 1; a < b; a++, b--) {
            float t = row[a];
            row[a] = row[b];
            row[b] = t;
        }
    }
}

static dp_status crop_forward(dp_layer *l, const dp_step *s)
{
    size_t in = (size_t)dp_shape_count(&l->in_shape), out = (size_t)dp_shape_count(&l->out_shape);
    for (int i = 0; i < s->n; i++) {
        int flip;
        dp_crop_params q = crop_at(l, s, i, &flip);
        float *y = l->y + (size_t)i * out;
        DP_TRY(dp_cpu_crop_forward(y, l->x[0] + (size_t)i * in, &q));
        if (flip) {
            mirror_rows(y, q.C, q.out_h, q.out_w);
        }
    }
    return DP_OK;
}

static dp_status crop_backward(dp_layer *l, const dp_step *s)
{
    if (l->dx[0] == NULL) {
        return DP_OK;
    }
    size_t in = (size_t)dp_shape_count(&l->in_shape), out = (size_t)dp_shape_count(&l->out_shape);
    for (int i = 0; i < s->n; i++) {
        int flip;
        dp_crop_params q = crop_at(l, s, i, &flip);
        const float *dy = l->dy + (size_t)i * out;
        if (flip) {
            memcpy(s->scratch[0], dy, out * sizeof(float));
            mirror_rows(s->scratch[0], q.C, q.out_h, q.out_w);
            dy = s->scratch[0];
        }
        DP_TRY(dp_cpu_crop_backward(l->dx[0] + (size_t)i * in, dy, &q, l->dx_accumulate[0]));
    }
    return DP_OK;
}

const dp_layer_ops dp_layer_dropout_ops = {
    .name = "dropout",
    .parse = dropout_parse,
    .infer_shape = same_shape,
    .forward = dropout_forward,
    .backward = dropout_backward,
};

const dp_layer_ops dp_layer_batchnorm_ops = {
    .name = "batchnorm",
    .parse = batchnorm_parse,
    .infer_shape = post_infer,
    .state_bytes = post_state_bytes,
    .forward = post_forward,
    .backward = post_backward,
};

const dp_layer_ops dp_layer_activation_ops = {
    .name = "activation",
    .parse = activation_parse,
    .infer_shape = post_infer,
    .state_bytes = post_state_bytes,
    .forward = post_forward,
    .backward = post_backward,
};

const dp_layer_ops dp_layer_flatten_ops = {
    .name = "flatten",
    .parse = no_keys,
    .infer_shape = flatten_infer,
    .forward = copy_forward,
    .backward = copy_backward,
};

const dp_layer_ops dp_layer_crop_ops = {
    .name = "crop",
    .parse = crop_parse,
    .infer_shape = crop_infer,
    .forward = crop_forward,
    .backward = crop_backward,
};
