// What the converters of src/io share (convert.c holds it; convert_folder.c uses it): a split
// described as a record reader, and the atomic writing of both splits. Not public.
#ifndef DP_IO_CONVERT_INTERNAL_H
#define DP_IO_CONVERT_INTERNAL_H

#include <stdint.h>

#include "core/status.h"
#include "io/convert.h"

enum { DP_CONVERT_PATH_BYTES = 4096 };

// Fills images (count, H, W, C) HWC and labels (count) with the next count records.
typedef dp_status (*dp__convert_read_fn)(void *ctx, uint8_t *images, int32_t *labels,
                                         int64_t count);

// One split to write: n records of h x w x c, read in order through read(ctx, ...).
typedef struct dp__convert_split {
    const char *path; // the .tmp file to write (set by dp__convert_both)
    int64_t n, h, w, c;
    int n_classes;
    const char *const *classes; // [n_classes], borrowed
    const char *source;         // the dataset's source attribute
    dp__convert_read_fn read;
    void *ctx;
} dp__convert_split;

// Returns DP_ERR_ARG unless chunk_records >= 0 and deflate_level is 0..9.
DP_MUST_CHECK dp_status dp__convert_check_config(const dp_convert_config *cfg);

// Writes train to PREFIX-train.h5.tmp (computing mean/std from it) and test to
// PREFIX-test.h5.tmp (with train's mean/std), syncs both and renames them to PREFIX-train.h5 and
// PREFIX-test.h5 together; fills r. On failure removes the .tmp files and leaves no output.
// Returns the reader's or writer's error, DP_ERR_ARG if the prefix is too long.
DP_MUST_CHECK dp_status dp__convert_both(dp_convert_result *r, const char *prefix,
                                         dp__convert_split *train, dp__convert_split *test,
                                         const dp_convert_config *cfg);

#endif
