// Image files for the image-folder converter: PNG and JPEG decoding into HWC uint8, and
// resizing. The decoder is stb_image (Debian package libstb-dev), compiled into libdptrain from
// its header, restricted to PNG and JPEG. Chosen over libpng + libjpeg-turbo because it adds no
// library to link (libdptrain's link dependencies are set in the root meson.build) nor any
// shared library to carry to machines where nothing can be installed (the GPU machine), and
// one call decodes both formats, 8- or 16-bit, palette, grey, alpha, interlaced or progressive.
// What it costs: slower JPEG decoding than libjpeg-turbo's SIMD code, and stb_image's own
// warning that it is not hardened against hostile files: convert only images you trust.
#ifndef DP_IO_IMAGE_H
#define DP_IO_IMAGE_H

#include <stdint.h>

#include "core/status.h"

enum {
    DP_IMAGE_MAX_SIDE = 1 << 16,    // larger images are rejected (DP_ERR_DATA)
    DP_IMAGE_MAX_PIXELS = 1 << 28,
};

// Decodes the PNG or JPEG file at path (the format is taken from its first bytes, whatever its
// name) into *out, a malloc'd (*h, *w, channels) uint8 HWC image the caller frees.
// channels 3: RGB (grey replicated); 1: grey, from colour by stb's integer BT.601 luma
// (77 R + 150 G + 29 B) >> 8. An alpha channel is dropped, not composited; 16-bit samples keep
// their high byte. Returns DP_ERR_IO naming path if it cannot be opened or read,
// DP_ERR_DATA naming path if it is not a PNG or JPEG file ("not a PNG or JPEG image"), does not
// decode (with stb_image's reason) or is larger than DP_IMAGE_MAX_SIDE / DP_IMAGE_MAX_PIXELS,
// DP_ERR_ARG if channels is not 1 or 3, DP_ERR_NOMEM. On error *out is NULL. Thread-safe.
DP_MUST_CHECK dp_status dp_image_load(uint8_t **out, int64_t *h, int64_t *w, const char *path,
                                      int channels);

// Resizes in (ih, iw, c) HWC uint8 to out (oh, ow, c) with a bilinear (triangle) filter as
// PIL's Image.resize(BILINEAR) and torchvision's Resize (antialias=True) do: output pixel x of
// an axis is centred at input coordinate (x + 0.5) * in / out (half-pixel centres); the filter
// spans 1 input pixel each side when enlarging (plain bilinear interpolation; the edge pixels
// are repeated) and in / out pixels each side when shrinking, so that every input pixel counts
// (no aliasing); weights are normalized over the pixels inside the image. Separable, in float,
// rounded to nearest once at the end. Equal sizes copy the image. out must not overlap in.
// Returns DP_ERR_ARG if a size is < 1, DP_ERR_NOMEM.
DP_MUST_CHECK dp_status dp_image_resize(uint8_t *out, int64_t oh, int64_t ow, const uint8_t *in,
                                        int64_t ih, int64_t iw, int64_t c);

#endif
