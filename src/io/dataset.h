// The dptrain dataset file (HDF5, format_version 1): reader and writer.
//   /images  uint8 [N, H, W, C], chunked by records (optionally deflated)
//   /labels  int32 [N], each in [0, n_classes)
//   root attributes: classes (string array), mean and std (float [C], of pixel/255),
//   source (string), format_version (int, 1).
// The reader validates all of it on open; it does no augmentation or normalization (pipeline.c).
#ifndef DP_IO_DATASET_H
#define DP_IO_DATASET_H

#include <stdint.h>

#include "core/status.h"

enum {
    DP_DATASET_FORMAT_VERSION = 1,
    DP_DATASET_MAX_CHANNELS = 4,
    DP_DATASET_MAX_CLASSES = 1 << 16,
    DP_DATASET_DEFAULT_CHUNK_RECORDS = 256, // at most; see dp_dataset_default_chunk
    DP_DATASET_CHUNK_TARGET_BYTES = 256 << 10,
};

typedef struct dp_dataset dp_dataset;

// What a dataset holds. Strings point into the dp_dataset and live as long as it.
typedef struct dp_dataset_info {
    const char *path;
    int64_t n;            // records
    int64_t h, w, c;      // image shape; a record is h*w*c bytes, HWC
    int64_t record_bytes; // h * w * c
    int n_classes;
    const char *const *class_names; // [n_classes]
    float mean[DP_DATASET_MAX_CHANNELS]; // per channel, of pixel/255 (first c used)
    float std[DP_DATASET_MAX_CHANNELS];  // per channel, of pixel/255, > 0
    const char *source;
    int format_version;
    int64_t chunk_records; // records per chunk of /images; 0 when /images is contiguous
    char compression[64];  // "none", "deflate level 4", or the names of the filters
} dp_dataset_info;

// --- reader ---

// Opens the dataset file at path for reading and checks everything the format requires: the
// file exists and is HDF5; /images is uint8 of rank 4 with N >= 1 and 1 <= C <= 4; /labels is an
// integer dataset of rank 1 with N elements; classes, mean, std, source and format_version are
// present and well-formed (std > 0, format_version == 1). Labels are checked when read.
// Returns DP_ERR_IO (missing or unreadable file), DP_ERR_DATA (a check failed),
// DP_ERR_UNSUPPORTED (another format_version, or a filter this HDF5 lacks), DP_ERR_NOMEM; the
// message names path and what is wrong. On error *out is NULL.
// A dp_dataset is not thread-safe: use each from one thread at a time.
DP_MUST_CHECK dp_status dp_dataset_open(dp_dataset **out, const char *path);

// Closes and frees a dataset (reader, or writer abandoned before dp_dataset_finish: then the file
// is left incomplete and the caller should remove it). Accepts NULL.
void dp_dataset_destroy(dp_dataset *ds);

// The description of ds; valid while ds lives.
const dp_dataset_info *dp_dataset_get_info(const dp_dataset *ds);

// Reads records [first, first + count) with one hyperslab read. images: (count, H, W, C) uint8,
// host; labels: (count) int32, host; either may be NULL to skip it. Returns DP_ERR_ARG if the
// range is outside [0, N), DP_ERR_DATA naming the record index and the file if a label is
// outside [0, n_classes), DP_ERR_IO on a read failure.
DP_MUST_CHECK dp_status dp_dataset_read_records(dp_dataset *ds, int64_t first, int64_t count,
                                                uint8_t *images, int32_t *labels);

// Reads the records indices[0..count), which must be strictly increasing, into images
// (count, H, W, C) and labels (count), in that order; each run of consecutive indices is one
// hyperslab read. Either output may be NULL. Errors as dp_dataset_read_records, and DP_ERR_ARG
// if the indices are not strictly increasing.
DP_MUST_CHECK dp_status dp_dataset_read_indices(dp_dataset *ds, const int64_t *indices,
                                                int64_t count, uint8_t *images, int32_t *labels);

// Counts the records of each class: class_counts[n_classes] (labels only). Errors as
// dp_dataset_read_records (a label out of range names its record).
DP_MUST_CHECK dp_status dp_dataset_count_classes(dp_dataset *ds, int64_t *class_counts);

// Reads every record, images and labels, chunk by chunk, and counts the classes as
// dp_dataset_count_classes. Returns the first error met, naming the record index and the file.
DP_MUST_CHECK dp_status dp_dataset_verify(dp_dataset *ds, int64_t *class_counts);

// --- writer ---

typedef struct dp_dataset_config {
    int64_t n;       // records (>= 1)
    int64_t h, w, c; // image shape, HWC; 1 <= c <= DP_DATASET_MAX_CHANNELS
    int n_classes;   // >= 1
    const char *const *class_names; // [n_classes], borrowed
    const char *source;    // free text (where the data came from); NULL means ""
    int64_t chunk_records; // records per chunk; 0 means dp_dataset_default_chunk(cfg)
    int deflate_level;     // 0: no compression; 1..9: deflate
} dp_dataset_config;

#define DP_DATASET_CONFIG_INIT                                                                    \
    {.n = -1, .h = -1, .w = -1, .c = -1, .n_classes = -1, .class_names = NULL, .source = NULL,    \
     .chunk_records = 0, .deflate_level = 0}

// Records per chunk of /images when cfg->chunk_records is 0: as many as fit in
// DP_DATASET_CHUNK_TARGET_BYTES (256 KiB), 1 to DP_DATASET_DEFAULT_CHUNK_RECORDS (Fashion-MNIST
// and CIFAR-10: 256 and 85; 224x224x3: 1), so a random read costs about one record of I/O.
int64_t dp_dataset_default_chunk(const dp_dataset_config *cfg);

// Creates (truncating) a dataset file at path for cfg->n records, and writes the classes,
// source and format_version attributes. Records are then appended in order and mean/std given
// with dp_dataset_set_normalization; dp_dataset_finish checks that and closes the file.
// Returns DP_ERR_ARG on a bad config (naming the field), DP_ERR_IO naming path.
DP_MUST_CHECK dp_status dp_dataset_create(dp_dataset **out, const char *path,
                                          const dp_dataset_config *cfg);

// Appends count records: images (count, H, W, C) uint8, labels (count) int32 in
// [0, n_classes). Returns DP_ERR_ARG past N records, DP_ERR_DATA naming the record of a label
// out of range, DP_ERR_IO.
DP_MUST_CHECK dp_status dp_dataset_append_records(dp_dataset *ds, const uint8_t *images,
                                                  const int32_t *labels, int64_t count);

// Sets the per-channel mean and std (of pixel/255) stored by dp_dataset_finish: c values each,
// std > 0. Returns DP_ERR_ARG otherwise.
DP_MUST_CHECK dp_status dp_dataset_set_normalization(dp_dataset *ds, const float *mean,
                                                     const float *std);

// Checks that all N records were appended and mean/std set, writes mean/std, flushes and closes
// the file. It computes nothing. ds must still be destroyed. Returns DP_ERR_ARG if records or
// normalization are missing, DP_ERR_IO if a write, flush or close fails.
DP_MUST_CHECK dp_status dp_dataset_finish(dp_dataset *ds);

// --- normalization statistics ---

// Exact per-channel sums over uint8 pixels (plain value; caller storage).
typedef struct dp_dataset_stats {
    int64_t c;
    uint64_t pixels;                        // per channel
    uint64_t sum[DP_DATASET_MAX_CHANNELS];  // of pixel values
    uint64_t sum2[DP_DATASET_MAX_CHANNELS]; // of squared pixel values
} dp_dataset_stats;

void dp_dataset_stats_init(dp_dataset_stats *s, int64_t c);

// Adds n_pixels HWC pixels (n_pixels * c bytes).
void dp_dataset_stats_add(dp_dataset_stats *s, const uint8_t *pixels, int64_t n_pixels);

// mean[c], std[c] of pixel/255 (population std). With no pixels, mean 0 and std 1; a constant
// channel gets std 1, so that (x - mean) / std stays finite.
void dp_dataset_stats_finish(const dp_dataset_stats *s, float *mean, float *std);

#endif
