// main() of dpdata, the dataset tool: converts public datasets and image folders to dptrain's
// HDF5 format, and describes or verifies a dataset file. Parses arguments and calls src/io;
// nothing else. Exit status: 0 on success, 1 on any error (printed once as
// "dpdata: error: ..."), 2 on wrong usage.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
#include "dp_config.h"
#include "io/convert.h"
#include "io/dataset.h"
#include "io/h5_info.h"

enum { EXIT_USAGE = 2 };

static const char usage_line[] =
    "usage: dpdata convert fashion-mnist|cifar10 [--src DIR] --out PREFIX [--chunk N] "
    "[--deflate L]\n"
    "       dpdata convert folder --src DIR --out PREFIX --size HxW [--channels 1|3]\n"
    "                             [--test-fraction F | --test-src DIR2] [--chunk N] "
    "[--deflate L]\n"
    "       dpdata info FILE | dpdata verify FILE | dpdata --help | dpdata --version\n";

static const char default_fmnist_src[] = "/usr/share/datasets/fashion-mnist";

static void print_help(void)
{
    printf("%s", usage_line);
    printf("\n"
           "Makes and checks dptrain dataset files (HDF5: /images uint8 [N,H,W,C], /labels\n"
           "int32 [N], attributes classes, mean, std, source, format_version).\n"
           "\n"
           "commands:\n"
           "  convert fashion-mnist  the four IDX files (.gz or plain) in --src (default\n"
           "                         %s)\n"
           "  convert cifar10        data_batch_1..5.bin and test_batch.bin in --src\n"
           "                         (or in --src/cifar-10-batches-bin)\n"
           "  convert folder         an image-folder tree: --src holds one folder per class\n"
           "                         (class names: folder names, byte-sorted), each holding\n"
           "                         PNG or JPEG files; decoded (stb_image), converted to RGB\n"
           "                         (or grayscale) and resized to --size (bilinear, antialiased\n"
           "                         when shrinking; aspect ratio not kept). Test split: the\n"
           "                         same tree under --test-src, or --test-fraction of each\n"
           "                         class (default 0.1; the same images run after run).\n"
           "                         Names starting with '.' are skipped.\n"
           "                         All write PREFIX-train.h5 and PREFIX-test.h5 atomically,\n"
           "                         with mean/std of the training split stored in both.\n"
           "  info FILE              shape, classes and count per class, mean/std, chunking,\n"
           "                         compression\n"
           "  verify FILE            reads every record and checks every label; exit 1 and\n"
           "                         the record index on the first problem\n"
           "\n"
           "convert options:\n"
           "  --src DIR              directory of the source files\n"
           "  --out PREFIX           output prefix (required)\n"
           "  --chunk N              records per HDF5 chunk (default: as many as fit in\n"
           "                         %d KiB, at most %d: one record for 224x224x3)\n"
           "  --deflate L            deflate level 1..9 (default 0: uncompressed, fastest to\n"
           "                         read at random)\n"
           "  --size HxW             folder: stored image size, 1..4096 each (required)\n"
           "  --channels 1|3         folder: 3 RGB (default) or 1 grayscale\n"
           "  --test-fraction F      folder: share of each class held out, 0 < F < 1\n"
           "  --test-src DIR2        folder: the test split's tree (same class folders)\n"
           "\n"
           "  --version              version, HDF5 and zlib\n"
           "  -h, --help             this text\n"
           "\n"
           "exit status: 0 success, 1 error, 2 wrong usage\n",
           default_fmnist_src, DP_DATASET_CHUNK_TARGET_BYTES >> 10,
           DP_DATASET_DEFAULT_CHUNK_RECORDS);
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "dpdata: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage_line);
    return EXIT_USAGE;
}

static int fail(void)
{
    fprintf(stderr, "dpdata: error: %s\n", dp_error_message());
    return 1;
}

static void print_version(void)
{
    char h5[256];
    dp_io_h5_version(h5, sizeof h5);
    printf("dpdata %s\n", DP_VERSION);
    printf("  dataset format_version: %d\n", DP_DATASET_FORMAT_VERSION);
    printf("  hdf5: %s\n", h5);
    printf("  zlib: %s\n", zlibVersion());
}

// --- convert ---

// Parses a whole decimal integer in [lo, hi].
static int parse_int(int64_t *out, const char *text, int64_t lo, int64_t hi)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        return 0;
    }
    *out = v;
    return 1;
}

// Parses "HxW" with both in [1, 4096].
static int parse_size(int64_t *h, int64_t *w, const char *text)
{
    char *end = NULL;
    errno = 0;
    long long a = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != 'x') {
        return 0;
    }
    const char *rest = end + 1;
    long long b = strtoll(rest, &end, 10);
    if (errno != 0 || end == rest || *end != '\0' || a < 1 || a > 4096 || b < 1 || b > 4096) {
        return 0;
    }
    *h = a;
    *w = b;
    return 1;
}

// Parses a number strictly between 0 and 1.
static int parse_fraction(double *out, const char *text)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v > 0.0 && v < 1.0)) {
        return 0;
    }
    *out = v;
    return 1;
}

// The options only `convert folder` takes; returns -1 if opt is none of them, else 0 or the
// usage error's exit status.
static int folder_option(dp_convert_folder_config *f, int *fraction_given, const char *opt,
                         const char *val)
{
    int64_t v = 0;
    if (strcmp(opt, "--size") == 0) {
        return parse_size(&f->h, &f->w, val)
                   ? 0
                   : usage_error("convert: --size: expected HxW, each 1..4096, got '%s'", val);
    }
    if (strcmp(opt, "--channels") == 0) {
        if (!parse_int(&v, val, 1, 3) || v == 2) {
            return usage_error("convert: --channels: expected 1 or 3, got '%s'", val);
        }
        f->channels = (int)v;
        return 0;
    }
    if (strcmp(opt, "--test-fraction") == 0) {
        *fraction_given = 1;
        return parse_fraction(&f->test_fraction, val)
                   ? 0
                   : usage_error("convert: --test-fraction: expected 0 < F < 1, got '%s'", val);
    }
    if (strcmp(opt, "--test-src") == 0) {
        f->test_src = val;
        return 0;
    }
    return -1;
}

static void print_converted(const dp_convert_result *res)
{
    printf("wrote %s (%lld records) and %s (%lld records), %lldx%lldx%lld, %d classes\n",
           res->train_path, (long long)res->n_train, res->test_path, (long long)res->n_test,
           (long long)res->h, (long long)res->w, (long long)res->c, res->n_classes);
    printf("mean/std of the training split:");
    for (int64_t ch = 0; ch < res->c; ch++) {
        printf(" %.4f/%.4f", (double)res->mean[ch], (double)res->std[ch]);
    }
    printf("\n");
}

static int cmd_convert(int argc, char **argv)
{
    if (argc < 1) {
        return usage_error("convert: missing the source format%s", "");
    }
    const char *format = argv[0];
    int is_fmnist = strcmp(format, "fashion-mnist") == 0;
    int is_folder = strcmp(format, "folder") == 0;
    if (!is_fmnist && !is_folder && strcmp(format, "cifar10") != 0) {
        return usage_error("convert: unknown format '%s' (fashion-mnist, cifar10 or folder)",
                           format);
    }
    const char *src = is_fmnist ? default_fmnist_src : NULL, *out = NULL;
    dp_convert_config cfg = DP_CONVERT_CONFIG_INIT;
    dp_convert_folder_config fcfg = DP_CONVERT_FOLDER_CONFIG_INIT;
    int fraction_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) {
            return usage_error("convert: '%s' needs a value or is unknown", opt);
        }
        const char *val = argv[++i];
        int64_t v = 0;
        int rc = folder_option(&fcfg, &fraction_given, opt, val);
        if (rc > 0) {
            return rc;
        }
        if (rc == 0 && !is_folder) {
            return usage_error("convert: '%s' is an option of convert folder only", opt);
        }
        if (rc == 0) {
            continue;
        }
        if (strcmp(opt, "--src") == 0) {
            src = val;
        } else if (strcmp(opt, "--out") == 0) {
            out = val;
        } else if (strcmp(opt, "--chunk") == 0) {
            if (!parse_int(&v, val, 1, INT64_C(1) << 30)) {
                return usage_error("convert: --chunk: expected a positive integer, got '%s'", val);
            }
            cfg.chunk_records = v;
        } else if (strcmp(opt, "--deflate") == 0) {
            if (!parse_int(&v, val, 0, 9)) {
                return usage_error("convert: --deflate: expected 0..9, got '%s'", val);
            }
            cfg.deflate_level = (int)v;
        } else {
            return usage_error("convert: unknown option '%s'", opt);
        }
    }
    if (src == NULL) {
        return usage_error("convert %s: --src DIR is required", format);
    }
    if (out == NULL) {
        return usage_error("convert %s: --out PREFIX is required", format);
    }
    if (is_folder && fcfg.h == 0) {
        return usage_error("convert folder: --size HxW is required%s", "");
    }
    if (fraction_given && fcfg.test_src != NULL) {
        return usage_error("convert folder: --test-fraction and --test-src exclude each other%s",
                           "");
    }
    dp_convert_result *res = calloc(1, sizeof *res);
    if (res == NULL) {
        fprintf(stderr, "dpdata: error: out of memory\n");
        return 1;
    }
    dp_status st = is_folder   ? dp_convert_folder(res, src, out, &fcfg, &cfg)
                   : is_fmnist ? dp_convert_fashion_mnist(res, src, out, &cfg)
                               : dp_convert_cifar10(res, src, out, &cfg);
    if (st != DP_OK) {
        free(res);
        return fail();
    }
    print_converted(res);
    if (is_folder && fcfg.test_src == NULL) {
        printf("test split: %g of each class, held out of %s\n", fcfg.test_fraction, src);
    }
    free(res);
    return 0;
}

// --- info and verify ---

static void print_info(const dp_dataset_info *in, const int64_t *counts)
{
    printf("file:        %s\n", in->path);
    printf("records:     %lld\n", (long long)in->n);
    printf("shape:       %lld x %lld x %lld (H x W x C, uint8)\n", (long long)in->h,
           (long long)in->w, (long long)in->c);
    printf("classes:     %d\n", in->n_classes);
    for (int i = 0; i < in->n_classes; i++) {
        printf("  %4d  %-24s %10lld\n", i, in->class_names[i], (long long)counts[i]);
    }
    printf("mean:       ");
    for (int64_t ch = 0; ch < in->c; ch++) {
        printf(" %.4f", (double)in->mean[ch]);
    }
    printf("\nstd:        ");
    for (int64_t ch = 0; ch < in->c; ch++) {
        printf(" %.4f", (double)in->std[ch]);
    }
    printf("\n");
    if (in->chunk_records > 0) {
        printf("chunking:    %lld records per chunk (%lld bytes)\n", (long long)in->chunk_records,
               (long long)(in->chunk_records * in->record_bytes));
    } else {
        printf("chunking:    none (contiguous)\n");
    }
    printf("compression: %s\n", in->compression);
    printf("source:      %s\n", in->source);
    printf("format:      %d\n", in->format_version);
}

static int cmd_inspect(int argc, char **argv, int verify)
{
    const char *name = verify ? "verify" : "info";
    if (argc != 1) {
        return usage_error("%s: expected one FILE", name);
    }
    dp_dataset *ds = NULL;
    if (dp_dataset_open(&ds, argv[0]) != DP_OK) {
        return fail();
    }
    const dp_dataset_info *in = dp_dataset_get_info(ds);
    int64_t *counts = calloc((size_t)in->n_classes, sizeof *counts);
    if (counts == NULL) {
        dp_dataset_destroy(ds);
        fprintf(stderr, "dpdata: error: out of memory\n");
        return 1;
    }
    dp_status st = verify ? dp_dataset_verify(ds, counts) : dp_dataset_count_classes(ds, counts);
    if (st == DP_OK && verify) {
        printf("%s: ok: %lld records of %lldx%lldx%lld, every record readable, labels in [0, %d)\n",
               in->path, (long long)in->n, (long long)in->h, (long long)in->w, (long long)in->c,
               in->n_classes);
    } else if (st == DP_OK) {
        print_info(in, counts);
    }
    free(counts);
    dp_dataset_destroy(ds);
    return st == DP_OK ? 0 : fail();
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        return usage_error("missing a command%s", "");
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_help();
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        print_version();
        return 0;
    }
    if (strcmp(cmd, "convert") == 0) {
        return cmd_convert(argc - 2, argv + 2);
    }
    if (strcmp(cmd, "info") == 0) {
        return cmd_inspect(argc - 2, argv + 2, 0);
    }
    if (strcmp(cmd, "verify") == 0) {
        return cmd_inspect(argc - 2, argv + 2, 1);
    }
    return usage_error("unknown command '%s'", cmd);
}
