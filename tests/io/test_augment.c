// Augmentation: normalization, flip and crop against direct loops in double; the random draws
// are keyed by (seed, epoch, record), stay in range and cover every offset.
#include <criterion/criterion.h>
#include <math.h>
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
                double err = fabs(out[(c * H + y) * W + x] - want);
                worst = err > worst ? err : worst;
            }
        }
    }
    return worst;
}

Test(augment, normalizes_into_chw)
{
    dp_augment_draw none = {0, 0, 0};
    double err = max_error(0, none);
    cr_expect_lt(err, 1e-5, "max error %g", err);
}

Test(augment, flip_mirrors_columns)
{
    dp_augment_draw flip = {0, 0, 1};
    double err = max_error(0, flip);
    cr_expect_lt(err, 1e-5, "max error %g", err);
}

Test(augment, crop_shifts_with_zero_padding)
{
    for (int dy = 0; dy <= 4; dy++) {
        for (int dx = 0; dx <= 4; dx++) {
            for (int f = 0; f < 2; f++) {
                dp_augment_draw d = {dy, dx, f};
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
    dp_augment_apply(out, in, H, W, C, 2, (dp_augment_draw){0, 0, 0}, scale, bias);
    cr_expect_float_eq(out[0], -mean[0] / stdv[0], 1e-6f);
    cr_expect_float_eq(out[2 * W + 2], (200.0f / 255.0f - mean[0]) / stdv[0], 1e-5f);
}

Test(augment, draws_are_keyed_in_range_and_cover_all_offsets)
{
    int seen_dy[5] = {0}, seen_dx[5] = {0}, flips = 0, differ = 0;
    for (int64_t rec = 0; rec < 2000; rec++) {
        dp_augment_draw a = dp_augment_sample(11, 3, rec, 2, 1);
        dp_augment_draw b = dp_augment_sample(11, 3, rec, 2, 1);
        cr_assert(a.dy == b.dy && a.dx == b.dx && a.flipped == b.flipped, "same key, same draw");
        cr_assert(a.dy >= 0 && a.dy <= 4 && a.dx >= 0 && a.dx <= 4, "rec %lld: %d %d",
                  (long long)rec, a.dy, a.dx);
        seen_dy[a.dy]++;
        seen_dx[a.dx]++;
        flips += a.flipped;
        dp_augment_draw other_epoch = dp_augment_sample(11, 4, rec, 2, 1);
        differ += other_epoch.dy != a.dy || other_epoch.dx != a.dx ||
                  other_epoch.flipped != a.flipped;
        // Turning the flip off keeps the crop; no padding means no offset.
        dp_augment_draw no_flip = dp_augment_sample(11, 3, rec, 2, 0);
        cr_expect(no_flip.dy == a.dy && no_flip.dx == a.dx && no_flip.flipped == 0);
        dp_augment_draw no_crop = dp_augment_sample(11, 3, rec, 0, 1);
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
