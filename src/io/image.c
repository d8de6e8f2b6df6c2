// PNG/JPEG decoding through stb_image (compiled here, static, PNG and JPEG only, from memory
// only) and the separable triangle-filter resize of image.h. Reading the file ourselves keeps
// I/O errors (DP_ERR_IO) apart from bad data (DP_ERR_DATA).
#include "io/image.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

// Not STB_IMAGE_STATIC: stb 2.27 then declares static functions it never defines (GIF loading,
// stbi_set_unpremultiply_on_load_thread), an error with -Werror. So libdptrain defines the
// stbi_* functions: a program linking it must not link another copy of stb_image.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS DP_IMAGE_MAX_SIDE
#include <stb/stb_image.h>

// --- decoding ---

// Reads the whole file at path into *buf (malloc'd) and its size into *size.
static dp_status read_file(unsigned char **buf, size_t *size, const char *path)
{
    *buf = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return dp_error_set(DP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    dp_status st = DP_OK;
    long end = -1;
    if (fseek(f, 0, SEEK_END) != 0 || (end = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = dp_error_set(DP_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    } else if (end > INT_MAX) {
        st = dp_error_set(DP_ERR_DATA, "%s: %ld bytes is too large for an image file", path, end);
    } else if ((*buf = malloc(end > 0 ? (size_t)end : 1)) == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate %ld bytes", path, end);
    } else if (fread(*buf, 1, (size_t)end, f) != (size_t)end) {
        st = dp_error_set(DP_ERR_IO, "%s: read error%s", path, ferror(f) ? "" : " (truncated)");
    }
    fclose(f); // opened read-only: nothing to lose
    if (st != DP_OK) {
        free(*buf);
        *buf = NULL;
        return st;
    }
    *size = (size_t)end;
    return DP_OK;
}

// "PNG", "JPEG" from the file's signature, or NULL.
static const char *sniff(const unsigned char *buf, size_t size)
{
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char jpeg[3] = {0xff, 0xd8, 0xff};
    if (size >= sizeof png && memcmp(buf, png, sizeof png) == 0) {
        return "PNG";
    }
    if (size >= sizeof jpeg && memcmp(buf, jpeg, sizeof jpeg) == 0) {
        return "JPEG";
    }
    return NULL;
}

dp_status dp_image_load(uint8_t **out, int64_t *h, int64_t *w, const char *path, int channels)
{
    *out = NULL;
    *h = *w = 0;
    if (channels != 1 && channels != 3) {
        return dp_error_set(DP_ERR_ARG, "%s: %d channels; need 1 or 3", path, channels);
    }
    unsigned char *buf = NULL;
    size_t size = 0;
    DP_TRY(read_file(&buf, &size, path));
    const char *format = sniff(buf, size);
    dp_status st = DP_OK;
    int x = 0, y = 0, comp = 0;
    // The header's size first, to refuse huge images before allocating them. When the header
    // does not parse, the decoder below fails too, with a reason that belongs to this format
    // (stbi_info's reason can come from another format's probe).
    if (format == NULL) {
        st = dp_error_set(DP_ERR_DATA, "%s: not a PNG or JPEG image", path);
    } else if (stbi_info_from_memory(buf, (int)size, &x, &y, &comp) &&
               (int64_t)x * y > DP_IMAGE_MAX_PIXELS) {
        st = dp_error_set(DP_ERR_DATA, "%s: %dx%d image is larger than %d pixels", path, x, y,
                          DP_IMAGE_MAX_PIXELS);
    } else if ((*out = stbi_load_from_memory(buf, (int)size, &x, &y, &comp, channels)) == NULL) {
        // A JPEG whose header does not parse fails stb's JPEG probe; the PNG probe that stb
        // tries next leaves its own reason, which says nothing about this file.
        const char *why = stbi_failure_reason();
        if (why == NULL || why[0] == '\0' || strcmp(why, "bad png sig") == 0) {
            why = "corrupt or truncated";
        }
        st = dp_error_set(DP_ERR_DATA, "%s: cannot decode %s image: %s", path, format, why);
    }
    free(buf);
    if (st == DP_OK) {
        *h = y;
        *w = x;
    }
    return st;
}

// --- resizing ---

// The filter taps of one axis: output i takes count[i] inputs from first[i] with weights
// weights[i * max_taps + k].
typedef struct axis_taps {
    int64_t *first;
    int *count;
    float *weights;
    int max_taps;
} axis_taps;

static void taps_free(axis_taps *t)
{
    free(t->first);
    free(t->count);
    free(t->weights);
    *t = (axis_taps){.first = NULL, .count = NULL, .weights = NULL, .max_taps = 0};
}

static double triangle(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

// PIL's precompute_coeffs for the bilinear filter, in double, normalized.
static dp_status taps_make(axis_taps *t, int64_t in, int64_t out)
{
    double scale = (double)in / (double)out;
    double filter_scale = scale > 1.0 ? scale : 1.0;
    double support = filter_scale; // the triangle's support (1) times filter_scale
    t->max_taps = (int)ceil(2.0 * support) + 2;
    t->first = malloc((size_t)out * sizeof *t->first);
    t->count = malloc((size_t)out * sizeof *t->count);
    t->weights = calloc((size_t)out * (size_t)t->max_taps, sizeof *t->weights);
    if (t->first == NULL || t->count == NULL || t->weights == NULL) {
        taps_free(t);
        return dp_error_set(DP_ERR_NOMEM, "resize: cannot allocate %lld filter taps",
                            (long long)out * t->max_taps);
    }
    for (int64_t i = 0; i < out; i++) {
        double center = ((double)i + 0.5) * scale;
        int64_t lo = (int64_t)(center - support + 0.5), hi = (int64_t)(center + support + 0.5);
        lo = lo < 0 ? 0 : lo;
        hi = hi > in ? in : hi;
        double wsum = 0.0;
        for (int64_t k = lo; k < hi; k++) {
            wsum += triangle(((double)k - center + 0.5) / filter_scale);
        }
        float *dst = t->weights + i * t->max_taps;
        for (int64_t k = lo; k < hi; k++) {
            dst[k - lo] = (float)(triangle(((double)k - center + 0.5) / filter_scale) / wsum);
        }
        t->first[i] = lo;
        t->count[i] = (int)(hi - lo);
    }
    return DP_OK;
}

static uint8_t round_pixel(float v)
{
    return v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)(v + 0.5f);
}

dp_status dp_image_resize(uint8_t *out, int64_t oh, int64_t ow, const uint8_t *in, int64_t ih,
                          int64_t iw, int64_t c)
{
    if (oh < 1 || ow < 1 || ih < 1 || iw < 1 || c < 1) {
        return dp_error_set(DP_ERR_ARG, "resize: %lldx%lld -> %lldx%lld with %lld channels",
                            (long long)ih, (long long)iw, (long long)oh, (long long)ow,
                            (long long)c);
    }
    if (oh == ih && ow == iw) {
        memcpy(out, in, (size_t)(ih * iw * c));
        return DP_OK;
    }
    axis_taps tx = {0}, ty = {0};
    float *tmp = malloc((size_t)(ih * ow * c) * sizeof *tmp); // (ih, ow, c): rows resized
    dp_status st = DP_OK;
    if (tmp == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "resize: cannot allocate %lldx%lld", (long long)ih,
                          (long long)ow);
        goto out;
    }
    DP_TRY_GOTO(taps_make(&tx, iw, ow), st, out);
    DP_TRY_GOTO(taps_make(&ty, ih, oh), st, out);
    for (int64_t y = 0; y < ih; y++) {
        for (int64_t x = 0; x < ow; x++) {
            const float *wt = tx.weights + x * tx.max_taps;
            const uint8_t *src = in + (y * iw + tx.first[x]) * c;
            for (int64_t ch = 0; ch < c; ch++) {
                float acc = 0.0f;
                for (int k = 0; k < tx.count[x]; k++) {
                    acc += wt[k] * (float)src[k * c + ch];
                }
                tmp[(y * ow + x) * c + ch] = acc;
            }
        }
    }
    for (int64_t y = 0; y < oh; y++) {
        const float *wt = ty.weights + y * ty.max_taps;
        for (int64_t i = 0; i < ow * c; i++) {
            const float *src = tmp + ty.first[y] * ow * c + i;
            float acc = 0.0f;
            for (int k = 0; k < ty.count[y]; k++) {
                acc += wt[k] * src[k * ow * c];
            }
            out[y * ow * c + i] = round_pixel(acc);
        }
    }
out:
    taps_free(&tx);
    taps_free(&ty);
    free(tmp);
    return st;
}
