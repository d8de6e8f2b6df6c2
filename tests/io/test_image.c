// Image decoding and resizing: PNG round trips exactly (RGB, grey, alpha dropped, BT.601 luma),
// JPEG close to its source, the format taken from the bytes not the name; every failure names
// the file; the resize equals the bilinear (triangle) filter computed directly in double and
// PIL's Image.resize(BILINEAR) within one level.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_test_util.h"
#include "io/image.h"
#include "io_test_util.h"

TestSuite(image, .init = scratch_make, .fini = scratch_remove, .timeout = 60);

// Loads path with channels and checks its size.
static uint8_t *load(const char *path, int channels, int64_t want_h, int64_t want_w)
{
    uint8_t *px = NULL;
    int64_t h = 0, w = 0;
    cr_assert_eq(dp_image_load(&px, &h, &w, path, channels), DP_OK, "%s", dp_error_message());
    cr_assert(h == want_h && w == want_w, "%s: %lldx%lld, want %lldx%lld", path, (long long)h,
              (long long)w, (long long)want_h, (long long)want_w);
    return px;
}

Test(image, png_round_trips_rgb_grey_and_luma)
{
    enum { H = 7, W = 9 };
    uint8_t rgb[H * W * 3], grey[H * W], rgba[H * W * 4];
    pattern_image(rgb, H, W, 3, 1);
    pattern_image(grey, H, W, 1, 2);
    pattern_image(rgba, H, W, 4, 3);
    write_png(scratch_path("rgb.png"), rgb, H, W, 3);
    write_png(scratch_path("grey.png"), grey, H, W, 1);
    write_png(scratch_path("rgba.png"), rgba, H, W, 4);

    uint8_t *px = load(scratch_path("rgb.png"), 3, H, W);
    cr_expect_eq(memcmp(px, rgb, sizeof rgb), 0, "RGB PNG round trip (memcmp)");
    free(px);
    px = load(scratch_path("rgb.png"), 1, H, W);
    for (int i = 0; i < H * W; i++) {
        int luma = (77 * rgb[3 * i] + 150 * rgb[3 * i + 1] + 29 * rgb[3 * i + 2]) >> 8;
        cr_expect_eq(px[i], luma, "pixel %d: grey %d, want BT.601 luma %d", i, px[i], luma);
    }
    free(px);
    px = load(scratch_path("grey.png"), 3, H, W);
    for (int i = 0; i < H * W; i++) {
        cr_expect(px[3 * i] == grey[i] && px[3 * i + 1] == grey[i] && px[3 * i + 2] == grey[i],
                  "grey pixel %d is replicated", i);
    }
    free(px);
    px = load(scratch_path("rgba.png"), 3, H, W);
    for (int i = 0; i < H * W; i++) {
        cr_expect(px[3 * i] == rgba[4 * i] && px[3 * i + 1] == rgba[4 * i + 1] &&
                      px[3 * i + 2] == rgba[4 * i + 2],
                  "RGBA pixel %d: alpha dropped, colour kept", i);
    }
    free(px);
}

Test(image, jpeg_decodes_close_to_its_source_and_format_comes_from_the_bytes)
{
    enum { H = 16, W = 24 };
    uint8_t rgb[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) {
        rgb[i] = (uint8_t)(60 + (i / 3 % W) * 4 + (i / 3 / W) * 3 + (i % 3) * 20); // smooth
    }
    write_jpeg(scratch_path("a.jpg"), rgb, H, W, 3, 100);
    uint8_t *px = load(scratch_path("a.jpg"), 3, H, W);
    int worst = 0;
    for (int i = 0; i < H * W * 3; i++) {
        int d = abs(px[i] - rgb[i]);
        worst = d > worst ? d : worst;
    }
    free(px);
    cr_expect_leq(worst, 8, "quality-100 JPEG differs from its source by %d levels", worst);
    // A PNG named .jpg and a JPEG named .png decode by their content.
    write_png(scratch_path("png.jpg"), rgb, H, W, 3);
    px = load(scratch_path("png.jpg"), 3, H, W);
    cr_expect_eq(memcmp(px, rgb, sizeof rgb), 0);
    free(px);
    write_jpeg(scratch_path("jpeg.png"), rgb, H, W, 3, 90);
    free(load(scratch_path("jpeg.png"), 1, H, W));
}

Test(image, every_failure_names_the_file)
{
    uint8_t *px = (uint8_t *)1;
    int64_t h = -1, w = -1;
    const char *absent = scratch_path("absent.png");
    expect_error(dp_image_load(&px, &h, &w, absent, 3), DP_ERR_IO, absent, "cannot open");
    cr_expect(px == NULL && h == 0 && w == 0);

    const char *text = scratch_path("notes.png");
    write_bytes(text, "class notes\n", 12);
    expect_error(dp_image_load(&px, &h, &w, text, 3), DP_ERR_DATA, text,
                 "not a PNG or JPEG image");
    const char *empty = scratch_path("empty.jpg");
    write_bytes(empty, "", 0);
    expect_error(dp_image_load(&px, &h, &w, empty, 3), DP_ERR_DATA, empty, "not a PNG or JPEG");

    // A PNG cut in the middle of its pixel data, and a JPEG whose data after the header is
    // garbage.
    uint8_t rgb[32 * 32 * 3], file[16384];
    pattern_image(rgb, 32, 32, 3, 5);
    write_png(scratch_path("whole.png"), rgb, 32, 32, 3);
    size_t n = read_bytes(scratch_path("whole.png"), file, sizeof file);
    const char *cut = scratch_path("cut.png");
    write_bytes(cut, file, n / 2);
    expect_error(dp_image_load(&px, &h, &w, cut, 3), DP_ERR_DATA, cut, "cannot decode PNG image");
    cr_expect_null(px);
    const char *bad = scratch_path("bad.jpg");
    const uint8_t soi_then_garbage[] = {0xff, 0xd8, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05};
    write_bytes(bad, soi_then_garbage, sizeof soi_then_garbage);
    expect_error(dp_image_load(&px, &h, &w, bad, 3), DP_ERR_DATA, bad, "cannot decode JPEG");
    expect_error(dp_image_load(&px, &h, &w, scratch_path("whole.png"), 2), DP_ERR_ARG,
                 "2 channels");
}

// --- resize ---

static double triangle(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

// Weight of input i for output o of an axis in -> out (the filter of image.h, in double).
static double weight(int64_t o, int64_t i, int64_t in, int64_t out)
{
    double scale = (double)in / (double)out, fs = scale > 1.0 ? scale : 1.0;
    double center = ((double)o + 0.5) * scale, sum = 0.0;
    for (int64_t k = 0; k < in; k++) {
        if (fabs((double)k + 0.5 - center) < fs) {
            sum += triangle(((double)k + 0.5 - center) / fs);
        }
    }
    return triangle(((double)i + 0.5 - center) / fs) / sum;
}

// The largest |out - exact| over an ih x iw -> oh x ow resize of a pattern, c channels.
static double resize_error(int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t c)
{
    uint8_t *in = malloc((size_t)(ih * iw * c)), *out = malloc((size_t)(oh * ow * c));
    cr_assert(in && out);
    pattern_image(in, (int)ih, (int)iw, (int)c, 4);
    cr_assert_eq(dp_image_resize(out, oh, ow, in, ih, iw, c), DP_OK, "%s", dp_error_message());
    double worst = 0.0;
    for (int64_t y = 0; y < oh; y++) {
        for (int64_t x = 0; x < ow; x++) {
            for (int64_t ch = 0; ch < c; ch++) {
                double v = 0.0;
                for (int64_t sy = 0; sy < ih; sy++) {
                    double wy = weight(y, sy, ih, oh);
                    for (int64_t sx = 0; wy != 0.0 && sx < iw; sx++) {
                        v += wy * weight(x, sx, iw, ow) * in[(sy * iw + sx) * c + ch];
                    }
                }
                double err = fabs(out[(y * ow + x) * c + ch] - v);
                worst = err > worst ? err : worst;
            }
        }
    }
    free(in);
    free(out);
    return worst;
}

Test(image, resize_equals_the_triangle_filter_computed_directly)
{
    // Enlarging, shrinking by whole and odd factors, one axis each way, down to 1 pixel.
    const int64_t cases[][5] = {
        {5, 7, 10, 14, 3}, {8, 8, 4, 4, 1}, {12, 9, 5, 4, 3}, {6, 10, 11, 3, 2},
        {9, 9, 1, 1, 1},   {1, 1, 4, 3, 3}, {13, 7, 13, 5, 1}, {30, 17, 7, 29, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int64_t *k = cases[i];
        double err = resize_error(k[0], k[1], k[2], k[3], k[4]);
        // Rounded to nearest once: within half a level of the exact value (plus float error).
        cr_expect_leq(err, 0.501, "%lldx%lld -> %lldx%lld: max error %g", (long long)k[0],
                      (long long)k[1], (long long)k[2], (long long)k[3], err);
    }
}

Test(image, resize_identity_constants_and_known_bilinear_values)
{
    uint8_t in[6 * 5 * 3], out[12 * 10 * 3];
    pattern_image(in, 6, 5, 3, 9);
    cr_assert_eq(dp_image_resize(out, 6, 5, in, 6, 5, 3), DP_OK);
    cr_expect_eq(memcmp(out, in, sizeof in), 0, "same size copies (memcmp)");
    memset(in, 173, sizeof in);
    const int64_t to[2][2] = {{12, 10}, {4, 3}};
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(dp_image_resize(out, to[k][0], to[k][1], in, 6, 5, 3), DP_OK);
        for (int64_t i = 0; i < to[k][0] * to[k][1] * 3; i++) {
            cr_expect_eq(out[i], 173, "a constant image stays constant (to %lldx%lld)",
                         (long long)to[k][0], (long long)to[k][1]);
        }
    }
    // Enlarging 1x2 -> 1x4 is plain bilinear with half-pixel centres and repeated edges.
    const uint8_t row[2] = {0, 200};
    uint8_t wide[4];
    cr_assert_eq(dp_image_resize(wide, 1, 4, row, 1, 2, 1), DP_OK);
    const uint8_t want[4] = {0, 50, 150, 200};
    cr_expect_eq(memcmp(wide, want, 4), 0, "got %d %d %d %d", wide[0], wide[1], wide[2],
                 wide[3]);
    expect_error(dp_image_resize(wide, 0, 4, row, 1, 2, 1), DP_ERR_ARG, "-> 0x4");
}

Test(image, resize_matches_pil_bilinear_within_one_level)
{
    if (system("/usr/bin/python3 -c 'import PIL' >/dev/null 2>&1") != 0) {
        cr_skip_test("/usr/bin/python3 has no PIL (python3-pil)");
    }
    const int sizes[][4] = {{37, 29, 8, 8}, {20, 30, 47, 61}, {64, 48, 28, 28}, {9, 40, 5, 13}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int ih = sizes[i][0], iw = sizes[i][1], oh = sizes[i][2], ow = sizes[i][3];
        uint8_t *in = malloc((size_t)(ih * iw * 3)), *out = malloc((size_t)(oh * ow * 3));
        cr_assert(in && out);
        pattern_image(in, ih, iw, 3, (int)i);
        write_png(scratch_path("in.png"), in, ih, iw, 3);
        char cmd[2048];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c 'from PIL import Image; "
                 "Image.open(\"%s\").resize((%d, %d), Image.BILINEAR).save(\"%s\")'",
                 scratch_path("in.png"), ow, oh, scratch_path("pil.png"));
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        uint8_t *pil = load(scratch_path("pil.png"), 3, oh, ow);
        cr_assert_eq(dp_image_resize(out, oh, ow, in, ih, iw, 3), DP_OK);
        int worst = 0;
        for (int k = 0; k < oh * ow * 3; k++) {
            int d = abs(out[k] - pil[k]);
            worst = d > worst ? d : worst;
        }
        cr_expect_leq(worst, 1, "%dx%d -> %dx%d: %d levels from PIL", ih, iw, oh, ow, worst);
        free(pil);
        free(in);
        free(out);
    }
}
