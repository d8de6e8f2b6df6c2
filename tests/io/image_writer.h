// PNG and JPEG writers of the io tests (image_writer.c, stb_image_write). Test code only.
#ifndef DP_TESTS_IO_IMAGE_WRITER_H
#define DP_TESTS_IO_IMAGE_WRITER_H

#include <stdint.h>

// Write px (h, w, c) HWC uint8 to path; return 0 on failure.
int io_test_write_png(const char *path, const uint8_t *px, int h, int w, int c);
int io_test_write_jpeg(const char *path, const uint8_t *px, int h, int w, int c, int quality);

#endif
