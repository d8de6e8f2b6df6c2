// stb_image_write for the io tests, in its own translation unit: its JPEG bit writer shifts
// signed ints past their range (stb_image_write.h 1.16, line 1263), which UBSan reports, so
// tests/io/meson.build compiles this file with shift checks off. Test code only.
#include "image_writer.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

int io_test_write_png(const char *path, const uint8_t *px, int h, int w, int c)
{
    return stbi_write_png(path, w, h, c, px, w * c);
}

int io_test_write_jpeg(const char *path, const uint8_t *px, int h, int w, int c, int quality)
{
    return stbi_write_jpg(path, w, h, c, px, quality);
}
