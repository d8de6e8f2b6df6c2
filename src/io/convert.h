// Converters from public dataset distributions and from image folders to the dptrain dataset
// format (dataset.h). Each writes PREFIX-train.h5 and PREFIX-test.h5 atomically: both are
// written as .tmp files, synced and renamed only when both are complete, so a failure leaves
// neither behind. mean/std come from the training split and are stored in both files.
#ifndef DP_IO_CONVERT_H
#define DP_IO_CONVERT_H

#include <stdint.h>

#include "core/status.h"
#include "io/dataset.h"

typedef struct dp_convert_config {
    int64_t chunk_records; // records per HDF5 chunk; 0: DP_DATASET_DEFAULT_CHUNK_RECORDS
    int deflate_level;     // 0: none; 1..9: deflate
} dp_convert_config;

#define DP_CONVERT_CONFIG_INIT {.chunk_records = 0, .deflate_level = 0}

// What a conversion wrote.
typedef struct dp_convert_result {
    char train_path[4096];
    char test_path[4096];
    int64_t n_train, n_test;
    int64_t h, w, c;
    int n_classes;
    float mean[DP_DATASET_MAX_CHANNELS], std[DP_DATASET_MAX_CHANNELS]; // of the training split
} dp_convert_result;

// Fashion-MNIST from the four IDX files in src_dir (train-images-idx3-ubyte, train-labels-idx1-
// ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each with or without .gz; the Debian
// package dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist). Checks the
// magic numbers, that image and label counts agree, that train and test images have one size,
// labels are 0..9 and no file is truncated. Returns DP_ERR_IO / DP_ERR_DATA naming the file at
// fault, DP_ERR_ARG on a bad config or an output path too long.
DP_MUST_CHECK dp_status dp_convert_fashion_mnist(dp_convert_result *out, const char *src_dir,
                                                 const char *out_prefix,
                                                 const dp_convert_config *cfg);

// CIFAR-10 from its binary distribution in src_dir (or src_dir/cifar-10-batches-bin):
// data_batch_1.bin .. data_batch_5.bin (train) and test_batch.bin, each a whole number of
// 3073-byte records: a label byte (0..9), then 3072 bytes of 32x32 red, green, blue planes
// (CHW), stored as HWC. Errors as dp_convert_fashion_mnist, naming the file and record.
DP_MUST_CHECK dp_status dp_convert_cifar10(dp_convert_result *out, const char *src_dir,
                                           const char *out_prefix, const dp_convert_config *cfg);

// --- image folders ---

typedef struct dp_convert_folder_config {
    int64_t h, w;         // size of the stored images, 1..4096 each (required)
    int channels;         // 3: RGB; 1: grayscale (luma)
    double test_fraction; // without test_src: share of each class held out as test, (0, 1)
    const char *test_src; // a second tree with the same class folders for the test split; NULL:
                          // split src by test_fraction
} dp_convert_folder_config;

#define DP_CONVERT_FOLDER_CONFIG_INIT                                                            \
    {.h = 0, .w = 0, .channels = 3, .test_fraction = 0.1, .test_src = NULL}

// An image-folder tree: src_dir holds one folder per class (class names: the folder names in
// byte order, i.e. sorted as in the C locale; label i is the i-th), each holding PNG or JPEG
// files directly (the format is taken from a file's first bytes, not its name). Names that
// start with '.' are skipped at both levels. Every image is decoded (image.h: stb_image),
// converted to RGB or to grayscale and resized to h x w (dp_image_resize: bilinear, antialiased
// when shrinking; the aspect ratio is not kept). Records are stored class by class, in file-name
// order within a class.
// The test split: the images of test_src (same class folders, checked), or else, in each class,
// round(test_fraction * n) images (at most n - 1, so every class keeps a training image) drawn
// by a Philox permutation keyed by the class index (stream DP_IO_RNG_SPLIT): the same split for
// the same files, run after run.
// Returns DP_ERR_IO naming a folder or file that cannot be opened or read (a missing src_dir, a
// dangling link), DP_ERR_DATA naming the folder or file at fault (no class folders, a file
// where a class folder should be, a folder inside a class folder, an empty class folder, a file
// that is not a PNG or JPEG image, an image that does not decode, test_src's classes differing
// from src_dir's, an empty test split), DP_ERR_ARG for a bad config, DP_ERR_NOMEM. Decoding
// runs on the calling thread.
DP_MUST_CHECK dp_status dp_convert_folder(dp_convert_result *out, const char *src_dir,
                                          const char *out_prefix,
                                          const dp_convert_folder_config *fcfg,
                                          const dp_convert_config *cfg);

#endif
