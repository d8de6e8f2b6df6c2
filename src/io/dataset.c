// Dataset reader: opens a dataset file, validates every dataset and attribute the format
// requires (with messages naming the file and the problem), and reads records by hyperslab,
// as one range or as the runs of a sorted index list. The writer is dataset_write.c.
#include "io/dataset.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "io/dataset_internal.h"
#include "io/h5_util.h"

// Enough to keep every chunk of a Fashion-MNIST or CIFAR-10 file hot for random access.
enum { CHUNK_CACHE_BYTES = 64 << 20, CHUNK_CACHE_SLOTS = 12421, LABEL_BLOCK = 1 << 16 };

// --- object ---

dp_status dp__dataset_alloc(dp_dataset **out, const char *path)
{
    *out = NULL;
    dp_dataset *ds = calloc(1, sizeof *ds);
    char *copy = malloc(strlen(path) + 1);
    if (ds == NULL || copy == NULL) {
        free(ds);
        free(copy);
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate a dataset", path);
    }
    strcpy(copy, path);
    ds->path = copy;
    ds->info.path = copy;
    ds->info.source = "";
    ds->file = ds->images = ds->labels = ds->images_space = ds->labels_space = -1;
    *out = ds;
    return DP_OK;
}

void dp_dataset_destroy(dp_dataset *ds)
{
    if (ds == NULL) {
        return;
    }
    dp__h5_quiet();
    dp__h5_close(ds->images_space);
    dp__h5_close(ds->labels_space);
    dp__h5_close(ds->images);
    dp__h5_close(ds->labels);
    dp__h5_close(ds->file);
    free(ds->class_names);
    free(ds->source);
    free(ds->path);
    free(ds);
}

const dp_dataset_info *dp_dataset_get_info(const dp_dataset *ds)
{
    return &ds->info;
}

// --- validation on open ---

static dp_status open_file(dp_dataset *ds)
{
    const char *path = ds->path;
    if (access(path, R_OK) != 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    htri_t is_h5 = H5Fis_hdf5(path);
    if (is_h5 < 0) {
        return DP_H5_FAIL(path, "cannot read the file");
    }
    if (is_h5 == 0) {
        return dp_error_set(DP_ERR_DATA, "%s: not an HDF5 file", path);
    }
    ds->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (ds->file < 0) {
        return DP_H5_FAIL(path, "cannot open the HDF5 file");
    }
    return DP_OK;
}

// Opens dataset /name of the file, with a chunk cache sized for random access.
static dp_status open_dataset(hid_t *out, dp_dataset *ds, const char *name)
{
    htri_t exists = H5Lexists(ds->file, name, H5P_DEFAULT);
    if (exists < 0) {
        return DP_H5_FAIL(ds->path, "cannot look up /%s", name);
    }
    if (exists == 0) {
        return dp_error_set(DP_ERR_DATA, "%s: dataset /%s is missing", ds->path, name);
    }
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl < 0 || H5Pset_chunk_cache(dapl, CHUNK_CACHE_SLOTS, CHUNK_CACHE_BYTES,
                                       H5D_CHUNK_CACHE_W0_DEFAULT) < 0) {
        dp__h5_close(dapl);
        return DP_H5_FAIL(ds->path, "cannot make the access properties of /%s", name);
    }
    *out = H5Dopen2(ds->file, name, dapl);
    dp__h5_close(dapl);
    if (*out < 0) {
        return DP_H5_FAIL(ds->path, "cannot open /%s as a dataset", name);
    }
    return DP_OK;
}

// Checks the element type of dataset d: integer; with want_bytes > 0, exactly that size and
// unsigned (/images is uint8).
static dp_status check_integer_type(const dp_dataset *ds, hid_t d, const char *name,
                                    size_t want_bytes)
{
    hid_t type = H5Dget_type(d);
    if (type < 0) {
        return DP_H5_FAIL(ds->path, "cannot read the type of /%s", name);
    }
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(type) : H5T_SGN_NONE;
    dp__h5_close(type);
    if (cls == H5T_NO_CLASS || size == 0 || sign == H5T_SGN_ERROR) {
        return DP_H5_FAIL(ds->path, "cannot read the type of /%s", name);
    }
    if (cls != H5T_INTEGER) {
        return dp_error_set(DP_ERR_DATA, "%s: /%s is not an integer dataset", ds->path, name);
    }
    if (want_bytes > 0 && (size != want_bytes || sign != H5T_SGN_NONE)) {
        return dp_error_set(DP_ERR_DATA, "%s: /%s has %zu-byte %s integers, expected uint8",
                            ds->path, name, size, sign == H5T_SGN_NONE ? "unsigned" : "signed");
    }
    return DP_OK;
}

// Reads the shape of dataset d into dims, checking its rank.
static dp_status read_shape(const dp_dataset *ds, hid_t space, const char *name, int want_rank,
                            const char *dims_text, hsize_t *dims)
{
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0) {
        return DP_H5_FAIL(ds->path, "cannot read the shape of /%s", name);
    }
    if (rank != want_rank) {
        return dp_error_set(DP_ERR_DATA, "%s: /%s has rank %d, expected %d %s", ds->path, name,
                            rank, want_rank, dims_text);
    }
    if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        return DP_H5_FAIL(ds->path, "cannot read the shape of /%s", name);
    }
    return DP_OK;
}

static dp_status check_images(dp_dataset *ds)
{
    DP_TRY(open_dataset(&ds->images, ds, "images"));
    DP_TRY(check_integer_type(ds, ds->images, "images", 1));
    ds->images_space = H5Dget_space(ds->images);
    if (ds->images_space < 0) {
        return DP_H5_FAIL(ds->path, "cannot read the shape of /images");
    }
    hsize_t d[4];
    DP_TRY(read_shape(ds, ds->images_space, "images", 4, "(N, H, W, C)", d));
    if (d[0] < 1 || d[1] < 1 || d[2] < 1 || d[3] < 1 || d[3] > DP_DATASET_MAX_CHANNELS) {
        return dp_error_set(DP_ERR_DATA,
                            "%s: /images has shape (%llu, %llu, %llu, %llu); expected N, H, W >= 1 "
                            "and 1 <= C <= %d",
                            ds->path, (unsigned long long)d[0], (unsigned long long)d[1],
                            (unsigned long long)d[2], (unsigned long long)d[3],
                            DP_DATASET_MAX_CHANNELS);
    }
    ds->info.n = (int64_t)d[0];
    ds->info.h = (int64_t)d[1];
    ds->info.w = (int64_t)d[2];
    ds->info.c = (int64_t)d[3];
    ds->info.record_bytes = ds->info.h * ds->info.w * ds->info.c;
    return DP_OK;
}

static dp_status check_labels(dp_dataset *ds)
{
    DP_TRY(open_dataset(&ds->labels, ds, "labels"));
    DP_TRY(check_integer_type(ds, ds->labels, "labels", 0));
    ds->labels_space = H5Dget_space(ds->labels);
    if (ds->labels_space < 0) {
        return DP_H5_FAIL(ds->path, "cannot read the shape of /labels");
    }
    hsize_t n;
    DP_TRY(read_shape(ds, ds->labels_space, "labels", 1, "(N)", &n));
    if ((int64_t)n != ds->info.n) {
        return dp_error_set(DP_ERR_DATA,
                            "%s: label count mismatch: /labels has %llu labels, /images has %lld "
                            "records",
                            ds->path, (unsigned long long)n, (long long)ds->info.n);
    }
    return DP_OK;
}

// Describes the chunking and filters of /images; a filter this HDF5 lacks is an error now
// rather than at the first read.
static dp_status read_layout(dp_dataset *ds)
{
    dp_status st = DP_OK;
    hid_t dcpl = H5Dget_create_plist(ds->images);
    H5D_layout_t layout = dcpl < 0 ? H5D_LAYOUT_ERROR : H5Pget_layout(dcpl);
    int n_filters = layout == H5D_CHUNKED ? H5Pget_nfilters(dcpl) : 0;
    hsize_t chunk[4];
    if (layout < 0 || n_filters < 0 ||
        (layout == H5D_CHUNKED && H5Pget_chunk(dcpl, 4, chunk) < 0)) {
        st = DP_H5_FAIL(ds->path, "cannot read the storage layout of /images");
        goto out;
    }
    ds->info.chunk_records = layout == H5D_CHUNKED ? (int64_t)chunk[0] : 0;
    char *text = ds->info.compression;
    size_t cap = sizeof ds->info.compression;
    snprintf(text, cap, "none");
    for (int i = 0; i < n_filters; i++) {
        unsigned flags, config, cd[8];
        size_t n_cd = 8;
        char name[32] = "";
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &n_cd, cd, sizeof name, name,
                                         &config);
        htri_t avail = id < 0 ? -1 : H5Zfilter_avail(id);
        if (avail < 0) {
            st = DP_H5_FAIL(ds->path, "cannot read filter %d of /images", i);
            goto out;
        }
        if (avail == 0) {
            st = dp_error_set(DP_ERR_UNSUPPORTED,
                              "%s: /images uses HDF5 filter %d ('%s'), not available here",
                              ds->path, (int)id, name);
            goto out;
        }
        size_t used = i == 0 ? 0 : strlen(text);
        const char *sep = i == 0 ? "" : ", ";
        if (id == H5Z_FILTER_DEFLATE && n_cd >= 1) {
            snprintf(text + used, cap - used, "%sdeflate level %u", sep, cd[0]);
        } else {
            snprintf(text + used, cap - used, "%s%s", sep, name[0] ? name : "filter");
        }
    }
out:
    dp__h5_close(dcpl);
    return st;
}

static dp_status check_attributes(dp_dataset *ds)
{
    dp_dataset_info *in = &ds->info;
    hid_t f = ds->file;
    int version = 0, n_source = 0;
    DP_TRY(dp__h5_attr_read_numbers(&version, H5T_NATIVE_INT, H5T_INTEGER, 1, f, "format_version",
                                    ds->path));
    in->format_version = version;
    if (version != DP_DATASET_FORMAT_VERSION) {
        return dp_error_set(DP_ERR_UNSUPPORTED,
                            "%s: format_version is %d; this build reads format_version %d",
                            ds->path, version, DP_DATASET_FORMAT_VERSION);
    }
    DP_TRY(dp__h5_attr_read_strings(&ds->class_names, &in->n_classes, f, "classes", ds->path));
    in->class_names = (const char *const *)ds->class_names;
    if (in->n_classes > DP_DATASET_MAX_CLASSES) {
        return dp_error_set(DP_ERR_DATA, "%s: attribute 'classes' has %d names, at most %d",
                            ds->path, in->n_classes, DP_DATASET_MAX_CLASSES);
    }
    int c = (int)in->c;
    DP_TRY(dp__h5_attr_read_numbers(in->mean, H5T_NATIVE_FLOAT, H5T_FLOAT, c, f, "mean", ds->path));
    DP_TRY(dp__h5_attr_read_numbers(in->std, H5T_NATIVE_FLOAT, H5T_FLOAT, c, f, "std", ds->path));
    for (int i = 0; i < c; i++) {
        if (!isfinite(in->mean[i]) || !isfinite(in->std[i]) || !(in->std[i] > 0.0f)) {
            return dp_error_set(DP_ERR_DATA,
                                "%s: channel %d has mean %g and std %g; expected finite, std > 0",
                                ds->path, i, (double)in->mean[i], (double)in->std[i]);
        }
    }
    DP_TRY(dp__h5_attr_read_strings(&ds->source, &n_source, f, "source", ds->path));
    if (n_source != 1) {
        return dp_error_set(DP_ERR_DATA, "%s: attribute 'source' has %d strings, expected one",
                            ds->path, n_source);
    }
    in->source = ds->source[0];
    return DP_OK;
}

dp_status dp_dataset_open(dp_dataset **out, const char *path)
{
    dp__h5_quiet();
    dp_dataset *ds = NULL;
    dp_status st;
    DP_TRY(dp__dataset_alloc(&ds, path));
    DP_TRY_GOTO(open_file(ds), st, fail);
    DP_TRY_GOTO(check_images(ds), st, fail);
    DP_TRY_GOTO(check_labels(ds), st, fail);
    DP_TRY_GOTO(read_layout(ds), st, fail);
    DP_TRY_GOTO(check_attributes(ds), st, fail);
    *out = ds;
    return DP_OK;
fail:
    dp_dataset_destroy(ds);
    *out = NULL;
    return st;
}

// --- reads ---

dp_status dp__dataset_check_labels(const dp_dataset *ds, int64_t first, const int32_t *labels,
                                   int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        if (labels[i] < 0 || labels[i] >= ds->info.n_classes) {
            return dp_error_set(DP_ERR_DATA, "%s: record %lld has label %d, outside [0, %d)",
                                ds->path, (long long)(first + i), (int)labels[i],
                                ds->info.n_classes);
        }
    }
    return DP_OK;
}

dp_status dp__dataset_select(dp_dataset *ds, int64_t first, int64_t count, hid_t *images_mem,
                             hid_t *labels_mem)
{
    *images_mem = *labels_mem = -1;
    hsize_t start[4] = {(hsize_t)first, 0, 0, 0};
    hsize_t n[4] = {(hsize_t)count, (hsize_t)ds->info.h, (hsize_t)ds->info.w, (hsize_t)ds->info.c};
    if (H5Sselect_hyperslab(ds->images_space, H5S_SELECT_SET, start, NULL, n, NULL) < 0 ||
        H5Sselect_hyperslab(ds->labels_space, H5S_SELECT_SET, start, NULL, n, NULL) < 0) {
        return DP_H5_FAIL(ds->path, "cannot select records [%lld, %lld)", (long long)first,
                          (long long)(first + count));
    }
    *images_mem = H5Screate_simple(4, n, NULL);
    *labels_mem = H5Screate_simple(1, n, NULL);
    if (*images_mem < 0 || *labels_mem < 0) {
        return DP_H5_FAIL(ds->path, "cannot make a memory dataspace of %lld records",
                          (long long)count);
    }
    return DP_OK;
}

static dp_status check_range(const dp_dataset *ds, int64_t first, int64_t count)
{
    if (first < 0 || count < 0 || first > ds->info.n || count > ds->info.n - first) {
        return dp_error_set(DP_ERR_ARG, "%s: records [%lld, %lld) are outside [0, %lld)", ds->path,
                            (long long)first, (long long)(first + count), (long long)ds->info.n);
    }
    return DP_OK;
}

// One hyperslab read of records [first, first + count); range already checked.
static dp_status read_run(dp_dataset *ds, int64_t first, int64_t count, uint8_t *images,
                          int32_t *labels)
{
    hid_t images_mem, labels_mem;
    dp_status st;
    DP_TRY_GOTO(dp__dataset_select(ds, first, count, &images_mem, &labels_mem), st, out);
    if (images != NULL && H5Dread(ds->images, H5T_NATIVE_UINT8, images_mem, ds->images_space,
                                  H5P_DEFAULT, images) < 0) {
        st = DP_H5_FAIL(ds->path, "cannot read /images records [%lld, %lld)", (long long)first,
                        (long long)(first + count));
        goto out;
    }
    if (labels != NULL && H5Dread(ds->labels, H5T_NATIVE_INT32, labels_mem, ds->labels_space,
                                  H5P_DEFAULT, labels) < 0) {
        st = DP_H5_FAIL(ds->path, "cannot read /labels records [%lld, %lld)", (long long)first,
                        (long long)(first + count));
        goto out;
    }
    if (labels != NULL) {
        st = dp__dataset_check_labels(ds, first, labels, count);
    }
out:
    dp__h5_close(images_mem);
    dp__h5_close(labels_mem);
    return st;
}

dp_status dp_dataset_read_records(dp_dataset *ds, int64_t first, int64_t count, uint8_t *images,
                                  int32_t *labels)
{
    dp__h5_quiet();
    DP_TRY(check_range(ds, first, count));
    if (count == 0) {
        return DP_OK;
    }
    return read_run(ds, first, count, images, labels);
}

dp_status dp_dataset_read_indices(dp_dataset *ds, const int64_t *indices, int64_t count,
                                  uint8_t *images, int32_t *labels)
{
    dp__h5_quiet();
    for (int64_t i = 0; i < count; i++) {
        DP_TRY(check_range(ds, indices[i], 1));
        if (i > 0 && indices[i] <= indices[i - 1]) {
            return dp_error_set(DP_ERR_ARG,
                                "%s: record indices are not strictly increasing (%lld after %lld "
                                "at position %lld)",
                                ds->path, (long long)indices[i], (long long)indices[i - 1],
                                (long long)i);
        }
    }
    int64_t start = 0;
    while (start < count) {
        int64_t end = start + 1;
        while (end < count && indices[end] == indices[end - 1] + 1) {
            end++;
        }
        uint8_t *img = images == NULL ? NULL : images + start * ds->info.record_bytes;
        int32_t *lab = labels == NULL ? NULL : labels + start;
        DP_TRY(read_run(ds, indices[start], end - start, img, lab));
        start = end;
    }
    return DP_OK;
}

dp_status dp_dataset_count_classes(dp_dataset *ds, int64_t *class_counts)
{
    int64_t block = ds->info.n < LABEL_BLOCK ? ds->info.n : LABEL_BLOCK;
    int32_t *labels = malloc((size_t)block * sizeof *labels);
    if (labels == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate %lld labels", ds->path,
                            (long long)block);
    }
    memset(class_counts, 0, (size_t)ds->info.n_classes * sizeof *class_counts);
    dp_status st = DP_OK;
    for (int64_t first = 0; first < ds->info.n && st == DP_OK; first += block) {
        int64_t count = ds->info.n - first < block ? ds->info.n - first : block;
        st = dp_dataset_read_records(ds, first, count, NULL, labels);
        for (int64_t i = 0; i < count && st == DP_OK; i++) {
            class_counts[labels[i]]++;
        }
    }
    free(labels);
    return st;
}

dp_status dp_dataset_verify(dp_dataset *ds, int64_t *class_counts)
{
    const dp_dataset_info *in = &ds->info;
    int64_t block = in->chunk_records > 0 ? in->chunk_records : DP_DATASET_DEFAULT_CHUNK_RECORDS;
    block = block < in->n ? block : in->n;
    uint8_t *images = malloc((size_t)(block * in->record_bytes));
    int32_t *labels = malloc((size_t)block * sizeof *labels);
    dp_status st = DP_OK;
    if (images == NULL || labels == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate %lld records", ds->path,
                          (long long)block);
        goto out;
    }
    memset(class_counts, 0, (size_t)in->n_classes * sizeof *class_counts);
    for (int64_t first = 0; first < in->n; first += block) {
        int64_t count = in->n - first < block ? in->n - first : block;
        DP_TRY_GOTO(dp_dataset_read_records(ds, first, count, images, labels), st, out);
        for (int64_t i = 0; i < count; i++) {
            class_counts[labels[i]]++;
        }
    }
out:
    free(images);
    free(labels);
    return st;
}
