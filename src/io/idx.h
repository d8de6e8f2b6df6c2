// Streaming reader of IDX files of unsigned bytes (the MNIST / Fashion-MNIST format), gzip-
// compressed or plain (zlib reads both). Header: two zero bytes, type 0x08 (ubyte), the rank,
// then rank big-endian uint32 dims; then the items. Only the ubyte type is supported.
#ifndef DP_IO_IDX_H
#define DP_IO_IDX_H

#include <stdint.h>

#include "core/status.h"

enum { DP_IDX_MAX_RANK = 4 };

typedef struct dp_idx dp_idx;

// Opens path and reads its header, expecting rank want_rank. item_bytes is the product of
// dims[1..rank), 1 for rank 1. Returns DP_ERR_IO (cannot open, read error), DP_ERR_DATA (bad
// magic, wrong rank or type, a zero dimension, truncated header), DP_ERR_NOMEM; each message
// names path. On error *out is NULL.
DP_MUST_CHECK dp_status dp_idx_open(dp_idx **out, const char *path, int want_rank);

// Closes the file. Accepts NULL.
void dp_idx_destroy(dp_idx *f);

// The header: rank, dims[rank] (dims[0] is the item count), item_bytes.
int dp_idx_rank(const dp_idx *f);
int64_t dp_idx_dim(const dp_idx *f, int i);
int64_t dp_idx_item_bytes(const dp_idx *f);
const char *dp_idx_path(const dp_idx *f);

// Reads the next count items (count * item_bytes bytes) into out. Returns DP_ERR_DATA naming the
// file and the item where the data ends early ("truncated"), or if more than dims[0] items are
// requested in total; DP_ERR_IO on a decompression or read error.
DP_MUST_CHECK dp_status dp_idx_read(dp_idx *f, uint8_t *out, int64_t count);

// Checks that all dims[0] items were read and nothing follows them. Returns DP_ERR_DATA naming the
// file otherwise.
DP_MUST_CHECK dp_status dp_idx_finish(dp_idx *f);

#endif
