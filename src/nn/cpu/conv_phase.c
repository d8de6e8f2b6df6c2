// Strided convolution (groups 1) by phases, for the direct micro-kernels of conv_direct.c (see
// conv_internal.h). The zero-padded input is split into stride_h x stride_w phase planes,
// phase (a, b) holding padded rows a, a + stride_h, ... and columns b, b + stride_w, ...; a tap
// (r, s) then reads one phase plane at a fixed offset, so the forward pass and the filter
// gradient are stride-1 direct convolutions over the phases. Backward data works per phase of
// dx: the taps with r dil_h = a (mod stride_h) and s dil_w = b (mod stride_w) form a stride-1
// correlation of dy padded above and left, whose outputs are scattered to every stride-th
// element of dx.
#include "nn/cpu/conv_internal.h"

#include <string.h>

static size_t round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

static int ceil_div(int a, int b)
{
    return (a + b - 1) / b;
}

int dp__conv_phases_ok(const dp_conv_params *p)
{
    return DP_CONV_DIRECT && p->groups == 1 && (p->stride_h > 1 || p->stride_w > 1);
}

// Vectors per tile for n flat positions: 3 (24 positions) unless 2 wastes fewer.
static int pick_vectors(size_t n)
{
    return round_up(n, 16) < round_up(n, 24) ? 2 : 3;
}

void dp__conv_phases_init(dp__conv_phases *g, const dp_conv_params *p)
{
    memset(g, 0, sizeof *g);
    const int sh = p->stride_h, sw = p->stride_w;
    const int reach_r = (p->R - 1) * p->dil_h, reach_s = (p->S - 1) * p->dil_w;
    g->nph = sh * sw;
    g->Hq = ceil_div(p->H + 2 * p->pad_h, sh);
    g->Wq = ceil_div(p->W + 2 * p->pad_w, sw);
    g->ntap = p->C * p->R * p->S;
    g->nbtap = p->K * p->R * p->S;
    g->Kp = (int)round_up((size_t)p->K, DP__CONV_MR);
    g->Cp = (int)round_up((size_t)p->C, DP__CONV_MR);
    const size_t Wq = (size_t)g->Wq;
    // Forward: outputs at oh Wq + ow; tap (r, s) reads (r dil_h / sh) rows and (s dil_w / sw)
    // columns further on its phase plane.
    g->vf = pick_vectors((size_t)p->out_h * Wq);
    g->npf = round_up((size_t)p->out_h * Wq, 8 * (size_t)g->vf);
    g->npw = round_up((size_t)p->out_h * Wq, 8);
    size_t reach = (size_t)(reach_r / sh) * Wq + (size_t)(reach_s / sw);
    size_t px = g->npf + reach, rows = (size_t)g->Hq * Wq;
    g->plane_x = round_up(px > rows ? px : rows, 16);
    g->plane_dyf = round_up(g->npw, 16);
    // Backward data: dy padded by Mr rows above and Ms columns left, rows of Wd = Ms + Wq, so
    // that phase output (i, j), j < Wq, reads dy (i - m, j - n) without wrapping.
    g->Mr = reach_r / sh;
    g->Ms = reach_s / sw;
    g->Wd = g->Ms + g->Wq;
    const size_t Wd = (size_t)g->Wd;
    g->vb = pick_vectors((size_t)g->Hq * Wd);
    g->npb = round_up((size_t)g->Hq * Wd, 8 * (size_t)g->vb);
    size_t pb = g->npb + (size_t)g->Mr * Wd + (size_t)g->Ms;
    size_t rows_b = (size_t)(g->Mr + p->out_h) * Wd;
    g->plane_db = round_up(pb > rows_b ? pb : rows_b, 16);
    g->used = g->nph > 64 ? ~0ull : 0;
    for (int r = 0; r < p->R && g->nph <= 64; r++) {
        for (int s = 0; s < p->S; s++) {
            int ph = (r * p->dil_h % sh) * sw + s * p->dil_w % sw;
            g->used |= 1ull << ph;
        }
    }
}

void dp__conv_pad_phases(float *dst, const float *src, const dp_conv_params *p,
                         const dp__conv_phases *g)
{
    const int sh = p->stride_h, sw = p->stride_w;
    for (int c = 0; c < p->C; c++) {
        const float *xc = src + (size_t)c * p->H * p->W;
        for (int a = 0; a < sh; a++) {
            for (int b = 0; b < sw; b++) {
                int ph = a * sw + b;
                if (ph < 64 && !(g->used >> ph & 1)) {
                    continue;
                }
                float *plane = dst + ((size_t)c * g->nph + (size_t)ph) * g->plane_x;
                memset(plane, 0, g->plane_x * sizeof(float));
                // padded column sw j + b holds input column sw j + b - pad_w
                int j0 = ceil_div(p->pad_w - b > 0 ? p->pad_w - b : 0, sw);
                for (int i = 0; i < g->Hq; i++) {
                    int u = sh * i + a - p->pad_h;
                    if (u < 0 || u >= p->H) {
                        continue;
                    }
                    const float *row = xc + (size_t)u * p->W;
                    float *out = plane + (size_t)i * g->Wq;
                    for (int j = j0, v = sw * j0 + b - p->pad_w; j < g->Wq && v < p->W;
                         j++, v += sw) {
                        out[j] = row[v];
                    }
                }
            }
        }
    }
}

// The phase of tap (r, s) and its offset on that phase plane.
static void tap_phase(const dp_conv_params *p, const dp__conv_phases *g, int r, int s, int *phase,
                      int *dr, int *ds)
{
    int rr = r * p->dil_h, ss = s * p->dil_w;
    *phase = (rr % p->stride_h) * p->stride_w + ss % p->stride_w;
    *dr = rr / p->stride_h;
    *ds = ss / p->stride_w;
    (void)g;
}

void dp__conv_phases_pack_forward(float *wf, int *off, const float *w, const dp_conv_params *p,
                                  const dp__conv_phases *g)
{
    dp__conv_pack_rows(wf, w, p->K, g->ntap, 0);
    for (int c = 0, t = 0; c < p->C; c++) {
        for (int r = 0; r < p->R; r++) {
            for (int s = 0; s < p->S; s++, t++) {
                int ph, dr, ds;
                tap_phase(p, g, r, s, &ph, &dr, &ds);
                off[t] = (int)(((size_t)c * g->nph + (size_t)ph) * g->plane_x + (size_t)dr * g->Wq +
                               (size_t)ds);
            }
        }
    }
}

void dp__conv_phases_pack_backward(float *wb, int *off, int *start, const float *w,
                                   const dp_conv_params *p, const dp__conv_phases *g)
{
    const int rs = p->R * p->S;
    int t = 0;
    for (int ph = 0; ph < g->nph; ph++) {
        start[ph] = t;
        const int t0 = t;
        for (int k = 0; k < p->K; k++) {
            for (int r = 0; r < p->R; r++) {
                for (int s = 0; s < p->S; s++) {
                    int tph, dr, ds;
                    tap_phase(p, g, r, s, &tph, &dr, &ds);
                    if (tph != ph) {
                        continue;
                    }
                    off[t] = (int)((size_t)k * g->plane_db + (size_t)(g->Mr - dr) * g->Wd +
                                   (size_t)(g->Ms - ds));
                    t++;
                }
            }
        }
        // This phase's weights at wb + Cp t0, by blocks of 4 input channels, taps in the same
        // order as the offsets.
        const int ntap_ph = t - t0;
        float *dst = wb + (size_t)g->Cp * t0;
        for (int cb = 0; cb < g->Cp; cb += DP__CONV_MR) {
            int tt = 0;
            for (int k = 0; k < p->K; k++) {
                for (int r = 0; r < p->R; r++) {
                    for (int s = 0; s < p->S; s++) {
                        int tph, dr, ds;
                        tap_phase(p, g, r, s, &tph, &dr, &ds);
                        if (tph != ph) {
                            continue;
                        }
                        for (int i = 0; i < DP__CONV_MR; i++) {
                            int c = cb + i;
                            dst[((size_t)cb * ntap_ph) + (size_t)tt * DP__CONV_MR + i] =
                                c < p->C ? w[((size_t)k * p->C + c) * rs + (size_t)r * p->S + s]
                                         : 0.0f;
                        }
                        tt++;
                    }
                }
            }
        }
    }
    start[g->nph] = t;
}

void dp__conv_phases_backward_image(float *dx, float *flat, const float *dyb, const float *wb,
                                    const int *off, const int *start, const dp_conv_params *p,
                                    const dp__conv_phases *g, int accumulate)
{
    const size_t hw = (size_t)p->H * p->W;
    if (!accumulate) {
        memset(dx, 0, (size_t)p->C * hw * sizeof(float));
    }
    const int sh = p->stride_h, sw = p->stride_w;
    for (int ph = 0; ph < g->nph; ph++) {
        const int ntap = start[ph + 1] - start[ph];
        if (ntap == 0) {
            continue; // no tap lands on this phase: its elements of dx get nothing
        }
        dp__conv_direct_image(NULL, flat, dyb, wb + (size_t)g->Cp * start[ph], off + start[ph],
                              ntap, p->C, 1, 1, 1, g->npb, g->vb, (size_t)p->K * g->plane_db, NULL,
                              0);
        const int a = ph / sw, b = ph % sw;
        int j0 = ceil_div(p->pad_w - b > 0 ? p->pad_w - b : 0, sw);
        for (int c = 0; c < p->C; c++) {
            const float *fc = flat + (size_t)c * g->npb;
            float *xc = dx + (size_t)c * hw;
            for (int i = 0; i < g->Hq; i++) {
                int u = sh * i + a - p->pad_h;
                if (u < 0 || u >= p->H) {
                    continue;
                }
                const float *src = fc + (size_t)i * g->Wd;
                float *row = xc + (size_t)u * p->W;
                for (int j = j0, v = sw * j0 + b - p->pad_w; j < g->Wq && v < p->W; j++, v += sw) {
                    row[v] += src[j];
                }
            }
        }
    }
}
