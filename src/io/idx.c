// IDX reader over zlib's gz* stream functions (which read gzip and plain files alike). It
// validates the header and the data length; what the bytes mean is the converter's business.
#include "io/idx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"

enum { IDX_TYPE_UBYTE = 0x08, GZ_BUFFER_BYTES = 1 << 17 };

struct dp_idx {
    gzFile gz;
    char *path;
    int rank;
    int64_t dims[DP_IDX_MAX_RANK];
    int64_t item_bytes;
    int64_t items_read;
};

// Reads exactly n bytes; *got receives what was read. A gz error is DP_ERR_IO.
static dp_status read_bytes(dp_idx *f, void *out, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        unsigned step = want > (1u << 30) ? (1u << 30) : (unsigned)want;
        int r = gzread(f->gz, (uint8_t *)out + *got, step);
        if (r < 0) {
            int errnum = Z_OK;
            const char *msg = gzerror(f->gz, &errnum);
            if (errnum == Z_BUF_ERROR) {
                break; // the gzip stream ends early: the caller reports the truncation
            }
            return dp_error_set(DP_ERR_IO, "%s: read error: %s", f->path,
                                errnum == Z_ERRNO ? strerror(errno) : msg);
        }
        if (r == 0) {
            break;
        }
        *got += (size_t)r;
    }
    return DP_OK;
}

static dp_status read_header(dp_idx *f, int want_rank)
{
    uint8_t magic[4];
    size_t got;
    DP_TRY(read_bytes(f, magic, 4, &got));
    if (got < 4) {
        return dp_error_set(DP_ERR_DATA, "%s: truncated IDX header (%zu of 4 magic bytes)",
                            f->path, got);
    }
    if (magic[0] != 0 || magic[1] != 0 || magic[2] != IDX_TYPE_UBYTE || magic[3] < 1 ||
        magic[3] > DP_IDX_MAX_RANK) {
        return dp_error_set(DP_ERR_DATA,
                            "%s: bad IDX magic number %02x%02x%02x%02x (expected 000008%02x: "
                            "unsigned bytes, rank %d)",
                            f->path, magic[0], magic[1], magic[2], magic[3], want_rank, want_rank);
    }
    f->rank = magic[3];
    if (f->rank != want_rank) {
        return dp_error_set(DP_ERR_DATA, "%s: IDX rank is %d, expected %d", f->path, f->rank,
                            want_rank);
    }
    uint8_t be[4 * DP_IDX_MAX_RANK];
    size_t need = 4 * (size_t)f->rank;
    DP_TRY(read_bytes(f, be, need, &got));
    if (got < need) {
        return dp_error_set(DP_ERR_DATA, "%s: truncated IDX header (%zu of %zu dimension bytes)",
                            f->path, got, need);
    }
    f->item_bytes = 1;
    for (int i = 0; i < f->rank; i++) {
        const uint8_t *b = be + 4 * i;
        f->dims[i] = (int64_t)b[0] << 24 | (int64_t)b[1] << 16 | (int64_t)b[2] << 8 | b[3];
        if (f->dims[i] == 0) {
            return dp_error_set(DP_ERR_DATA, "%s: IDX dimension %d is 0", f->path, i);
        }
        if (i > 0) {
            f->item_bytes *= f->dims[i];
        }
    }
    if (f->item_bytes > ((int64_t)1 << 31)) {
        return dp_error_set(DP_ERR_DATA, "%s: IDX items of %lld bytes are too large", f->path,
                            (long long)f->item_bytes);
    }
    return DP_OK;
}

dp_status dp_idx_open(dp_idx **out, const char *path, int want_rank)
{
    *out = NULL;
    dp_idx *f = calloc(1, sizeof *f);
    char *copy = malloc(strlen(path) + 1);
    if (f == NULL || copy == NULL) {
        free(f);
        free(copy);
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate an IDX reader", path);
    }
    strcpy(copy, path);
    f->path = copy;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (f->gz == NULL) {
        dp_status st = dp_error_set(DP_ERR_IO, "%s: cannot open: %s", path,
                                    errno ? strerror(errno) : "out of memory");
        dp_idx_destroy(f);
        return st;
    }
    if (gzbuffer(f->gz, GZ_BUFFER_BYTES) != 0) {
        dp_idx_destroy(f);
        return dp_error_set(DP_ERR_IO, "%s: cannot set the gzip buffer size", path);
    }
    dp_status st = read_header(f, want_rank);
    if (st != DP_OK) {
        dp_idx_destroy(f);
        return st;
    }
    *out = f;
    return DP_OK;
}

void dp_idx_destroy(dp_idx *f)
{
    if (f == NULL) {
        return;
    }
    if (f->gz != NULL) {
        gzclose(f->gz); // read-only: a close error loses nothing
    }
    free(f->path);
    free(f);
}

int dp_idx_rank(const dp_idx *f)
{
    return f->rank;
}

int64_t dp_idx_dim(const dp_idx *f, int i)
{
    return i >= 0 && i < f->rank ? f->dims[i] : 0;
}

int64_t dp_idx_item_bytes(const dp_idx *f)
{
    return f->item_bytes;
}

const char *dp_idx_path(const dp_idx *f)
{
    return f->path;
}

dp_status dp_idx_read(dp_idx *f, uint8_t *out, int64_t count)
{
    if (count < 0 || count > f->dims[0] - f->items_read) {
        return dp_error_set(DP_ERR_DATA, "%s: reading %lld items after %lld exceeds the %lld items "
                            "of the header", f->path, (long long)count,
                            (long long)f->items_read, (long long)f->dims[0]);
    }
    size_t want = (size_t)(count * f->item_bytes), got;
    DP_TRY(read_bytes(f, out, want, &got));
    if (got < want) {
        int64_t at = f->items_read + (int64_t)(got / (size_t)f->item_bytes);
        return dp_error_set(DP_ERR_DATA,
                            "%s: truncated: the data ends in item %lld of %lld (the header "
                            "promises %lld items of %lld bytes)",
                            f->path, (long long)at, (long long)f->dims[0], (long long)f->dims[0],
                            (long long)f->item_bytes);
    }
    f->items_read += count;
    return DP_OK;
}

dp_status dp_idx_finish(dp_idx *f)
{
    if (f->items_read != f->dims[0]) {
        return dp_error_set(DP_ERR_DATA, "%s: %lld of %lld items read", f->path,
                            (long long)f->items_read, (long long)f->dims[0]);
    }
    uint8_t extra;
    size_t got;
    DP_TRY(read_bytes(f, &extra, 1, &got));
    if (got != 0) {
        return dp_error_set(DP_ERR_DATA, "%s: unexpected data after the %lld items of the header",
                            f->path, (long long)f->dims[0]);
    }
    return DP_OK;
}
