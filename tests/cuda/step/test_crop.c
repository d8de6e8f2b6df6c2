// GPU [crop] windows against the CPU reference: per sample the window and flip drawn as
// src/nn/layer_simple.c's crop_at does (Philox words 0, 1, 2 of (seed; step, first_sample + n,
// layer)), cut with dp_cpu_crop_forward and mirrored; backward through dp_cpu_crop_backward
// (overwrite and accumulate). A crop is a copy, so every storage type must match bit for bit
// (the inputs rounded through the type first; the accumulating backward adds in float once, as
// the CPU does, then rounds), in NCHW and NHWC, in training (with and without flip) and in
// evaluation (centred).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/cpu/elementwise.h"
#include "nn/cuda/step/step_ops.h"
#include "step_test.h"

enum { N = 6, C = 3, H = 9, W = 8, OH = 5, OW = 6, S = C * H * W, OS = C * OH * OW };

// (N, c, h, w) NCHW <-> NHWC for a tensor of h x w.
static void transpose(float *out, const float *in, int h, int w, int to_nhwc)
{
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            for (int p = 0; p < h * w; p++) {
                size_t nchw = ((size_t)n * C + c) * h * w + p, nhwc = ((size_t)n * h * w + p) * C + c;
                if (to_nhwc) {
                    out[nhwc] = in[nchw];
                } else {
                    out[nchw] = in[nhwc];
                }
            }
        }
    }
}

static dp_crop_params window(const dp_crop_random_params *p, int n, int *flip)
{
    dp_crop_params q = {.N = 1, .C = C, .H = H, .W = W, .out_h = OH, .out_w = OW};
    dp_crop_params_center(&q);
    *flip = 0;
    if (p->train) {
        dp_rng r;
        dp_rng_init(&r, p->seed, p->step, p->first_sample + (uint32_t)n, p->layer);
        q.off_h = (int)(dp_rng_u32(&r) % (uint32_t)(H - OH + 1));
        q.off_w = (int)(dp_rng_u32(&r) % (uint32_t)(W - OW + 1));
        *flip = p->flip && (dp_rng_u32(&r) & 1u);
    }
    return q;
}

static void mirror(float *x)
{
    for (int r = 0; r < C * OH; r++) {
        for (int a = 0, b = OW - 1; a < b; a++, b--) {
            float t = x[r * OW + a];
            x[r * OW + a] = x[r * OW + b];
            x[r * OW + b] = t;
        }
    }
}

// The GPU op on NCHW host floats: out (count_out) from in (count_in), acc the previous out.
static void gpu_op(dp_cuda_ctx *ctx, float *out, size_t count_out, const float *in,
                   size_t count_in, const dp_crop_random_params *p, int backward, int accumulate,
                   dp_cuda_layout layout, dp_cuda_dtype dtype)
{
    const size_t es = dp_cuda_dtype_size(dtype);
    int in_h = backward ? OH : H, in_w = backward ? OW : W;
    int out_h = backward ? H : OH, out_w = backward ? W : OW;
    float *tmp = st_alloc((count_in > count_out ? count_in : count_out) * 4);
    void *packed = st_alloc((count_in > count_out ? count_in : count_out) * es);
    if (layout == DP_CUDA_NHWC) {
        transpose(tmp, in, in_h, in_w, 1);
    } else {
        memcpy(tmp, in, count_in * 4);
    }
    st_pack(packed, tmp, count_in, dtype);
    void *d_in = st_dev_from(ctx, packed, count_in * es);
    if (layout == DP_CUDA_NHWC) {
        transpose(tmp, out, out_h, out_w, 1);
    } else {
        memcpy(tmp, out, count_out * 4);
    }
    st_pack(packed, tmp, count_out, dtype);
    void *d_out = st_dev_from(ctx, packed, count_out * es);
    dp_status st = backward
                       ? dp_cuda_crop_random_backward(ctx, d_out, d_in, p, accumulate, layout, dtype)
                       : dp_cuda_crop_random_forward(ctx, d_out, d_in, p, layout, dtype);
    st_ok(st, backward ? "cuda crop backward" : "cuda crop forward");
    st_dev_to(ctx, packed, d_out, count_out * es);
    st_unpack(tmp, packed, count_out, dtype);
    if (layout == DP_CUDA_NHWC) {
        transpose(out, tmp, out_h, out_w, 0);
    } else {
        memcpy(out, tmp, count_out * 4);
    }
    st_dev_free(ctx, d_in);
    st_dev_free(ctx, d_out);
    free(tmp);
    free(packed);
}

static void check_case(dp_cuda_ctx *ctx, int train, int flip, dp_cuda_layout layout,
                       dp_cuda_dtype dtype)
{
    const dp_crop_random_params p = {.N = N,
                                     .C = C,
                                     .H = H,
                                     .W = W,
                                     .out_h = OH,
                                     .out_w = OW,
                                     .train = train,
                                     .flip = flip,
                                     .seed = 0xfeedface12345ull,
                                     .step = 31,
                                     .first_sample = 70,
                                     .layer = 2};
    const size_t nx = (size_t)N * S, ny = (size_t)N * OS;
    float *x = st_alloc(nx * 4), *dy = st_alloc(ny * 4), *dx0 = st_alloc(nx * 4);
    float *ref = st_alloc(nx * 4), *got = st_alloc(nx * 4), *row = st_alloc(OS * 4);
    st_fill_normal(x, nx, 0.0f, 1.0f, 21);
    st_fill_normal(dy, ny, 0.0f, 1.0f, 22);
    st_fill_normal(dx0, nx, 0.0f, 1.0f, 23);
    st_round_through(x, nx, dtype);
    st_round_through(dy, ny, dtype);
    st_round_through(dx0, nx, dtype);
    int flips = 0;
    for (int n = 0; n < N; n++) {
        int f;
        dp_crop_params q = window(&p, n, &f);
        flips += f;
        st_ok(dp_cpu_crop_forward(ref + (size_t)n * OS, x + (size_t)n * S, &q), "cpu crop");
        if (f) {
            mirror(ref + (size_t)n * OS);
        }
    }
    char what[128];
    const char *mode = !train ? "eval" : flip ? "train+flip" : "train";
    const char *lname = layout == DP_CUDA_NHWC ? "nhwc" : "nchw";
    memset(got, 0, ny * 4);
    gpu_op(ctx, got, ny, x, nx, &p, 0, 0, layout, dtype);
    snprintf(what, sizeof what, "crop %s %s %s forward", mode, lname, ct_dtype_name(dtype));
    st_bitwise(what, got, ref, ny);
    if (train && flip) {
        st_check(flips > 0 && flips < N, "%s: %d of %d samples mirrored", what, flips, N);
    }
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        memcpy(ref, dx0, nx * 4);
        for (int n = 0; n < N; n++) {
            int f;
            dp_crop_params q = window(&p, n, &f);
            memcpy(row, dy + (size_t)n * OS, OS * 4);
            if (f) {
                mirror(row);
            }
            st_ok(dp_cpu_crop_backward(ref + (size_t)n * S, row, &q, accumulate), "cpu crop back");
        }
        st_round_through(ref, nx, dtype);
        memcpy(got, dx0, nx * 4);
        gpu_op(ctx, got, nx, dy, ny, &p, 1, accumulate, layout, dtype);
        snprintf(what, sizeof what, "crop %s %s %s backward%s", mode, lname, ct_dtype_name(dtype),
                 accumulate ? " accumulate" : "");
        st_bitwise(what, got, ref, nx);
    }
    free(x);
    free(dy);
    free(dx0);
    free(ref);
    free(got);
    free(row);
}

int main(void)
{
    dp_cuda_ctx *ctx = st_ctx_or_skip();
    const dp_cuda_dtype dtypes[] = {DP_CUDA_F32, DP_CUDA_BF16, DP_CUDA_F16};
    for (int d = 0; d < 3; d++) {
        for (int layout = 0; layout < 2; layout++) {
            check_case(ctx, 0, 0, (dp_cuda_layout)layout, dtypes[d]);
            check_case(ctx, 1, 0, (dp_cuda_layout)layout, dtypes[d]);
            check_case(ctx, 1, 1, (dp_cuda_layout)layout, dtypes[d]);
        }
    }
    dp_crop_random_params bad = {.N = 1, .C = 1, .H = 4, .W = 4, .out_h = 5, .out_w = 2};
    void *d = st_dev_from(ctx, NULL, 64);
    st_check(dp_cuda_crop_random_forward(ctx, d, d, &bad, DP_CUDA_NCHW, DP_CUDA_F32) == DP_ERR_ARG,
             "a window taller than the input is refused");
    st_dev_free(ctx, d);
    return st_finish(ctx, "test_cuda_step_crop");
}
