// The image-folder converter on trees of tiny PNG and JPEG files written here: classes are the
// sorted folder names, every record is its file decoded and resized (bitwise), the held-out
// split is per class, disjoint, complete and the same run after run, mean/std come from the
// training split; each user error (empty class folder, corrupt image, non-image file, missing
// or misshapen tree, classes differing between trees) names the folder or file and leaves no
// output behind.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_test_util.h"
#include "io/convert.h"
#include "io/dataset.h"
#include "io/image.h"
#include "io_test_util.h"

TestSuite(convert_folder, .init = scratch_make, .fini = scratch_remove, .timeout = 60);

enum { OH = 6, OW = 5, MAX_FILES = 32 };

static void make_dir(const char *path)
{
    cr_assert(mkdir(path, 0755) == 0, "mkdir %s", path);
}

// Writes n images into root/name (made here), PNG and JPEG alternately, sizes varying; the
// seed makes them distinct across calls.
static void make_class(const char *root, const char *name, int n, int seed)
{
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    make_dir(dir);
    for (int i = 0; i < n; i++) {
        int h = 7 + (i + seed) % 5, w = 9 + (2 * i + seed) % 6;
        uint8_t px[16 * 16 * 4];
        int c = i % 3 == 2 ? 1 : 3; // some grey files too
        pattern_image(px, h, w, c, seed * 10 + i);
        snprintf(path, sizeof path, "%s/img%02d.%s", dir, i, i % 2 ? "jpg" : "png");
        if (i % 2) {
            write_jpeg(path, px, h, w, c, 90);
        } else {
            write_png(path, px, h, w, c);
        }
    }
}

// The expected record of the image file at path: decoded to c channels and resized.
static void expected(uint8_t *out, const char *path, int64_t h, int64_t w, int c)
{
    uint8_t *px = NULL;
    int64_t ih = 0, iw = 0;
    cr_assert_eq(dp_image_load(&px, &ih, &iw, path, c), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_image_resize(out, h, w, px, ih, iw, c), DP_OK);
    free(px);
}

static dp_status convert(dp_convert_result *res, const char *src, const char *prefix,
                         const dp_convert_folder_config *f)
{
    dp_convert_config cfg = DP_CONVERT_CONFIG_INIT;
    cfg.chunk_records = 4;
    return dp_convert_folder(res, src, prefix, f, &cfg);
}

static dp_convert_folder_config folder_config(void)
{
    dp_convert_folder_config f = DP_CONVERT_FOLDER_CONFIG_INIT;
    f.h = OH;
    f.w = OW;
    return f;
}

// Reads every record of path: images (n, OH, OW, c) and labels; returns n.
static int64_t read_all(const char *path, uint8_t *images, int32_t *labels, int64_t cap)
{
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    int64_t n = dp_dataset_get_info(ds)->n;
    cr_assert_leq(n, cap);
    cr_assert_eq(dp_dataset_read_records(ds, 0, n, images, labels), DP_OK, "%s",
                 dp_error_message());
    dp_dataset_destroy(ds);
    return n;
}

Test(convert_folder, held_out_split_is_per_class_disjoint_complete_and_repeatable)
{
    char src[512];
    snprintf(src, sizeof src, "%s", scratch_path("src"));
    make_dir(src);
    make_class(src, "emu", 3, 3); // created first; sorted last
    make_class(src, "cat", 5, 1);
    make_class(src, "dog", 4, 2);
    char hidden[700];
    snprintf(hidden, sizeof hidden, "%s/cat/.DS_Store", src);
    write_bytes(hidden, "junk", 4);
    snprintf(hidden, sizeof hidden, "%s/.cache", src);
    make_dir(hidden);

    dp_convert_folder_config f = folder_config();
    f.test_fraction = 0.25; // per class: round(1.25) = 1, round(1) = 1, round(0.75) = 1
    dp_convert_result res;
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s", scratch_path("out"));
    cr_assert_eq(convert(&res, src, prefix, &f), DP_OK, "%s", dp_error_message());
    cr_expect(res.n_train == 9 && res.n_test == 3 && res.n_classes == 3 && res.c == 3 &&
                  res.h == OH && res.w == OW,
              "%lld train, %lld test, %d classes", (long long)res.n_train,
              (long long)res.n_test, res.n_classes);

    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, res.train_path), DP_OK, "%s", dp_error_message());
    const dp_dataset_info *in = dp_dataset_get_info(ds);
    cr_assert_eq(in->n_classes, 3);
    cr_expect_str_eq(in->class_names[0], "cat");
    cr_expect_str_eq(in->class_names[1], "dog");
    cr_expect_str_eq(in->class_names[2], "emu");
    float stored_mean[3], stored_std[3];
    memcpy(stored_mean, in->mean, sizeof stored_mean);
    memcpy(stored_std, in->std, sizeof stored_std);
    dp_dataset_destroy(ds);

    enum { REC = OH * OW * 3 };
    static uint8_t train[MAX_FILES * REC], test[MAX_FILES * REC], want[REC];
    int32_t train_labels[MAX_FILES], test_labels[MAX_FILES];
    int64_t n_train = read_all(res.train_path, train, train_labels, MAX_FILES);
    int64_t n_test = read_all(res.test_path, test, test_labels, MAX_FILES);
    // Every file is exactly one record, of its class, in one of the splits.
    const char *classes[3] = {"cat", "dog", "emu"};
    const int counts[3] = {5, 4, 3};
    int matched_train = 0, matched_test = 0;
    for (int c = 0; c < 3; c++) {
        int test_of_class = 0;
        for (int i = 0; i < counts[c]; i++) {
            char path[700];
            snprintf(path, sizeof path, "%s/%s/img%02d.%s", src, classes[c], i,
                     i % 2 ? "jpg" : "png");
            expected(want, path, OH, OW, 3);
            int hits = 0;
            for (int64_t r = 0; r < n_train; r++) {
                hits += train_labels[r] == c && memcmp(train + r * REC, want, REC) == 0;
            }
            matched_train += hits;
            for (int64_t r = 0; r < n_test; r++) {
                int hit = test_labels[r] == c && memcmp(test + r * REC, want, REC) == 0;
                hits += hit;
                matched_test += hit;
                test_of_class += hit;
            }
            cr_expect_eq(hits, 1, "%s is in %d records (memcmp)", path, hits);
        }
        cr_expect_eq(test_of_class, 1, "class %s: %d held out", classes[c], test_of_class);
    }
    cr_expect(matched_train == 9 && matched_test == 3);
    // Records are class by class.
    for (int64_t r = 1; r < n_train; r++) {
        cr_expect_geq(train_labels[r], train_labels[r - 1]);
    }
    // mean/std of the training split, in double.
    for (int ch = 0; ch < 3; ch++) {
        double s = 0.0, s2 = 0.0, m = (double)n_train * OH * OW;
        for (int64_t i = ch; i < n_train * REC; i += 3) {
            s += train[i] / 255.0;
            s2 += (train[i] / 255.0) * (train[i] / 255.0);
        }
        double mean = s / m, sd = sqrt(s2 / m - mean * mean);
        cr_expect(fabs(stored_mean[ch] - mean) < 1e-5 && fabs(stored_std[ch] - sd) < 1e-5,
                  "channel %d: stored %g/%g, want %g/%g", ch, (double)stored_mean[ch],
                  (double)stored_std[ch], mean, sd);
    }
    // The same files give the same split.
    static uint8_t again[MAX_FILES * REC];
    int32_t again_labels[MAX_FILES];
    snprintf(prefix, sizeof prefix, "%s", scratch_path("again"));
    cr_assert_eq(convert(&res, src, prefix, &f), DP_OK, "%s", dp_error_message());
    cr_assert_eq(read_all(res.test_path, again, again_labels, MAX_FILES), n_test);
    cr_expect_eq(memcmp(again, test, (size_t)(n_test * REC)), 0, "the split changed (memcmp)");
}

Test(convert_folder, test_tree_and_grayscale_in_file_name_order)
{
    char src[512], tst[512];
    snprintf(src, sizeof src, "%s", scratch_path("train"));
    snprintf(tst, sizeof tst, "%s", scratch_path("test"));
    make_dir(src);
    make_dir(tst);
    make_class(src, "a", 3, 4);
    make_class(src, "b", 2, 5);
    make_class(tst, "a", 1, 6);
    make_class(tst, "b", 2, 7);
    dp_convert_folder_config f = folder_config();
    f.channels = 1;
    f.test_src = tst;
    dp_convert_result res;
    cr_assert_eq(convert(&res, src, scratch_path("g"), &f), DP_OK, "%s", dp_error_message());
    cr_expect(res.n_train == 5 && res.n_test == 3 && res.c == 1);
    enum { REC = OH * OW };
    static uint8_t got[MAX_FILES * REC];
    uint8_t want[REC];
    int32_t labels[MAX_FILES];
    const struct {
        const char *root;
        const int counts[2];
        const char *path;
    } splits[2] = {{src, {3, 2}, res.train_path}, {tst, {1, 2}, res.test_path}};
    for (int s = 0; s < 2; s++) {
        int64_t n = read_all(splits[s].path, got, labels, MAX_FILES), r = 0;
        for (int c = 0; c < 2; c++) {
            for (int i = 0; i < splits[s].counts[c]; i++, r++) {
                char path[700];
                snprintf(path, sizeof path, "%s/%c/img%02d.%s", splits[s].root, 'a' + c, i,
                         i % 2 ? "jpg" : "png");
                expected(want, path, OH, OW, 1);
                cr_expect(r < n && labels[r] == c && memcmp(got + r * REC, want, REC) == 0,
                          "record %lld of %s is not %s (memcmp)", (long long)r, splits[s].path,
                          path);
            }
        }
        cr_expect_eq(r, n);
    }
}

// Converts src (fraction 0.5) expecting status want and every fragment in the message, and
// that nothing was written.
#define expect_convert_error(src, want, ...)                                                      \
    do {                                                                                          \
        dp_convert_folder_config f_ = folder_config();                                            \
        f_.test_fraction = 0.5;                                                                   \
        dp_convert_result res_;                                                                   \
        expect_error(convert(&res_, (src), scratch_path("x"), &f_), want, __VA_ARGS__);           \
        cr_expect(!file_exists(scratch_path("x-train.h5")) &&                                     \
                      !file_exists(scratch_path("x-train.h5.tmp")) &&                             \
                      !file_exists(scratch_path("x-test.h5.tmp")),                                \
                  "a failed conversion left files behind");                                       \
    } while (0)

// A tree root/{a, b} of two images each; returns root's path (static storage).
static const char *good_tree(const char *name)
{
    static char root[512];
    snprintf(root, sizeof root, "%s", scratch_path(name));
    make_dir(root);
    make_class(root, "a", 2, 1);
    make_class(root, "b", 2, 2);
    return root;
}

Test(convert_folder, an_empty_class_folder_is_an_error_naming_it)
{
    const char *root = good_tree("t");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/c", root);
    make_dir(dir);
    expect_convert_error(root, DP_ERR_DATA, dir, "class folder 'c' has no images");
}

Test(convert_folder, a_corrupt_image_is_an_error_naming_the_file)
{
    const char *root = good_tree("t");
    char path[600];
    snprintf(path, sizeof path, "%s/b/img01.jpg", root); // a JPEG cut in the middle
    static uint8_t whole[1 << 16];
    size_t n = read_bytes(path, whole, sizeof whole);
    cr_assert(n > 100 && n < sizeof whole);
    write_bytes(path, whole, n / 2);
    expect_convert_error(root, DP_ERR_DATA, path, "cannot decode JPEG image");
}

Test(convert_folder, a_non_image_file_is_an_error_naming_it)
{
    const char *root = good_tree("t");
    char path[600];
    snprintf(path, sizeof path, "%s/a/notes.txt", root);
    write_bytes(path, "labels were checked\n", 20);
    expect_convert_error(root, DP_ERR_DATA, path, "not a PNG or JPEG image");
}

Test(convert_folder, a_missing_or_misshapen_tree_is_an_error_naming_the_path)
{
    const char *absent = scratch_path("absent");
    expect_convert_error(absent, DP_ERR_IO, absent, "cannot open");
    const char *root = good_tree("t");
    char path[600];
    snprintf(path, sizeof path, "%s/README", root);
    write_bytes(path, "readme", 6);
    expect_convert_error(root, DP_ERR_DATA, path, "not a folder");
    cr_assert_eq(unlink(path), 0);
    snprintf(path, sizeof path, "%s/a/more", root);
    make_dir(path);
    expect_convert_error(root, DP_ERR_DATA, path, "a folder inside class folder 'a'");
    cr_assert_eq(rmdir(path), 0);
    snprintf(path, sizeof path, "%s/b/gone.png", root);
    cr_assert_eq(symlink("nowhere.png", path), 0);
    expect_convert_error(root, DP_ERR_IO, path, "cannot read");
    cr_assert_eq(unlink(path), 0);
    char empty[512];
    snprintf(empty, sizeof empty, "%s", scratch_path("empty"));
    make_dir(empty);
    expect_convert_error(empty, DP_ERR_DATA, empty, "no class folders");
}

Test(convert_folder, split_and_config_errors)
{
    const char *root = good_tree("t");
    char other[512];
    snprintf(other, sizeof other, "%s", scratch_path("other"));
    make_dir(other);
    make_class(other, "a", 1, 3);
    make_class(other, "c", 1, 4);
    dp_convert_folder_config f = folder_config();
    f.test_src = other;
    dp_convert_result res;
    expect_error(convert(&res, root, scratch_path("x"), &f), DP_ERR_DATA, "class folder 'b'",
                 root, other);
    f = folder_config();
    f.test_fraction = 0.1; // round(0.2) = 0 of each two-image class
    expect_error(convert(&res, root, scratch_path("x"), &f), DP_ERR_DATA, "holds out no image");
    f = folder_config();
    f.h = 0;
    expect_error(convert(&res, root, scratch_path("x"), &f), DP_ERR_ARG, "image size 0x5");
    f = folder_config();
    f.channels = 4;
    expect_error(convert(&res, root, scratch_path("x"), &f), DP_ERR_ARG, "4 channels");
    f = folder_config();
    f.test_fraction = 1.0;
    expect_error(convert(&res, root, scratch_path("x"), &f), DP_ERR_ARG, "test fraction 1");
}
