// Dataset writer: creates the file with its fixed-size chunked /images and /labels, appends
// records in order, and on finish writes mean/std and closes. It computes nothing on its own;
// the per-channel statistics a converter stores come from dp_dataset_stats_* below.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/dataset.h"
#include "io/dataset_internal.h"
#include "io/h5_util.h"

// --- configuration ---

static dp_status check_config(const dp_dataset_config *cfg, const char *path)
{
    if (cfg->n < 1 || cfg->h < 1 || cfg->w < 1 || cfg->c < 1 || cfg->c > DP_DATASET_MAX_CHANNELS) {
        return dp_error_set(DP_ERR_ARG,
                            "%s: dataset shape (n %lld, h %lld, w %lld, c %lld) needs n, h, w >= 1 "
                            "and 1 <= c <= %d",
                            path, (long long)cfg->n, (long long)cfg->h, (long long)cfg->w,
                            (long long)cfg->c, DP_DATASET_MAX_CHANNELS);
    }
    if (cfg->n_classes < 1 || cfg->n_classes > DP_DATASET_MAX_CLASSES ||
        cfg->class_names == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: n_classes is %d (class_names %s); need 1..%d names",
                            path, cfg->n_classes, cfg->class_names ? "given" : "NULL",
                            DP_DATASET_MAX_CLASSES);
    }
    for (int i = 0; i < cfg->n_classes; i++) {
        if (cfg->class_names[i] == NULL) {
            return dp_error_set(DP_ERR_ARG, "%s: class name %d is NULL", path, i);
        }
    }
    if (cfg->chunk_records < 0 || cfg->deflate_level < 0 || cfg->deflate_level > 9) {
        return dp_error_set(DP_ERR_ARG,
                            "%s: chunk_records %lld must be >= 0 and deflate_level %d in 0..9",
                            path, (long long)cfg->chunk_records, cfg->deflate_level);
    }
    return DP_OK;
}

// Keeps copies of the class names and source in ds (one block each), as the reader does.
static dp_status copy_strings(dp_dataset *ds, const dp_dataset_config *cfg)
{
    size_t bytes = (size_t)cfg->n_classes * sizeof(char *);
    for (int i = 0; i < cfg->n_classes; i++) {
        bytes += strlen(cfg->class_names[i]) + 1;
    }
    const char *source = cfg->source ? cfg->source : "";
    ds->class_names = malloc(bytes);
    ds->source = malloc(sizeof(char *) + strlen(source) + 1);
    if (ds->class_names == NULL || ds->source == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate class names", ds->path);
    }
    char *text = (char *)(ds->class_names + cfg->n_classes);
    for (int i = 0; i < cfg->n_classes; i++) {
        ds->class_names[i] = text;
        strcpy(text, cfg->class_names[i]);
        text += strlen(text) + 1;
    }
    ds->source[0] = (char *)(ds->source + 1);
    strcpy(ds->source[0], source);
    ds->info.class_names = (const char *const *)ds->class_names;
    ds->info.source = ds->source[0];
    return DP_OK;
}

// --- create ---

int64_t dp_dataset_default_chunk(const dp_dataset_config *cfg)
{
    // Training reads records in random order, one H5Dread each, and HDF5 reads whole chunks:
    // a chunk of 256 224x224x3 images is 38.5 MB, 256x the record, and more than the chunk
    // cache keeps, so every record would cost a chunk. Small chunks keep that factor ~1.
    int64_t record = cfg->h * cfg->w * cfg->c;
    int64_t chunk = record > 0 ? DP_DATASET_CHUNK_TARGET_BYTES / record : 1;
    return chunk < 1 ? 1 : chunk > DP_DATASET_DEFAULT_CHUNK_RECORDS ? DP_DATASET_DEFAULT_CHUNK_RECORDS
                                                                     : chunk;
}

static dp_status create_images(dp_dataset *ds, const dp_dataset_config *cfg)
{
    dp_status st = DP_OK;
    int64_t chunk = cfg->chunk_records ? cfg->chunk_records : dp_dataset_default_chunk(cfg);
    chunk = chunk < cfg->n ? chunk : cfg->n;
    hsize_t dims[4] = {(hsize_t)cfg->n, (hsize_t)cfg->h, (hsize_t)cfg->w, (hsize_t)cfg->c};
    hsize_t chunk_dims[4] = {(hsize_t)chunk, dims[1], dims[2], dims[3]};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0 || H5Pset_chunk(dcpl, 4, chunk_dims) < 0) {
        st = DP_H5_FAIL(ds->path, "cannot set chunks of %lld records for /images",
                        (long long)chunk);
        goto out;
    }
    if (cfg->deflate_level > 0) {
        if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) {
            st = dp_error_set(DP_ERR_UNSUPPORTED, "%s: this HDF5 has no deflate filter", ds->path);
            goto out;
        }
        if (H5Pset_deflate(dcpl, (unsigned)cfg->deflate_level) < 0) {
            st = DP_H5_FAIL(ds->path, "cannot set deflate level %d", cfg->deflate_level);
            goto out;
        }
    }
    ds->images_space = H5Screate_simple(4, dims, NULL);
    if (ds->images_space < 0) {
        st = DP_H5_FAIL(ds->path, "cannot make the dataspace of /images");
        goto out;
    }
    ds->images = H5Dcreate2(ds->file, "images", H5T_STD_U8LE, ds->images_space, H5P_DEFAULT, dcpl,
                            H5P_DEFAULT);
    if (ds->images < 0) {
        st = DP_H5_FAIL(ds->path, "cannot create /images");
        goto out;
    }
    ds->info.chunk_records = chunk;
out:
    dp__h5_close(dcpl);
    return st;
}

static dp_status create_labels(dp_dataset *ds, const dp_dataset_config *cfg)
{
    hsize_t n = (hsize_t)cfg->n;
    ds->labels_space = H5Screate_simple(1, &n, NULL);
    if (ds->labels_space < 0) {
        return DP_H5_FAIL(ds->path, "cannot make the dataspace of /labels");
    }
    ds->labels = H5Dcreate2(ds->file, "labels", H5T_STD_I32LE, ds->labels_space, H5P_DEFAULT,
                            H5P_DEFAULT, H5P_DEFAULT);
    if (ds->labels < 0) {
        return DP_H5_FAIL(ds->path, "cannot create /labels");
    }
    return DP_OK;
}

static dp_status write_version(dp_dataset *ds)
{
    int version = DP_DATASET_FORMAT_VERSION;
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = space < 0 ? -1
                           : H5Acreate2(ds->file, "format_version", H5T_STD_I32LE, space,
                                        H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = attr < 0 ? -1 : H5Awrite(attr, H5T_NATIVE_INT, &version);
    dp__h5_close(attr);
    dp__h5_close(space);
    if (rc < 0) {
        return DP_H5_FAIL(ds->path, "cannot write attribute 'format_version'");
    }
    return DP_OK;
}

static void describe(dp_dataset *ds, const dp_dataset_config *cfg)
{
    dp_dataset_info *in = &ds->info;
    in->n = cfg->n;
    in->h = cfg->h;
    in->w = cfg->w;
    in->c = cfg->c;
    in->record_bytes = cfg->h * cfg->w * cfg->c;
    in->n_classes = cfg->n_classes;
    in->format_version = DP_DATASET_FORMAT_VERSION;
    if (cfg->deflate_level > 0) {
        snprintf(in->compression, sizeof in->compression, "deflate level %d", cfg->deflate_level);
    } else {
        snprintf(in->compression, sizeof in->compression, "none");
    }
}

dp_status dp_dataset_create(dp_dataset **out, const char *path, const dp_dataset_config *cfg)
{
    dp__h5_quiet();
    *out = NULL;
    DP_TRY(check_config(cfg, path));
    dp_dataset *ds = NULL;
    dp_status st;
    DP_TRY(dp__dataset_alloc(&ds, path));
    ds->writing = 1;
    describe(ds, cfg);
    DP_TRY_GOTO(copy_strings(ds, cfg), st, fail);
    ds->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (ds->file < 0) {
        st = DP_H5_FAIL(path, "cannot create the file");
        goto fail;
    }
    DP_TRY_GOTO(create_images(ds, cfg), st, fail);
    DP_TRY_GOTO(create_labels(ds, cfg), st, fail);
    DP_TRY_GOTO(dp__h5_attr_write_strings(ds->file, "classes", cfg->class_names, cfg->n_classes,
                                          path),
                st, fail);
    DP_TRY_GOTO(dp__h5_attr_write_string(ds->file, "source", ds->info.source, path), st, fail);
    DP_TRY_GOTO(write_version(ds), st, fail);
    *out = ds;
    return DP_OK;
fail:
    dp_dataset_destroy(ds);
    return st;
}

// --- append and finish ---

dp_status dp_dataset_append_records(dp_dataset *ds, const uint8_t *images, const int32_t *labels,
                                    int64_t count)
{
    dp__h5_quiet();
    if (!ds->writing) {
        return dp_error_set(DP_ERR_ARG, "%s: dataset is not open for writing", ds->path);
    }
    if (count < 0 || count > ds->info.n - ds->n_written) {
        return dp_error_set(DP_ERR_ARG, "%s: appending %lld records after %lld exceeds N = %lld",
                            ds->path, (long long)count, (long long)ds->n_written,
                            (long long)ds->info.n);
    }
    if (count == 0) {
        return DP_OK;
    }
    DP_TRY(dp__dataset_check_labels(ds, ds->n_written, labels, count));
    hid_t images_mem, labels_mem;
    dp_status st;
    int64_t first = ds->n_written;
    DP_TRY_GOTO(dp__dataset_select(ds, first, count, &images_mem, &labels_mem), st, out);
    if (H5Dwrite(ds->images, H5T_NATIVE_UINT8, images_mem, ds->images_space, H5P_DEFAULT,
                 images) < 0 ||
        H5Dwrite(ds->labels, H5T_NATIVE_INT32, labels_mem, ds->labels_space, H5P_DEFAULT,
                 labels) < 0) {
        st = DP_H5_FAIL(ds->path, "cannot write records [%lld, %lld)", (long long)first,
                        (long long)(first + count));
        goto out;
    }
    ds->n_written += count;
out:
    dp__h5_close(images_mem);
    dp__h5_close(labels_mem);
    return st;
}

dp_status dp_dataset_set_normalization(dp_dataset *ds, const float *mean, const float *std)
{
    for (int64_t i = 0; i < ds->info.c; i++) {
        if (!isfinite(mean[i]) || !isfinite(std[i]) || !(std[i] > 0.0f)) {
            return dp_error_set(DP_ERR_ARG,
                                "%s: channel %lld has mean %g and std %g; need finite, std > 0",
                                ds->path, (long long)i, (double)mean[i], (double)std[i]);
        }
        ds->info.mean[i] = mean[i];
        ds->info.std[i] = std[i];
    }
    ds->have_normalization = 1;
    return DP_OK;
}

static dp_status write_floats(dp_dataset *ds, const char *name, const float *values)
{
    hsize_t n = (hsize_t)ds->info.c;
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t attr = space < 0 ? -1
                           : H5Acreate2(ds->file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT,
                                        H5P_DEFAULT);
    herr_t rc = attr < 0 ? -1 : H5Awrite(attr, H5T_NATIVE_FLOAT, values);
    dp__h5_close(attr);
    dp__h5_close(space);
    if (rc < 0) {
        return DP_H5_FAIL(ds->path, "cannot write attribute '%s'", name);
    }
    return DP_OK;
}

// Closes id (setting it to -1) and reports a failure, which for a file means unwritten data.
static dp_status close_checked(dp_dataset *ds, hid_t *id, herr_t (*close_fn)(hid_t),
                               const char *what)
{
    herr_t rc = close_fn(*id);
    *id = -1;
    if (rc < 0) {
        return DP_H5_FAIL(ds->path, "cannot close %s", what);
    }
    return DP_OK;
}

dp_status dp_dataset_finish(dp_dataset *ds)
{
    dp__h5_quiet();
    if (!ds->writing) {
        return dp_error_set(DP_ERR_ARG, "%s: dataset is not open for writing", ds->path);
    }
    if (ds->n_written != ds->info.n) {
        return dp_error_set(DP_ERR_ARG, "%s: %lld of %lld records written", ds->path,
                            (long long)ds->n_written, (long long)ds->info.n);
    }
    if (!ds->have_normalization) {
        return dp_error_set(DP_ERR_ARG, "%s: mean/std were not set", ds->path);
    }
    DP_TRY(write_floats(ds, "mean", ds->info.mean));
    DP_TRY(write_floats(ds, "std", ds->info.std));
    DP_TRY(close_checked(ds, &ds->images_space, H5Sclose, "the dataspace of /images"));
    DP_TRY(close_checked(ds, &ds->labels_space, H5Sclose, "the dataspace of /labels"));
    DP_TRY(close_checked(ds, &ds->images, H5Dclose, "/images"));
    DP_TRY(close_checked(ds, &ds->labels, H5Dclose, "/labels"));
    if (H5Fflush(ds->file, H5F_SCOPE_LOCAL) < 0) {
        return DP_H5_FAIL(ds->path, "cannot flush the file");
    }
    DP_TRY(close_checked(ds, &ds->file, H5Fclose, "the file"));
    ds->writing = 0;
    return DP_OK;
}

// --- normalization statistics ---

void dp_dataset_stats_init(dp_dataset_stats *s, int64_t c)
{
    memset(s, 0, sizeof *s);
    s->c = c;
}

void dp_dataset_stats_add(dp_dataset_stats *s, const uint8_t *pixels, int64_t n_pixels)
{
    // Per-channel 64-bit sums are exact up to 2^64 / 255^2 ~ 2.8e14 pixels.
    for (int64_t ch = 0; ch < s->c; ch++) {
        uint64_t sum = 0, sum2 = 0;
        for (int64_t i = 0; i < n_pixels; i++) {
            uint64_t v = pixels[i * s->c + ch];
            sum += v;
            sum2 += v * v;
        }
        s->sum[ch] += sum;
        s->sum2[ch] += sum2;
    }
    s->pixels += (uint64_t)n_pixels;
}

void dp_dataset_stats_finish(const dp_dataset_stats *s, float *mean, float *std)
{
    for (int64_t ch = 0; ch < s->c; ch++) {
        if (s->pixels == 0) {
            mean[ch] = 0.0f;
            std[ch] = 1.0f;
            continue;
        }
        double n = (double)s->pixels;
        double m = (double)s->sum[ch] / n;
        double var = (double)s->sum2[ch] / n - m * m;
        double sd = sqrt(var > 0.0 ? var : 0.0) / 255.0;
        mean[ch] = (float)(m / 255.0);
        std[ch] = sd > 0.0 ? (float)sd : 1.0f; // a constant channel is only centred
    }
}
