// Converters: Fashion-MNIST from small gzip/plain IDX files written here (and from the Debian
// package when installed), CIFAR-10 from small synthetic batch files; every damaged-input error
// names the file; a failed conversion leaves no output and keeps an earlier one intact.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/convert.h"
#include "io/dataset.h"
#include "io/idx.h"
#include "io_test_util.h"

TestSuite(convert, .init = scratch_make, .fini = scratch_remove);

// --- IDX files ---

enum { TRAIN_N = 12, TEST_N = 6, IH = 4, IW = 5 };

static uint8_t fm_pixel(int split, int64_t rec, int64_t i)
{
    return (uint8_t)(split * 101 + rec * 13 + i * 5);
}

static int fm_label(int split, int64_t rec)
{
    return (int)((rec + (uint64_t)split * 3) % 10);
}

// Writes an IDX file: magic 0x000008<rank>, big-endian dims, then data (data_bytes of it).
// gz selects gzip; cut_bytes > 0 drops that many bytes from the end of the written file.
static void write_idx(const char *path, int gz, int rank, const uint32_t *dims,
                      const uint8_t *data, size_t data_bytes)
{
    uint8_t head[4 + 4 * 4] = {0, 0, 8, (uint8_t)rank};
    for (int i = 0; i < rank; i++) {
        head[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        head[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        head[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        head[7 + 4 * i] = (uint8_t)dims[i];
    }
    size_t head_bytes = 4 + 4 * (size_t)rank;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        cr_assert_not_null(f, "gzopen %s", path);
        cr_assert_eq(gzwrite(f, head, (unsigned)head_bytes), (int)head_bytes);
        if (data_bytes > 0) {
            cr_assert_eq(gzwrite(f, data, (unsigned)data_bytes), (int)data_bytes);
        }
        cr_assert_eq(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        cr_assert_not_null(f, "fopen %s", path);
        cr_assert_eq(fwrite(head, 1, head_bytes, f), head_bytes);
        cr_assert_eq(fwrite(data, 1, data_bytes, f), data_bytes);
        cr_assert_eq(fclose(f), 0);
    }
}

// Writes one split (split 0: train-*, 1: t10k-*) with n records, of which data for only
// n_data images is written (n_data < n makes a truncated file).
static void write_fm_split(const char *dir, int split, int gz, int64_t n, int64_t n_data)
{
    const char *stem = split == 0 ? "train" : "t10k";
    const char *ext = gz ? ".gz" : "";
    uint8_t *images = malloc((size_t)(n * IH * IW));
    uint8_t *labels = malloc((size_t)n);
    cr_assert(images != NULL && labels != NULL);
    for (int64_t r = 0; r < n; r++) {
        for (int64_t i = 0; i < IH * IW; i++) {
            images[r * IH * IW + i] = fm_pixel(split, r, i);
        }
        labels[r] = (uint8_t)fm_label(split, r);
    }
    char path[512];
    uint32_t idims[3] = {(uint32_t)n, IH, IW}, ldims[1] = {(uint32_t)n};
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte%s", dir, stem, ext);
    write_idx(path, gz, 3, idims, images, (size_t)(n_data * IH * IW));
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte%s", dir, stem, ext);
    write_idx(path, gz, 1, ldims, labels, (size_t)n);
    free(images);
    free(labels);
}

static void write_fm(int gz)
{
    write_fm_split(scratch_dir, 0, gz, TRAIN_N, TRAIN_N);
    write_fm_split(scratch_dir, 1, gz, TEST_N, TEST_N);
}

static dp_status convert_fm(dp_convert_result *res)
{
    dp_convert_config cfg = DP_CONVERT_CONFIG_INIT;
    cfg.chunk_records = 5;
    return dp_convert_fashion_mnist(res, scratch_dir, scratch_path("fm"), &cfg);
}

// Reads a whole dataset and checks it against fm_pixel / fm_label of split.
static void check_fm_file(const char *path, int split, int64_t n, const float *mean,
                          const float *std)
{
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    const dp_dataset_info *in = dp_dataset_get_info(ds);
    cr_expect_eq(in->n, n);
    cr_expect_eq(in->h, IH);
    cr_expect_eq(in->w, IW);
    cr_expect_eq(in->c, 1);
    cr_expect_eq(in->n_classes, 10);
    cr_expect_str_eq(in->class_names[0], "T-shirt/top");
    cr_expect_str_eq(in->class_names[9], "Ankle boot");
    cr_expect_eq(in->chunk_records, 5);
    cr_expect_eq(in->mean[0], mean[0], "mean is the training split's in both files");
    cr_expect_eq(in->std[0], std[0]);
    uint8_t images[TRAIN_N * IH * IW];
    int32_t labels[TRAIN_N];
    cr_assert_eq(dp_dataset_read_records(ds, 0, n, images, labels), DP_OK, "%s",
                 dp_error_message());
    for (int64_t r = 0; r < n; r++) {
        cr_expect_eq(labels[r], fm_label(split, r), "record %lld", (long long)r);
        for (int64_t i = 0; i < IH * IW; i++) {
            cr_expect_eq(images[r * IH * IW + i], fm_pixel(split, r, i), "record %lld px %lld",
                         (long long)r, (long long)i);
        }
    }
    dp_dataset_destroy(ds);
}

static void expect_no_outputs(const char *prefix)
{
    const char *suffix[] = {"-train.h5", "-test.h5", "-train.h5.tmp", "-test.h5.tmp"};
    for (int i = 0; i < 4; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s%s", prefix, suffix[i]);
        cr_expect(!file_exists(path), "%s exists after a failed conversion", path);
    }
}

static void check_fm_round_trip(int gz)
{
    write_fm(gz);
    dp_convert_result res;
    cr_assert_eq(convert_fm(&res), DP_OK, "%s", dp_error_message());
    cr_expect_eq(res.n_train, TRAIN_N);
    cr_expect_eq(res.n_test, TEST_N);
    // mean/std of the training pixels, in double, independently of dp_dataset_stats.
    double sum = 0, sum2 = 0;
    for (int64_t r = 0; r < TRAIN_N; r++) {
        for (int64_t i = 0; i < IH * IW; i++) {
            double v = fm_pixel(0, r, i) / 255.0;
            sum += v;
            sum2 += v * v;
        }
    }
    double m = sum / (TRAIN_N * IH * IW), sd = sqrt(sum2 / (TRAIN_N * IH * IW) - m * m);
    cr_expect_float_eq(res.mean[0], (float)m, 1e-6f);
    cr_expect_float_eq(res.std[0], (float)sd, 1e-6f);
    check_fm_file(res.train_path, 0, TRAIN_N, res.mean, res.std);
    check_fm_file(res.test_path, 1, TEST_N, res.mean, res.std);
    cr_expect(!file_exists(scratch_path("fm-train.h5.tmp")), "temp file left behind");
    cr_expect(!file_exists(scratch_path("fm-test.h5.tmp")), "temp file left behind");
}

Test(convert, fashion_mnist_from_gzip_idx_round_trips)
{
    check_fm_round_trip(1);
}

Test(convert, fashion_mnist_from_plain_idx_round_trips)
{
    check_fm_round_trip(0);
}

Test(convert, truncated_idx_names_file_and_leaves_nothing)
{
    write_fm_split(scratch_dir, 0, 1, TRAIN_N, TRAIN_N);
    write_fm_split(scratch_dir, 1, 1, TEST_N, TEST_N - 2); // test images end early
    dp_convert_result res;
    expect_error(convert_fm(&res), DP_ERR_DATA, scratch_path("t10k-images-idx3-ubyte.gz"),
                 "truncated", "item 4 of 6");
    expect_no_outputs(scratch_path("fm"));
}

Test(convert, truncated_gzip_stream_names_file)
{
    write_fm(1);
    // Cut the compressed train images in half: zlib sees the stream end early.
    const char *path = scratch_path("train-images-idx3-ubyte.gz");
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    cr_assert_eq(fclose(f), 0);
    f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, n / 2, f), n / 2);
    cr_assert_eq(fclose(f), 0);
    dp_convert_result res;
    expect_error(convert_fm(&res), DP_ERR_DATA, path, "truncated");
    expect_no_outputs(scratch_path("fm"));
}

Test(convert, bad_magic_names_file)
{
    write_fm(1);
    uint32_t dims[3] = {TRAIN_N, IH, IW};
    uint8_t data[TRAIN_N * IH * IW] = {0};
    // Labels magic (rank 1) where images (rank 3) are expected.
    const char *path = scratch_path("train-images-idx3-ubyte.gz");
    write_idx(path, 1, 1, dims, data, TRAIN_N);
    dp_convert_result res;
    expect_error(convert_fm(&res), DP_ERR_DATA, path, "rank is 1, expected 3");
    gzFile g = gzopen(path, "wb");
    cr_assert_not_null(g);
    cr_assert_eq(gzwrite(g, "\x1f\x00\x08\x03", 4), 4);
    cr_assert_eq(gzclose(g), Z_OK);
    expect_error(convert_fm(&res), DP_ERR_DATA, path, "bad IDX magic number 1f000803");
    expect_no_outputs(scratch_path("fm"));
}

Test(convert, label_out_of_range_names_file_and_item)
{
    write_fm(1);
    uint32_t dims[1] = {TRAIN_N};
    uint8_t labels[TRAIN_N] = {0};
    labels[9] = 10;
    const char *path = scratch_path("train-labels-idx1-ubyte.gz");
    write_idx(path, 1, 1, dims, labels, TRAIN_N);
    dp_convert_result res;
    expect_error(convert_fm(&res), DP_ERR_DATA, path, "item 9 has label 10");
    expect_no_outputs(scratch_path("fm"));
}

Test(convert, count_mismatch_and_trailing_data_are_errors)
{
    write_fm(1);
    uint32_t dims[1] = {TRAIN_N - 1};
    uint8_t labels[TRAIN_N] = {0};
    const char *path = scratch_path("train-labels-idx1-ubyte.gz");
    write_idx(path, 1, 1, dims, labels, TRAIN_N - 1);
    dp_convert_result res;
    expect_error(convert_fm(&res), DP_ERR_DATA, "has 12 images but", path, "has 11 labels");
    // A header promising fewer items than the file holds.
    write_idx(path, 1, 1, dims, labels, TRAIN_N);
    dims[0] = TRAIN_N - 1;
    dp_idx *f = NULL;
    cr_assert_eq(dp_idx_open(&f, path, 1), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_idx_read(f, labels, TRAIN_N - 1), DP_OK, "%s", dp_error_message());
    expect_error(dp_idx_finish(f), DP_ERR_DATA, path, "unexpected data after");
    dp_idx_destroy(f);
}

Test(convert, failure_keeps_an_earlier_conversion)
{
    write_fm(1);
    dp_convert_result res;
    cr_assert_eq(convert_fm(&res), DP_OK, "%s", dp_error_message());
    write_fm_split(scratch_dir, 1, 1, TEST_N, 1); // now the test images are truncated
    expect_error(convert_fm(&res), DP_ERR_DATA, "truncated");
    cr_expect(!file_exists(scratch_path("fm-train.h5.tmp")));
    cr_expect(!file_exists(scratch_path("fm-test.h5.tmp")));
    float mean[1] = {res.mean[0]}, std[1] = {res.std[0]};
    check_fm_file(scratch_path("fm-train.h5"), 0, TRAIN_N, mean, std);
    check_fm_file(scratch_path("fm-test.h5"), 1, TEST_N, mean, std);
}

Test(convert, missing_source_names_file)
{
    dp_convert_result res;
    expect_error(convert_fm(&res), DP_ERR_IO, scratch_path("train-images-idx3-ubyte.gz"),
                 "No such file");
}

// The real Debian files: 60000 + 10000 records, 6000 per class in train, known statistics.
Test(convert, debian_fashion_mnist, .timeout = 120)
{
    const char *src = "/usr/share/datasets/fashion-mnist";
    if (!file_exists(src)) {
        cr_skip_test("%s is missing (install the Debian package dataset-fashion-mnist)", src);
    }
    dp_convert_result res;
    dp_convert_config cfg = DP_CONVERT_CONFIG_INIT;
    cr_assert_eq(dp_convert_fashion_mnist(&res, src, scratch_path("fmnist"), &cfg), DP_OK, "%s",
                 dp_error_message());
    cr_expect_eq(res.n_train, 60000);
    cr_expect_eq(res.n_test, 10000);
    cr_expect_float_eq(res.mean[0], 0.2860f, 1e-4f);
    cr_expect_float_eq(res.std[0], 0.3530f, 1e-4f);
    const char *paths[2] = {res.train_path, res.test_path};
    const int64_t per_class[2] = {6000, 1000};
    for (int s = 0; s < 2; s++) {
        dp_dataset *ds = NULL;
        cr_assert_eq(dp_dataset_open(&ds, paths[s]), DP_OK, "%s", dp_error_message());
        const dp_dataset_info *in = dp_dataset_get_info(ds);
        cr_expect_eq(in->h, 28);
        cr_expect_eq(in->w, 28);
        int64_t counts[10];
        cr_assert_eq(dp_dataset_verify(ds, counts), DP_OK, "%s", dp_error_message());
        for (int k = 0; k < 10; k++) {
            cr_expect_eq(counts[k], per_class[s], "%s class %d: %lld", paths[s], k,
                         (long long)counts[k]);
        }
        dp_dataset_destroy(ds);
    }
}

// --- CIFAR-10 ---

enum { CREC = 3073 };

static uint8_t cifar_value(int file, int64_t rec, int ch, int p)
{
    return (uint8_t)(file * 37 + rec * 11 + ch * 100 + p * 3);
}

// Writes batch file `name` in dir with n records; label of record r is (file + r) % 10, or
// bad_label at record bad_at.
static void write_batch(const char *dir, const char *name, int file, int64_t n, int64_t bad_at,
                        int bad_label)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "fopen %s", path);
    uint8_t rec[CREC];
    for (int64_t r = 0; r < n; r++) {
        rec[0] = (uint8_t)(r == bad_at ? bad_label : (file + r) % 10);
        for (int ch = 0; ch < 3; ch++) {
            for (int p = 0; p < 1024; p++) {
                rec[1 + ch * 1024 + p] = cifar_value(file, r, ch, p);
            }
        }
        cr_assert_eq(fwrite(rec, 1, CREC, f), (size_t)CREC);
    }
    cr_assert_eq(fclose(f), 0);
}

static const int64_t batch_records[6] = {3, 2, 4, 1, 2, 3}; // data_batch_1..5, test_batch

static void write_cifar(const char *dir)
{
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
        write_batch(dir, name, i, batch_records[i], -1, 0);
    }
    write_batch(dir, "test_batch.bin", 5, batch_records[5], -1, 0);
}

static void check_cifar_split(const char *path, int first_file, int n_files)
{
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    const dp_dataset_info *in = dp_dataset_get_info(ds);
    cr_expect_eq(in->h, 32);
    cr_expect_eq(in->w, 32);
    cr_expect_eq(in->c, 3);
    cr_expect_str_eq(in->class_names[0], "airplane");
    cr_expect_str_eq(in->class_names[9], "truck");
    uint8_t *img = malloc(3072);
    cr_assert_not_null(img);
    int64_t rec = 0;
    for (int file = first_file; file < first_file + n_files; file++) {
        for (int64_t r = 0; r < batch_records[file]; r++, rec++) {
            int32_t label;
            cr_assert_eq(dp_dataset_read_records(ds, rec, 1, img, &label), DP_OK, "%s",
                         dp_error_message());
            cr_expect_eq(label, (file + r) % 10, "record %lld", (long long)rec);
            int bad = 0;
            for (int p = 0; p < 1024; p++) {
                for (int ch = 0; ch < 3; ch++) {
                    bad += img[p * 3 + ch] != cifar_value(file, r, ch, p); // HWC
                }
            }
            cr_expect_eq(bad, 0, "record %lld: %d bytes differ from the CHW source", (long long)rec,
                         bad);
        }
    }
    cr_expect_eq(rec, in->n);
    free(img);
    dp_dataset_destroy(ds);
}

Test(convert, cifar10_from_synthetic_batches_is_hwc)
{
    write_cifar(scratch_dir);
    dp_convert_result res;
    dp_convert_config cfg = DP_CONVERT_CONFIG_INIT;
    cfg.deflate_level = 3;
    cr_assert_eq(dp_convert_cifar10(&res, scratch_dir, scratch_path("c10"), &cfg), DP_OK, "%s",
                 dp_error_message());
    cr_expect_eq(res.n_train, 12);
    cr_expect_eq(res.n_test, 3);
    cr_expect_eq(res.c, 3);
    // Channel means of the training split, computed here from cifar_value.
    for (int ch = 0; ch < 3; ch++) {
        double sum = 0;
        for (int file = 0; file < 5; file++) {
            for (int64_t r = 0; r < batch_records[file]; r++) {
                for (int p = 0; p < 1024; p++) {
                    sum += cifar_value(file, r, ch, p);
                }
            }
        }
        cr_expect_float_eq(res.mean[ch], (float)(sum / (12 * 1024) / 255.0), 1e-6f, "ch %d", ch);
    }
    check_cifar_split(res.train_path, 0, 5);
    check_cifar_split(res.test_path, 5, 1);
}

Test(convert, cifar10_in_the_tarball_subdirectory)
{
    const char *sub = scratch_path("cifar-10-batches-bin");
    cr_assert_eq(mkdir(sub, 0755), 0);
    write_cifar(sub);
    dp_convert_result res;
    dp_convert_config cfg = DP_CONVERT_CONFIG_INIT;
    cr_assert_eq(dp_convert_cifar10(&res, scratch_dir, scratch_path("c10"), &cfg), DP_OK, "%s",
                 dp_error_message());
    cr_expect_eq(res.n_train, 12);
    cr_expect_eq(res.n_test, 3);
    check_cifar_split(res.train_path, 0, 5);
}

Test(convert, cifar10_errors_name_file_and_record)
{
    write_cifar(scratch_dir);
    dp_convert_result res;
    dp_convert_config cfg = DP_CONVERT_CONFIG_INIT;
    const char *prefix = scratch_path("c10");
    // A label out of range in record 1 of data_batch_3.bin.
    write_batch(scratch_dir, "data_batch_3.bin", 2, 4, 1, 10);
    expect_error(dp_convert_cifar10(&res, scratch_dir, prefix, &cfg), DP_ERR_DATA,
                 scratch_path("data_batch_3.bin"), "record 1 has label 10");
    expect_no_outputs(prefix);
    // A truncated file: not a whole number of records.
    write_batch(scratch_dir, "data_batch_3.bin", 2, 4, -1, 0);
    FILE *f = fopen(scratch_path("test_batch.bin"), "ab");
    cr_assert_not_null(f);
    cr_assert_eq(fputc(7, f), 7);
    cr_assert_eq(fclose(f), 0);
    expect_error(dp_convert_cifar10(&res, scratch_dir, prefix, &cfg), DP_ERR_DATA,
                 scratch_path("test_batch.bin"), "not a whole");
    expect_no_outputs(prefix);
    // A missing batch.
    cr_assert_eq(remove(scratch_path("data_batch_4.bin")), 0);
    expect_error(dp_convert_cifar10(&res, scratch_dir, prefix, &cfg), DP_ERR_IO,
                 scratch_path("data_batch_4.bin"), "No such file");
}
