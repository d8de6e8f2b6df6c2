// Dataset file: writer/reader round trip, hyperslab and index-list reads, h5py interop both ways,
// every validation error of the reader (status and the file named in the message), writer
// misuse, normalization statistics.
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dataset.h"
#include "io_test_util.h"

enum { N = 10, H = 3, W = 4, C = 2, REC = H * W * C, N_CLASSES = 3 };

static const char *const class_names[N_CLASSES] = {"cat", "dog", "a longer class name"};

static uint8_t pixel(int64_t rec, int64_t i)
{
    return (uint8_t)(rec * 31 + i * 7 + 3);
}

static void fill(uint8_t *images, int32_t *labels, int64_t first, int64_t count)
{
    for (int64_t r = 0; r < count; r++) {
        for (int64_t i = 0; i < REC; i++) {
            images[r * REC + i] = pixel(first + r, i);
        }
        labels[r] = (int32_t)((first + r) % N_CLASSES);
    }
}

// Writes the N-record test dataset to path (chunks of 4 records, deflate 1).
static void write_small(const char *path)
{
    dp_dataset_config cfg = DP_DATASET_CONFIG_INIT;
    cfg.n = N;
    cfg.h = H;
    cfg.w = W;
    cfg.c = C;
    cfg.n_classes = N_CLASSES;
    cfg.class_names = class_names;
    cfg.source = "unit test";
    cfg.chunk_records = 4;
    cfg.deflate_level = 1;
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_create(&ds, path, &cfg), DP_OK, "%s", dp_error_message());
    uint8_t images[N * REC];
    int32_t labels[N];
    fill(images, labels, 0, N);
    cr_assert_eq(dp_dataset_append_records(ds, images, labels, 6), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_dataset_append_records(ds, images + 6 * REC, labels + 6, N - 6), DP_OK, "%s",
                 dp_error_message());
    const float mean[C] = {0.25f, 0.5f}, std[C] = {0.125f, 0.75f};
    cr_assert_eq(dp_dataset_set_normalization(ds, mean, std), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_dataset_finish(ds), DP_OK, "%s", dp_error_message());
    dp_dataset_destroy(ds);
}

TestSuite(dataset, .init = scratch_make, .fini = scratch_remove);

Test(dataset, round_trip_keeps_records_and_attributes)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    const dp_dataset_info *in = dp_dataset_get_info(ds);
    cr_expect_eq(in->n, N);
    cr_expect_eq(in->h, H);
    cr_expect_eq(in->w, W);
    cr_expect_eq(in->c, C);
    cr_expect_eq(in->record_bytes, REC);
    cr_expect_eq(in->n_classes, N_CLASSES);
    for (int i = 0; i < N_CLASSES; i++) {
        cr_expect_str_eq(in->class_names[i], class_names[i]);
    }
    cr_expect_eq(in->mean[0], 0.25f);
    cr_expect_eq(in->mean[1], 0.5f);
    cr_expect_eq(in->std[0], 0.125f);
    cr_expect_eq(in->std[1], 0.75f);
    cr_expect_str_eq(in->source, "unit test");
    cr_expect_eq(in->format_version, 1);
    cr_expect_eq(in->chunk_records, 4);
    cr_expect_str_eq(in->compression, "deflate level 1");
    cr_expect_str_eq(in->path, path);

    uint8_t want_images[N * REC], images[N * REC];
    int32_t want_labels[N], labels[N];
    fill(want_images, want_labels, 0, N);
    cr_assert_eq(dp_dataset_read_records(ds, 0, N, images, labels), DP_OK, "%s",
                 dp_error_message());
    cr_expect_eq(memcmp(images, want_images, sizeof images), 0, "images differ (memcmp)");
    cr_expect_eq(memcmp(labels, want_labels, sizeof labels), 0, "labels differ (memcmp)");

    // A range across a chunk boundary.
    cr_assert_eq(dp_dataset_read_records(ds, 3, 5, images, labels), DP_OK, "%s",
                 dp_error_message());
    cr_expect_eq(memcmp(images, want_images + 3 * REC, 5 * REC), 0);
    cr_expect_eq(memcmp(labels, want_labels + 3, 5 * sizeof(int32_t)), 0);
    dp_dataset_destroy(ds);
}

Test(dataset, index_list_reads_runs_in_order)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    const int64_t idx[] = {0, 1, 2, 5, 7, 8, 9};
    enum { K = sizeof idx / sizeof idx[0] };
    uint8_t want_images[N * REC], images[K * REC];
    int32_t want_labels[N], labels[K];
    fill(want_images, want_labels, 0, N);
    cr_assert_eq(dp_dataset_read_indices(ds, idx, K, images, labels), DP_OK, "%s",
                 dp_error_message());
    for (int k = 0; k < K; k++) {
        cr_expect_eq(memcmp(images + k * REC, want_images + idx[k] * REC, REC), 0, "record %lld",
                     (long long)idx[k]);
        cr_expect_eq(labels[k], want_labels[idx[k]], "record %lld", (long long)idx[k]);
    }
    // Labels only.
    int32_t only[K];
    cr_assert_eq(dp_dataset_read_indices(ds, idx, K, NULL, only), DP_OK, "%s",
                 dp_error_message());
    cr_expect_eq(memcmp(only, labels, sizeof only), 0);

    const int64_t unsorted[] = {3, 2};
    expect_error(dp_dataset_read_indices(ds, unsorted, 2, images, labels), DP_ERR_ARG,
                 "strictly increasing", path);
    const int64_t beyond[] = {4, N};
    expect_error(dp_dataset_read_indices(ds, beyond, 2, images, labels), DP_ERR_ARG, "outside",
                 path);
    expect_error(dp_dataset_read_records(ds, 8, 3, images, labels), DP_ERR_ARG, "[8, 11)", path);
    dp_dataset_destroy(ds);
}

Test(dataset, count_classes_and_verify)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    int64_t counts[N_CLASSES], vcounts[N_CLASSES];
    cr_assert_eq(dp_dataset_count_classes(ds, counts), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_dataset_verify(ds, vcounts), DP_OK, "%s", dp_error_message());
    // Labels are rec % 3 for rec in 0..9: 4, 3, 3.
    cr_expect_eq(counts[0], 4);
    cr_expect_eq(counts[1], 3);
    cr_expect_eq(counts[2], 3);
    cr_expect_eq(memcmp(counts, vcounts, sizeof counts), 0);
    dp_dataset_destroy(ds);
}

Test(dataset, h5py_reads_a_written_file)
{
    if (!have_h5py()) {
        cr_skip_test("/usr/bin/python3 cannot import h5py (install python3-h5py)");
    }
    const char *path = scratch_path("small.h5");
    write_small(path);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c '\n"
             "import h5py, sys\n"
             "f = h5py.File(sys.argv[1], \"r\")\n"
             "im, lb = f[\"images\"], f[\"labels\"]\n"
             "assert im.shape == (%d, %d, %d, %d) and str(im.dtype) == \"uint8\", im\n"
             "assert im.chunks == (4, %d, %d, %d), im.chunks\n"
             "assert im.compression == \"gzip\", im.compression\n"
             "assert str(lb.dtype) == \"int32\" and list(lb[:]) == [i %% 3 for i in range(%d)]\n"
             "assert int(im[2, 1, 3, 1]) == (2 * 31 + ((1 * %d + 3) * %d + 1) * 7 + 3) %% 256\n"
             "cls = [c.decode() if isinstance(c, bytes) else c for c in f.attrs[\"classes\"]]\n"
             "assert cls == [\"cat\", \"dog\", \"a longer class name\"], cls\n"
             "assert list(f.attrs[\"mean\"]) == [0.25, 0.5] and list(f.attrs[\"std\"]) == [0.125, "
             "0.75]\n"
             "assert int(f.attrs[\"format_version\"]) == 1\n"
             "src = f.attrs[\"source\"]\n"
             "assert (src.decode() if isinstance(src, bytes) else src) == \"unit test\"\n"
             "' '%s'",
             N, H, W, C, H, W, C, N, W, C, path);
    cr_expect_eq(system(cmd), 0, "h5py check failed: %s", cmd);
}

Test(dataset, reads_a_file_written_by_h5py_with_fixed_length_strings)
{
    if (!have_h5py()) {
        cr_skip_test("/usr/bin/python3 cannot import h5py (install python3-h5py)");
    }
    const char *path = scratch_path("py.h5");
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c '\n"
             "import h5py, numpy as np, sys\n"
             "f = h5py.File(sys.argv[1], \"w\")\n"
             "f[\"images\"] = np.arange(5 * 2 * 2 * 1, dtype=np.uint8).reshape(5, 2, 2, 1)\n"
             "f[\"labels\"] = np.array([1, 0, 1, 1, 0], dtype=np.int64)\n"
             "f.attrs[\"classes\"] = np.array([b\"no\", b\"yes\"], dtype=\"S8\")\n"
             "f.attrs[\"mean\"] = np.array([0.5], dtype=np.float64)\n"
             "f.attrs[\"std\"] = np.array([0.25], dtype=np.float32)\n"
             "f.attrs[\"source\"] = b\"h5py\"\n"
             "f.attrs[\"format_version\"] = 1\n"
             "' '%s'",
             path);
    if (system(cmd) != 0) {
        cr_assert_fail("h5py could not write %s", path);
    }
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    const dp_dataset_info *in = dp_dataset_get_info(ds);
    cr_expect_eq(in->n, 5);
    cr_expect_eq(in->n_classes, 2);
    cr_expect_str_eq(in->class_names[0], "no");
    cr_expect_str_eq(in->class_names[1], "yes");
    cr_expect_str_eq(in->source, "h5py");
    cr_expect_eq(in->chunk_records, 0, "h5py's default layout is contiguous");
    cr_expect_eq(in->mean[0], 0.5f);
    uint8_t images[20];
    int32_t labels[5];
    cr_assert_eq(dp_dataset_read_records(ds, 0, 5, images, labels), DP_OK, "%s",
                 dp_error_message());
    cr_expect_eq(images[19], 19);
    cr_expect_eq(labels[0], 1);
    cr_expect_eq(labels[4], 0);
    dp_dataset_destroy(ds);
}

// --- reader errors: each damages a valid file with the HDF5 C API ---

static hid_t open_rw(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0, "cannot reopen %s", path);
    return f;
}

static void expect_open_error(const char *path, dp_status want, const char *fragment)
{
    dp_dataset *ds = (dp_dataset *)1;
    expect_error(dp_dataset_open(&ds, path), want, path, fragment);
    cr_expect_null(ds, "*out must be NULL after a failed open");
}

static void replace_dataset(const char *path, const char *name, hid_t type, int rank,
                            const hsize_t *dims)
{
    hid_t f = open_rw(path);
    cr_assert_geq(H5Ldelete(f, name, H5P_DEFAULT), 0);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(d, 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
}

Test(dataset, open_missing_file_names_it)
{
    expect_open_error(scratch_path("absent.h5"), DP_ERR_IO, "No such file");
}

Test(dataset, open_non_hdf5_file_names_it)
{
    const char *path = scratch_path("text.h5");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("not hdf5\n", f);
    cr_assert_eq(fclose(f), 0);
    expect_open_error(path, DP_ERR_DATA, "not an HDF5 file");
}

Test(dataset, open_missing_labels)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    hid_t f = open_rw(path);
    cr_assert_geq(H5Ldelete(f, "labels", H5P_DEFAULT), 0);
    H5Fclose(f);
    expect_open_error(path, DP_ERR_DATA, "/labels is missing");
}

Test(dataset, open_missing_images)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    hid_t f = open_rw(path);
    cr_assert_geq(H5Ldelete(f, "images", H5P_DEFAULT), 0);
    H5Fclose(f);
    expect_open_error(path, DP_ERR_DATA, "/images is missing");
}

Test(dataset, open_images_of_wrong_rank)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    hsize_t dims[3] = {N, H, W};
    replace_dataset(path, "images", H5T_STD_U8LE, 3, dims);
    expect_open_error(path, DP_ERR_DATA, "/images has rank 3, expected 4");
}

Test(dataset, open_images_of_wrong_type)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    hsize_t dims[4] = {N, H, W, C};
    replace_dataset(path, "images", H5T_STD_I16LE, 4, dims);
    expect_open_error(path, DP_ERR_DATA, "expected uint8");
}

Test(dataset, open_label_count_mismatch)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    hsize_t n = N - 1;
    replace_dataset(path, "labels", H5T_STD_I32LE, 1, &n);
    expect_open_error(path, DP_ERR_DATA,
                      "label count mismatch: /labels has 9 labels, /images has 10");
}

Test(dataset, open_missing_attribute)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    hid_t f = open_rw(path);
    cr_assert_geq(H5Adelete(f, "std"), 0);
    H5Fclose(f);
    expect_open_error(path, DP_ERR_DATA, "attribute 'std' is missing");
}

static void overwrite_attr(const char *path, const char *name, hid_t mem_type, const void *value)
{
    hid_t f = open_rw(path);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    cr_assert_geq(a, 0);
    cr_assert_geq(H5Awrite(a, mem_type, value), 0);
    H5Aclose(a);
    H5Fclose(f);
}

Test(dataset, open_other_format_version)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    int two = 2;
    overwrite_attr(path, "format_version", H5T_NATIVE_INT, &two);
    expect_open_error(path, DP_ERR_UNSUPPORTED, "format_version is 2");
}

Test(dataset, open_zero_std)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    float std[C] = {0.5f, 0.0f};
    overwrite_attr(path, "std", H5T_NATIVE_FLOAT, std);
    expect_open_error(path, DP_ERR_DATA, "channel 1");
}

Test(dataset, label_out_of_range_names_record_and_file)
{
    const char *path = scratch_path("small.h5");
    write_small(path);
    hid_t f = open_rw(path);
    hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT);
    int32_t labels[N];
    cr_assert_geq(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels), 0);
    labels[7] = N_CLASSES;
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels), 0);
    H5Dclose(d);
    H5Fclose(f);

    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    uint8_t images[N * REC];
    expect_error(dp_dataset_read_records(ds, 0, N, images, labels), DP_ERR_DATA, path,
                 "record 7 has label 3, outside [0, 3)");
    cr_expect_eq(dp_dataset_read_records(ds, 0, 7, images, labels), DP_OK, "%s",
                 dp_error_message());
    int64_t counts[N_CLASSES];
    expect_error(dp_dataset_verify(ds, counts), DP_ERR_DATA, path, "record 7");
    expect_error(dp_dataset_count_classes(ds, counts), DP_ERR_DATA, path, "record 7");
    dp_dataset_destroy(ds);
}

// --- writer misuse ---

Test(dataset, writer_rejects_bad_config_and_misuse)
{
    const char *path = scratch_path("w.h5");
    dp_dataset *ds = NULL;
    dp_dataset_config cfg = DP_DATASET_CONFIG_INIT;
    expect_error(dp_dataset_create(&ds, path, &cfg), DP_ERR_ARG, path, "n -1");
    cfg.n = 4;
    cfg.h = cfg.w = 2;
    cfg.c = 5;
    cfg.n_classes = N_CLASSES;
    cfg.class_names = class_names;
    expect_error(dp_dataset_create(&ds, path, &cfg), DP_ERR_ARG, "c 5");
    cfg.c = 1;
    cr_assert_eq(dp_dataset_create(&ds, path, &cfg), DP_OK, "%s", dp_error_message());
    uint8_t images[5 * 4] = {0};
    int32_t labels[5] = {0, 1, 2, 0, 1};
    int32_t bad[2] = {0, 3};
    expect_error(dp_dataset_append_records(ds, images, bad, 2), DP_ERR_DATA,
                 "record 1 has label 3");
    expect_error(dp_dataset_append_records(ds, images, labels, 5), DP_ERR_ARG, "exceeds N = 4");
    cr_assert_eq(dp_dataset_append_records(ds, images, labels, 3), DP_OK, "%s",
                 dp_error_message());
    expect_error(dp_dataset_finish(ds), DP_ERR_ARG, "3 of 4 records");
    cr_assert_eq(dp_dataset_append_records(ds, images, labels, 1), DP_OK, "%s",
                 dp_error_message());
    expect_error(dp_dataset_finish(ds), DP_ERR_ARG, "mean/std were not set");
    const float mean[1] = {0.5f}, zero[1] = {0.0f}, one[1] = {1.0f};
    expect_error(dp_dataset_set_normalization(ds, mean, zero), DP_ERR_ARG, "std 0");
    cr_assert_eq(dp_dataset_set_normalization(ds, mean, one), DP_OK);
    cr_expect_eq(dp_dataset_finish(ds), DP_OK, "%s", dp_error_message());
    dp_dataset_destroy(ds);
    dp_dataset_destroy(NULL);
}

Test(dataset, create_in_missing_directory_names_path)
{
    const char *path = scratch_path("no/such/dir/x.h5");
    dp_dataset_config cfg = DP_DATASET_CONFIG_INIT;
    cfg.n = cfg.h = cfg.w = cfg.c = 1;
    cfg.n_classes = 1;
    cfg.class_names = class_names;
    dp_dataset *ds = NULL;
    expect_error(dp_dataset_create(&ds, path, &cfg), DP_ERR_IO, path, "cannot create the file");
    cr_expect_null(ds);
}

// --- statistics ---

Test(dataset, stats_are_exact_per_channel)
{
    // Channel 0: 0 and 255 -> mean 0.5, std 0.5; channel 1: constant 51 -> mean 0.2, std 1.
    const uint8_t px[4 * 2] = {0, 51, 255, 51, 0, 51, 255, 51};
    dp_dataset_stats s;
    dp_dataset_stats_init(&s, 2);
    dp_dataset_stats_add(&s, px, 2);
    dp_dataset_stats_add(&s, px + 4, 2);
    float mean[2], std[2];
    dp_dataset_stats_finish(&s, mean, std);
    cr_expect_float_eq(mean[0], 0.5f, 1e-7f);
    cr_expect_float_eq(std[0], 0.5f, 1e-7f);
    cr_expect_float_eq(mean[1], 0.2f, 1e-7f);
    cr_expect_eq(std[1], 1.0f, "a constant channel gets std 1");
}
