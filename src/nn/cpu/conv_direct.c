// Direct convolution kernels for stride 1 and groups 1 on flat padded planes (see
// conv_internal.h), AVX2 + FMA intrinsics. Forward and backward data share one micro-kernel:
// 4 output channels x (8 v) flat positions in 4 v accumulators, one broadcast weight and v
// input vectors per tap. The filter gradient keeps 4 channels x 3 taps in 12 accumulators over
// the positions of a group of images. Without AVX2/FMA (-Dnative=false on an old target) the
// file only reports that nothing is supported, and the driver takes im2col + sgemm.
#include "nn/cpu/conv_internal.h"

#include <string.h>

static size_t round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

int dp__conv_direct_ok(const dp_conv_params *p)
{
    return DP_CONV_DIRECT && p->groups == 1 && p->stride_h == 1 && p->stride_w == 1 &&
           p->pad_h <= p->dil_h * (p->R - 1) && p->pad_w <= p->dil_w * (p->S - 1);
}

// Vectors per tile for n flat positions: 3 (24 positions) unless 2 wastes fewer.
static int pick_vectors(size_t n)
{
    return round_up(n, 16) < round_up(n, 24) ? 2 : 3;
}

void dp__conv_geom_init(dp__conv_geom *g, const dp_conv_params *p)
{
    memset(g, 0, sizeof *g);
    const int OH = p->out_h;
    g->Wp = p->W + p->pad_w;
    g->pad_bh = p->dil_h * (p->R - 1) - p->pad_h;
    g->pad_bw = p->dil_w * (p->S - 1) - p->pad_w;
    g->ntap = p->C * p->R * p->S;
    g->nbtap = p->K * p->R * p->S;
    g->Kp = (int)round_up((size_t)p->K, DP__CONV_MR);
    g->Cp = (int)round_up((size_t)p->C, DP__CONV_MR);
    const size_t Wp = (size_t)g->Wp;
    g->vf = pick_vectors((size_t)OH * Wp);
    g->vb = pick_vectors((size_t)p->H * Wp);
    g->npf = round_up((size_t)OH * Wp, 8 * (size_t)g->vf);
    g->npb = round_up((size_t)p->H * Wp, 8 * (size_t)g->vb);
    g->npw = round_up((size_t)OH * Wp, 8);
    const size_t reach = (size_t)(p->R - 1) * p->dil_h * Wp + (size_t)(p->S - 1) * p->dil_w;
    // Input planes: every position a tile reads, and the values with their padding (the last
    // row's right padding wraps into pad_w more zeros).
    size_t px = g->npf + reach;
    size_t rows_x = (size_t)(p->H + 2 * p->pad_h) * Wp + (size_t)p->pad_w;
    g->plane_x = round_up(px > rows_x ? px : rows_x, 16);
    g->dyf_off = (size_t)g->pad_bh * Wp + (size_t)g->pad_bw;
    size_t pd = g->npb + reach;
    size_t rows_d = (size_t)(OH + 2 * g->pad_bh) * Wp + (size_t)g->pad_bw;
    size_t pw = g->dyf_off + g->npw;
    pd = pd > rows_d ? pd : rows_d;
    g->plane_dy = round_up(pd > pw ? pd : pw, 16);
}

void dp__conv_pad(float *dst, const float *src, int C, int Cp, int H, int W, int pad_h, int pad_w,
                  int Wp, size_t plane)
{
    const size_t top = (size_t)pad_h * Wp + (size_t)pad_w, body = (size_t)H * Wp;
    for (int c = 0; c < C; c++) {
        // Zeros only where no value goes: above, at the left of every row (the right padding
        // of the row before), below. Rows are short, so plain loops (GCC would turn a loop of
        // zeros per row into a memset call, hence the case for the usual pad_w = 1).
        float *d = dst + (size_t)c * plane;
        const float *s = src + (size_t)c * H * W;
        memset(d, 0, top * sizeof(float));
        for (int h = 0; h < H; h++) {
            float *restrict row = d + top + (size_t)h * Wp;
            const float *restrict src_row = s + (size_t)h * W;
            for (int i = 0; i < W; i++) {
                row[i] = src_row[i];
            }
            if (Wp > W) { // the zeros between this row and the next
                if (Wp - W == 1) {
                    row[W] = 0.0f;
                } else {
                    memset(row + W, 0, (size_t)(Wp - W) * sizeof(float));
                }
            }
        }
        memset(d + top + body, 0, (plane - top - body) * sizeof(float));
    }
    if (Cp > C) {
        memset(dst + (size_t)C * plane, 0, (size_t)(Cp - C) * plane * sizeof(float));
    }
}

void dp__conv_pack_forward(float *wf, int *off, const float *w, const dp_conv_params *p,
                           const dp__conv_geom *g)
{
    const int ntap = g->ntap;
    for (int kb = 0; kb < g->Kp; kb += DP__CONV_MR) {
        float *dst = wf + (size_t)kb * ntap;
        for (int t = 0; t < ntap; t++) {
            for (int i = 0; i < DP__CONV_MR; i++) {
                int k = kb + i;
                dst[(size_t)t * DP__CONV_MR + i] = k < p->K ? w[(size_t)k * ntap + t] : 0.0f;
            }
        }
    }
    for (int c = 0, t = 0; c < p->C; c++) {
        for (int r = 0; r < p->R; r++) {
            for (int s = 0; s < p->S; s++, t++) {
                off[t] = (int)((size_t)c * g->plane_x + (size_t)r * p->dil_h * g->Wp +
                               (size_t)s * p->dil_w);
            }
        }
    }
}

void dp__conv_pack_backward(float *wb, int *off, const float *w, const dp_conv_params *p,
                            const dp__conv_geom *g)
{
    const int R = p->R, S = p->S, rs = R * S, nbtap = g->nbtap;
    for (int cb = 0; cb < g->Cp; cb += DP__CONV_MR) {
        float *dst = wb + (size_t)cb * nbtap;
        for (int k = 0, t = 0; k < p->K; k++) {
            for (int r = 0; r < R; r++) {
                for (int s = 0; s < S; s++, t++) {
                    for (int i = 0; i < DP__CONV_MR; i++) {
                        int c = cb + i;
                        size_t src = ((size_t)k * p->C + c) * rs + (size_t)(R - 1 - r) * S +
                                     (size_t)(S - 1 - s);
                        dst[(size_t)t * DP__CONV_MR + i] = c < p->C ? w[src] : 0.0f;
                    }
                }
            }
        }
    }
    for (int k = 0, t = 0; k < p->K; k++) {
        for (int r = 0; r < R; r++) {
            for (int s = 0; s < S; s++, t++) {
                off[t] = (int)((size_t)k * g->plane_dy + (size_t)r * p->dil_h * g->Wp +
                               (size_t)s * p->dil_w);
            }
        }
    }
}

void dp__conv_pack_rows(float *wp, const float *m, int rows, int cols, int transpose)
{
    for (int rb = 0; rb < rows; rb += DP__CONV_MR) {
        float *dst = wp + (size_t)rb * cols;
        for (int c = 0; c < cols; c++) {
            for (int i = 0; i < DP__CONV_MR; i++) {
                int r = rb + i;
                float v = 0.0f;
                if (r < rows) {
                    v = transpose ? m[(size_t)c * rows + r] : m[(size_t)r * cols + c];
                }
                dst[(size_t)c * DP__CONV_MR + i] = v;
            }
        }
    }
}

// Copies the valid outputs of flat rows to y: written (plus bias) or added.
//   flat (Kout, np) with row stride Wp; y (Kout, OHv, OWv)
static void unpad(float *y, const float *flat, size_t np, int Kout, int OHv, int OWv, int Wp,
                  const float *bias, int accumulate)
{
    for (int k = 0; k < Kout; k++) {
        const float b = bias != NULL ? bias[k] : 0.0f;
        for (int oh = 0; oh < OHv; oh++) {
            float *restrict dst = y + ((size_t)k * OHv + (size_t)oh) * OWv;
            const float *restrict src = flat + (size_t)k * np + (size_t)oh * Wp;
            if (accumulate) {
                for (int q = 0; q < OWv; q++) {
                    dst[q] += src[q];
                }
            } else {
                for (int q = 0; q < OWv; q++) {
                    dst[q] = src[q] + b;
                }
            }
        }
    }
}

#if DP_CONV_DIRECT
#include <immintrin.h>

#define DP_INLINE static inline __attribute__((always_inline))
// Keeps a loaded vector in a register: GCC otherwise folds the load into every FMA that uses
// it, which repeats (often cache-line-splitting) loads and makes the kernels load-bound.
#define PIN(v) __asm__("" : "+x"(v))

// One weight broadcast times the input vectors of a tap into one accumulator row.
#define ROW3(a0, a1, a2, wptr)                                                                     \
    do {                                                                                           \
        __m256 b_ = _mm256_broadcast_ss(wptr);                                                     \
        a0 = _mm256_fmadd_ps(b_, x0, a0);                                                          \
        a1 = _mm256_fmadd_ps(b_, x1, a1);                                                          \
        a2 = _mm256_fmadd_ps(b_, x2, a2);                                                          \
    } while (0)
#define ROW2(a0, a1, wptr)                                                                         \
    do {                                                                                           \
        __m256 b_ = _mm256_broadcast_ss(wptr);                                                     \
        a0 = _mm256_fmadd_ps(b_, x0, a0);                                                          \
        a1 = _mm256_fmadd_ps(b_, x1, a1);                                                          \
    } while (0)

// out[i][0, 24) (row stride ld) = sum_t wpack[t][i] in[off[t] + j], for i < 4: 12
// accumulators, 3 input vectors and a broadcast weight in registers (16 in all; named
// variables, since GCC keeps an accumulator array in memory).
static void micro_tile3(float *restrict out, size_t ld, const float *restrict in,
                        const float *restrict wpack, const int *restrict off, int ntap)
{
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
    for (int t = 0; t < ntap; t++) {
        const float *x = in + off[t], *w = wpack + (size_t)t * DP__CONV_MR;
        __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8), x2 = _mm256_loadu_ps(x + 16);
        PIN(x0);
        PIN(x1);
        PIN(x2);
        ROW3(a00, a01, a02, w);
        ROW3(a10, a11, a12, w + 1);
        ROW3(a20, a21, a22, w + 2);
        ROW3(a30, a31, a32, w + 3);
    }
    _mm256_storeu_ps(out, a00);
    _mm256_storeu_ps(out + 8, a01);
    _mm256_storeu_ps(out + 16, a02);
    out += ld;
    _mm256_storeu_ps(out, a10);
    _mm256_storeu_ps(out + 8, a11);
    _mm256_storeu_ps(out + 16, a12);
    out += ld;
    _mm256_storeu_ps(out, a20);
    _mm256_storeu_ps(out + 8, a21);
    _mm256_storeu_ps(out + 16, a22);
    out += ld;
    _mm256_storeu_ps(out, a30);
    _mm256_storeu_ps(out + 8, a31);
    _mm256_storeu_ps(out + 16, a32);
}

// The same for 16 positions (8 accumulators).
static void micro_tile2(float *restrict out, size_t ld, const float *restrict in,
                        const float *restrict wpack, const int *restrict off, int ntap)
{
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
    __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    for (int t = 0; t < ntap; t++) {
        const float *x = in + off[t], *w = wpack + (size_t)t * DP__CONV_MR;
        __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
        PIN(x0);
        PIN(x1);
        ROW2(a00, a01, w);
        ROW2(a10, a11, w + 1);
        ROW2(a20, a21, w + 2);
        ROW2(a30, a31, w + 3);
    }
    _mm256_storeu_ps(out, a00);
    _mm256_storeu_ps(out + 8, a01);
    out += ld;
    _mm256_storeu_ps(out, a10);
    _mm256_storeu_ps(out + 8, a11);
    out += ld;
    _mm256_storeu_ps(out, a20);
    _mm256_storeu_ps(out + 8, a21);
    out += ld;
    _mm256_storeu_ps(out, a30);
    _mm256_storeu_ps(out + 8, a31);
}

void dp__conv_direct_image(float *y, float *flat, const float *in, const float *wpack,
                           const int *off, int ntap, int Kout, int OHv, int OWv, int Wp, size_t np,
                           int v, size_t in_floats, const float *bias, int accumulate)
{
    const size_t width = 8 * (size_t)v;
    const size_t w_bytes = (size_t)Kout * ntap * sizeof(float);
    // Positions outer (the input window stays in L1 across the channel blocks) unless the
    // weights are the larger set and the whole input fits in L1 (small images, many channels).
    const int k_outer = in_floats * sizeof(float) <= 24 * 1024 && w_bytes > 24 * 1024;
    void (*tile)(float *, size_t, const float *, const float *, const int *, int) =
        v == 3 ? micro_tile3 : micro_tile2;
    if (k_outer) {
        for (int kb = 0; kb < Kout; kb += DP__CONV_MR) {
            for (size_t p0 = 0; p0 < np; p0 += width) {
                tile(flat + (size_t)kb * np + p0, np, in + p0, wpack + (size_t)kb * ntap, off,
                     ntap);
            }
        }
    } else {
        for (size_t p0 = 0; p0 < np; p0 += width) {
            for (int kb = 0; kb < Kout; kb += DP__CONV_MR) {
                tile(flat + (size_t)kb * np + p0, np, in + p0, wpack + (size_t)kb * ntap, off,
                     ntap);
            }
        }
    }
    if (y != NULL) {
        unpad(y, flat, np, Kout, OHv, OWv, Wp, bias, accumulate);
    }
}

// --- channel-vectorized kernel for small planes ---

// One input broadcast times the two weight vectors into a pixel's accumulators.
#define PIX(a0, a1, base)                                                                          \
    do {                                                                                           \
        __m256 x_ = _mm256_broadcast_ss((base) + o);                                               \
        a0 = _mm256_fmadd_ps(x_, w0, a0);                                                          \
        a1 = _mm256_fmadd_ps(x_, w1, a1);                                                          \
    } while (0)

// out[i][0, 16) = sum_t wt[t][0, 16) in[pb[i] + off[t]] for 6 pixels i: 12 accumulators, two
// weight vectors and a broadcast input in registers.
static void pixel_tile(float out[6][16], const float *in, const int pb[6], const float *restrict wt,
                       size_t ldw, const int *restrict off, int ntap)
{
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    const float *b0 = in + pb[0], *b1 = in + pb[1], *b2 = in + pb[2];
    const float *b3 = in + pb[3], *b4 = in + pb[4], *b5 = in + pb[5];
    for (int t = 0; t < ntap; t++) {
        const float *w = wt + (size_t)t * ldw;
        __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
        PIN(w0);
        PIN(w1);
        const int o = off[t];
        PIX(a00, a01, b0);
        PIX(a10, a11, b1);
        PIX(a20, a21, b2);
        PIX(a30, a31, b3);
        PIX(a40, a41, b4);
        PIX(a50, a51, b5);
    }
    _mm256_storeu_ps(out[0], a00);
    _mm256_storeu_ps(out[0] + 8, a01);
    _mm256_storeu_ps(out[1], a10);
    _mm256_storeu_ps(out[1] + 8, a11);
    _mm256_storeu_ps(out[2], a20);
    _mm256_storeu_ps(out[2] + 8, a21);
    _mm256_storeu_ps(out[3], a30);
    _mm256_storeu_ps(out[3] + 8, a31);
    _mm256_storeu_ps(out[4], a40);
    _mm256_storeu_ps(out[4] + 8, a41);
    _mm256_storeu_ps(out[5], a50);
    _mm256_storeu_ps(out[5] + 8, a51);
}

void dp__conv_pixels_image(float *y, const float *in, const float *wt, const int *off, int ntap,
                           int Kout, int OHv, int OWv, int Wp, const float *bias, int accumulate)
{
    const int npix = OHv * OWv;
    const size_t plane = (size_t)npix;
    float tile[6][16] __attribute__((aligned(32)));
    for (int kb = 0; kb < Kout; kb += 16) {
        for (int q0 = 0; q0 < npix; q0 += 6) {
            int pb[6], count = npix - q0 < 6 ? npix - q0 : 6;
            for (int i = 0; i < 6; i++) {
                int q = q0 + (i < count ? i : count - 1); // a short tile repeats its last pixel
                pb[i] = (q / OWv) * Wp + q % OWv;
            }
            pixel_tile(tile, in, pb, wt + kb, (size_t)Kout, off, ntap);
            for (int k = 0; k < 16; k++) {
                float *dst = y + (size_t)(kb + k) * plane + q0;
                const float b = bias != NULL ? bias[kb + k] : 0.0f;
                for (int i = 0; i < count; i++) {
                    dst[i] = accumulate ? dst[i] + tile[i][k] : tile[i][k] + b;
                }
            }
        }
    }
}

// The 8 lanes of each of a0..a7 added pairwise: lane i of the result is the sum of ai.
DP_INLINE __m256 hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                       __m256 a7)
{
    __m256 s0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 s1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    __m256 lo = _mm256_permute2f128_ps(s0, s1, 0x20);
    __m256 hi = _mm256_permute2f128_ps(s0, s1, 0x31);
    return _mm256_add_ps(lo, hi);
}

DP_INLINE __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// One dy vector times the three input vectors into a row of accumulators.
#define FILTER_ROW(a0, a1, a2, dptr)                                                               \
    do {                                                                                           \
        __m256 d_ = _mm256_loadu_ps(dptr);                                                         \
        PIN(d_);                                                                                   \
        a0 = _mm256_fmadd_ps(d_, u, a0);                                                           \
        a1 = _mm256_fmadd_ps(d_, v, a1);                                                           \
        a2 = _mm256_fmadd_ps(d_, w, a2);                                                           \
    } while (0)

// sums[3 i + j] = sum over images and p of dyf[i][p] x[off_j + p], i < 4 channels, j < 3 taps:
// 12 accumulators, 3 input vectors and one dy vector at a time in registers (16 in all).
static void filter_block(float sums[12], const float *dyf, size_t dy_stride, const float *xpad,
                         size_t x_stride, int images, const int o[3], size_t plane_dy, size_t npw)
{
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
    for (int img = 0; img < images; img++) {
        const float *d0 = dyf + (size_t)img * dy_stride, *d1 = d0 + plane_dy;
        const float *d2 = d1 + plane_dy, *d3 = d2 + plane_dy;
        const float *x = xpad + (size_t)img * x_stride;
        const float *x0 = x + o[0], *x1 = x + o[1], *x2 = x + o[2];
        for (size_t p = 0; p < npw; p += 8) {
            __m256 u = _mm256_loadu_ps(x0 + p), v = _mm256_loadu_ps(x1 + p);
            __m256 w = _mm256_loadu_ps(x2 + p);
            PIN(u);
            PIN(v);
            PIN(w);
            FILTER_ROW(a00, a01, a02, d0 + p);
            FILTER_ROW(a10, a11, a12, d1 + p);
            FILTER_ROW(a20, a21, a22, d2 + p);
            FILTER_ROW(a30, a31, a32, d3 + p);
        }
    }
    _mm256_storeu_ps(sums, hsum8(a00, a01, a02, a10, a11, a12, a20, a21));
    _mm_storeu_ps(sums + 8, hsum4(a22, a30, a31, a32));
}

void dp__conv_direct_filter(float *dw, int accumulate, const float *dyf, size_t dy_stride,
                            const float *xpad, size_t x_stride, int images, const int *off,
                            int ntap, int K, size_t plane_dy, size_t npw)
{
    for (int kb = 0; kb < K; kb += 4) {
        const float *d = dyf + (size_t)kb * plane_dy;
        for (int t0 = 0; t0 < ntap; t0 += 3) {
            int nt = ntap - t0 < 3 ? ntap - t0 : 3;
            int o[3] = {off[t0], off[t0 + (nt > 1)], off[t0 + 2 * (nt > 2)]};
            float sums[12];
            filter_block(sums, d, dy_stride, xpad, x_stride, images, o, plane_dy, npw);
            for (int i = 0; i < 4 && kb + i < K; i++) {
                float *dst = dw + (size_t)(kb + i) * ntap + t0;
                for (int j = 0; j < nt; j++) {
                    dst[j] = accumulate ? dst[j] + sums[i * 3 + j] : sums[i * 3 + j];
                }
            }
        }
    }
}

#else // no AVX2/FMA: dp__conv_direct_ok is 0 and these are never called

void dp__conv_pixels_image(float *y, const float *in, const float *wt, const int *off, int ntap,
                           int Kout, int OHv, int OWv, int Wp, const float *bias, int accumulate)
{
    (void)y, (void)in, (void)wt, (void)off, (void)ntap, (void)Kout, (void)OHv, (void)OWv;
    (void)Wp, (void)bias, (void)accumulate;
}

void dp__conv_direct_image(float *y, float *flat, const float *in, const float *wpack,
                           const int *off, int ntap, int Kout, int OHv, int OWv, int Wp, size_t np,
                           int v, size_t in_floats, const float *bias, int accumulate)
{
    (void)y, (void)flat, (void)in, (void)wpack, (void)off, (void)ntap, (void)Kout, (void)OHv;
    (void)OWv, (void)Wp, (void)np, (void)v, (void)in_floats, (void)bias, (void)accumulate;
    (void)unpad;
}

void dp__conv_direct_filter(float *dw, int accumulate, const float *dyf, size_t dy_stride,
                            const float *xpad, size_t x_stride, int images, const int *off,
                            int ntap, int K, size_t plane_dy, size_t npw)
{
    (void)dw, (void)accumulate, (void)dyf, (void)dy_stride, (void)xpad, (void)x_stride;
    (void)images, (void)off, (void)ntap, (void)K, (void)plane_dy, (void)npw;
}

#endif
