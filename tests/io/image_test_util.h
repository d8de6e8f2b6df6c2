// Tiny PNG and JPEG files for the image and folder-converter tests, written with stb's writer
// (libstb-dev, the library whose reader src/io/image.c uses; image_writer.c): no downloads.
// Test code only.
#ifndef DP_TESTS_IO_IMAGE_TEST_UTIL_H
#define DP_TESTS_IO_IMAGE_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>

#include "image_writer.h"

// A deterministic h x w x c image: a smooth pattern plus a seeded wobble.
static inline void pattern_image(uint8_t *px, int h, int w, int c, int seed)
{
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            for (int ch = 0; ch < c; ch++) {
                int v = (y * 255) / (h > 1 ? h - 1 : 1) * (ch % 2 ? 1 : 0) +
                        (x * 255) / (w > 1 ? w - 1 : 1) * (ch % 2 ? 0 : 1);
                v = (v + seed * 37 + ((x * 7 + y * 13 + ch * 5 + seed) % 23)) % 256;
                px[(y * w + x) * c + ch] = (uint8_t)v;
            }
        }
    }
}

static inline void write_png(const char *path, const uint8_t *px, int h, int w, int c)
{
    cr_assert(io_test_write_png(path, px, h, w, c), "cannot write %s", path);
}

static inline void write_jpeg(const char *path, const uint8_t *px, int h, int w, int c,
                              int quality)
{
    cr_assert(io_test_write_jpeg(path, px, h, w, c, quality), "cannot write %s", path);
}

// Writes size bytes of data to path.
static inline void write_bytes(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, size, f), size);
    cr_assert_eq(fclose(f), 0);
}

// Reads up to cap bytes of path into buf; returns the count.
static inline size_t read_bytes(const char *path, void *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = fread(buf, 1, cap, f);
    cr_assert_eq(fclose(f), 0);
    return n;
}

#endif
