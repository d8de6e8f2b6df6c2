// Augmentation: normalization, flip, crop and cutout against direct loops in double; the random
// draws are keyed by (seed, epoch, record), stay in range and cover every offset; mixup and
// cutmix against direct loops, their lambda against the Beta distribution's moments, the
// partners a keyed permutation of the global batch.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/augment.h"

enum { H = 4, W = 5, C = 2 };

static const float mean[C] = {0.25f, 0.5f}, stdv[C] = {0.5f, 0.125f};

static uint8_t in_px(int64_t y, int64_t x, int64_t c)
{
    return (uint8_t)(y * 50 + x * 7 + c * 3 + 1);
}

// The reference: normalized value of padded pixel (py, px) (padded coordinates).
static double ref(int64_t py, int64_t px, int64_t c, int pad)
{
    int64_t y = py - pad, x = px - pad;
    double v = (y >= 0 && y < H && x >= 0 && x < W) ? in_px(y, x, c) : 0.0;
    return (v / 255.0 - mean[c]) / stdv[c];
}

// Runs dp_augment_apply with draw d and returns the largest |out - ref| over all outputs.
static double max_error(int pad, dp_augment_draw d)
{
    uint8_t in[H * W * C];
    for (int64_t y = 0; y < H; y++) {
        for (int64_t x = 0; x < W; x++) {
            for (int64_t c = 0; c < C; c++) {
                in[(y * W + x) * C + c] = in_px(y, x, c);
            }
        }
    }
    float scale[C], bias[C], out[C * H * W];
    dp_augment_norm_coeffs(scale, bias, mean, stdv, C);
    dp_augment_apply(out, in, H, W, C, pad, d, scale, bias);
    double worst = 0.0;
    for (int64_t c = 0; c < C; c++) {
        for (int64_t y = 0; y < H; y++) {
            for (int64_t x = 0; x < W; x++) {
                int64_t cx = d.flipped ? W - 1 - x : x; // column of the crop shown at x
                double want = ref(y + d.dy, cx + d.dx, c, pad);
                if (d.cut_size > 0 && y >= d.cut_y && y < d.cut_y + d.cut_size && x >= d.cut_x &&
                    x < d.cut_x + d.cut_size) {
                    want = 0.0; // cutout, after normalization
                }
                double err = fabs(out[(c * H + y) * W + x] - want);
                worst = err > worst ? err : worst;
            }
        }
    }
    return worst;
}

Test(augment, normalizes_into_chw)
{
    dp_augment_draw none = {.flipped = 0};
    double err = max_error(0, none);
    cr_expect_lt(err, 1e-5, "max error %g", err);
}

Test(augment, flip_mirrors_columns)
{
    dp_augment_draw flip = {.flipped = 1};
    double err = max_error(0, flip);
    cr_expect_lt(err, 1e-5, "max error %g", err);
}

Test(augment, crop_shifts_with_zero_padding)
{
    for (int dy = 0; dy <= 4; dy++) {
        for (int dx = 0; dx <= 4; dx++) {
            for (int f = 0; f < 2; f++) {
                dp_augment_draw d = {.dy = dy, .dx = dx, .flipped = f};
                double err = max_error(2, d);
                cr_expect_lt(err, 1e-5, "dy %d dx %d flip %d: max error %g", dy, dx, f, err);
            }
        }
    }
    // A padding pixel becomes -mean/std: at (dy, dx) = (0, 0), output (0, 0) is padding.
    uint8_t in[H * W * C];
    memset(in, 200, sizeof in);
    float scale[C], bias[C], out[C * H * W];
    dp_augment_norm_coeffs(scale, bias, mean, stdv, C);
    dp_augment_apply(out, in, H, W, C, 2, (dp_augment_draw){.flipped = 0}, scale, bias);
    cr_expect_float_eq(out[0], -mean[0] / stdv[0], 1e-6f);
    cr_expect_float_eq(out[2 * W + 2], (200.0f / 255.0f - mean[0]) / stdv[0], 1e-5f);
}

Test(augment, draws_are_keyed_in_range_and_cover_all_offsets)
{
    int seen_dy[5] = {0}, seen_dx[5] = {0}, flips = 0, differ = 0;
    dp_augment_config both = DP_AUGMENT_CONFIG_INIT, no_flip_cfg = both, no_crop_cfg = both;
    both.crop_pad = no_flip_cfg.crop_pad = 2;
    both.flip = no_crop_cfg.flip = 1;
    for (int64_t rec = 0; rec < 2000; rec++) {
        dp_augment_draw a = dp_augment_sample(11, 3, rec, &both, H, W);
        dp_augment_draw b = dp_augment_sample(11, 3, rec, &both, H, W);
        cr_assert(a.dy == b.dy && a.dx == b.dx && a.flipped == b.flipped, "same key, same draw");
        cr_assert(a.dy >= 0 && a.dy <= 4 && a.dx >= 0 && a.dx <= 4, "rec %lld: %d %d",
                  (long long)rec, a.dy, a.dx);
        cr_assert_eq(a.cut_size, 0, "no cutout unless asked");
        seen_dy[a.dy]++;
        seen_dx[a.dx]++;
        flips += a.flipped;
        dp_augment_draw other_epoch = dp_augment_sample(11, 4, rec, &both, H, W);
        differ += other_epoch.dy != a.dy || other_epoch.dx != a.dx ||
                  other_epoch.flipped != a.flipped;
        // Turning the flip off keeps the crop; no padding means no offset.
        dp_augment_draw no_flip = dp_augment_sample(11, 3, rec, &no_flip_cfg, H, W);
        cr_expect(no_flip.dy == a.dy && no_flip.dx == a.dx && no_flip.flipped == 0);
        dp_augment_draw no_crop = dp_augment_sample(11, 3, rec, &no_crop_cfg, H, W);
        cr_expect(no_crop.dy == 0 && no_crop.dx == 0 && no_crop.flipped == a.flipped);
    }
    for (int i = 0; i < 5; i++) {
        // 2000 draws over 5 values: 400 each, sd ~ 18.
        cr_expect(seen_dy[i] > 300 && seen_dy[i] < 500, "dy %d seen %d times", i, seen_dy[i]);
        cr_expect(seen_dx[i] > 300 && seen_dx[i] < 500, "dx %d seen %d times", i, seen_dx[i]);
    }
    cr_expect(flips > 900 && flips < 1100, "%d flips of 2000", flips);
    cr_expect_gt(differ, 1500, "another epoch draws differently (%d of 2000)", differ);
}

Test(augment, cutout_zeroes_the_clipped_square_after_normalization)
{
    // Squares inside, across each border and corner, and larger than the image.
    const int boxes[][3] = {{1, 1, 2}, {-1, 3, 3}, {2, -2, 3}, {3, 4, 2}, {-3, -3, 9}, {0, 0, 1}};
    for (size_t i = 0; i < sizeof boxes / sizeof boxes[0]; i++) {
        for (int f = 0; f < 2; f++) {
            dp_augment_draw d = {.dy = 1, .dx = 3, .flipped = f, .cut_y = boxes[i][0],
                                 .cut_x = boxes[i][1], .cut_size = boxes[i][2]};
            double err = max_error(2, d);
            cr_expect_lt(err, 1e-5, "box %zu flip %d: max error %g", i, f, err);
        }
    }
}

Test(augment, cutout_draws_are_keyed_centered_uniformly_and_leave_crop_and_flip)
{
    enum { TH = 7, TW = 5, SIZE = 4, N = 7000 };
    dp_augment_config plain = DP_AUGMENT_CONFIG_INIT;
    plain.crop_pad = 2;
    plain.flip = 1;
    dp_augment_config cut = plain;
    cut.cutout = SIZE;
    int seen_y[TH] = {0}, seen_x[TW] = {0};
    for (int64_t rec = 0; rec < N; rec++) {
        dp_augment_draw a = dp_augment_sample(5, 1, rec, &plain, TH, TW);
        dp_augment_draw b = dp_augment_sample(5, 1, rec, &cut, TH, TW);
        cr_assert(a.dy == b.dy && a.dx == b.dx && a.flipped == b.flipped,
                  "turning cutout on changed the crop or flip of record %lld", (long long)rec);
        cr_assert_eq(b.cut_size, SIZE);
        int cy = b.cut_y + SIZE / 2, cx = b.cut_x + SIZE / 2; // the square's center
        cr_assert(cy >= 0 && cy < TH && cx >= 0 && cx < TW, "center %d,%d", cy, cx);
        seen_y[cy]++;
        seen_x[cx]++;
        dp_augment_draw again = dp_augment_sample(5, 1, rec, &cut, TH, TW);
        cr_assert(again.cut_y == b.cut_y && again.cut_x == b.cut_x, "same key, same square");
    }
    for (int y = 0; y < TH; y++) {
        cr_expect(abs(seen_y[y] - N / TH) < 150, "center row %d seen %d times", y, seen_y[y]);
    }
    for (int x = 0; x < TW; x++) {
        cr_expect(abs(seen_x[x] - N / TW) < 150, "center column %d seen %d times", x, seen_x[x]);
    }
}

// Mean and variance of lambda over n records, and the counts of each kind.
static void mix_moments(const dp_augment_config *cfg, int n, double *lam_mean, double *lam_var,
                        int counts[3])
{
    double s = 0.0, s2 = 0.0;
    int mixed = 0;
    counts[0] = counts[1] = counts[2] = 0;
    for (int64_t rec = 0; rec < n; rec++) {
        dp_augment_mix m = dp_augment_mix_sample(17, 2, rec, cfg, 8, 8);
        dp_augment_mix again = dp_augment_mix_sample(17, 2, rec, cfg, 8, 8);
        cr_assert_eq(memcmp(&m, &again, sizeof m), 0, "same key, same draw (memcmp)");
        cr_assert(m.lambda >= 0.0f && m.lambda <= 1.0f, "lambda %g", (double)m.lambda);
        counts[m.kind]++;
        if (m.kind == DP_AUGMENT_MIX_NONE) {
            cr_assert_eq(m.lambda, 1.0f);
            continue;
        }
        mixed++;
        s += m.lambda;
        s2 += (double)m.lambda * m.lambda;
    }
    *lam_mean = mixed > 0 ? s / mixed : 0.0;
    *lam_var = mixed > 0 ? s2 / mixed - *lam_mean * *lam_mean : 0.0;
}

Test(augment, mixup_lambda_follows_beta_alpha_alpha)
{
    // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); 20000 draws give the mean to ~0.003.
    const float alphas[] = {0.2f, 1.0f, 4.0f};
    for (size_t i = 0; i < 3; i++) {
        dp_augment_config cfg = DP_AUGMENT_CONFIG_INIT;
        cfg.mixup_alpha = alphas[i];
        double m, var, want_var = 1.0 / (4.0 * (2.0 * alphas[i] + 1.0));
        int counts[3];
        mix_moments(&cfg, 20000, &m, &var, counts);
        cr_expect_eq(counts[DP_AUGMENT_MIX_MIXUP], 20000, "mix_prob 1 mixes every sample");
        cr_expect(fabs(m - 0.5) < 0.015, "alpha %g: mean %g", (double)alphas[i], m);
        cr_expect(fabs(var - want_var) < 0.08 * want_var, "alpha %g: variance %g, want %g",
                  (double)alphas[i], var, want_var);
    }
}

Test(augment, mix_prob_and_the_choice_between_mixup_and_cutmix)
{
    dp_augment_config cfg = DP_AUGMENT_CONFIG_INIT;
    cfg.mixup_alpha = 0.4f;
    cfg.cutmix_alpha = 1.0f;
    cfg.mix_prob = 0.3f;
    double m, var;
    int counts[3];
    mix_moments(&cfg, 10000, &m, &var, counts);
    cr_expect(abs(counts[DP_AUGMENT_MIX_NONE] - 7000) < 200, "%d unmixed of 10000",
              counts[DP_AUGMENT_MIX_NONE]);
    cr_expect(abs(counts[DP_AUGMENT_MIX_MIXUP] - 1500) < 150, "%d mixup",
              counts[DP_AUGMENT_MIX_MIXUP]);
    cr_expect(abs(counts[DP_AUGMENT_MIX_CUTMIX] - 1500) < 150, "%d cutmix",
              counts[DP_AUGMENT_MIX_CUTMIX]);
    cfg.mix_prob = 0.0f;
    mix_moments(&cfg, 1000, &m, &var, counts);
    cr_expect_eq(counts[DP_AUGMENT_MIX_NONE], 1000, "mix_prob 0 mixes nothing");
    cfg = (dp_augment_config)DP_AUGMENT_CONFIG_INIT;
    cr_expect_eq(dp_augment_mixes(&cfg), 0);
    mix_moments(&cfg, 1000, &m, &var, counts);
    cr_expect_eq(counts[DP_AUGMENT_MIX_NONE], 1000, "no alpha mixes nothing");
}

Test(augment, cutmix_box_lies_in_the_image_and_sets_lambda)
{
    dp_augment_config cfg = DP_AUGMENT_CONFIG_INIT;
    cfg.cutmix_alpha = 1.0f;
    int64_t h = 9, w = 6;
    int clipped = 0;
    for (int64_t rec = 0; rec < 5000; rec++) {
        dp_augment_mix m = dp_augment_mix_sample(3, 0, rec, &cfg, h, w);
        cr_assert_eq(m.kind, DP_AUGMENT_MIX_CUTMIX);
        cr_assert(m.y0 >= 0 && m.y0 <= m.y1 && m.y1 <= h && m.x0 >= 0 && m.x0 <= m.x1 &&
                  m.x1 <= w, "box [%d,%d) x [%d,%d)", m.y0, m.y1, m.x0, m.x1);
        double own = 1.0 - (double)(m.y1 - m.y0) * (m.x1 - m.x0) / (double)(h * w);
        cr_assert(fabs(m.lambda - own) < 1e-6, "lambda %g is not the own share %g",
                  (double)m.lambda, own);
        clipped += m.y0 == 0 || m.x0 == 0 || m.y1 == h || m.x1 == w;
    }
    cr_expect_gt(clipped, 500, "boxes near the border are clipped (%d of 5000)", clipped);
}

Test(augment, mix_apply_matches_direct_loops)
{
    enum { MH = 5, MW = 4, MC = 3, MN = MC * MH * MW };
    float own[MN], partner[MN], out[MN];
    for (int i = 0; i < MN; i++) {
        own[i] = (float)i * 0.25f - 3.0f;
        partner[i] = 7.0f - (float)i * 0.5f;
    }
    memcpy(out, own, sizeof out);
    dp_augment_mix_apply(out, partner, MH, MW, MC,
                         (dp_augment_mix){.kind = DP_AUGMENT_MIX_MIXUP, .lambda = 0.3f});
    for (int i = 0; i < MN; i++) {
        double want = 0.3 * own[i] + 0.7 * partner[i];
        cr_expect(fabs(out[i] - want) < 1e-5, "mixup element %d: %g, want %g", i,
                  (double)out[i], want);
    }
    memcpy(out, own, sizeof out);
    dp_augment_mix cm = {.kind = DP_AUGMENT_MIX_CUTMIX, .lambda = 0.7f, .y0 = 1, .y1 = 4,
                         .x0 = 2, .x1 = 4};
    dp_augment_mix_apply(out, partner, MH, MW, MC, cm);
    for (int c = 0; c < MC; c++) {
        for (int y = 0; y < MH; y++) {
            for (int x = 0; x < MW; x++) {
                int i = (c * MH + y) * MW + x;
                int in_box = y >= 1 && y < 4 && x >= 2 && x < 4;
                cr_expect_eq(out[i], in_box ? partner[i] : own[i], "cutmix at c %d y %d x %d",
                             c, y, x);
            }
        }
    }
    memcpy(out, own, sizeof out);
    dp_augment_mix_apply(out, partner, MH, MW, MC,
                         (dp_augment_mix){.kind = DP_AUGMENT_MIX_NONE, .lambda = 1.0f});
    cr_expect_eq(memcmp(out, own, sizeof out), 0, "NONE leaves the sample (memcmp)");
}

Test(augment, partners_are_a_keyed_permutation_of_the_global_batch)
{
    enum { B = 24, T = 3000 };
    int32_t a[B], b[B], other[B];
    int first_partner[B] = {0}, differ = 0;
    for (int64_t t = 0; t < T; t++) {
        dp_augment_mix_partners(a, B, 9, 4, t);
        dp_augment_mix_partners(b, B, 9, 4, t);
        cr_assert_eq(memcmp(a, b, sizeof a), 0, "same key, same partners (memcmp)");
        int seen[B] = {0};
        for (int i = 0; i < B; i++) {
            cr_assert(a[i] >= 0 && a[i] < B && !seen[a[i]], "t %lld: not a permutation",
                      (long long)t);
            seen[a[i]] = 1;
        }
        first_partner[a[0]]++;
        dp_augment_mix_partners(other, B, 9, 5, t);
        differ += memcmp(a, other, sizeof a) != 0;
    }
    for (int i = 0; i < B; i++) {
        cr_expect(abs(first_partner[i] - T / B) < 50, "partner %d of sample 0: %d times", i,
                  first_partner[i]);
    }
    cr_expect_eq(differ, T, "another epoch pairs differently");
}
