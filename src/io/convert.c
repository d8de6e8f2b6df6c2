// Converters: Fashion-MNIST (gzip IDX) and CIFAR-10 (binary batches) to dataset files, and the
// machinery every converter shares (convert_internal.h). Each source is a record reader behind
// one function pointer; write_split streams it into a .tmp dataset file block by block, and
// commit() syncs and renames both splits at the end. No augmentation or resizing happens here
// (the image-folder converter, convert_folder.c, resizes).
#include "io/convert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/convert_internal.h"
#include "io/idx.h"

enum { BLOCK_RECORDS = 1024, PATH_BYTES = DP_CONVERT_PATH_BYTES, N_CLASSES = 10 };
enum { BLOCK_BYTES = 64 << 20 }; // at most this much per block, whatever the image size

static const char *const fmnist_classes[N_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

static const char *const cifar10_classes[N_CLASSES] = {
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
};

// --- writing a split and committing both ---

// Streams sp into a dataset file. compute == 0: mean/std (c values each) are inputs, stored
// as given; compute == 1: they are computed from this split, stored and returned in mean/std.
static dp_status write_split(const dp__convert_split *sp, const dp_convert_config *cfg, int compute,
                             float *mean, float *std)
{
    dp_dataset_config dc = DP_DATASET_CONFIG_INIT;
    dc.n = sp->n;
    dc.h = sp->h;
    dc.w = sp->w;
    dc.c = sp->c;
    dc.n_classes = sp->n_classes;
    dc.class_names = sp->classes;
    dc.source = sp->source;
    dc.chunk_records = cfg->chunk_records;
    dc.deflate_level = cfg->deflate_level;
    dp_dataset *ds = NULL;
    int64_t rec = sp->h * sp->w * sp->c;
    int64_t block = rec * BLOCK_RECORDS <= BLOCK_BYTES ? BLOCK_RECORDS : BLOCK_BYTES / rec;
    block = block < 1 ? 1 : block;
    uint8_t *images = malloc((size_t)(block * rec));
    int32_t *labels = malloc((size_t)block * sizeof *labels);
    dp_status st = DP_OK;
    if (images == NULL || labels == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "cannot allocate %lld records", (long long)block);
        goto out;
    }
    DP_TRY_GOTO(dp_dataset_create(&ds, sp->path, &dc), st, out);
    dp_dataset_stats stats;
    dp_dataset_stats_init(&stats, sp->c);
    for (int64_t done = 0; done < sp->n;) {
        int64_t count = sp->n - done < block ? sp->n - done : block;
        DP_TRY_GOTO(sp->read(sp->ctx, images, labels, count), st, out);
        if (compute) {
            dp_dataset_stats_add(&stats, images, count * sp->h * sp->w);
        }
        DP_TRY_GOTO(dp_dataset_append_records(ds, images, labels, count), st, out);
        done += count;
    }
    if (compute) {
        dp_dataset_stats_finish(&stats, mean, std);
    }
    DP_TRY_GOTO(dp_dataset_set_normalization(ds, mean, std), st, out);
    DP_TRY_GOTO(dp_dataset_finish(ds), st, out);
out:
    dp_dataset_destroy(ds);
    free(images);
    free(labels);
    return st;
}

static dp_status sync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot open to sync: %s", path, strerror(errno));
    }
    int rc = fsync(fd);
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot sync: %s", path, strerror(saved));
    }
    return DP_OK;
}

static dp_status sync_parent_dir(const char *path)
{
    char dir[PATH_BYTES];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    return sync_path(dir, O_RDONLY | O_DIRECTORY);
}

// Both splits are complete in their .tmp files: make them durable, then visible together.
static dp_status commit(const dp_convert_result *r, const char *train_tmp, const char *test_tmp)
{
    DP_TRY(sync_path(train_tmp, O_RDONLY));
    DP_TRY(sync_path(test_tmp, O_RDONLY));
    if (rename(train_tmp, r->train_path) != 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot rename to %s: %s", train_tmp, r->train_path,
                            strerror(errno));
    }
    if (rename(test_tmp, r->test_path) != 0) {
        dp_status st = dp_error_set(DP_ERR_IO, "%s: cannot rename to %s: %s", test_tmp,
                                    r->test_path, strerror(errno));
        unlink(r->train_path); // both or neither
        return st;
    }
    return sync_parent_dir(r->train_path);
}

static dp_status output_paths(dp_convert_result *r, char *train_tmp, char *test_tmp,
                              const char *prefix)
{
    int a = snprintf(r->train_path, PATH_BYTES, "%s-train.h5", prefix);
    int b = snprintf(r->test_path, PATH_BYTES, "%s-test.h5", prefix);
    int c = snprintf(train_tmp, PATH_BYTES, "%s-train.h5.tmp", prefix);
    int d = snprintf(test_tmp, PATH_BYTES, "%s-test.h5.tmp", prefix);
    if (a < 0 || b < 0 || c < 0 || d < 0 || c >= PATH_BYTES || d >= PATH_BYTES) {
        return dp_error_set(DP_ERR_ARG, "output prefix '%.64s...' is too long", prefix);
    }
    return DP_OK;
}

dp_status dp__convert_check_config(const dp_convert_config *cfg)
{
    if (cfg->chunk_records < 0 || cfg->deflate_level < 0 || cfg->deflate_level > 9) {
        return dp_error_set(DP_ERR_ARG, "chunk records %lld must be >= 0, deflate level %d 0..9",
                            (long long)cfg->chunk_records, cfg->deflate_level);
    }
    return DP_OK;
}

dp_status dp__convert_both(dp_convert_result *r, const char *prefix, dp__convert_split *train,
                           dp__convert_split *test, const dp_convert_config *cfg)
{
    char train_tmp[PATH_BYTES], test_tmp[PATH_BYTES];
    DP_TRY(output_paths(r, train_tmp, test_tmp, prefix));
    train->path = train_tmp;
    test->path = test_tmp;
    dp_status st;
    DP_TRY_GOTO(write_split(train, cfg, 1, r->mean, r->std), st, fail);
    DP_TRY_GOTO(write_split(test, cfg, 0, r->mean, r->std), st, fail);
    DP_TRY_GOTO(commit(r, train_tmp, test_tmp), st, fail);
    r->n_train = train->n;
    r->n_test = test->n;
    r->n_classes = train->n_classes;
    r->h = train->h;
    r->w = train->w;
    r->c = train->c;
    return DP_OK;
fail:
    unlink(train_tmp);
    unlink(test_tmp);
    return st;
}

// --- Fashion-MNIST (IDX) ---

typedef struct idx_pair {
    dp_idx *images; // rank 3: (N, H, W)
    dp_idx *labels; // rank 1: (N)
    int64_t done;
    uint8_t label_bytes[BLOCK_RECORDS];
} idx_pair;

static dp_status idx_pair_read(void *ctx, uint8_t *images, int32_t *labels, int64_t count)
{
    idx_pair *p = ctx;
    DP_TRY(dp_idx_read(p->images, images, count));
    DP_TRY(dp_idx_read(p->labels, p->label_bytes, count));
    for (int64_t i = 0; i < count; i++) {
        if (p->label_bytes[i] >= N_CLASSES) {
            return dp_error_set(DP_ERR_DATA, "%s: item %lld has label %u, expected 0..9",
                                dp_idx_path(p->labels), (long long)(p->done + i),
                                p->label_bytes[i]);
        }
        labels[i] = p->label_bytes[i];
    }
    p->done += count;
    if (p->done == dp_idx_dim(p->images, 0)) {
        DP_TRY(dp_idx_finish(p->images));
        DP_TRY(dp_idx_finish(p->labels));
    }
    return DP_OK;
}

// dir/base.gz if it exists, else dir/base if that exists, else dir/base.gz (to be reported).
static void resolve(char *out, const char *dir, const char *base)
{
    snprintf(out, PATH_BYTES, "%s/%s.gz", dir, base);
    if (access(out, F_OK) == 0) {
        return;
    }
    snprintf(out, PATH_BYTES, "%s/%s", dir, base);
    if (access(out, F_OK) != 0) {
        snprintf(out, PATH_BYTES, "%s/%s.gz", dir, base);
    }
}

static dp_status idx_pair_open(idx_pair *p, const char *dir, const char *images_base,
                               const char *labels_base)
{
    char path[PATH_BYTES];
    resolve(path, dir, images_base);
    DP_TRY(dp_idx_open(&p->images, path, 3));
    resolve(path, dir, labels_base);
    DP_TRY(dp_idx_open(&p->labels, path, 1));
    if (dp_idx_dim(p->images, 0) != dp_idx_dim(p->labels, 0)) {
        return dp_error_set(DP_ERR_DATA, "%s has %lld images but %s has %lld labels",
                            dp_idx_path(p->images), (long long)dp_idx_dim(p->images, 0),
                            dp_idx_path(p->labels), (long long)dp_idx_dim(p->labels, 0));
    }
    return DP_OK;
}

static void idx_pair_fill(dp__convert_split *sp, idx_pair *p, const char *source)
{
    sp->n = dp_idx_dim(p->images, 0);
    sp->h = dp_idx_dim(p->images, 1);
    sp->w = dp_idx_dim(p->images, 2);
    sp->c = 1;
    sp->n_classes = N_CLASSES;
    sp->classes = fmnist_classes;
    sp->source = source;
    sp->read = idx_pair_read;
    sp->ctx = p;
}

dp_status dp_convert_fashion_mnist(dp_convert_result *out, const char *src_dir,
                                   const char *out_prefix, const dp_convert_config *cfg)
{
    DP_TRY(dp__convert_check_config(cfg));
    idx_pair *train = calloc(1, sizeof *train);
    idx_pair *test = calloc(1, sizeof *test);
    dp_status st = DP_OK;
    if (train == NULL || test == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "cannot allocate IDX readers");
        goto out;
    }
    DP_TRY_GOTO(idx_pair_open(train, src_dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                st, out);
    DP_TRY_GOTO(idx_pair_open(test, src_dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
                st, out);
    if (dp_idx_dim(test->images, 1) != dp_idx_dim(train->images, 1) ||
        dp_idx_dim(test->images, 2) != dp_idx_dim(train->images, 2)) {
        st = dp_error_set(DP_ERR_DATA, "%s has %lldx%lld images but %s has %lldx%lld",
                          dp_idx_path(test->images), (long long)dp_idx_dim(test->images, 1),
                          (long long)dp_idx_dim(test->images, 2), dp_idx_path(train->images),
                          (long long)dp_idx_dim(train->images, 1),
                          (long long)dp_idx_dim(train->images, 2));
        goto out;
    }
    char source[PATH_BYTES + 64];
    snprintf(source, sizeof source, "Fashion-MNIST IDX files from %s", src_dir);
    dp__convert_split train_spec, test_spec;
    idx_pair_fill(&train_spec, train, source);
    idx_pair_fill(&test_spec, test, source);
    st = dp__convert_both(out, out_prefix, &train_spec, &test_spec, cfg);
out:
    if (train != NULL) {
        dp_idx_destroy(train->images);
        dp_idx_destroy(train->labels);
    }
    if (test != NULL) {
        dp_idx_destroy(test->images);
        dp_idx_destroy(test->labels);
    }
    free(train);
    free(test);
    return st;
}

// --- CIFAR-10 (binary batches) ---

enum { CIFAR_SIDE = 32, CIFAR_CH = 3, CIFAR_PIXELS = CIFAR_SIDE * CIFAR_SIDE, CIFAR_MAX_FILES = 5 };
enum { CIFAR_RECORD = 1 + CIFAR_CH * CIFAR_PIXELS };

typedef struct cifar_files {
    char paths[CIFAR_MAX_FILES][PATH_BYTES];
    int64_t records[CIFAR_MAX_FILES];
    int n_files;
    int current;     // file being read
    int64_t in_file; // records read from it
    FILE *fp;
    uint8_t raw[BLOCK_RECORDS * CIFAR_RECORD];
} cifar_files;

static dp_status cifar_add(cifar_files *cf, const char *dir, const char *base)
{
    char *path = cf->paths[cf->n_files];
    snprintf(path, PATH_BYTES, "%s/%s", dir, base);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (sb.st_size == 0 || sb.st_size % CIFAR_RECORD != 0) {
        return dp_error_set(DP_ERR_DATA,
                            "%s: size %lld bytes is not a whole, non-zero number of %d-byte "
                            "CIFAR-10 records (truncated?)",
                            path, (long long)sb.st_size, CIFAR_RECORD);
    }
    cf->records[cf->n_files++] = sb.st_size / CIFAR_RECORD;
    return DP_OK;
}

static int64_t cifar_total(const cifar_files *cf)
{
    int64_t n = 0;
    for (int i = 0; i < cf->n_files; i++) {
        n += cf->records[i];
    }
    return n;
}

// Reads count records of the current file into cf->raw, opening the file on first use.
static dp_status cifar_read_raw(cifar_files *cf, int64_t count)
{
    const char *path = cf->paths[cf->current];
    if (cf->fp == NULL) {
        cf->fp = fopen(path, "rb");
        if (cf->fp == NULL) {
            return dp_error_set(DP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        }
    }
    size_t got = fread(cf->raw, CIFAR_RECORD, (size_t)count, cf->fp);
    if (got != (size_t)count) {
        if (ferror(cf->fp)) {
            return dp_error_set(DP_ERR_IO, "%s: read error at record %lld", path,
                                (long long)(cf->in_file + (int64_t)got));
        }
        return dp_error_set(DP_ERR_DATA, "%s: truncated at record %lld", path,
                            (long long)(cf->in_file + (int64_t)got));
    }
    return DP_OK;
}

// Moves to the next file once the current one is read through.
static void cifar_advance(cifar_files *cf, int64_t count)
{
    cf->in_file += count;
    if (cf->in_file == cf->records[cf->current]) {
        fclose(cf->fp); // read-only: nothing to lose
        cf->fp = NULL;
        cf->current++;
        cf->in_file = 0;
    }
}

static dp_status cifar_read(void *ctx, uint8_t *images, int32_t *labels, int64_t count)
{
    cifar_files *cf = ctx;
    while (count > 0) {
        if (cf->current >= cf->n_files) {
            return dp_error_set(DP_ERR_INTERNAL, "CIFAR-10 reader ran past its last file");
        }
        int64_t left = cf->records[cf->current] - cf->in_file;
        int64_t take = count < left ? count : left;
        DP_TRY(cifar_read_raw(cf, take));
        for (int64_t r = 0; r < take; r++) {
            const uint8_t *src = cf->raw + r * CIFAR_RECORD;
            if (src[0] >= N_CLASSES) {
                return dp_error_set(DP_ERR_DATA, "%s: record %lld has label %u, expected 0..9",
                                    cf->paths[cf->current], (long long)(cf->in_file + r), src[0]);
            }
            labels[r] = src[0];
            uint8_t *dst = images + r * CIFAR_CH * CIFAR_PIXELS;
            for (int p = 0; p < CIFAR_PIXELS; p++) {
                for (int ch = 0; ch < CIFAR_CH; ch++) {
                    dst[p * CIFAR_CH + ch] = src[1 + ch * CIFAR_PIXELS + p]; // CHW -> HWC
                }
            }
        }
        cifar_advance(cf, take);
        images += take * CIFAR_CH * CIFAR_PIXELS;
        labels += take;
        count -= take;
    }
    return DP_OK;
}

static void cifar_fill(dp__convert_split *sp, cifar_files *cf, const char *source)
{
    sp->n = cifar_total(cf);
    sp->h = sp->w = CIFAR_SIDE;
    sp->c = CIFAR_CH;
    sp->n_classes = N_CLASSES;
    sp->classes = cifar10_classes;
    sp->source = source;
    sp->read = cifar_read;
    sp->ctx = cf;
}

static dp_status cifar_open(cifar_files *train, cifar_files *test, char *dir, const char *src)
{
    // The tarball unpacks into cifar-10-batches-bin/; accept its parent too.
    snprintf(dir, PATH_BYTES, "%s/cifar-10-batches-bin/data_batch_1.bin", src);
    if (access(dir, F_OK) == 0) {
        snprintf(dir, PATH_BYTES, "%s/cifar-10-batches-bin", src);
    } else {
        snprintf(dir, PATH_BYTES, "%s", src);
    }
    for (int i = 1; i <= CIFAR_MAX_FILES; i++) {
        char base[32];
        snprintf(base, sizeof base, "data_batch_%d.bin", i);
        DP_TRY(cifar_add(train, dir, base));
    }
    return cifar_add(test, dir, "test_batch.bin");
}

dp_status dp_convert_cifar10(dp_convert_result *out, const char *src_dir, const char *out_prefix,
                             const dp_convert_config *cfg)
{
    DP_TRY(dp__convert_check_config(cfg));
    cifar_files *train = calloc(1, sizeof *train);
    cifar_files *test = calloc(1, sizeof *test);
    char *dir = malloc(PATH_BYTES);
    dp_status st = DP_OK;
    if (train == NULL || test == NULL || dir == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "cannot allocate CIFAR-10 readers");
        goto out;
    }
    DP_TRY_GOTO(cifar_open(train, test, dir, src_dir), st, out);
    char source[PATH_BYTES + 64];
    snprintf(source, sizeof source, "CIFAR-10 binary batches from %s", dir);
    dp__convert_split train_spec, test_spec;
    cifar_fill(&train_spec, train, source);
    cifar_fill(&test_spec, test, source);
    st = dp__convert_both(out, out_prefix, &train_spec, &test_spec, cfg);
out:
    if (train != NULL && train->fp != NULL) {
        fclose(train->fp);
    }
    if (test != NULL && test->fp != NULL) {
        fclose(test->fp);
    }
    free(train);
    free(test);
    free(dir);
    return st;
}
