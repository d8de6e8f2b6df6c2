// Internals of the CPU convolution shared by conv_direct.c (the AVX2/FMA direct kernels for
// stride 1, groups 1) and conv_pool.c (the batch driver on the thread pool). Not a public
// header.
//
// The direct kernels work on "flat padded" planes: a channel of H x W is stored as rows of
// Wp = W + pad_w floats (pad_w zeros, then the W values), with pad_h zero rows above and below
// and zeros after, so that the right padding of a row is the left padding of the next. Output
// (oh, ow) of a stride-1 convolution is then flat position p = oh * Wp + ow, and tap (r, s)
// reads flat position p + r dil_h Wp + s dil_w of the input plane: one contiguous run for a
// row of outputs, and for a vector of 8 of them. Positions with ow >= out_w are computed and
// thrown away (1 / Wp of the work for 3x3 "same" convolutions).
#ifndef DP_NN_CPU_CONV_INTERNAL_H
#define DP_NN_CPU_CONV_INTERNAL_H

#include <stddef.h>

#include "nn/cpu/conv.h"

#if defined(__AVX2__) && defined(__FMA__)
#define DP_CONV_DIRECT 1
#else
#define DP_CONV_DIRECT 0
#endif

enum { DP__CONV_MR = 4 }; // output channels per micro-tile (weights are packed by 4)

// Shapes of the flat padded planes of one convolution (dp__conv_geom_init).
typedef struct dp__conv_geom {
    int Wp;             // row stride of every plane: W + pad_w (= out_w + pad_bw)
    int pad_bh, pad_bw; // zero padding of dy for backward data: dil (R - 1) - pad
    int ntap;           // forward taps per output channel: C R S
    int nbtap;          // backward-data taps per input channel: K R S
    int Kp, Cp;         // K and C rounded up to DP__CONV_MR
    int vf, vb;         // vectors of 8 positions per micro-tile: forward, backward data
    size_t npf, npb;    // flat positions computed: forward (out_h Wp), backward data (H Wp),
                        // rounded up to the tile width
    size_t npw;         // flat positions of the filter gradient: out_h Wp rounded up to 8
    size_t plane_x;     // floats per padded input plane (a multiple of 16)
    size_t plane_dy;    // floats per padded dy plane (a multiple of 16)
    size_t dyf_off;     // dy(oh, ow) is at dypad plane + dyf_off + oh Wp + ow
} dp__conv_geom;

// Whether the direct kernels handle p: built with AVX2 and FMA, groups 1, stride 1, and
// pad <= dil (window - 1) on both axes (so that backward data is a convolution too).
int dp__conv_direct_ok(const dp_conv_params *p);

// Fills g for p (resolved, dp__conv_direct_ok).
void dp__conv_geom_init(dp__conv_geom *g, const dp_conv_params *p);

// Writes planes [0, C) of one image into the flat padded layout and zeros planes [C, Cp).
//   dst (Cp, plane) floats: rows of Wp, pad_h zero rows first; every float not a value is 0
//   src (C, H, W) NCHW, one image
void dp__conv_pad(float *dst, const float *src, int C, int Cp, int H, int W, int pad_h, int pad_w,
                  int Wp, size_t plane);

// Packs weights for the forward kernel: wf[kb][t][i] = w[kb + i][t] for t = (c R + r) S + s,
// 0 for kb + i >= K; and the tap offsets off[t] = c plane_x + r dil_h Wp + s dil_w.
//   wf  (Kp / 4, C R S, 4)
//   off (C R S)
void dp__conv_pack_forward(float *wf, int *off, const float *w, const dp_conv_params *p,
                           const dp__conv_geom *g);

// Packs the flipped, transposed weights of backward data (a convolution of dy padded by
// pad_b): wb[cb][t][i] = w[k][cb + i][R-1-r][S-1-s] for t = (k R + r) S + s; and
// off[t] = k plane_dy + r dil_h Wp + s dil_w.
//   wb  (Cp / 4, K R S, 4)
//   off (K R S)
void dp__conv_pack_backward(float *wb, int *off, const float *w, const dp_conv_params *p,
                            const dp__conv_geom *g);

// Packs a matrix by blocks of 4 rows for the micro-kernels: wp[rb][c][i] = M[rb + i][c], 0 for
// rb + i >= rows, with M = m (rows, cols) row-major, or its transpose when m is (cols, rows).
//   wp (round_up(rows, 4), cols)
void dp__conv_pack_rows(float *wp, const float *m, int rows, int cols, int transpose);

// One image of a direct convolution over flat padded planes:
//   y (Kout, OHv, OWv) NCHW = sum over taps of packed weights x in[off[t] + p], written
//   (accumulate = 0, plus bias[k] when bias is not NULL) or added (accumulate = 1); y NULL:
//   the result stays in flat.
//   flat   scratch of Kp x np floats: the output in flat layout (row k at k np) before it is
//          copied to y
//   in     the padded input planes of the image, in_floats in all
//   wpack  (Kp / 4, ntap, 4) as dp__conv_pack_forward / _backward make
//   np     flat positions to compute (a multiple of 8 v); v in {2, 3}
void dp__conv_direct_image(float *y, float *flat, const float *in, const float *wpack,
                           const int *off, int ntap, int Kout, int OHv, int OWv, int Wp, size_t np,
                           int v, size_t in_floats, const float *bias, int accumulate);

// The same convolution vectorized over output channels instead of positions, for small planes
// (no thrown-away positions): y[k][oh][ow] (+)= sum_t wt[t][k] in[off[t] + oh Wp + ow], six
// output pixels x 16 channels per micro-tile.
//   wt  (ntap, Kout), Kout a multiple of 16: the transpose of the weights as the taps see them
void dp__conv_pixels_image(float *y, const float *in, const float *wt, const int *off, int ntap,
                           int Kout, int OHv, int OWv, int Wp, const float *bias, int accumulate);

// --- strided convolutions by phases (conv_phase.c) ---

// Shapes of the phase planes of a strided convolution (dp__conv_phases_init).
typedef struct dp__conv_phases {
    int nph;                 // stride_h stride_w phases per input channel
    unsigned long long used; // bit ph: some tap reads phase ph (all bits when nph > 64)
    int Hq, Wq;              // rows and row stride of a phase plane: padded H, W over the strides
    int ntap, nbtap;         // C R S, K R S
    int Kp, Cp;              // K, C rounded up to DP__CONV_MR
    int vf, vb;              // micro-tile vectors: forward, backward data
    size_t npf, npw;         // flat positions: forward (out_h Wq, to the tile), filter (to 8)
    size_t plane_x;          // floats per phase plane (C nph planes per image)
    size_t plane_dyf;        // floats per dy plane for the filter gradient: out_h rows of Wq
    int Mr, Ms, Wd;  // backward data: dy padded by Mr rows above, Ms columns left, rows of Wd
    size_t npb;      // flat positions of one phase of dx: Hq Wd, to the tile
    size_t plane_db; // floats per padded dy plane for backward data
} dp__conv_phases;

// Built with AVX2 and FMA, groups 1 and a stride > 1.
int dp__conv_phases_ok(const dp_conv_params *p);
void dp__conv_phases_init(dp__conv_phases *g, const dp_conv_params *p);

// One image (C, H, W) into C nph phase planes of plane_x floats, zero where no value is;
// planes of phases no tap reads are left as they are.
void dp__conv_pad_phases(float *dst, const float *src, const dp_conv_params *p,
                         const dp__conv_phases *g);

// Forward weights (Kp / 4, C R S, 4) and the tap offsets on the phase planes (the filter
// gradient uses the same offsets).
void dp__conv_phases_pack_forward(float *wf, int *off, const float *w, const dp_conv_params *p,
                                  const dp__conv_phases *g);

// Backward-data weights and offsets, phase by phase: the taps of phase ph are
// [start[ph], start[ph + 1]) (start has nph + 1 entries), their weights at wb + Cp start[ph]
// as (Cp / 4, taps, 4), their offsets on the padded dy planes (plane_db floats each).
void dp__conv_phases_pack_backward(float *wb, int *off, int *start, const float *w,
                                   const dp_conv_params *p, const dp__conv_phases *g);

// dx (C, H, W) of one image (+)= conv^T(dy): every phase through the micro-kernels into flat
// (Cp x npb floats), then onto its elements of dx.
//   dyb  K planes of plane_db floats: dy padded (dp__conv_pad with Mr, Ms, Wd)
void dp__conv_phases_backward_image(float *dx, float *flat, const float *dyb, const float *wb,
                                    const int *off, const int *start, const dp_conv_params *p,
                                    const dp__conv_phases *g, int accumulate);

// Filter gradient of a group of images: dw[k][t] = (accumulate ? dw[k][t] : 0) + sum over the
// images i of sum_p dyf_i[k][p] xpad_i[off[t] + p], p in [0, npw).
//   dw   (K, ntap), the layout of the weights (K, C, R, S)
//   dyf  images[i] at dyf + i dy_stride: Kp planes of plane_dy floats, already offset by
//        dyf_off, zero outside the values
//   xpad images[i] at xpad + i x_stride: the padded input planes
// Sums: 8 float lanes over the images and positions, the lanes added pairwise (a fixed tree),
// then added to dw; deterministic.
void dp__conv_direct_filter(float *dw, int accumulate, const float *dyf, size_t dy_stride,
                            const float *xpad, size_t x_stride, int images, const int *off,
                            int ntap, int K, size_t plane_dy, size_t npw);

#endif
