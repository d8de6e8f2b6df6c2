// The dp_dataset struct, shared by the reader (dataset.c) and the writer (dataset_write.c).
// Not part of the public API.
#ifndef DP_IO_DATASET_INTERNAL_H
#define DP_IO_DATASET_INTERNAL_H

#include <hdf5.h>

#include "io/dataset.h"

struct dp_dataset {
    dp_dataset_info info; // strings point at path, class_names, source below
    char *path;
    char **class_names; // one malloc'd block: pointers then text
    char **source;      // one malloc'd block holding one string
    hid_t file;
    hid_t images;       // /images dataset
    hid_t labels;       // /labels dataset
    hid_t images_space; // file dataspace of /images, reselected for each read or write
    hid_t labels_space; // file dataspace of /labels
    // writer only
    int writing;
    int64_t n_written;
    int have_normalization;
};

// Allocates a zeroed dp_dataset with every id at -1 and a copy of path in path and info.path.
DP_MUST_CHECK dp_status dp__dataset_alloc(dp_dataset **out, const char *path);

// Checks labels[0..count) of records first.. against [0, n_classes); DP_ERR_DATA naming the
// first bad record and the file.
DP_MUST_CHECK dp_status dp__dataset_check_labels(const dp_dataset *ds, int64_t first,
                                                 const int32_t *labels, int64_t count);

// Selects records [first, first + count) of /images and /labels in their file dataspaces and
// makes the matching memory dataspaces (closed by the caller with dp__h5_close).
DP_MUST_CHECK dp_status dp__dataset_select(dp_dataset *ds, int64_t first, int64_t count,
                                           hid_t *images_mem, hid_t *labels_mem);

#endif
