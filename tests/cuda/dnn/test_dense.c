// GPU check of the cuBLAS dense plans (src/nn/cuda/dnn/dnn.h) against the CPU reference
// (src/nn/cpu/dense.h) on the same random inputs: forward with and without bias, backward
// (dx, dW, db) with accumulate off and on (DP_ACCUM_ALL) and without dx (first layer), for
// small odd shapes and ResNet-50's head (N 256, 2048 -> 1000), in fp32, tf32, bf16 and fp16
// (tolerances in dnn_test.h). In deterministic contexts a second run must give the same bits
// (memcmp). Exits 77 (SKIP) without a usable GPU.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dnn_test.h"
#include "nn/cpu/dense.h"
#include "nn/cuda/dnn/dnn.h"

static int failures;

typedef struct dshape {
    int N, in, out, bias;
} dshape;

static const dshape shapes[] = {
    {1, 37, 19, 1},
    {5, 64, 10, 0},
    {33, 300, 129, 1},
    {256, 2048, 1000, 1},
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
enum { D_X, D_Y, D_DY, D_DX, D_W, D_B, D_DW, D_DB, ND };

typedef struct dense_case {
    const char *tag;
    dp_cuda_ctx *ctx;
    dp_dense_params p;
    dp_cuda_dtype t;
    int bias;
    size_t n[NH];
    float *h[NH];
    void *d[ND];
    void *ws;
    size_t ws_bytes;
} dense_case;

static void cpu_reference(dense_case *c)
{
    float **h = c->h;
    memcpy(h[H_RDXA], h[H_DX0], c->n[H_DX0] * sizeof(float));
    memcpy(h[H_RDWA], h[H_DW0], c->n[H_DW0] * sizeof(float));
    memcpy(h[H_RDBA], h[H_DB0], c->n[H_DB0] * sizeof(float));
    const float *b = c->bias ? h[H_B] : NULL;
    float *db = c->bias ? h[H_RDB] : NULL, *dba = c->bias ? h[H_RDBA] : NULL;
    if (dp_cpu_dense_forward(h[H_RY], h[H_X], h[H_WQ], b, &c->p) != DP_OK ||
        dp_cpu_dense_backward(h[H_RDX], h[H_RDW], db, h[H_DY], h[H_X], h[H_WQ], &c->p,
                              DP_ACCUM_NONE) != DP_OK ||
        dp_cpu_dense_backward(h[H_RDXA], h[H_RDWA], dba, h[H_DY], h[H_X], h[H_WQ], &c->p,
                              DP_ACCUM_ALL) != DP_OK) {
        fail(c->tag, "CPU reference");
    }
}

static int run(dense_case *c, dp_cuda_dense_plan *plan, void *dx, unsigned accum)
{
    float *w = c->d[D_W], *b = c->bias ? c->d[D_B] : NULL, *db = c->bias ? c->d[D_DB] : NULL;
    if (dp_cuda_dense_plan_cast_weights(plan, w) != DP_OK) {
        fail(c->tag, "cast_weights");
        return 0;
    }
    if (dp_cuda_dense_forward(plan, c->d[D_Y], c->d[D_X], w, b, c->ws, c->ws_bytes) != DP_OK) {
        fail(c->tag, "forward");
        return 0;
    }
    if (dp_cuda_dense_backward(plan, dx, c->d[D_DW], db, c->d[D_DY], c->d[D_X], w, accum, c->ws,
                               c->ws_bytes) != DP_OK) {
        fail(c->tag, "backward");
        return 0;
    }
    return 1;
}

static int download(dense_case *c)
{
    const dp_dense_params *p = &c->p;
    return dt_download(c->ctx, c->h[H_GY], c->d[D_Y], p->N, p->out, 1, c->t, DP_CUDA_NCHW) &&
           dt_download(c->ctx, c->h[H_GDX], c->d[D_DX], p->N, p->in, 1, c->t, DP_CUDA_NCHW) &&
           dt_download(c->ctx, c->h[H_GDW], c->d[D_DW], p->out, p->in, 1, DP_CUDA_F32,
                       DP_CUDA_NCHW) &&
           (!c->bias ||
            dt_download(c->ctx, c->h[H_GDB], c->d[D_DB], 1, p->out, 1, DP_CUDA_F32, DP_CUDA_NCHW));
}

static int upload_grads(dense_case *c)
{
    const dp_dense_params *p = &c->p;
    return dt_upload(c->ctx, c->d[D_DX], c->h[H_DX0], p->N, p->in, 1, c->t, DP_CUDA_NCHW) &&
           dt_upload(c->ctx, c->d[D_DW], c->h[H_DW0], p->out, p->in, 1, DP_CUDA_F32,
                     DP_CUDA_NCHW) &&
           dt_upload(c->ctx, c->d[D_DB], c->h[H_DB0], 1, p->out, 1, DP_CUDA_F32, DP_CUDA_NCHW);
}

// Raw bytes of y, dx, dW (and db) after a plain run (bitwise check of deterministic mode).
static int raw_run(dense_case *c, dp_cuda_dense_plan *plan, unsigned char *out)
{
    const size_t s = dp_cuda_dtype_size(c->t);
    const size_t ny = c->n[H_RY] * s, ndx = c->n[H_RDX] * s, ndw = c->n[H_RDW] * 4;
    return run(c, plan, c->d[D_DX], DP_ACCUM_NONE) && dt_download_raw(c->ctx, out, c->d[D_Y], ny) &&
           dt_download_raw(c->ctx, out + ny, c->d[D_DX], ndx) &&
           dt_download_raw(c->ctx, out + ny + ndx, c->d[D_DW], ndw) &&
           (!c->bias || dt_download_raw(c->ctx, out + ny + ndx + ndw, c->d[D_DB], c->n[H_RDB] * 4));
}

static void check_bitwise(dense_case *c, dp_cuda_dense_plan *plan)
{
    const size_t s = dp_cuda_dtype_size(c->t);
    const size_t nr =
        (c->n[H_RY] + c->n[H_RDX]) * s + (c->n[H_RDW] + (c->bias ? c->n[H_RDB] : 0)) * 4;
    unsigned char *a = dt_malloc(nr), *b = dt_malloc(nr);
    if (a == NULL || b == NULL || !raw_run(c, plan, a) || !raw_run(c, plan, b)) {
        failures++;
    } else if (memcmp(a, b, nr) != 0) { // bitwise on purpose
        fprintf(stderr, "FAIL: %s: deterministic dense run twice differs (memcmp)\n", c->tag);
        failures++;
    }
    free(a);
    free(b);
}

static void run_gpu(dense_case *c, const dt_config *cfg)
{
    const dp_dense_params *p = &c->p;
    dp_cuda_dense_plan *plan = NULL;
    if (dp_cuda_dense_plan_create(&plan, c->ctx, p, c->t) != DP_OK) {
        fail(c->tag, "plan");
        return;
    }
    c->ws_bytes = dp_cuda_dense_plan_workspace_bytes(plan);
    if (dp_cuda_malloc(c->ctx, &c->ws, c->ws_bytes) != DP_OK) {
        fail(c->tag, "workspace");
        goto out;
    }
    if (!dt_upload(c->ctx, c->d[D_X], c->h[H_X], p->N, p->in, 1, c->t, DP_CUDA_NCHW) ||
        !dt_upload(c->ctx, c->d[D_DY], c->h[H_DY], p->N, p->out, 1, c->t, DP_CUDA_NCHW) ||
        !dt_upload(c->ctx, c->d[D_W], c->h[H_W], p->out, p->in, 1, DP_CUDA_F32, DP_CUDA_NCHW) ||
        !dt_upload(c->ctx, c->d[D_B], c->h[H_B], 1, p->out, 1, DP_CUDA_F32, DP_CUDA_NCHW)) {
        failures++;
        goto out;
    }
    if (!run(c, plan, c->d[D_DX], DP_ACCUM_NONE) || !download(c)) {
        failures++;
        goto out;
    }
    check(c->tag, "y", c->h[H_GY], c->h[H_RY], c->n[H_RY], cfg->tol);
    check(c->tag, "dx", c->h[H_GDX], c->h[H_RDX], c->n[H_RDX], cfg->tol);
    check(c->tag, "dW", c->h[H_GDW], c->h[H_RDW], c->n[H_RDW], cfg->tol);
    if (c->bias) {
        check(c->tag, "db", c->h[H_GDB], c->h[H_RDB], c->n[H_RDB], cfg->tol);
    }
    if (!upload_grads(c) || !run(c, plan, c->d[D_DX], DP_ACCUM_ALL) || !download(c)) {
        failures++;
        goto out;
    }
    check(c->tag, "dx accumulated", c->h[H_GDX], c->h[H_RDXA], c->n[H_RDX], cfg->tol);
    check(c->tag, "dW accumulated", c->h[H_GDW], c->h[H_RDWA], c->n[H_RDW], cfg->tol);
    if (c->bias) {
        check(c->tag, "db accumulated", c->h[H_GDB], c->h[H_RDBA], c->n[H_RDB], cfg->tol);
    }
    // First layer: no dx; the parameter gradients are unchanged by its absence.
    if (!run(c, plan, NULL, DP_ACCUM_NONE) || !download(c)) {
        failures++;
        goto out;
    }
    check(c->tag, "dW without dx", c->h[H_GDW], c->h[H_RDW], c->n[H_RDW], cfg->tol);
    if (cfg->deterministic) {
        check_bitwise(c, plan);
    }
    printf("%s: ok\n", c->tag);
out:
    dp_cuda_free(c->ctx, c->ws);
    c->ws = NULL;
    dp_cuda_dense_plan_destroy(plan);
}

static void dense_case_run(dp_cuda_ctx *ctx, const dt_config *cfg, const dshape *s, uint64_t seed)
{
    char tag[160];
    snprintf(tag, sizeof tag, "dense N=%d %d->%d%s %s", s->N, s->in, s->out,
             s->bias ? " +bias" : "", cfg->name);
    dense_case c = {.tag = tag, .ctx = ctx, .bias = s->bias};
    c.t = dp_cuda_precision_dtype(cfg->precision);
    c.p = (dp_dense_params){.N = s->N, .in = s->in, .out = s->out};
    const size_t nx = (size_t)s->N * s->in, ny = (size_t)s->N * s->out;
    const size_t nw = (size_t)s->out * s->in, nb = (size_t)s->out;
    const size_t sizes[NH] = {nx, nw, nw, nb, ny, nx, nw, nb, ny, nx,
                              nw, nb, nx, nw, nb, ny, nx, nw, nb};
    const size_t ds = dp_cuda_dtype_size(c.t);
    const size_t dbytes[ND] = {nx * ds, ny * ds, ny * ds, nx * ds, nw * 4, nb * 4, nw * 4, nb * 4};
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
    dt_quantize(c.h[H_WQ], nw, c.t);
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

static void check_errors(dp_cuda_ctx *ctx)
{
    dp_cuda_dense_plan *plan = NULL;
    const dp_dense_params bad = {.N = 4, .in = 0, .out = 3};
    if (dp_cuda_dense_plan_create(&plan, ctx, &bad, DP_CUDA_F32) != DP_ERR_ARG || plan != NULL) {
        fprintf(stderr, "FAIL: in = 0: want DP_ERR_ARG and no plan\n");
        failures++;
    } else if (strstr(dp_error_message(), "in 0") == NULL) {
        fprintf(stderr, "FAIL: the message names the dim: %s\n", dp_error_message());
        failures++;
    }
}

int main(void)
{
    ct_skip_without_gpu();
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
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
            dense_case_run(ctx, &dt_configs[ci], &shapes[si], 7u + 100u * (uint64_t)si);
            cases++;
        }
        if (dp_cuda_check(ctx, "end of the dense cases") != DP_OK) {
            fail(dt_configs[ci].name, "device state");
        }
        dp_cuda_ctx_destroy(ctx);
    }
    printf("%s: %d dense cases, %d failure(s)\n", failures ? "FAIL" : "PASS", cases, failures);
    return failures ? 1 : 0;
}
