// Convolution of a whole batch on the thread pool (see conv.h, "batch kernels"): the forward
// pass is one task per image; the backward pass is one task per chunk of images, each chunk
// writing its own partial filter gradient, and the partials are added in chunk order at the
// end. The chunks depend on N and the weight count only, so the results are the same for any
// thread count and any schedule. Stride-1, groups-1 convolutions take the direct kernels
// (conv_direct.c); other groups-1 convolutions feed im2col columns to the same micro-kernels;
// grouped ones run the per-image im2col + sgemm of conv.c with 1-image params.
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "nn/cpu/accum.h"
#include "nn/cpu/bn_act.h"
#include "nn/cpu/conv.h"
#include "nn/cpu/conv_internal.h"
#include "nn/cpu/cpu_internal.h"

enum {
    MAX_CHUNKS = 16,           // partial filter gradients per backward pass
    MIN_GROUP_POSITIONS = 512, // flat positions per filter-gradient pass (groups small images)
    REDUCE_BLOCK = 4096,       // weights per task of the final sum
};
#define PARTIAL_FLOATS_MAX ((size_t)1 << 22) // cap of all partials together (16 MiB)

// How the images are convolved: direct kernels on flat padded planes (stride 1, groups 1);
// the same on phase planes (strides > 1, groups 1; conv_phase.c); im2col into columns, then
// the same micro-kernels with the columns as their "planes" (stride 1 with more padding than
// the window); or conv.c's per-image im2col + sgemm (groups, depthwise, and builds without
// AVX2/FMA).
typedef enum mode { MODE_DIRECT, MODE_PHASE, MODE_COLS, MODE_REF } mode;

// Where everything lives in the workspace: a shared part, then one slice per thread.
typedef struct plan {
    mode mode;
    dp__conv_geom g;        // MODE_DIRECT
    dp__conv_phases ph;     // MODE_PHASE
    size_t start_at, db_at; // MODE_PHASE: phase tap ranges (shared), padded dy (per thread)
    int pix_f, pix_b;       // MODE_DIRECT: forward / backward data by the channel-vectorized kernel
    size_t wtf_at, wtb_at;  // its weights: (C R S, K) and (K R S, C)
    dp_conv_params p1;      // p with N = 1 (the per-image kernels of conv.c)
    int chunks, group;
    size_t nw;                                      // weights
    size_t wf_at, wb_at, offf_at, offb_at, part_at; // shared, bytes from ws
    size_t slice_at, slice_bytes;                   // per-thread slices
    size_t x_at, dy_at, dz_at, flat_at, col_bytes;  // within a slice
    // MODE_COLS: columns of crs = C R S rows of ld floats (ld = np: out_h out_w rounded up to
    // the tile), dy as Kp rows of ld, the micro-tile width v
    int crs, crs_p, Kp, v;
    size_t ohw, ld;
    size_t total_bytes;
} plan;

static size_t take(size_t *at, size_t bytes)
{
    size_t here = *at;
    *at += (bytes + 63) / 64 * 64;
    return here;
}

static size_t round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

// Weights for the channel-vectorized kernel: wtf[t][k] = w[k][t] (forward) and
// wtb[(k R + r) S + s][c] = w[k][c][R-1-r][S-1-s] (backward data).
static void pack_pixels(const plan *pl, void *ws, const float *w, int forward, int backward);

// Images padded together for the filter gradient: up to 8, as many as make MIN_GROUP_POSITIONS
// positions, no more than the smallest chunk, and (columns) within about 256 KiB per thread.
static int pick_group(const plan *pl, int N, size_t positions, size_t floats_per_image)
{
    int min_chunk = N / pl->chunks, group = 1;
    while (group < 8 && group * 2 <= min_chunk && (size_t)group * positions < MIN_GROUP_POSITIONS &&
           (floats_per_image == 0 || (size_t)group * 2 * floats_per_image * 4 <= 256 * 1024)) {
        group *= 2;
    }
    return group;
}

// Whether the channel-vectorized kernel wastes clearly fewer lanes than the flat one: npix
// outputs, computed as np flat positions, Kout channels (a multiple of 16 is needed). Per
// useful FMA it runs about as fast as the flat kernel on 28x28 and 14x14 planes and 17 % faster
// on 7x7 (same-process A/B, best of 40 on this Zen 3), so it needs a clear margin.
static int pixels_better(int Kout, size_t npix, size_t np)
{
    return Kout % 16 == 0 && (double)npix / (double)round_up(npix, 6) > 1.12 * npix / np;
}

static void plan_direct(plan *pl, const dp_conv_params *p, size_t *at, size_t *slice)
{
    dp__conv_geom *g = &pl->g;
    dp__conv_geom_init(g, p);
    pl->pix_f = pixels_better(p->K, (size_t)p->out_h * p->out_w, g->npf);
    pl->pix_b = pixels_better(p->C, (size_t)p->H * p->W, g->npb);
    pl->wtf_at = take(at, pl->pix_f ? (size_t)g->ntap * p->K * sizeof(float) : 0);
    pl->wtb_at = take(at, pl->pix_b ? (size_t)g->nbtap * p->C * sizeof(float) : 0);
    pl->wf_at = take(at, (size_t)g->Kp * g->ntap * sizeof(float));
    pl->wb_at = take(at, (size_t)g->Cp * g->nbtap * sizeof(float));
    pl->offf_at = take(at, (size_t)g->ntap * sizeof(int));
    pl->offb_at = take(at, (size_t)g->nbtap * sizeof(int));
    pl->group = pick_group(pl, p->N, (size_t)p->out_h * g->Wp, 0);
    pl->x_at = take(slice, (size_t)pl->group * p->C * g->plane_x * sizeof(float));
    pl->dy_at = take(slice, (size_t)pl->group * g->Kp * g->plane_dy * sizeof(float));
    size_t flat_f = (size_t)g->Kp * g->npf, flat_b = (size_t)g->Cp * g->npb;
    pl->flat_at = take(slice, (flat_f > flat_b ? flat_f : flat_b) * sizeof(float));
}

static void plan_phase(plan *pl, const dp_conv_params *p, size_t *at, size_t *slice)
{
    dp__conv_phases *g = &pl->ph;
    dp__conv_phases_init(g, p);
    pl->wf_at = take(at, (size_t)g->Kp * g->ntap * sizeof(float));
    pl->wb_at = take(at, (size_t)g->Cp * g->nbtap * sizeof(float));
    pl->offf_at = take(at, (size_t)g->ntap * sizeof(int));
    pl->offb_at = take(at, (size_t)g->nbtap * sizeof(int));
    pl->start_at = take(at, ((size_t)g->nph + 1) * sizeof(int));
    pl->group = pick_group(pl, p->N, (size_t)p->out_h * g->Wq, 0);
    pl->x_at = take(slice, (size_t)pl->group * p->C * g->nph * g->plane_x * sizeof(float));
    pl->dy_at = take(slice, (size_t)pl->group * g->Kp * g->plane_dyf * sizeof(float));
    pl->db_at = take(slice, (size_t)p->K * g->plane_db * sizeof(float));
    size_t flat_f = (size_t)g->Kp * g->npf, flat_b = (size_t)g->Cp * g->npb;
    pl->flat_at = take(slice, (flat_f > flat_b ? flat_f : flat_b) * sizeof(float));
}

static void plan_cols(plan *pl, const dp_conv_params *p, size_t *at, size_t *slice)
{
    pl->crs = p->C * p->R * p->S;
    pl->crs_p = (int)round_up((size_t)pl->crs, DP__CONV_MR);
    pl->Kp = (int)round_up((size_t)p->K, DP__CONV_MR);
    pl->ohw = (size_t)p->out_h * p->out_w;
    pl->v = round_up(pl->ohw, 16) < round_up(pl->ohw, 24) ? 2 : 3;
    pl->ld = round_up(pl->ohw, 8 * (size_t)pl->v);
    pl->wf_at = take(at, (size_t)pl->Kp * pl->crs * sizeof(float));
    pl->wb_at = take(at, (size_t)pl->crs_p * p->K * sizeof(float));
    pl->offf_at = take(at, (size_t)pl->crs * sizeof(int));
    pl->offb_at = take(at, (size_t)p->K * sizeof(int));
    size_t per_image = ((size_t)pl->crs + (size_t)pl->Kp) * pl->ld;
    pl->group = pick_group(pl, p->N, pl->ohw, per_image);
    pl->x_at = take(slice, (size_t)pl->group * pl->crs * pl->ld * sizeof(float));
    pl->dy_at = take(slice, (size_t)pl->group * pl->Kp * pl->ld * sizeof(float));
    size_t rows = (size_t)(pl->Kp > pl->crs_p ? pl->Kp : pl->crs_p);
    pl->flat_at = take(slice, rows * pl->ld * sizeof(float));
}

static void plan_init(plan *pl, const dp_conv_params *p, int threads)
{
    memset(pl, 0, sizeof *pl);
    pl->p1 = *p;
    pl->p1.N = 1;
    pl->nw = (size_t)p->K * (size_t)(p->C / p->groups) * p->R * p->S;
    pl->chunks = p->N < MAX_CHUNKS ? p->N : MAX_CHUNKS;
    while (pl->chunks > 1 && (size_t)pl->chunks * pl->nw > PARTIAL_FLOATS_MAX) {
        pl->chunks--;
    }
    pl->mode = dp__conv_direct_ok(p)                ? MODE_DIRECT
               : dp__conv_phases_ok(p)              ? MODE_PHASE
               : (DP_CONV_DIRECT && p->groups == 1) ? MODE_COLS
                                                    : MODE_REF;
    size_t at = 0;
    pl->part_at = take(&at, (size_t)pl->chunks * pl->nw * sizeof(float));
    size_t slice = 0;
    if (pl->mode == MODE_DIRECT) {
        plan_direct(pl, p, &at, &slice);
    } else if (pl->mode == MODE_PHASE) {
        plan_phase(pl, p, &at, &slice);
    } else if (pl->mode == MODE_COLS) {
        plan_cols(pl, p, &at, &slice);
    } else {
        pl->col_bytes = dp_cpu_conv_workspace_bytes(&pl->p1);
        pl->x_at = take(&slice, pl->col_bytes);
    }
    // dz of one image, when the backward pass maps dy (dp_conv_dy_map)
    pl->dz_at = take(&slice, (size_t)p->K * p->out_h * p->out_w * sizeof(float));
    pl->slice_at = at;
    pl->slice_bytes = slice;
    pl->total_bytes = at + (size_t)threads * slice;
}

size_t dp_cpu_conv_pool_workspace_bytes(const dp_conv_params *p, int threads)
{
    plan pl;
    plan_init(&pl, p, threads < 1 ? 1 : threads);
    return pl.total_bytes;
}

// Checks p (resolved), the workspace, and fills the plan.
static dp_status check_pool_call(plan *pl, const dp_conv_params *p, const char *kernel,
                                 dp_threadpool *pool, const void *ws, size_t ws_bytes)
{
    if (p == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: params are NULL", kernel);
    }
    dp_conv_params q = *p;
    DP_TRY(dp_conv_params_resolve(&q));
    if (q.out_h != p->out_h || q.out_w != p->out_w) {
        return dp_error_set(DP_ERR_ARG,
                            "%s: params not resolved (out %dx%d, expected %dx%d); call "
                            "dp_conv_params_resolve",
                            kernel, p->out_h, p->out_w, q.out_h, q.out_w);
    }
    plan_init(pl, p, dp_threadpool_size(pool));
    if (ws_bytes < pl->total_bytes || ws == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: workspace of %zu bytes, needs %zu", kernel,
                            ws == NULL ? (size_t)0 : ws_bytes, pl->total_bytes);
    }
    return DP_OK;
}

static void *at(void *ws, size_t offset)
{
    return (unsigned char *)ws + offset;
}

static void *slice_of(const plan *pl, void *ws, int thread, size_t offset)
{
    return at(ws, pl->slice_at + (size_t)thread * pl->slice_bytes + offset);
}

static void pack_pixels(const plan *pl, void *ws, const float *w, int forward, int backward)
{
    const dp_conv_params *p = &pl->p1;
    const int rs = p->R * p->S, ntap = p->C * rs;
    if (forward && pl->pix_f) {
        float *wt = at(ws, pl->wtf_at);
        for (int k = 0; k < p->K; k++) {
            for (int t = 0; t < ntap; t++) {
                wt[(size_t)t * p->K + k] = w[(size_t)k * ntap + t];
            }
        }
    }
    if (backward && pl->pix_b) {
        float *wt = at(ws, pl->wtb_at);
        for (int k = 0; k < p->K; k++) {
            for (int c = 0; c < p->C; c++) {
                for (int r = 0; r < p->R; r++) {
                    for (int s = 0; s < p->S; s++) {
                        size_t t = ((size_t)k * p->R + (size_t)r) * p->S + (size_t)s;
                        size_t src = ((size_t)k * p->C + c) * rs + (size_t)(p->R - 1 - r) * p->S +
                                     (size_t)(p->S - 1 - s);
                        wt[t * p->C + c] = w[src];
                    }
                }
            }
        }
    }
}

// --- columns (MODE_COLS) ---

// im2col of one image into crs rows of pl->ld floats, the tail of each row zeroed (the filter
// gradient multiplies it by dy's zero tail, so it must be finite).
static void columns(const plan *pl, float *col, const float *x)
{
    dp_cpu_conv_im2col(col, pl->ld, x, pl->p1.C, &pl->p1);
    for (int r = 0; r < pl->crs; r++) {
        memset(col + (size_t)r * pl->ld + pl->ohw, 0, (pl->ld - pl->ohw) * sizeof(float));
    }
}

// dz (K, ohw) of one image into Kp rows of pl->ld floats, zero outside the values.
static void dz_rows(const plan *pl, float *dst, const float *dz)
{
    for (int k = 0; k < pl->Kp; k++) {
        float *row = dst + (size_t)k * pl->ld;
        size_t n = k < pl->p1.K ? pl->ohw : 0;
        if (n > 0) {
            memcpy(row, dz + (size_t)k * pl->ohw, n * sizeof(float));
        }
        memset(row + n, 0, (pl->ld - n) * sizeof(float));
    }
}

static void pack_cols(const plan *pl, void *ws, const float *w, int backward)
{
    dp__conv_pack_rows(at(ws, pl->wf_at), w, pl->p1.K, pl->crs, 0);
    int *off_t = at(ws, pl->offf_at), *off_k = at(ws, pl->offb_at);
    for (int t = 0; t < pl->crs; t++) {
        off_t[t] = (int)((size_t)t * pl->ld);
    }
    if (backward) {
        dp__conv_pack_rows(at(ws, pl->wb_at), w, pl->crs, pl->p1.K, 1);
        for (int k = 0; k < pl->p1.K; k++) {
            off_k[k] = (int)((size_t)k * pl->ld);
        }
    }
}

// --- forward ---

typedef struct fwd_job {
    const plan *pl;
    float *y;
    const float *x, *w, *bias;
    const dp_conv_epilogue *ep;
    void *ws;
} fwd_job;

// The epilogue on image n's output y (K, ohw).
static void epilogue(const dp_conv_epilogue *ep, float *y, long n, int K, size_t ohw)
{
    if (ep == NULL) {
        return;
    }
    if (ep->plane_stats != NULL) {
        dp_cpu_bn_plane_stats(ep->plane_stats + (size_t)n * 2 * K, y, K, ohw);
    }
    if (ep->mean != NULL || ep->act != DP_ACT_LINEAR) {
        dp__bn_act_image(y, y, K, ohw, ep->mean, ep->scale, ep->shift, ep->act, ep->slope);
    }
}

static void fwd_task(void *arg, long n, int thread)
{
    const fwd_job *j = arg;
    const plan *pl = j->pl;
    const dp_conv_params *p = &pl->p1;
    const size_t hw = (size_t)p->H * p->W, ohw = (size_t)p->out_h * p->out_w;
    float *y = j->y + (size_t)n * p->K * ohw;
    const float *x = j->x + (size_t)n * p->C * hw;
    if (pl->mode == MODE_PHASE) {
        const dp__conv_phases *g = &pl->ph;
        float *xph = slice_of(pl, j->ws, thread, pl->x_at);
        dp__conv_pad_phases(xph, x, p, g);
        dp__conv_direct_image(y, slice_of(pl, j->ws, thread, pl->flat_at), xph,
                              at(j->ws, pl->wf_at), at(j->ws, pl->offf_at), g->ntap, p->K, p->out_h,
                              p->out_w, g->Wq, g->npf, g->vf, (size_t)p->C * g->nph * g->plane_x,
                              j->bias, 0);
    } else if (pl->mode == MODE_COLS) {
        float *col = slice_of(pl, j->ws, thread, pl->x_at);
        columns(pl, col, x);
        dp__conv_direct_image(y, slice_of(pl, j->ws, thread, pl->flat_at), col,
                              at(j->ws, pl->wf_at), at(j->ws, pl->offf_at), pl->crs, p->K, p->out_h,
                              p->out_w, p->out_w, pl->ld, pl->v, (size_t)pl->crs * pl->ld, j->bias,
                              0);
    } else if (pl->mode == MODE_DIRECT) {
        const dp__conv_geom *g = &pl->g;
        float *xpad = slice_of(pl, j->ws, thread, pl->x_at);
        dp__conv_pad(xpad, x, p->C, p->C, p->H, p->W, p->pad_h, p->pad_w, g->Wp, g->plane_x);
        if (pl->pix_f) {
            dp__conv_pixels_image(y, xpad, at(j->ws, pl->wtf_at), at(j->ws, pl->offf_at), g->ntap,
                                  p->K, p->out_h, p->out_w, g->Wp, j->bias, 0);
        } else {
            dp__conv_direct_image(y, slice_of(pl, j->ws, thread, pl->flat_at), xpad,
                                  at(j->ws, pl->wf_at), at(j->ws, pl->offf_at), g->ntap, p->K,
                                  p->out_h, p->out_w, g->Wp, g->npf, g->vf,
                                  (size_t)p->C * g->plane_x, j->bias, 0);
        }
    } else {
        dp_status st = dp_cpu_conv_forward(y, x, j->w, j->bias, p, slice_of(pl, j->ws, thread, 0),
                                           pl->col_bytes);
        DP_ASSERT(st == DP_OK);
    }
    epilogue(j->ep, y, n, p->K, ohw);
}

dp_status dp_cpu_conv_forward_pool(float *y, const float *x, const float *w, const float *bias,
                                   const dp_conv_params *p, const dp_conv_epilogue *ep,
                                   dp_threadpool *pool, void *ws, size_t ws_bytes)
{
    plan pl;
    DP_TRY(check_pool_call(&pl, p, "conv forward", pool, ws, ws_bytes));
    DP_CPU_NEED(y, "conv forward");
    DP_CPU_NEED(x, "conv forward");
    DP_CPU_NEED(w, "conv forward");
    if (ep != NULL) {
        if (ep->act < 0 || ep->act >= DP_ACT_COUNT_ || ep->act == DP_ACT_PRELU ||
            (ep->mean != NULL && (ep->scale == NULL || ep->shift == NULL))) {
            return dp_error_set(DP_ERR_ARG,
                                "conv forward: bad epilogue (activation %d, or "
                                "mean without scale and shift)",
                                (int)ep->act);
        }
    }
    if (pl.mode == MODE_DIRECT) {
        dp__conv_pack_forward(at(ws, pl.wf_at), at(ws, pl.offf_at), w, p, &pl.g);
        pack_pixels(&pl, ws, w, 1, 0);
    } else if (pl.mode == MODE_PHASE) {
        dp__conv_phases_pack_forward(at(ws, pl.wf_at), at(ws, pl.offf_at), w, p, &pl.ph);
    } else if (pl.mode == MODE_COLS) {
        pack_cols(&pl, ws, w, 0);
    }
    fwd_job j = {&pl, y, x, w, bias, ep, ws};
    dp_threadpool_for(pool, p->N, fwd_task, &j);
    return DP_OK;
}

// --- backward ---

typedef struct bwd_job {
    const plan *pl;
    float *dx, *dw, *db;
    const float *dy, *x, *w;
    const dp_conv_dy_map *map;
    int accum_dx, accum_dw;
    int N;
    void *ws;
} bwd_job;

// dz of image n: dy itself, or the map of dy into the thread's buffer.
static const float *dz_of(const bwd_job *j, int n, int thread)
{
    const dp_conv_params *p = &j->pl->p1;
    const size_t ohw = (size_t)p->out_h * p->out_w, off = (size_t)n * p->K * ohw;
    if (j->map == NULL) {
        return j->dy + off;
    }
    const dp_conv_dy_map *m = j->map;
    float *dz = slice_of(j->pl, j->ws, thread, j->pl->dz_at);
    for (int k = 0; k < p->K; k++) {
        size_t at = off + (size_t)k * ohw;
        dp__bn_act_dz_plane(dz + (size_t)k * ohw, j->dy + at, m->y != NULL ? m->y + at : NULL,
                            m->z + at, ohw, m->coef + 4 * k, m->act, m->slope, 0);
    }
    return dz;
}

static void chunk_range(const plan *pl, int N, long c, int *a, int *b)
{
    *a = (int)((long)N * c / pl->chunks);
    *b = (int)((long)N * (c + 1) / pl->chunks);
}

// Images [a, b) of a chunk by the direct kernels, in groups of pl->group.
static void bwd_chunk_direct(const bwd_job *j, float *part, int a, int b, int thread)
{
    const plan *pl = j->pl;
    const dp_conv_params *p = &pl->p1;
    const dp__conv_geom *g = &pl->g;
    const size_t hw = (size_t)p->H * p->W;
    const size_t x_stride = (size_t)p->C * g->plane_x, dy_stride = (size_t)g->Kp * g->plane_dy;
    float *xbuf = slice_of(pl, j->ws, thread, pl->x_at);
    float *dybuf = slice_of(pl, j->ws, thread, pl->dy_at);
    for (int n0 = a; n0 < b; n0 += pl->group) {
        int gn = b - n0 < pl->group ? b - n0 : pl->group;
        for (int i = 0; i < gn; i++) {
            const float *x = j->x + (size_t)(n0 + i) * p->C * hw;
            const float *dy = dz_of(j, n0 + i, thread);
            dp__conv_pad(xbuf + i * x_stride, x, p->C, p->C, p->H, p->W, p->pad_h, p->pad_w, g->Wp,
                         g->plane_x);
            dp__conv_pad(dybuf + i * dy_stride, dy, p->K, g->Kp, p->out_h, p->out_w, g->pad_bh,
                         g->pad_bw, g->Wp, g->plane_dy);
        }
        dp__conv_direct_filter(part, n0 != a, dybuf + g->dyf_off, dy_stride, xbuf, x_stride, gn,
                               at(j->ws, pl->offf_at), g->ntap, p->K, g->plane_dy, g->npw);
        for (int i = 0; i < gn && j->dx != NULL && pl->pix_b; i++) {
            dp__conv_pixels_image(j->dx + (size_t)(n0 + i) * p->C * hw, dybuf + i * dy_stride,
                                  at(j->ws, pl->wtb_at), at(j->ws, pl->offb_at), g->nbtap, p->C,
                                  p->H, p->W, g->Wp, NULL, j->accum_dx);
        }
        for (int i = 0; i < gn && j->dx != NULL && !pl->pix_b; i++) {
            float *dx = j->dx + (size_t)(n0 + i) * p->C * hw;
            dp__conv_direct_image(dx, slice_of(pl, j->ws, thread, pl->flat_at),
                                  dybuf + i * dy_stride, at(j->ws, pl->wb_at),
                                  at(j->ws, pl->offb_at), g->nbtap, p->C, p->H, p->W, g->Wp, g->npb,
                                  g->vb, (size_t)p->K * g->plane_dy, NULL, j->accum_dx);
        }
    }
}

// Images [a, b) of a chunk by phases, in groups of pl->group.
static void bwd_chunk_phase(const bwd_job *j, float *part, int a, int b, int thread)
{
    const plan *pl = j->pl;
    const dp_conv_params *p = &pl->p1;
    const dp__conv_phases *g = &pl->ph;
    const size_t hw = (size_t)p->H * p->W;
    const size_t x_stride = (size_t)p->C * g->nph * g->plane_x;
    const size_t dy_stride = (size_t)g->Kp * g->plane_dyf;
    float *xbuf = slice_of(pl, j->ws, thread, pl->x_at);
    float *dybuf = slice_of(pl, j->ws, thread, pl->dy_at);
    float *dyb = slice_of(pl, j->ws, thread, pl->db_at);
    float *flat = slice_of(pl, j->ws, thread, pl->flat_at);
    for (int n0 = a; n0 < b; n0 += pl->group) {
        int gn = b - n0 < pl->group ? b - n0 : pl->group;
        for (int i = 0; i < gn; i++) {
            dp__conv_pad_phases(xbuf + i * x_stride, j->x + (size_t)(n0 + i) * p->C * hw, p, g);
            dp__conv_pad(dybuf + i * dy_stride, dz_of(j, n0 + i, thread), p->K, g->Kp, p->out_h,
                         p->out_w, 0, 0, g->Wq, g->plane_dyf);
        }
        dp__conv_direct_filter(part, n0 != a, dybuf, dy_stride, xbuf, x_stride, gn,
                               at(j->ws, pl->offf_at), g->ntap, p->K, g->plane_dyf, g->npw);
        for (int i = 0; i < gn && j->dx != NULL; i++) {
            // dz again, padded for backward data (the thread's dz buffer may hold another
            // image's by now)
            dp__conv_pad(dyb, dz_of(j, n0 + i, thread), p->K, p->K, p->out_h, p->out_w, g->Mr,
                         g->Ms, g->Wd, g->plane_db);
            dp__conv_phases_backward_image(j->dx + (size_t)(n0 + i) * p->C * hw, flat, dyb,
                                           at(j->ws, pl->wb_at), at(j->ws, pl->offb_at),
                                           at(j->ws, pl->start_at), p, g, j->accum_dx);
        }
    }
}

// Images [a, b) of a chunk through columns, in groups of pl->group.
static void bwd_chunk_cols(const bwd_job *j, float *part, int a, int b, int thread)
{
    const plan *pl = j->pl;
    const dp_conv_params *p = &pl->p1;
    const size_t hw = (size_t)p->H * p->W;
    const size_t col_stride = (size_t)pl->crs * pl->ld, dy_stride = (size_t)pl->Kp * pl->ld;
    float *cols = slice_of(pl, j->ws, thread, pl->x_at);
    float *dys = slice_of(pl, j->ws, thread, pl->dy_at);
    float *flat = slice_of(pl, j->ws, thread, pl->flat_at);
    for (int n0 = a; n0 < b; n0 += pl->group) {
        int gn = b - n0 < pl->group ? b - n0 : pl->group;
        for (int i = 0; i < gn; i++) {
            columns(pl, cols + i * col_stride, j->x + (size_t)(n0 + i) * p->C * hw);
            dz_rows(pl, dys + i * dy_stride, dz_of(j, n0 + i, thread));
        }
        dp__conv_direct_filter(part, n0 != a, dys, dy_stride, cols, col_stride, gn,
                               at(j->ws, pl->offf_at), pl->crs, p->K, pl->ld, round_up(pl->ohw, 8));
        for (int i = 0; i < gn && j->dx != NULL; i++) {
            // dcol = w^T dz (crs rows of ld in flat), then folded back onto dx
            dp__conv_direct_image(NULL, flat, dys + i * dy_stride, at(j->ws, pl->wb_at),
                                  at(j->ws, pl->offb_at), p->K, pl->crs, 1, 1, 1, pl->ld, pl->v,
                                  dy_stride, NULL, 0);
            float *dx = j->dx + (size_t)(n0 + i) * p->C * hw;
            if (!j->accum_dx) {
                memset(dx, 0, (size_t)p->C * hw * sizeof(float));
            }
            dp_cpu_conv_col2im(dx, flat, pl->ld, p->C, p);
        }
    }
}

static void bwd_task(void *arg, long c, int thread)
{
    const bwd_job *j = arg;
    const plan *pl = j->pl;
    const dp_conv_params *p = &pl->p1;
    float *part = (float *)at(j->ws, pl->part_at) + (size_t)c * pl->nw;
    int a, b;
    chunk_range(pl, j->N, c, &a, &b);
    if (pl->mode == MODE_DIRECT) {
        bwd_chunk_direct(j, part, a, b, thread);
        return;
    }
    if (pl->mode == MODE_PHASE) {
        bwd_chunk_phase(j, part, a, b, thread);
        return;
    }
    if (pl->mode == MODE_COLS) {
        bwd_chunk_cols(j, part, a, b, thread);
        return;
    }
    const size_t hw = (size_t)p->H * p->W;
    float *col = slice_of(pl, j->ws, thread, 0);
    for (int n = a; n < b; n++) {
        const float *x = j->x + (size_t)n * p->C * hw, *dy = dz_of(j, n, thread);
        dp_status st =
            dp_cpu_conv_backward_filter(part, NULL, dy, x, p, n != a, col, pl->col_bytes);
        DP_ASSERT(st == DP_OK);
        if (j->dx != NULL) {
            st = dp_cpu_conv_backward_data(j->dx + (size_t)n * p->C * hw, dy, j->w, p, j->accum_dx,
                                           col, pl->col_bytes);
            DP_ASSERT(st == DP_OK);
        }
    }
}

// dw = (accumulate ? dw : 0) + the chunk partials in chunk order, in double.
static void reduce_task(void *arg, long blk, int thread)
{
    (void)thread;
    const bwd_job *j = arg;
    const plan *pl = j->pl;
    const float *part = at(j->ws, pl->part_at);
    size_t lo = (size_t)blk * REDUCE_BLOCK;
    size_t hi = lo + REDUCE_BLOCK < pl->nw ? lo + REDUCE_BLOCK : pl->nw;
    for (size_t i = lo; i < hi; i++) {
        double s = j->accum_dw ? j->dw[i] : 0.0;
        for (int c = 0; c < pl->chunks; c++) {
            s += part[(size_t)c * pl->nw + i];
        }
        j->dw[i] = (float)s;
    }
}

// db[k] (+)= sum of dy over images and the plane: plane sums (reduce.c) added in image order.
static void bias_task(void *arg, long k, int thread)
{
    (void)thread;
    const bwd_job *j = arg;
    const dp_conv_params *p = &j->pl->p1;
    const size_t ohw = (size_t)p->out_h * p->out_w;
    double s = 0.0;
    for (int n = 0; n < j->N; n++) {
        s += dp__sum(j->dy + ((size_t)n * p->K + (size_t)k) * ohw, ohw);
    }
    j->db[k] = j->accum_dw ? (float)(j->db[k] + s) : (float)s;
}

dp_status dp_cpu_conv_backward_pool(float *dx, float *dw, float *db, const float *dy,
                                    const float *x, const float *w, const dp_conv_params *p,
                                    const dp_conv_dy_map *map, unsigned accum, dp_threadpool *pool,
                                    void *ws, size_t ws_bytes)
{
    plan pl;
    DP_TRY(check_pool_call(&pl, p, "conv backward", pool, ws, ws_bytes));
    DP_CPU_NEED(dw, "conv backward");
    DP_CPU_NEED(dy, "conv backward");
    DP_CPU_NEED(x, "conv backward");
    DP_CPU_NEED(w, "conv backward");
    if (map != NULL &&
        (db != NULL || map->z == NULL || map->coef == NULL || !dp_bn_act_fusable(map->act) ||
         (map->act != DP_ACT_LINEAR && map->y == NULL))) {
        return dp_error_set(DP_ERR_ARG,
                            "conv backward: bad dy map (with a bias gradient, NULL "
                            "tensors, or activation %d)",
                            (int)map->act);
    }
    if (pl.mode == MODE_DIRECT) {
        dp__conv_pack_forward(at(ws, pl.wf_at), at(ws, pl.offf_at), w, p, &pl.g);
        if (dx != NULL) {
            dp__conv_pack_backward(at(ws, pl.wb_at), at(ws, pl.offb_at), w, p, &pl.g);
            pack_pixels(&pl, ws, w, 0, 1);
        }
    } else if (pl.mode == MODE_PHASE) {
        dp__conv_phases_pack_forward(at(ws, pl.wf_at), at(ws, pl.offf_at), w, p, &pl.ph);
        if (dx != NULL) {
            dp__conv_phases_pack_backward(at(ws, pl.wb_at), at(ws, pl.offb_at), at(ws, pl.start_at),
                                          w, p, &pl.ph);
        }
    } else if (pl.mode == MODE_COLS) {
        pack_cols(&pl, ws, w, dx != NULL);
    }
    bwd_job j = {&pl,
                 dx,
                 dw,
                 db,
                 dy,
                 x,
                 w,
                 map,
                 (accum & DP_ACCUM_DX) != 0,
                 (accum & DP_ACCUM_DPARAMS) != 0,
                 p->N,
                 ws};
    dp_threadpool_for(pool, pl.chunks, bwd_task, &j);
    dp_threadpool_for(pool, (long)((pl.nw + REDUCE_BLOCK - 1) / REDUCE_BLOCK), reduce_task, &j);
    if (db != NULL) {
        dp_threadpool_for(pool, p->K, bias_task, &j);
    }
    return DP_OK;
}
