// The image-folder converter (convert.h): lists a tree of class folders, splits it into train
// and test, and streams the images (decoded and resized by image.c) through the converters'
// shared atomic writer (convert_internal.h). Everything is listed and checked before the first
// image is decoded, so that a misplaced file fails fast; images are decoded one at a time.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dirent.h>

#include "core/error.h"
#include "core/rng.h"
#include "io/convert.h"
#include "io/convert_internal.h"
#include "io/image.h"
#include "io/rng_streams.h"

enum { PATH_BYTES = DP_CONVERT_PATH_BYTES, MAX_SIDE = 4096 };

// The sorted entry names of a folder (names starting with '.' left out).
typedef struct name_list {
    char **names;
    int64_t n, cap;
} name_list;

// A tree: class folder names (sorted) and, per class, the paths of its files (sorted).
typedef struct tree {
    name_list classes;
    name_list *files; // [classes.n]
} tree;

// One image to convert.
typedef struct sample {
    const char *path;
    int32_t label;
} sample;

typedef struct folder_reader {
    const sample *samples;
    int64_t next;
    int64_t h, w, c;
} folder_reader;

// --- listing ---

static void names_free(name_list *l)
{
    for (int64_t i = 0; i < l->n; i++) {
        free(l->names[i]);
    }
    free(l->names);
    *l = (name_list){.names = NULL, .n = 0, .cap = 0};
}

static dp_status names_add(name_list *l, const char *name)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 64;
        char **grown = realloc(l->names, (size_t)cap * sizeof *grown);
        if (grown == NULL) {
            return dp_error_set(DP_ERR_NOMEM, "cannot list %lld names", (long long)cap);
        }
        l->names = grown;
        l->cap = cap;
    }
    size_t len = strlen(name) + 1;
    if ((l->names[l->n] = malloc(len)) == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "cannot copy a name of %zu bytes", len);
    }
    memcpy(l->names[l->n++], name, len);
    return DP_OK;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Lists dir into l (entry names, sorted by strcmp, hidden ones skipped).
static dp_status list_dir(name_list *l, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return dp_error_set(DP_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    }
    dp_status st = DP_OK;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0) {
                st = dp_error_set(DP_ERR_IO, "%s: cannot read: %s", dir, strerror(errno));
            }
            break;
        }
        if (e->d_name[0] != '.' && (st = names_add(l, e->d_name)) != DP_OK) {
            break;
        }
    }
    closedir(d); // read-only: nothing to lose
    if (st == DP_OK && l->n > 0) {
        qsort(l->names, (size_t)l->n, sizeof *l->names, compare_names);
    }
    return st;
}

static dp_status join(char *out, const char *dir, const char *name)
{
    int len = snprintf(out, PATH_BYTES, "%s/%s", dir, name);
    if (len < 0 || len >= PATH_BYTES) {
        return dp_error_set(DP_ERR_ARG, "%s/%s: path longer than %d bytes", dir, name,
                            PATH_BYTES - 1);
    }
    return DP_OK;
}

// stat(path) into *sb; a dangling link or an unreadable entry is DP_ERR_IO.
static dp_status stat_path(struct stat *sb, const char *path)
{
    if (stat(path, sb) != 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    return DP_OK;
}

// Lists the files of class folder dir (class name) into files, as full paths.
static dp_status list_class(name_list *files, const char *dir, const char *name)
{
    name_list entries = {0};
    char path[PATH_BYTES];
    struct stat sb;
    dp_status st = list_dir(&entries, dir);
    for (int64_t i = 0; st == DP_OK && i < entries.n; i++) {
        st = join(path, dir, entries.names[i]);
        if (st == DP_OK) {
            st = stat_path(&sb, path);
        }
        if (st == DP_OK && S_ISDIR(sb.st_mode)) {
            st = dp_error_set(DP_ERR_DATA, "%s: a folder inside class folder '%s'; images must "
                              "lie directly in their class folder", path, name);
        } else if (st == DP_OK && !S_ISREG(sb.st_mode)) {
            st = dp_error_set(DP_ERR_DATA, "%s: not a regular file", path);
        } else if (st == DP_OK) {
            st = names_add(files, path);
        }
    }
    if (st == DP_OK && files->n == 0) {
        st = dp_error_set(DP_ERR_DATA, "%s: class folder '%s' has no images", dir, name);
    }
    names_free(&entries);
    return st;
}

static void tree_free(tree *t)
{
    for (int64_t i = 0; t->files != NULL && i < t->classes.n; i++) {
        names_free(&t->files[i]);
    }
    free(t->files);
    names_free(&t->classes);
}

// Lists root: its class folders and their files; checks the layout.
static dp_status scan_tree(tree *t, const char *root)
{
    DP_TRY(list_dir(&t->classes, root));
    if (t->classes.n == 0) {
        return dp_error_set(DP_ERR_DATA, "%s: no class folders (expected one folder per class)",
                            root);
    }
    if (t->classes.n > DP_DATASET_MAX_CLASSES) {
        return dp_error_set(DP_ERR_DATA, "%s: %lld class folders; at most %d", root,
                            (long long)t->classes.n, DP_DATASET_MAX_CLASSES);
    }
    t->files = calloc((size_t)t->classes.n, sizeof *t->files);
    if (t->files == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "cannot list %lld classes", (long long)t->classes.n);
    }
    char dir[PATH_BYTES];
    struct stat sb;
    for (int64_t i = 0; i < t->classes.n; i++) {
        const char *name = t->classes.names[i];
        DP_TRY(join(dir, root, name));
        DP_TRY(stat_path(&sb, dir));
        if (!S_ISDIR(sb.st_mode)) {
            return dp_error_set(DP_ERR_DATA, "%s: not a folder; %s must hold only class folders "
                                "(one per class) with the images in them", dir, root);
        }
        DP_TRY(list_class(&t->files[i], dir, name));
    }
    return DP_OK;
}

// Returns DP_ERR_DATA unless test has the class folders of train.
static dp_status same_classes(const tree *train, const tree *test, const char *src,
                              const char *test_src)
{
    for (int64_t i = 0; i < train->classes.n || i < test->classes.n; i++) {
        const char *a = i < train->classes.n ? train->classes.names[i] : NULL;
        const char *b = i < test->classes.n ? test->classes.names[i] : NULL;
        if (a == NULL || b == NULL || strcmp(a, b) != 0) {
            int in_src = b == NULL || (a != NULL && strcmp(a, b) < 0);
            return dp_error_set(DP_ERR_DATA, "%s has class folder '%s' but %s does not; both need "
                                "the same classes", in_src ? src : test_src, in_src ? a : b,
                                in_src ? test_src : src);
        }
    }
    return DP_OK;
}

// --- split ---

// Uniform in [0, range) without bias (Lemire's multiply-shift with rejection).
static uint32_t draw_below(dp_rng *r, uint32_t range)
{
    uint64_t m = (uint64_t)dp_rng_u32(r) * range;
    if ((uint32_t)m < range) {
        uint32_t threshold = (uint32_t)(0u - range) % range;
        while ((uint32_t)m < threshold) {
            m = (uint64_t)dp_rng_u32(r) * range;
        }
    }
    return (uint32_t)(m >> 32);
}

// Marks held[k] = 1 for the n_test files of class label held out: the first n_test of a
// Fisher-Yates permutation keyed by the class index.
static dp_status choose_test(char *held, int64_t n, int64_t n_test, int64_t label)
{
    uint32_t *perm = malloc((size_t)n * sizeof *perm);
    if (perm == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "cannot split a class of %lld images", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        perm[i] = (uint32_t)i;
    }
    dp_rng r;
    dp_rng_init(&r, 0, (uint32_t)label, 0, DP_IO_RNG_SPLIT);
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t j = draw_below(&r, (uint32_t)(i + 1)), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    memset(held, 0, (size_t)n);
    for (int64_t i = 0; i < n_test; i++) {
        held[perm[i]] = 1;
    }
    free(perm);
    return DP_OK;
}

static int64_t total_files(const tree *t)
{
    int64_t n = 0;
    for (int64_t i = 0; i < t->classes.n; i++) {
        n += t->files[i].n;
    }
    return n;
}

// Appends the files of t to out (*n so far), class by class; with fraction > 0 only those held
// out (want_test) or kept (!want_test) by the split.
static dp_status collect(sample *out, int64_t *n, const tree *t, double fraction, int want_test)
{
    for (int64_t c = 0; c < t->classes.n; c++) {
        const name_list *f = &t->files[c];
        int64_t n_test = fraction > 0.0 ? (int64_t)llround(fraction * (double)f->n) : 0;
        n_test = n_test > f->n - 1 ? f->n - 1 : n_test;
        char *held = calloc((size_t)f->n, 1);
        if (held == NULL) {
            return dp_error_set(DP_ERR_NOMEM, "cannot split a class of %lld images",
                                (long long)f->n);
        }
        dp_status st = fraction > 0.0 ? choose_test(held, f->n, n_test, c) : DP_OK;
        for (int64_t i = 0; st == DP_OK && i < f->n; i++) {
            if (fraction <= 0.0 || held[i] == want_test) {
                out[(*n)++] = (sample){.path = f->names[i], .label = (int32_t)c};
            }
        }
        free(held);
        DP_TRY(st);
    }
    return DP_OK;
}

// --- reading ---

static dp_status folder_read(void *ctx, uint8_t *images, int32_t *labels, int64_t count)
{
    folder_reader *fr = ctx;
    for (int64_t i = 0; i < count; i++) {
        const sample *s = &fr->samples[fr->next++];
        uint8_t *img = NULL;
        int64_t ih = 0, iw = 0;
        DP_TRY(dp_image_load(&img, &ih, &iw, s->path, (int)fr->c));
        dp_status st = dp_image_resize(images + i * fr->h * fr->w * fr->c, fr->h, fr->w, img, ih,
                                       iw, fr->c);
        free(img);
        if (st != DP_OK) {
            return dp_error_context(st, "%s", s->path);
        }
        labels[i] = s->label;
    }
    return DP_OK;
}

// --- the converter ---

static dp_status check_folder_config(const dp_convert_folder_config *f)
{
    if (f->h < 1 || f->h > MAX_SIDE || f->w < 1 || f->w > MAX_SIDE) {
        return dp_error_set(DP_ERR_ARG, "image size %lldx%lld; need 1..%d each", (long long)f->h,
                            (long long)f->w, MAX_SIDE);
    }
    if (f->channels != 1 && f->channels != 3) {
        return dp_error_set(DP_ERR_ARG, "%d channels; need 1 (grayscale) or 3 (RGB)",
                            f->channels);
    }
    if (f->test_src == NULL && !(f->test_fraction > 0.0 && f->test_fraction < 1.0)) {
        return dp_error_set(DP_ERR_ARG, "test fraction %g; need 0 < f < 1", f->test_fraction);
    }
    return DP_OK;
}

static void fill_split(dp__convert_split *sp, folder_reader *fr, const sample *samples, int64_t n,
                       const tree *t, const dp_convert_folder_config *f, const char *source)
{
    *fr = (folder_reader){.samples = samples, .next = 0, .h = f->h, .w = f->w, .c = f->channels};
    *sp = (dp__convert_split){.path = NULL,
                              .n = n,
                              .h = f->h,
                              .w = f->w,
                              .c = f->channels,
                              .n_classes = (int)t->classes.n,
                              .classes = (const char *const *)t->classes.names,
                              .source = source,
                              .read = folder_read,
                              .ctx = fr};
}

dp_status dp_convert_folder(dp_convert_result *out, const char *src_dir, const char *out_prefix,
                            const dp_convert_folder_config *fcfg, const dp_convert_config *cfg)
{
    DP_TRY(dp__convert_check_config(cfg));
    DP_TRY(check_folder_config(fcfg));
    tree train = {0}, test = {0};
    sample *samples = NULL;
    dp_status st;
    DP_TRY_GOTO(scan_tree(&train, src_dir), st, out);
    if (fcfg->test_src != NULL) {
        DP_TRY_GOTO(scan_tree(&test, fcfg->test_src), st, out);
        DP_TRY_GOTO(same_classes(&train, &test, src_dir, fcfg->test_src), st, out);
    }
    int64_t n_all = total_files(&train) + (fcfg->test_src ? total_files(&test) : 0);
    if ((samples = malloc((size_t)n_all * sizeof *samples)) == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "cannot list %lld images", (long long)n_all);
        goto out;
    }
    int64_t n_train = 0, n_test = 0;
    double fraction = fcfg->test_src ? 0.0 : fcfg->test_fraction;
    DP_TRY_GOTO(collect(samples, &n_train, &train, fraction, 0), st, out);
    DP_TRY_GOTO(collect(samples + n_train, &n_test, fcfg->test_src ? &test : &train, fraction, 1),
                st, out);
    if (n_test == 0) {
        st = dp_error_set(DP_ERR_DATA, "%s: a test fraction of %g holds out no image (classes "
                          "too small); raise --test-fraction or give --test-src", src_dir,
                          fcfg->test_fraction);
        goto out;
    }
    char source[3 * PATH_BYTES];
    snprintf(source, sizeof source, "image folders %s (test: %s), resized to %lldx%lld "
             "(bilinear), %s", src_dir, fcfg->test_src ? fcfg->test_src : "held out of it",
             (long long)fcfg->h, (long long)fcfg->w, fcfg->channels == 1 ? "grayscale" : "RGB");
    dp__convert_split train_spec, test_spec;
    folder_reader train_reader, test_reader;
    fill_split(&train_spec, &train_reader, samples, n_train, &train, fcfg, source);
    fill_split(&test_spec, &test_reader, samples + n_train, n_test, &train, fcfg, source);
    st = dp__convert_both(out, out_prefix, &train_spec, &test_spec, cfg);
out:
    free(samples);
    tree_free(&train);
    tree_free(&test);
    return st;
}
