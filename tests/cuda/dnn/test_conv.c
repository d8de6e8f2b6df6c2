// GPU check of the cuDNN convolution plans (src/nn/cuda/dnn/dnn.h) against the CPU reference
// (src/nn/cpu/conv.h) on the same random inputs: forward with and without bias, backward data
// and backward filter (+ bias), accumulate off and on, for 3x3 s1/s2, 1x1 s1/s2 (projection),
// 7x7 s2 p3 (ResNet-50 stem), dilation 2, groups 2, depthwise s1/s2 and a non-square window,
// N = 1 and 5, NCHW and NHWC (transposed on the host), in fp32, tf32, bf16 and fp16 (tolerances
// in dnn_test.h). bf16/fp16 inputs are rounded on the host so the CPU sees what the GPU sees.
// In deterministic contexts the same plan run twice, and a second plan of the same shape, must
// give the same bits (memcmp). Exits 77 (SKIP) without a usable GPU.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dnn_test.h"
#include "nn/cpu/conv.h"
#include "nn/cuda/dnn/dnn.h"

static int failures;

typedef struct shape {
    const char *name;
    int C, H, W, K, R, S;
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
    int bias;
} shape;

static const shape shapes[] = {
    {"3x3 s1 p1", 16, 12, 12, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"3x3 s2 p1", 16, 13, 13, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0},
    {"1x1 s2 (projection)", 16, 14, 14, 32, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0},
    {"1x1 s1", 32, 7, 7, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1},
    {"7x7 s2 p3 (stem)", 3, 32, 32, 16, 7, 7, 2, 2, 3, 3, 1, 1, 1, 0},
    {"3x3 dilation 2", 8, 15, 15, 8, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1},
    {"3x3 groups 2", 16, 10, 10, 24, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1},
    {"3x3 depthwise", 16, 11, 11, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 0},
    {"3x3 depthwise s2", 16, 12, 12, 16, 3, 3, 2, 2, 1, 1, 1, 1, 16, 1},
    {"3x1 stride 2,1 pad 1,0", 8, 9, 11, 12, 3, 1, 2, 1, 1, 0, 1, 1, 1, 1},
};

static void fail(const char *tag, const char *what)
{
    fprintf(stderr, "FAIL: %s: %s: %s\n", tag, what, dp_error_message());
    failures++;
}

static void check(const char *tag, const char *what, const float *got, const float *ref, size_t n,
                  double tol)
{
    size_t at;
    const double e = dt_rel_err(got, ref, n, &at);
    if (!(e <= tol)) {
        fprintf(stderr, "FAIL: %s: %s: error %.3g of the scale > %.3g at %zu (gpu %g, cpu %g)\n",
                tag, what, e, tol, at, (double)got[at], (double)ref[at]);
        failures++;
    }
}

// Host tensors, all float NCHW: inputs (WQ: W as cast_weights rounds it), CPU results (A:
// accumulated over the initial gradients), GPU results.
enum { H_X, H_W, H_WQ, H_B, H_DY, H_DX0, H_DW0, H_DB0 };
enum { H_RY = H_DB0 + 1, H_RDX, H_RDW, H_RDB, H_RDXA, H_RDWA, H_RDBA };
enum { H_GY = H_RDBA + 1, H_GDX, H_GDW, H_GDB, NH };
// Device tensors.
enum { D_X, D_Y, D_DY, D_DX, D_W, D_B, D_DW, D_DB, ND };

typedef struct conv_case {
    const char *tag;
    dp_cuda_ctx *ctx;
    dp_conv_params p;
    dp_cuda_dtype t;
    dp_cuda_layout l;
    int bias;
    size_t n[NH];
    float *h[NH];
    void *d[ND];
    void *ws;
    size_t ws_bytes;
} conv_case;

// Runs forward, backward data and backward filter with accumulate off on plan, into the
// case's device tensors.
static int run_plain(conv_case *c, dp_cuda_conv_plan *plan)
{
    const int nb = c->bias;
    float *w = c->d[D_W], *b = nb ? c->d[D_B] : NULL, *db = nb ? c->d[D_DB] : NULL;
    if (dp_cuda_conv_plan_cast_weights(plan, w) != DP_OK) {
        fail(c->tag, "cast_weights");
        return 0;
    }
    if (dp_cuda_conv_forward(plan, c->d[D_Y], c->d[D_X], w, b, c->ws, c->ws_bytes) != DP_OK) {
        fail(c->tag, "forward");
        return 0;
    }
    if (dp_cuda_conv_backward_data(plan, c->d[D_DX], c->d[D_DY], w, 0, c->ws, c->ws_bytes) !=
        DP_OK) {
        fail(c->tag, "backward data");
        return 0;
    }
    if (dp_cuda_conv_backward_filter(plan, c->d[D_DW], db, c->d[D_DY], c->d[D_X], 0, c->ws,
                                     c->ws_bytes) != DP_OK) {
        fail(c->tag, "backward filter");
        return 0;
    }
    return 1;
}

static void cpu_reference(conv_case *c)
{
    const dp_conv_params *p = &c->p;
    float **h = c->h;
    const size_t wsb = dp_cpu_conv_workspace_bytes(p);
    float *ws = dt_malloc(wsb);
    if (ws == NULL) {
        failures++;
        return;
    }
    memcpy(h[H_RDXA], h[H_DX0], c->n[H_DX0] * sizeof(float));
    memcpy(h[H_RDWA], h[H_DW0], c->n[H_DW0] * sizeof(float));
    memcpy(h[H_RDBA], h[H_DB0], c->n[H_DB0] * sizeof(float));
    float *db = c->bias ? h[H_RDB] : NULL, *dba = c->bias ? h[H_RDBA] : NULL;
    if (dp_cpu_conv_forward(h[H_RY], h[H_X], h[H_WQ], c->bias ? h[H_B] : NULL, p, ws, wsb) !=
            DP_OK ||
        dp_cpu_conv_backward_data(h[H_RDX], h[H_DY], h[H_WQ], p, 0, ws, wsb) != DP_OK ||
        dp_cpu_conv_backward_filter(h[H_RDW], db, h[H_DY], h[H_X], p, 0, ws, wsb) != DP_OK ||
        dp_cpu_conv_backward_data(h[H_RDXA], h[H_DY], h[H_WQ], p, 1, ws, wsb) != DP_OK ||
        dp_cpu_conv_backward_filter(h[H_RDWA], dba, h[H_DY], h[H_X], p, 1, ws, wsb) != DP_OK) {
        fail(c->tag, "CPU reference");
    }
    free(ws);
}

// Downloads the four outputs into the G* host tensors.
static int download_all(conv_case *c)
{
    const dp_conv_params *p = &c->p;
    const int hw = p->H * p->W, ohw = p->out_h * p->out_w;
    return dt_download(c->ctx, c->h[H_GY], c->d[D_Y], p->N, p->K, ohw, c->t, c->l) &&
           dt_download(c->ctx, c->h[H_GDX], c->d[D_DX], p->N, p->C, hw, c->t, c->l) &&
           dt_download(c->ctx, c->h[H_GDW], c->d[D_DW], 1, (int)c->n[H_W], 1, DP_CUDA_F32,
                       DP_CUDA_NCHW) &&
           (!c->bias ||
            dt_download(c->ctx, c->h[H_GDB], c->d[D_DB], 1, p->K, 1, DP_CUDA_F32, DP_CUDA_NCHW));
}

// Raw bytes of y, dx, dw, db one after the other into out (size: raw_bytes).
static size_t raw_bytes(const conv_case *c)
{
    const size_t s = dp_cuda_dtype_size(c->t);
    return (c->n[H_RY] + c->n[H_RDX]) * s + (c->n[H_RDW] + (c->bias ? c->n[H_RDB] : 0)) * 4;
}

static int download_raw(conv_case *c, unsigned char *out)
{
    const size_t s = dp_cuda_dtype_size(c->t);
    const size_t ny = c->n[H_RY] * s, ndx = c->n[H_RDX] * s, ndw = c->n[H_RDW] * 4;
    return dt_download_raw(c->ctx, out, c->d[D_Y], ny) &&
           dt_download_raw(c->ctx, out + ny, c->d[D_DX], ndx) &&
           dt_download_raw(c->ctx, out + ny + ndx, c->d[D_DW], ndw) &&
           (!c->bias || dt_download_raw(c->ctx, out + ny + ndx + ndw, c->d[D_DB], c->n[H_RDB] * 4));
}

// Deterministic contexts: the same plan again, then a fresh plan, give the first run's bits.
static void check_bitwise(conv_case *c, dp_cuda_conv_plan *plan)
{
    const size_t nr = raw_bytes(c);
    unsigned char *first = dt_malloc(nr), *again = dt_malloc(nr);
    dp_cuda_conv_plan *plan2 = NULL;
    if (first == NULL || again == NULL) {
        failures++;
        goto out;
    }
    if (!run_plain(c, plan) || !download_raw(c, first) || !run_plain(c, plan) ||
        !download_raw(c, again)) {
        failures++;
        goto out;
    }
    if (memcmp(first, again, nr) != 0) { // bitwise on purpose
        fprintf(stderr, "FAIL: %s: deterministic plan run twice differs (memcmp)\n", c->tag);
        failures++;
    }
    if (dp_cuda_conv_plan_create(&plan2, c->ctx, &c->p, c->t, c->l) != DP_OK) {
        fail(c->tag, "second plan");
        goto out;
    }
    dp_cuda_conv_plan_info a, b;
    dp_cuda_conv_plan_get_info(plan, &a);
    dp_cuda_conv_plan_get_info(plan2, &b);
    if (a.fwd_algo != b.fwd_algo || a.bwd_data_algo != b.bwd_data_algo ||
        a.bwd_filter_algo != b.bwd_filter_algo || !a.deterministic) {
        fprintf(stderr, "FAIL: %s: deterministic plans chose different algorithms\n", c->tag);
        failures++;
    }
    if (!run_plain(c, plan2) || !download_raw(c, again)) {
        failures++;
        goto out;
    }
    if (memcmp(first, again, nr) != 0) { // bitwise on purpose
        fprintf(stderr, "FAIL: %s: a second deterministic plan gives other bits (memcmp)\n",
                c->tag);
        failures++;
    }
out:
    dp_cuda_conv_plan_destroy(plan2);
    free(first);
    free(again);
}

static void run_gpu(conv_case *c, const dt_config *cfg)
{
    const dp_conv_params *p = &c->p;
    const int hw = p->H * p->W, ohw = p->out_h * p->out_w;
    dp_cuda_conv_plan *plan = NULL;
    if (dp_cuda_conv_plan_create(&plan, c->ctx, p, c->t, c->l) != DP_OK) {
        fail(c->tag, "plan");
        return;
    }
    dp_cuda_conv_plan_info info;
    dp_cuda_conv_plan_get_info(plan, &info);
    c->ws_bytes = dp_cuda_conv_plan_workspace_bytes(plan);
    if (dp_cuda_malloc(c->ctx, &c->ws, c->ws_bytes) != DP_OK) {
        fail(c->tag, "workspace");
        goto out;
    }
    if (!dt_upload(c->ctx, c->d[D_X], c->h[H_X], p->N, p->C, hw, c->t, c->l) ||
        !dt_upload(c->ctx, c->d[D_DY], c->h[H_DY], p->N, p->K, ohw, c->t, c->l) ||
        !dt_upload(c->ctx, c->d[D_W], c->h[H_W], 1, (int)c->n[H_W], 1, DP_CUDA_F32, DP_CUDA_NCHW) ||
        !dt_upload(c->ctx, c->d[D_B], c->h[H_B], 1, p->K, 1, DP_CUDA_F32, DP_CUDA_NCHW)) {
        failures++;
        goto out;
    }
    // accumulate off
    if (!run_plain(c, plan) || !download_all(c)) {
        failures++;
        goto out;
    }
    check(c->tag, "y", c->h[H_GY], c->h[H_RY], c->n[H_RY], cfg->tol);
    check(c->tag, "dx", c->h[H_GDX], c->h[H_RDX], c->n[H_RDX], cfg->tol);
    check(c->tag, "dw", c->h[H_GDW], c->h[H_RDW], c->n[H_RDW], cfg->tol);
    if (c->bias) {
        check(c->tag, "db", c->h[H_GDB], c->h[H_RDB], c->n[H_RDB], cfg->tol);
    }
    // accumulate on, over the initial gradients
    float *db = c->bias ? c->d[D_DB] : NULL;
    if (!dt_upload(c->ctx, c->d[D_DX], c->h[H_DX0], p->N, p->C, hw, c->t, c->l) ||
        !dt_upload(c->ctx, c->d[D_DW], c->h[H_DW0], 1, (int)c->n[H_W], 1, DP_CUDA_F32,
                   DP_CUDA_NCHW) ||
        !dt_upload(c->ctx, c->d[D_DB], c->h[H_DB0], 1, p->K, 1, DP_CUDA_F32, DP_CUDA_NCHW)) {
        failures++;
        goto out;
    }
    if (dp_cuda_conv_backward_data(plan, c->d[D_DX], c->d[D_DY], c->d[D_W], 1, c->ws,
                                   c->ws_bytes) != DP_OK ||
        dp_cuda_conv_backward_filter(plan, c->d[D_DW], db, c->d[D_DY], c->d[D_X], 1, c->ws,
                                     c->ws_bytes) != DP_OK) {
        fail(c->tag, "backward with accumulate");
        goto out;
    }
    if (!download_all(c)) {
        failures++;
        goto out;
    }
    check(c->tag, "dx accumulated", c->h[H_GDX], c->h[H_RDXA], c->n[H_RDX], cfg->tol);
    check(c->tag, "dw accumulated", c->h[H_GDW], c->h[H_RDWA], c->n[H_RDW], cfg->tol);
    if (c->bias) {
        check(c->tag, "db accumulated", c->h[H_GDB], c->h[H_RDBA], c->n[H_RDB], cfg->tol);
    }
    if (cfg->deterministic) {
        check_bitwise(c, plan);
    }
    printf("%s: algos fwd %d (math %d), data %d (math %d), filter %d (math %d), ws %zu B%s\n",
           c->tag, info.fwd_algo, info.fwd_math, info.bwd_data_algo, info.bwd_data_math,
           info.bwd_filter_algo, info.bwd_filter_math, info.workspace_bytes,
           info.weight_copy ? ", weight copy" : "");
out:
    dp_cuda_free(c->ctx, c->ws);
    c->ws = NULL;
    dp_cuda_conv_plan_destroy(plan);
}

static void conv_case_run(dp_cuda_ctx *ctx, const dt_config *cfg, const shape *s, int N,
                          dp_cuda_layout l, uint64_t seed)
{
    char tag[200];
    snprintf(tag, sizeof tag, "conv %s N=%d %s %s", s->name, N, ct_layout_name(l), cfg->name);
    conv_case c = {.tag = tag, .ctx = ctx, .l = l, .bias = s->bias};
    c.t = dp_cuda_precision_dtype(cfg->precision);
    dp_conv_params p = DP_CONV_PARAMS_INIT;
    p.N = N, p.C = s->C, p.H = s->H, p.W = s->W, p.K = s->K, p.R = s->R, p.S = s->S;
    p.stride_h = s->stride_h, p.stride_w = s->stride_w, p.pad_h = s->pad_h, p.pad_w = s->pad_w;
    p.dil_h = s->dil_h, p.dil_w = s->dil_w, p.groups = s->groups;
    if (dp_conv_params_resolve(&p) != DP_OK) {
        fail(tag, "params");
        return;
    }
    c.p = p;
    const size_t nx = (size_t)N * p.C * p.H * p.W, ny = (size_t)N * p.K * p.out_h * p.out_w;
    const size_t nw = (size_t)p.K * (p.C / p.groups) * p.R * p.S, nb = (size_t)p.K;
    const size_t sizes[NH] = {nx, nw, nw, nb, ny, nx, nw, nb, ny, nx,
                              nw, nb, nx, nw, nb, ny, nx, nw, nb};
    const size_t dsize = dp_cuda_dtype_size(c.t);
    const size_t dbytes[ND] = {nx * dsize, ny * dsize, ny * dsize, nx * dsize,
                               nw * 4,     nb * 4,     nw * 4,     nb * 4};
    for (int i = 0; i < NH; i++) {
        c.n[i] = sizes[i];
        if ((c.h[i] = dt_malloc(sizes[i] * sizeof(float))) == NULL) {
            failures++;
            goto out;
        }
    }
    for (int i = 0; i < ND; i++) {
        if (dp_cuda_malloc(ctx, &c.d[i], dbytes[i]) != DP_OK) {
            fail(tag, "device buffer");
            goto out;
        }
    }
    const int inputs[] = {H_X, H_W, H_B, H_DY, H_DX0, H_DW0, H_DB0};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        dt_fill(c.h[inputs[i]], c.n[inputs[i]], &seed, -1.0f, 1.0f);
    }
    dt_quantize(c.h[H_X], nx, c.t);
    dt_quantize(c.h[H_DY], ny, c.t);
    dt_quantize(c.h[H_DX0], nx, c.t);
    memcpy(c.h[H_WQ], c.h[H_W], nw * sizeof(float));
    dt_quantize(c.h[H_WQ], nw, c.t); // what cast_weights makes of W
    cpu_reference(&c);
    run_gpu(&c, cfg);
out:
    for (int i = 0; i < ND; i++) {
        dp_cuda_free(ctx, c.d[i]);
    }
    for (int i = 0; i < NH; i++) {
        free(c.h[i]);
    }
}

// Argument errors: the status and a message, nothing enqueued.
static void check_errors(dp_cuda_ctx *ctx)
{
    dp_conv_params p = DP_CONV_PARAMS_INIT;
    p.N = 2, p.C = 16, p.H = 8, p.W = 8, p.K = 8, p.R = 3, p.S = 3, p.pad_h = 1, p.pad_w = 1;
    dp_cuda_conv_plan *plan = NULL;
    dp_conv_params bad = p;
    bad.groups = 3; // divides neither C nor K
    if (dp_cuda_conv_plan_create(&plan, ctx, &bad, DP_CUDA_F32, DP_CUDA_NCHW) != DP_ERR_SHAPE ||
        plan != NULL) {
        fprintf(stderr, "FAIL: groups 3 of 16 channels: want DP_ERR_SHAPE and no plan\n");
        failures++;
    }
    if (dp_cuda_conv_plan_create(NULL, ctx, &p, DP_CUDA_F32, DP_CUDA_NCHW) != DP_ERR_ARG) {
        fprintf(stderr, "FAIL: NULL out: want DP_ERR_ARG\n");
        failures++;
    }
    if (dp_cuda_conv_plan_create(&plan, ctx, &p, DP_CUDA_F32, DP_CUDA_NCHW) != DP_OK) {
        fail("errors", "plan");
        return;
    }
    const size_t need = dp_cuda_conv_plan_workspace_bytes(plan);
    void *ws = NULL, *x = NULL, *y = NULL, *w = NULL;
    if (dp_cuda_malloc(ctx, &ws, need + 512) != DP_OK ||
        dp_cuda_malloc(ctx, &x, 2 * 16 * 64 * 4) != DP_OK ||
        dp_cuda_malloc(ctx, &y, 2 * 8 * 64 * 4) != DP_OK ||
        dp_cuda_malloc(ctx, &w, 8 * 16 * 9 * 4) != DP_OK) {
        fail("errors", "buffers");
        goto out;
    }
    if (dp_cuda_conv_forward(plan, y, x, w, NULL, ws, need - 1) != DP_ERR_ARG) {
        fprintf(stderr, "FAIL: workspace one byte short: want DP_ERR_ARG\n");
        failures++;
    }
    if (dp_cuda_conv_forward(plan, y, x, w, NULL, (char *)ws + 16, need) != DP_ERR_ARG) {
        fprintf(stderr, "FAIL: misaligned workspace: want DP_ERR_ARG\n");
        failures++;
    }
    if (dp_cuda_conv_backward_filter(plan, NULL, NULL, y, x, 0, ws, need) != DP_ERR_ARG) {
        fprintf(stderr, "FAIL: NULL dw: want DP_ERR_ARG\n");
        failures++;
    }
    if (strstr(dp_error_message(), "dw") == NULL) {
        fprintf(stderr, "FAIL: the message names the argument: %s\n", dp_error_message());
        failures++;
    }
out:
    dp_cuda_free(ctx, ws);
    dp_cuda_free(ctx, x);
    dp_cuda_free(ctx, y);
    dp_cuda_free(ctx, w);
    dp_cuda_conv_plan_destroy(plan);
}

int main(void)
{
    ct_skip_without_gpu();
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    const int batches[] = {1, 5};
    const dp_cuda_layout layouts[] = {DP_CUDA_NCHW, DP_CUDA_NHWC};
    int cases = 0;
    for (int ci = 0; ci < dt_n_configs; ci++) {
        dp_cuda_ctx *ctx = dt_ctx_create(&dt_configs[ci]);
        if (ctx == NULL) {
            failures++;
            continue;
        }
        if (ci == 0) {
            check_errors(ctx);
        }
        for (int si = 0; si < n_shapes; si++) {
            for (int bi = 0; bi < 2; bi++) {
                for (int li = 0; li < 2; li++) {
                    const uint64_t seed = 1000u * (uint64_t)si + 10u * (uint64_t)bi + (uint64_t)li;
                    conv_case_run(ctx, &dt_configs[ci], &shapes[si], batches[bi], layouts[li],
                                  seed);
                    cases++;
                }
            }
        }
        if (dp_cuda_check(ctx, "end of the convolution cases") != DP_OK) {
            fail(dt_configs[ci].name, "device state");
        }
        dp_cuda_ctx_destroy(ctx);
    }
    printf("%s: %d convolution cases, %d failure(s)\n", failures ? "FAIL" : "PASS", cases,
           failures);
    return failures ? 1 : 0;
}
