// The dpdata command as a user runs it: exit status 0/1/2, usage on wrong usage, one
// "dpdata: error: ..." line naming the file on errors, info and verify output, convert cifar10
// and convert folder.
#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "image_test_util.h"
#include "io/dataset.h"
#include "io_test_util.h"

TestSuite(dpdata, .init = scratch_make, .fini = scratch_remove);

static char out_text[16384], err_text[16384];

static void slurp(char *buf, size_t size, const char *path)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

// Runs build/dpdata with args (a shell fragment); returns its exit status and keeps its
// stdout and stderr in out_text and err_text.
static int dpdata(const char *args)
{
    const char *root = getenv("DP_BUILD_ROOT");
    cr_assert_not_null(root, "DP_BUILD_ROOT is not set (run through meson test)");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s/dpdata' %s >'%s' 2>'%s'", root, args, scratch_path("out"),
             scratch_path("err"));
    int rc = system(cmd);
    cr_assert(rc != -1 && WIFEXITED(rc), "cannot run: %s", cmd);
    slurp(out_text, sizeof out_text, scratch_path("out"));
    slurp(err_text, sizeof err_text, scratch_path("err"));
    return WEXITSTATUS(rc);
}

static int count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

#define expect_contains(text, needle)                                                             \
    cr_expect_not_null(strstr((text), (needle)), "missing '%s' in:\n%s", (needle), (text))

Test(dpdata, help_and_version_exit_0)
{
    cr_expect_eq(dpdata("--help"), 0);
    expect_contains(out_text, "convert fashion-mnist");
    expect_contains(out_text, "verify FILE");
    cr_expect_eq(dpdata("--version"), 0);
    expect_contains(out_text, "dpdata ");
    expect_contains(out_text, "hdf5: 1.");
}

Test(dpdata, wrong_usage_exits_2_with_usage_line)
{
    const char *cases[][2] = {
        {"", "missing a command"},
        {"frobnicate", "unknown command 'frobnicate'"},
        {"convert mnist --out x", "unknown format 'mnist'"},
        {"convert cifar10 --out x", "--src DIR is required"},
        {"convert fashion-mnist --src /tmp", "--out PREFIX is required"},
        {"convert fashion-mnist --out x --chunk 12x", "expected a positive integer, got '12x'"},
        {"convert fashion-mnist --out x --bogus 1", "unknown option '--bogus'"},
        {"info", "expected one FILE"},
        {"verify a b", "expected one FILE"},
        {"convert folder --out x --size 4x4", "--src DIR is required"},
        {"convert folder --src /tmp --out x", "--size HxW is required"},
        {"convert folder --src /tmp --out x --size 4", "--size: expected HxW"},
        {"convert folder --src /tmp --out x --size 4x5000", "--size: expected HxW"},
        {"convert folder --src /tmp --out x --size 4x4 --channels 2", "expected 1 or 3"},
        {"convert folder --src /tmp --out x --size 4x4 --test-fraction 1", "expected 0 < F < 1"},
        {"convert folder --src /tmp --out x --size 4x4 --test-fraction 0.2 --test-src /tmp",
         "exclude each other"},
        {"convert cifar10 --src /tmp --out x --size 4x4", "'--size' is an option of convert "
                                                          "folder only"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_expect_eq(dpdata(cases[i][0]), 2, "dpdata %s", cases[i][0]);
        expect_contains(err_text, cases[i][1]);
        expect_contains(err_text, "usage: dpdata");
        cr_expect_eq(out_text[0], '\0', "nothing on stdout for wrong usage");
    }
}

Test(dpdata, missing_file_is_one_error_line_naming_it)
{
    char path[512];
    snprintf(path, sizeof path, "%s", scratch_path("absent.h5"));
    char args[600];
    snprintf(args, sizeof args, "info '%s'", path);
    cr_expect_eq(dpdata(args), 1);
    char want[700];
    snprintf(want, sizeof want, "dpdata: error: %s: cannot open: No such file or directory\n",
             path);
    cr_expect_str_eq(err_text, want);
}

static void write_cifar_batches(void)
{
    static uint8_t rec[3073];
    const char *names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                            "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    for (int i = 0; i < 6; i++) {
        FILE *f = fopen(scratch_path(names[i]), "wb");
        cr_assert_not_null(f);
        for (int r = 0; r < 2; r++) {
            rec[0] = (uint8_t)((i * 2 + r) % 10);
            memset(rec + 1, i * 40 + r, 3072);
            cr_assert_eq(fwrite(rec, 1, sizeof rec, f), sizeof rec);
        }
        cr_assert_eq(fclose(f), 0);
    }
}

Test(dpdata, convert_cifar10_then_info_and_verify)
{
    write_cifar_batches();
    char args[1200];
    snprintf(args, sizeof args, "convert cifar10 --src '%s' --out '%s' --chunk 3 --deflate 2",
             scratch_dir, scratch_path("c10"));
    cr_assert_eq(dpdata(args), 0, "%s", err_text);
    expect_contains(out_text, "c10-train.h5 (10 records)");
    expect_contains(out_text, "c10-test.h5 (2 records)");

    snprintf(args, sizeof args, "info '%s'", scratch_path("c10-train.h5"));
    cr_assert_eq(dpdata(args), 0, "%s", err_text);
    expect_contains(out_text, "records:     10\n");
    expect_contains(out_text, "shape:       32 x 32 x 3");
    expect_contains(out_text, "truck");
    expect_contains(out_text, "chunking:    3 records per chunk (9216 bytes)");
    expect_contains(out_text, "compression: deflate level 2");
    // Labels 0..9 once each in the training split.
    cr_expect_eq(count_of(out_text, "          1\n"), 10, "%s", out_text);

    snprintf(args, sizeof args, "verify '%s'", scratch_path("c10-test.h5"));
    cr_assert_eq(dpdata(args), 0, "%s", err_text);
    expect_contains(out_text, ": ok: 2 records");
}

Test(dpdata, verify_reports_label_out_of_range)
{
    char path[512];
    snprintf(path, sizeof path, "%s", scratch_path("bad.h5"));
    const char *const names[2] = {"a", "b"};
    dp_dataset_config cfg = DP_DATASET_CONFIG_INIT;
    cfg.n = 20;
    cfg.h = cfg.w = cfg.c = 1;
    cfg.n_classes = 2;
    cfg.class_names = names;
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_create(&ds, path, &cfg), DP_OK, "%s", dp_error_message());
    uint8_t images[20] = {0};
    int32_t labels[20] = {0};
    const float mean = 0.5f, std = 0.25f;
    cr_assert_eq(dp_dataset_append_records(ds, images, labels, 20), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_dataset_set_normalization(ds, &mean, &std), DP_OK);
    cr_assert_eq(dp_dataset_finish(ds), DP_OK, "%s", dp_error_message());
    dp_dataset_destroy(ds);
    // Label of record 13 becomes 5 (only 2 classes).
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT);
    labels[13] = 5;
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels), 0);
    H5Dclose(d);
    H5Fclose(f);

    char args[600];
    snprintf(args, sizeof args, "verify '%s'", path);
    cr_expect_eq(dpdata(args), 1);
    expect_contains(err_text, path);
    expect_contains(err_text, "record 13 has label 5, outside [0, 2)");
    cr_expect_eq(count_of(err_text, "dpdata: error:"), 1, "%s", err_text);
    cr_expect_eq(count_of(err_text, "\n"), 1, "one line: %s", err_text);
    snprintf(args, sizeof args, "info '%s'", path);
    cr_expect_eq(dpdata(args), 1);
    expect_contains(err_text, "record 13");
}

// A tree dir/{bird, ant} of three PNG images each.
static void write_folder_tree(const char *dir)
{
    cr_assert_eq(mkdir(dir, 0755), 0);
    const char *classes[2] = {"bird", "ant"};
    for (int c = 0; c < 2; c++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, classes[c]);
        cr_assert_eq(mkdir(path, 0755), 0);
        for (int i = 0; i < 3; i++) {
            uint8_t px[10 * 12 * 3];
            pattern_image(px, 10, 12, 3, c * 3 + i);
            snprintf(path, sizeof path, "%s/%s/%d.png", dir, classes[c], i);
            write_png(path, px, 10, 12, 3);
        }
    }
}

Test(dpdata, convert_folder_then_info)
{
    char src[512], args[1600];
    snprintf(src, sizeof src, "%s", scratch_path("tree"));
    write_folder_tree(src);
    snprintf(args, sizeof args, "convert folder --src '%s' --out '%s' --size 8x6 --channels 1 "
             "--test-fraction 0.34", src, scratch_path("f"));
    cr_assert_eq(dpdata(args), 0, "%s", err_text);
    expect_contains(out_text, "f-train.h5 (4 records)");
    expect_contains(out_text, "f-test.h5 (2 records), 8x6x1, 2 classes");
    expect_contains(out_text, "test split: 0.34 of each class");
    snprintf(args, sizeof args, "info '%s'", scratch_path("f-test.h5"));
    cr_assert_eq(dpdata(args), 0, "%s", err_text);
    expect_contains(out_text, "shape:       8 x 6 x 1");
    expect_contains(out_text, "     0  ant  ");
    expect_contains(out_text, "     1  bird ");
}

Test(dpdata, convert_folder_with_a_corrupt_image_is_one_error_line_naming_it)
{
    char src[512], bad[700], args[1600];
    snprintf(src, sizeof src, "%s", scratch_path("tree"));
    write_folder_tree(src);
    snprintf(bad, sizeof bad, "%s/bird/1.png", src);
    uint8_t head[40];
    write_bytes(bad, head, read_bytes(bad, head, sizeof head)); // only the first 40 bytes
    snprintf(args, sizeof args, "convert folder --src '%s' --out '%s' --size 8x8 "
             "--test-fraction 0.34", src, scratch_path("f"));
    cr_expect_eq(dpdata(args), 1);
    expect_contains(err_text, bad);
    expect_contains(err_text, "cannot decode PNG image");
    cr_expect_eq(count_of(err_text, "\n"), 1, "one line: %s", err_text);
    cr_expect(!file_exists(scratch_path("f-train.h5")) && !file_exists(scratch_path("f-test.h5")));
}
