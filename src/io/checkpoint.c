// Checkpoint writer and reader (HDF5) and the files of a run: retention and "best". The writer
// writes "<path>.tmp" and publishes it by fsync + rename + directory fsync; the reader names the
// file, the dataset and both shapes in every error. It knows no layer or network: the caller
// names the tensors (checkpoint.h gives the layout the trainer uses).
#include "io/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/h5_util.h"

enum { PATH_CAP = 4096, WHERE_CAP = 1024, COPY_BLOCK = 1 << 20 };

struct dp_ckpt_writer {
    hid_t file;
    char *final_path;
    char *tmp_path;
};

struct dp_ckpt {
    hid_t file;
    char *path;
};

// --- small helpers ---

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy != NULL) {
        memcpy(copy, s, n);
    }
    return copy;
}

// "file" for the root, "file:/object" otherwise: where an attribute or dataset is.
static const char *where(char *buf, const char *file, const char *object)
{
    if (object == NULL || strcmp(object, "/") == 0) {
        snprintf(buf, WHERE_CAP, "%s", file);
    } else {
        snprintf(buf, WHERE_CAP, "%s:%s", file, object);
    }
    return buf;
}

static dp_status check_object_path(const char *file, const char *object)
{
    if (object == NULL || object[0] != '/') {
        return dp_error_set(DP_ERR_ARG, "%s: object path '%s' must be absolute (start with '/')",
                            file, object ? object : "(null)");
    }
    if (strlen(object) >= PATH_CAP) {
        return dp_error_set(DP_ERR_ARG, "%s: object path of %zu bytes is too long", file,
                            strlen(object));
    }
    return DP_OK;
}

// "[3, 4]" ("[]" for a scalar).
static const char *format_dims(char *buf, size_t cap, const int64_t *dims, int ndim)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && at < cap; i++) {
        at += (size_t)snprintf(buf + at, cap - at, "%s%" PRId64, i ? ", " : "", dims[i]);
    }
    if (at < cap) {
        snprintf(buf + at, cap - at, "]");
    }
    return buf;
}

// Opens path read-only and fsyncs it (or, for a directory, its entries).
static dp_status fsync_path(const char *path, int directory)
{
    int fd = open(path, O_RDONLY | (directory ? O_DIRECTORY : 0));
    if (fd < 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot open to fsync: %s", path, strerror(errno));
    }
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return dp_error_set(DP_ERR_IO, "%s: fsync failed: %s", path, strerror(err));
    }
    if (close(fd) != 0) {
        return dp_error_set(DP_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    }
    return DP_OK;
}

// fsyncs the directory holding path, so that a rename into it survives a power cut.
static dp_status fsync_parent(const char *path)
{
    char dir[PATH_CAP];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    }
    return fsync_path(dir, 1);
}

// A link-creation property list that creates missing groups on the way.
static hid_t intermediate_groups(void)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        H5Pclose(lcpl);
        return -1;
    }
    return lcpl;
}

static hid_t utf8_string_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

// --- writer ---

static dp_status create_file(dp_ckpt_writer *w)
{
    // SEMI: H5Fclose fails instead of silently keeping the file open when an object is left
    // open, so a missed close cannot turn into a checkpoint renamed before it is complete.
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    dp_status st = DP_OK;
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI) < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot make the file access properties");
    } else if ((w->file = H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot create the checkpoint");
    }
    dp__h5_close(fapl); // after DP_H5_FAIL: closing clears HDF5's error stack
    return st;
}

dp_status dp_ckpt_writer_open(dp_ckpt_writer **out, const char *final_path)
{
    dp__h5_quiet();
    *out = NULL;
    size_t len = strlen(final_path);
    if (len == 0 || len + 5 > PATH_CAP) {
        return dp_error_set(DP_ERR_ARG, "checkpoint path '%s' is empty or too long", final_path);
    }
    dp_ckpt_writer *w = calloc(1, sizeof *w);
    char *tmp = malloc(len + 5);
    char *final_copy = dup_string(final_path);
    if (w == NULL || tmp == NULL || final_copy == NULL) {
        free(w);
        free(tmp);
        free(final_copy);
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate a checkpoint writer", final_path);
    }
    memcpy(tmp, final_path, len);
    memcpy(tmp + len, ".tmp", 5);
    w->file = -1;
    w->tmp_path = tmp;
    w->final_path = final_copy;
    dp_status st;
    DP_TRY_GOTO(create_file(w), st, fail);
    DP_TRY_GOTO(dp_ckpt_write_attr_i64(w, "/", "format_version", DP_CKPT_FORMAT_VERSION), st,
                fail);
    *out = w;
    return DP_OK;
fail:
    dp_ckpt_writer_abort(w);
    return st;
}

static dp_status check_dims(const dp_ckpt_writer *w, const char *dataset, const int64_t *dims,
                            int ndim, hsize_t *hd)
{
    if (ndim < 0 || ndim > DP_CKPT_MAX_NDIM || (ndim > 0 && dims == NULL)) {
        return dp_error_set(DP_ERR_ARG, "%s: dataset %s: rank %d is outside 0..%d", w->tmp_path,
                            dataset, ndim, DP_CKPT_MAX_NDIM);
    }
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0 || (dims[i] > 0 && count > (UINT64_MAX >> 3) / (uint64_t)dims[i])) {
            char shape[256];
            return dp_error_set(DP_ERR_ARG, "%s: dataset %s: invalid shape %s", w->tmp_path,
                                dataset, format_dims(shape, sizeof shape, dims, ndim));
        }
        count *= (uint64_t)dims[i];
        hd[i] = (hsize_t)dims[i];
    }
    return DP_OK;
}

// Creates dataset (and missing groups) of file_type over space.
static dp_status create_dataset(hid_t *dset, dp_ckpt_writer *w, const char *dataset,
                                hid_t file_type, hid_t space)
{
    hid_t lcpl = intermediate_groups();
    if (lcpl < 0) {
        return DP_H5_FAIL(w->tmp_path, "cannot make link properties for %s", dataset);
    }
    *dset = H5Dcreate2(w->file, dataset, file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    dp_status st = DP_OK;
    if (*dset < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot create dataset %s", dataset);
    }
    dp__h5_close(lcpl);
    return st;
}

dp_status dp_ckpt_write_tensor(dp_ckpt_writer *w, const char *dataset, const float *data,
                               const int64_t *dims, int ndim)
{
    dp__h5_quiet();
    hsize_t hd[DP_CKPT_MAX_NDIM] = {0};
    DP_TRY(check_object_path(w->tmp_path, dataset));
    DP_TRY(check_dims(w, dataset, dims, ndim, hd));
    hid_t space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, hd, NULL);
    hid_t dset = -1;
    dp_status st = DP_OK;
    if (space < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot make the dataspace of %s", dataset);
        goto out;
    }
    DP_TRY_GOTO(create_dataset(&dset, w, dataset, H5T_IEEE_F32LE, space), st, out);
    hssize_t count = H5Sget_simple_extent_npoints(space);
    if (count < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot count the elements of %s", dataset);
        goto out;
    }
    if (count > 0 && H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot write dataset %s", dataset);
        goto out;
    }
    herr_t rc = H5Dclose(dset);
    dset = -1;
    if (rc < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot close dataset %s", dataset);
    }
out:
    dp__h5_close(dset);
    dp__h5_close(space);
    return st;
}

dp_status dp_ckpt_write_string(dp_ckpt_writer *w, const char *dataset, const char *text)
{
    dp__h5_quiet();
    DP_TRY(check_object_path(w->tmp_path, dataset));
    hid_t type = utf8_string_type();
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t dset = -1;
    dp_status st = DP_OK;
    if (type < 0 || space < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot make the string type of %s", dataset);
        goto out;
    }
    DP_TRY_GOTO(create_dataset(&dset, w, dataset, type, space), st, out);
    if (H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot write dataset %s", dataset);
        goto out;
    }
    herr_t rc = H5Dclose(dset);
    dset = -1;
    if (rc < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot close dataset %s", dataset);
    }
out:
    dp__h5_close(dset);
    dp__h5_close(space);
    dp__h5_close(type);
    return st;
}

// Opens object of w's file and removes its attribute name if there is one.
static dp_status open_for_attr(hid_t *obj, dp_ckpt_writer *w, const char *object, const char *name,
                               const char *wh)
{
    DP_TRY(check_object_path(w->tmp_path, object));
    *obj = H5Oopen(w->file, object, H5P_DEFAULT);
    if (*obj < 0) {
        return DP_H5_FAIL(wh, "cannot open the object to set attribute '%s'", name);
    }
    htri_t exists = H5Aexists(*obj, name);
    if (exists < 0 || (exists > 0 && H5Adelete(*obj, name) < 0)) {
        return DP_H5_FAIL(wh, "cannot replace attribute '%s'", name);
    }
    return DP_OK;
}

static dp_status write_scalar_attr(dp_ckpt_writer *w, const char *object, const char *name,
                                   hid_t file_type, hid_t mem_type, const void *value)
{
    dp__h5_quiet();
    char wh[WHERE_CAP];
    where(wh, w->tmp_path, object);
    hid_t obj = -1, space = -1, attr = -1;
    dp_status st;
    DP_TRY_GOTO(open_for_attr(&obj, w, object, name, wh), st, out);
    space = H5Screate(H5S_SCALAR);
    attr = space < 0 ? -1 : H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0) {
        st = DP_H5_FAIL(wh, "cannot create attribute '%s'", name);
        goto out;
    }
    if (H5Awrite(attr, mem_type, value) < 0) {
        st = DP_H5_FAIL(wh, "cannot write attribute '%s'", name);
        goto out;
    }
    herr_t rc = H5Aclose(attr);
    attr = -1;
    if (rc < 0) {
        st = DP_H5_FAIL(wh, "cannot close attribute '%s'", name);
    }
out:
    dp__h5_close(attr);
    dp__h5_close(space);
    dp__h5_close(obj);
    return st;
}

dp_status dp_ckpt_write_attr_i64(dp_ckpt_writer *w, const char *object, const char *name,
                                 int64_t value)
{
    return write_scalar_attr(w, object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

dp_status dp_ckpt_write_attr_u64(dp_ckpt_writer *w, const char *object, const char *name,
                                 uint64_t value)
{
    return write_scalar_attr(w, object, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &value);
}

dp_status dp_ckpt_write_attr_f64(dp_ckpt_writer *w, const char *object, const char *name,
                                 double value)
{
    return write_scalar_attr(w, object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

dp_status dp_ckpt_write_attr_str(dp_ckpt_writer *w, const char *object, const char *name,
                                 const char *value)
{
    dp__h5_quiet();
    char wh[WHERE_CAP];
    where(wh, w->tmp_path, object);
    hid_t obj = -1;
    dp_status st;
    DP_TRY_GOTO(open_for_attr(&obj, w, object, name, wh), st, out);
    st = dp__h5_attr_write_string(obj, name, value, wh);
out:
    dp__h5_close(obj);
    return st;
}

dp_status dp_ckpt_write_meta(dp_ckpt_writer *w, const dp_ckpt_meta *meta, const char *cfg_text)
{
    char sha[DP_CKPT_SHA256_HEX];
    DP_TRY(dp_ckpt_sha256_hex(sha, cfg_text, strlen(cfg_text)));
    DP_TRY(dp_ckpt_write_attr_i64(w, "/", "step", meta->step));
    DP_TRY(dp_ckpt_write_attr_i64(w, "/", "epoch", meta->epoch));
    DP_TRY(dp_ckpt_write_attr_i64(w, "/", "world_size", meta->world_size));
    DP_TRY(dp_ckpt_write_attr_u64(w, "/", "sampler_seed", meta->sampler.seed));
    DP_TRY(dp_ckpt_write_attr_i64(w, "/", "sampler_epoch", meta->sampler.epoch));
    DP_TRY(dp_ckpt_write_attr_i64(w, "/", "sampler_next_batch", meta->sampler.next_batch));
    DP_TRY(dp_ckpt_write_attr_str(w, "/", "cfg_sha256", sha));
    return dp_ckpt_write_string(w, "/cfg_text", cfg_text);
}

static void writer_free(dp_ckpt_writer *w)
{
    free(w->tmp_path);
    free(w->final_path);
    free(w);
}

dp_status dp_ckpt_writer_commit(dp_ckpt_writer *w)
{
    dp__h5_quiet();
    dp_status st = DP_OK;
    herr_t rc = H5Fclose(w->file);
    w->file = -1;
    if (rc < 0) {
        st = DP_H5_FAIL(w->tmp_path, "cannot close the checkpoint");
        goto fail;
    }
    DP_TRY_GOTO(fsync_path(w->tmp_path, 0), st, fail);
    if (rename(w->tmp_path, w->final_path) != 0) {
        st = dp_error_set(DP_ERR_IO, "%s: cannot rename to %s: %s", w->tmp_path, w->final_path,
                          strerror(errno));
        goto fail;
    }
    // The new checkpoint is in place now; a failure here only leaves its durability unknown.
    st = fsync_parent(w->final_path);
    if (st != DP_OK) {
        dp_error_context(st, "%s: written, but its directory could not be synced",
                         w->final_path);
    }
    writer_free(w);
    return st;
fail:
    unlink(w->tmp_path);
    writer_free(w);
    return st;
}

void dp_ckpt_writer_abort(dp_ckpt_writer *w)
{
    if (w == NULL) {
        return;
    }
    if (w->file >= 0) {
        // Every write function closes what it opens, so the file closes here (a failure would
        // only keep a descriptor to the unlinked temp file until exit).
        H5Fclose(w->file);
        H5Eclear2(H5E_DEFAULT);
    }
    unlink(w->tmp_path);
    writer_free(w);
}

// --- reader: open ---

static herr_t innermost(unsigned n, const H5E_error2_t *err, void *ctx)
{
    if (n == 0 && err->desc != NULL) {
        snprintf(ctx, 256, "%s", err->desc);
    }
    return 0;
}

// 1 if the 8-byte HDF5 signature is at offset 0, 512, 1024, ... of path, 0 if not, -1 on error.
static int has_hdf5_signature(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    int found = 0;
    unsigned char buf[8];
    for (long at = 0; at >= 0 && at < (1L << 40); at = at ? at * 2 : 512) {
        if (fseek(f, at, SEEK_SET) != 0 || fread(buf, 1, sizeof buf, f) != sizeof buf) {
            break;
        }
        if (memcmp(buf, sig, sizeof sig) == 0) {
            found = 1;
            break;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        errno = EIO;
        return -1;
    }
    return found;
}

static dp_status open_failed(const char *path)
{
    char detail[256] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, detail);
    H5Eclear2(H5E_DEFAULT);
    int sig = has_hdf5_signature(path);
    if (sig < 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot read the checkpoint: %s", path,
                            strerror(errno));
    }
    if (sig == 0) {
        return dp_error_set(DP_ERR_DATA, "%s: not a checkpoint: not an HDF5 file", path);
    }
    return dp_error_set(DP_ERR_DATA, "%s: not a readable checkpoint: truncated or damaged HDF5 "
                        "file (%s)", path, detail[0] ? detail : "HDF5 gave no reason");
}

static dp_status check_version(dp_ckpt *r)
{
    htri_t exists = H5Aexists(r->file, "format_version");
    if (exists < 0) {
        return DP_H5_FAIL(r->path, "cannot look up attribute 'format_version'");
    }
    if (exists == 0) {
        return dp_error_set(DP_ERR_DATA, "%s: not a dptrain checkpoint (no root attribute "
                            "'format_version')", r->path);
    }
    int64_t version = 0;
    DP_TRY(dp_ckpt_read_attr_i64(r, "/", "format_version", &version));
    if (version < 1) {
        return dp_error_set(DP_ERR_DATA, "%s: invalid checkpoint format_version %" PRId64,
                            r->path, version);
    }
    if (version > DP_CKPT_FORMAT_VERSION) {
        return dp_error_set(DP_ERR_UNSUPPORTED, "%s: checkpoint format_version %" PRId64
                            " is newer than this dptrain reads (%d)", r->path, version,
                            DP_CKPT_FORMAT_VERSION);
    }
    return DP_OK;
}

dp_status dp_ckpt_open(dp_ckpt **out, const char *path)
{
    dp__h5_quiet();
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot open checkpoint: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        return dp_error_set(DP_ERR_IO, "%s: cannot open checkpoint: not a regular file", path);
    }
    dp_ckpt *r = calloc(1, sizeof *r);
    char *copy = dup_string(path);
    if (r == NULL || copy == NULL) {
        free(r);
        free(copy);
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate a checkpoint reader", path);
    }
    r->path = copy;
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    dp_status st;
    if (r->file < 0) {
        st = open_failed(path);
        goto fail;
    }
    DP_TRY_GOTO(check_version(r), st, fail);
    *out = r;
    return DP_OK;
fail:
    dp_ckpt_close(r);
    return st;
}

void dp_ckpt_close(dp_ckpt *r)
{
    if (r == NULL) {
        return;
    }
    dp__h5_close(r->file);
    free(r->path);
    free(r);
}

const char *dp_ckpt_path(const dp_ckpt *r)
{
    return r->path;
}

// --- reader: objects ---

dp_status dp_ckpt_exists(dp_ckpt *r, const char *path, int *out)
{
    dp__h5_quiet();
    *out = 0;
    DP_TRY(check_object_path(r->path, path));
    char buf[PATH_CAP];
    snprintf(buf, sizeof buf, "%s", path);
    // H5Lexists fails on a path whose parent is missing, so walk it one component at a time.
    for (char *p = buf + 1; *p != '\0'; p++) {
        int last = p[1] == '\0';
        if (*p != '/' && !last) {
            continue;
        }
        char keep = *p;
        if (!last) {
            *p = '\0';
        }
        htri_t e = H5Lexists(r->file, buf, H5P_DEFAULT);
        *p = keep;
        if (e < 0) {
            return DP_H5_FAIL(r->path, "cannot look up %s", path);
        }
        if (e == 0) {
            return DP_OK;
        }
    }
    *out = 1;
    return DP_OK;
}

// Opens the dataset at dataset, with an error naming it when it is missing or not a dataset.
static dp_status open_dataset(hid_t *dset, dp_ckpt *r, const char *dataset)
{
    *dset = -1;
    int exists = 0;
    DP_TRY(dp_ckpt_exists(r, dataset, &exists));
    if (!exists) {
        return dp_error_set(DP_ERR_DATA, "%s: dataset %s is missing", r->path, dataset);
    }
    *dset = H5Oopen(r->file, dataset, H5P_DEFAULT);
    if (*dset < 0) {
        return DP_H5_FAIL(r->path, "cannot open %s", dataset);
    }
    H5I_type_t type = H5Iget_type(*dset);
    if (type == H5I_BADID) {
        return DP_H5_FAIL(r->path, "cannot look up %s", dataset);
    }
    if (type != H5I_DATASET) {
        return dp_error_set(DP_ERR_DATA, "%s: %s is not a dataset", r->path, dataset);
    }
    return DP_OK;
}

// Opens a floating-point dataset and reads its shape.
static dp_status open_float(hid_t *dset, dp_ckpt *r, const char *dataset, int64_t *dims,
                            int *ndim)
{
    DP_TRY(open_dataset(dset, r, dataset));
    hid_t type = H5Dget_type(*dset);
    H5T_class_t cls = type < 0 ? H5T_NO_CLASS : H5Tget_class(type);
    if (cls == H5T_NO_CLASS) {
        dp_status st = DP_H5_FAIL(r->path, "cannot read the type of %s", dataset);
        dp__h5_close(type);
        return st;
    }
    dp__h5_close(type);
    if (cls != H5T_FLOAT) {
        return dp_error_set(DP_ERR_DATA, "%s: dataset %s is not floating-point", r->path,
                            dataset);
    }
    hid_t space = H5Dget_space(*dset);
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    hsize_t hd[DP_CKPT_MAX_NDIM];
    if (rank < 0 || (rank <= DP_CKPT_MAX_NDIM && H5Sget_simple_extent_dims(space, hd, NULL) < 0)) {
        dp_status st = DP_H5_FAIL(r->path, "cannot read the shape of %s", dataset);
        dp__h5_close(space);
        return st;
    }
    dp__h5_close(space);
    if (rank > DP_CKPT_MAX_NDIM) {
        return dp_error_set(DP_ERR_DATA, "%s: dataset %s has rank %d, more than %d", r->path,
                            dataset, rank, DP_CKPT_MAX_NDIM);
    }
    for (int i = 0; i < rank; i++) {
        dims[i] = (int64_t)hd[i];
    }
    *ndim = rank;
    return DP_OK;
}

dp_status dp_ckpt_tensor_shape(dp_ckpt *r, const char *dataset, int64_t *dims, int *ndim)
{
    dp__h5_quiet();
    hid_t dset = -1;
    dp_status st = open_float(&dset, r, dataset, dims, ndim);
    dp__h5_close(dset);
    return st;
}

static int same_dims(const int64_t *a, int na, const int64_t *b, int nb)
{
    if (na != nb) {
        return 0;
    }
    for (int i = 0; i < na; i++) {
        if (a[i] != b[i]) {
            return 0;
        }
    }
    return 1;
}

dp_status dp_ckpt_read_tensor(dp_ckpt *r, const char *dataset, float *out,
                              const int64_t *expect_dims, int ndim)
{
    dp__h5_quiet();
    hid_t dset = -1;
    int64_t dims[DP_CKPT_MAX_NDIM];
    int rank = 0;
    dp_status st;
    DP_TRY_GOTO(open_float(&dset, r, dataset, dims, &rank), st, out);
    if (!same_dims(dims, rank, expect_dims, ndim)) {
        char have[256], want[256];
        st = dp_error_set(DP_ERR_DATA, "%s: dataset %s has shape %s, expected %s", r->path,
                          dataset, format_dims(have, sizeof have, dims, rank),
                          format_dims(want, sizeof want, expect_dims, ndim));
        goto out;
    }
    int64_t count = 1;
    for (int i = 0; i < rank; i++) {
        count *= dims[i];
    }
    if (count > 0 && H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        st = DP_H5_FAIL(r->path, "cannot read dataset %s", dataset);
    }
out:
    dp__h5_close(dset);
    return st;
}

// Reads a scalar string dataset of any string type into a malloc'd copy.
static dp_status read_string_value(char **out, hid_t dset, hid_t ftype, dp_ckpt *r,
                                   const char *dataset)
{
    htri_t vlen = H5Tis_variable_str(ftype);
    H5T_cset_t cset = H5Tget_cset(ftype);
    hid_t mtype = vlen < 0 || cset < 0 ? -1 : H5Tcopy(vlen ? H5T_C_S1 : ftype);
    if (mtype >= 0 && vlen && (H5Tset_size(mtype, H5T_VARIABLE) < 0 ||
                               H5Tset_cset(mtype, cset) < 0)) {
        H5Tclose(mtype);
        mtype = -1;
    }
    if (mtype < 0) {
        return DP_H5_FAIL(r->path, "cannot read the string type of %s", dataset);
    }
    dp_status st = DP_OK;
    if (vlen) {
        char *raw = NULL;
        if (H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, &raw) < 0) {
            st = DP_H5_FAIL(r->path, "cannot read dataset %s", dataset);
        } else {
            *out = dup_string(raw ? raw : "");
            H5free_memory(raw);
        }
    } else {
        size_t size = H5Tget_size(ftype);
        char *raw = size == 0 ? NULL : calloc(1, size + 1);
        if (raw != NULL && H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) {
            st = DP_H5_FAIL(r->path, "cannot read dataset %s", dataset);
            free(raw);
        } else if (raw != NULL) {
            size_t n = strlen(raw);
            while (H5Tget_strpad(ftype) == H5T_STR_SPACEPAD && n > 0 && raw[n - 1] == ' ') {
                raw[--n] = '\0';
            }
            *out = raw;
        }
    }
    dp__h5_close(mtype);
    if (st == DP_OK && *out == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate the text of %s", r->path, dataset);
    }
    return st;
}

dp_status dp_ckpt_read_string(dp_ckpt *r, const char *dataset, char **out)
{
    dp__h5_quiet();
    *out = NULL;
    hid_t dset = -1, ftype = -1, space = -1;
    dp_status st;
    DP_TRY_GOTO(open_dataset(&dset, r, dataset), st, done);
    ftype = H5Dget_type(dset);
    space = H5Dget_space(dset);
    H5T_class_t cls = ftype < 0 ? H5T_NO_CLASS : H5Tget_class(ftype);
    H5S_class_t scls = space < 0 ? H5S_NO_CLASS : H5Sget_simple_extent_type(space);
    if (cls == H5T_NO_CLASS || scls == H5S_NO_CLASS) {
        st = DP_H5_FAIL(r->path, "cannot read the type of %s", dataset);
        goto done;
    }
    if (cls != H5T_STRING || scls != H5S_SCALAR) {
        st = dp_error_set(DP_ERR_DATA, "%s: dataset %s is not a scalar string", r->path, dataset);
        goto done;
    }
    st = read_string_value(out, dset, ftype, r, dataset);
done:
    dp__h5_close(space);
    dp__h5_close(ftype);
    dp__h5_close(dset);
    return st;
}

// --- reader: attributes ---

static dp_status open_object(hid_t *obj, dp_ckpt *r, const char *object)
{
    *obj = -1;
    int exists = 0;
    DP_TRY(dp_ckpt_exists(r, object, &exists));
    if (!exists) {
        return dp_error_set(DP_ERR_DATA, "%s: object %s is missing", r->path, object);
    }
    *obj = H5Oopen(r->file, object, H5P_DEFAULT);
    if (*obj < 0) {
        return DP_H5_FAIL(r->path, "cannot open %s", object);
    }
    return DP_OK;
}

static dp_status read_number_attr(dp_ckpt *r, const char *object, const char *name,
                                  hid_t mem_type, H5T_class_t cls, void *out)
{
    dp__h5_quiet();
    char wh[WHERE_CAP];
    hid_t obj;
    dp_status st;
    DP_TRY_GOTO(open_object(&obj, r, object), st, out);
    st = dp__h5_attr_read_numbers(out, mem_type, cls, 1, obj, name, where(wh, r->path, object));
out:
    dp__h5_close(obj);
    return st;
}

dp_status dp_ckpt_read_attr_i64(dp_ckpt *r, const char *object, const char *name, int64_t *out)
{
    return read_number_attr(r, object, name, H5T_NATIVE_INT64, H5T_INTEGER, out);
}

dp_status dp_ckpt_read_attr_u64(dp_ckpt *r, const char *object, const char *name, uint64_t *out)
{
    return read_number_attr(r, object, name, H5T_NATIVE_UINT64, H5T_INTEGER, out);
}

dp_status dp_ckpt_read_attr_f64(dp_ckpt *r, const char *object, const char *name, double *out)
{
    return read_number_attr(r, object, name, H5T_NATIVE_DOUBLE, H5T_FLOAT, out);
}

dp_status dp_ckpt_read_attr_str(dp_ckpt *r, const char *object, const char *name, char **out)
{
    dp__h5_quiet();
    *out = NULL;
    char wh[WHERE_CAP];
    where(wh, r->path, object);
    hid_t obj;
    char **strings = NULL;
    int n = 0;
    dp_status st;
    DP_TRY_GOTO(open_object(&obj, r, object), st, done);
    DP_TRY_GOTO(dp__h5_attr_read_strings(&strings, &n, obj, name, wh), st, done);
    if (n != 1) {
        st = dp_error_set(DP_ERR_DATA, "%s: attribute '%s' holds %d strings, expected one", wh,
                          name, n);
        goto done;
    }
    *out = dup_string(strings[0]);
    if (*out == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate attribute '%s'", wh, name);
    }
done:
    free(strings);
    dp__h5_close(obj);
    return st;
}

static dp_status check_meta(const dp_ckpt *r, const dp_ckpt_meta *m)
{
    if (m->step < 0 || m->epoch < 0 || m->world_size < 1 || m->sampler.epoch < 0 ||
        m->sampler.next_batch < 0) {
        return dp_error_set(DP_ERR_DATA,
                            "%s: invalid run state (step %" PRId64 ", epoch %" PRId64
                            ", world_size %" PRId64 ", sampler_epoch %" PRId64
                            ", sampler_next_batch %" PRId64 ")",
                            r->path, m->step, m->epoch, m->world_size, m->sampler.epoch,
                            m->sampler.next_batch);
    }
    return DP_OK;
}

dp_status dp_ckpt_read_meta(dp_ckpt *r, dp_ckpt_meta *out)
{
    dp_ckpt_meta m = {0};
    char *sha = NULL, *text = NULL;
    char want[DP_CKPT_SHA256_HEX];
    dp_status st;
    DP_TRY_GOTO(dp_ckpt_read_attr_i64(r, "/", "step", &m.step), st, out);
    DP_TRY_GOTO(dp_ckpt_read_attr_i64(r, "/", "epoch", &m.epoch), st, out);
    DP_TRY_GOTO(dp_ckpt_read_attr_i64(r, "/", "world_size", &m.world_size), st, out);
    DP_TRY_GOTO(dp_ckpt_read_attr_u64(r, "/", "sampler_seed", &m.sampler.seed), st, out);
    DP_TRY_GOTO(dp_ckpt_read_attr_i64(r, "/", "sampler_epoch", &m.sampler.epoch), st, out);
    DP_TRY_GOTO(dp_ckpt_read_attr_i64(r, "/", "sampler_next_batch", &m.sampler.next_batch), st,
                out);
    DP_TRY_GOTO(check_meta(r, &m), st, out);
    DP_TRY_GOTO(dp_ckpt_read_attr_str(r, "/", "cfg_sha256", &sha), st, out);
    DP_TRY_GOTO(dp_ckpt_read_string(r, "/cfg_text", &text), st, out);
    DP_TRY_GOTO(dp_ckpt_sha256_hex(want, text, strlen(text)), st, out);
    if (strcmp(sha, want) != 0) {
        st = dp_error_set(DP_ERR_DATA, "%s: cfg_sha256 %s is not the SHA-256 of /cfg_text (%s)",
                          r->path, sha, want);
        goto out;
    }
    memcpy(m.cfg_sha256, want, sizeof want);
    *out = m;
out:
    free(sha);
    free(text);
    return st;
}

// --- files of a run ---

dp_status dp_ckpt_sha256_hex(char out[DP_CKPT_SHA256_HEX], const void *data, size_t n_bytes)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data, n_bytes, md, &len, EVP_sha256(), NULL) != 1 || len != 32) {
        return dp_error_set(DP_ERR_INTERNAL, "libcrypto's SHA-256 failed");
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
    return DP_OK;
}

static dp_status check_prefix(const char *prefix)
{
    if (prefix == NULL || prefix[0] == '\0' || strchr(prefix, '/') != NULL) {
        return dp_error_set(DP_ERR_ARG, "checkpoint prefix '%s' must be a non-empty file name",
                            prefix ? prefix : "(null)");
    }
    return DP_OK;
}

dp_status dp_ckpt_step_path(char *out, size_t cap, const char *dir, const char *prefix,
                            int64_t step)
{
    DP_TRY(check_prefix(prefix));
    if (step < 0) {
        return dp_error_set(DP_ERR_ARG, "checkpoint step %" PRId64 " is negative", step);
    }
    int n = snprintf(out, cap, "%s/%s-step%" PRId64 ".h5", dir, prefix, step);
    if (n < 0 || (size_t)n >= cap) {
        return dp_error_set(DP_ERR_ARG, "%s: checkpoint path does not fit in %zu bytes", dir,
                            cap);
    }
    return DP_OK;
}

typedef struct {
    int64_t step;
    char *name;
} step_file;

// Step of "<prefix>-step<N>.h5" (1..18 digits), or -1 for any other name.
static int64_t parse_step_name(const char *name, const char *prefix)
{
    size_t plen = strlen(prefix);
    if (strncmp(name, prefix, plen) != 0 || strncmp(name + plen, "-step", 5) != 0) {
        return -1;
    }
    const char *p = name + plen + 5;
    int64_t step = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 19; p++, digits++) {
        step = step * 10 + (*p - '0');
    }
    if (digits == 0 || digits > 18 || strcmp(p, ".h5") != 0) {
        return -1;
    }
    return step;
}

// Newest first; equal steps ("step7", "step07") by name so the order is total.
static int newest_first(const void *a, const void *b)
{
    const step_file *x = a, *y = b;
    if (x->step != y->step) {
        return x->step > y->step ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

// Lists the step checkpoints of dir into *files (malloc'd, names too).
static dp_status list_steps(step_file **files, size_t *n, const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return dp_error_set(DP_ERR_IO, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    }
    dp_status st = DP_OK;
    size_t cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        int64_t step = parse_step_name(e->d_name, prefix);
        if (step < 0) {
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            step_file *grown = realloc(*files, cap * sizeof *grown);
            if (grown == NULL) {
                st = dp_error_set(DP_ERR_NOMEM, "%s: cannot list checkpoints", dir);
                break;
            }
            *files = grown;
        }
        (*files)[*n].step = step;
        (*files)[*n].name = dup_string(e->d_name);
        if ((*files)[*n].name == NULL) {
            st = dp_error_set(DP_ERR_NOMEM, "%s: cannot list checkpoints", dir);
            break;
        }
        (*n)++;
        errno = 0;
    }
    if (st == DP_OK && errno != 0) {
        st = dp_error_set(DP_ERR_IO, "%s: cannot list checkpoints: %s", dir, strerror(errno));
    }
    closedir(d);
    return st;
}

dp_status dp_ckpt_retain(const char *dir, const char *prefix, int keep_last)
{
    DP_TRY(check_prefix(prefix));
    if (keep_last < 1) {
        return dp_error_set(DP_ERR_ARG, "%s: keep_last is %d; keep at least 1 checkpoint", dir,
                            keep_last);
    }
    step_file *files = NULL;
    size_t n = 0;
    dp_status st = list_steps(&files, &n, dir, prefix);
    if (st == DP_OK) {
        qsort(files, n, sizeof *files, newest_first);
    }
    for (size_t i = (size_t)keep_last; st == DP_OK && i < n; i++) {
        char path[PATH_CAP];
        int len = snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        if (len < 0 || (size_t)len >= sizeof path) {
            st = dp_error_set(DP_ERR_ARG, "%s/%s: path too long", dir, files[i].name);
        } else if (unlink(path) != 0 && errno != ENOENT) {
            st = dp_error_set(DP_ERR_IO, "%s: cannot remove old checkpoint: %s", path,
                              strerror(errno));
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(files[i].name);
    }
    free(files);
    return st;
}

// Writes all of buf[0..n) to fd, retrying short writes and EINTR.
static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, buf, n);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return -1;
        }
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

// Copies src into the new file dst and fsyncs it; on error dst may be left partial.
static dp_status copy_file(const char *src, const char *dst)
{
    char *buf = malloc(COPY_BLOCK);
    int in = open(src, O_RDONLY);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dp_status st = DP_OK;
    if (buf == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate a copy buffer", dst);
    } else if (in < 0) {
        st = dp_error_set(DP_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    } else if (out < 0) {
        st = dp_error_set(DP_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
    }
    while (st == DP_OK) {
        ssize_t k = read(in, buf, COPY_BLOCK);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k < 0) {
            st = dp_error_set(DP_ERR_IO, "%s: read failed: %s", src, strerror(errno));
        } else if (k == 0) {
            break;
        } else if (write_all(out, buf, (size_t)k) != 0) {
            st = dp_error_set(DP_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
        }
    }
    if (st == DP_OK && fsync(out) != 0) {
        st = dp_error_set(DP_ERR_IO, "%s: fsync failed: %s", dst, strerror(errno));
    }
    if (out >= 0 && close(out) != 0 && st == DP_OK) {
        st = dp_error_set(DP_ERR_IO, "%s: close failed: %s", dst, strerror(errno));
    }
    if (in >= 0) {
        close(in);
    }
    free(buf);
    return st;
}

dp_status dp_ckpt_save_best(const char *src, const char *dir, const char *prefix)
{
    DP_TRY(check_prefix(prefix));
    char best[PATH_CAP], tmp[PATH_CAP];
    int n1 = snprintf(best, sizeof best, "%s/%s-best.h5", dir, prefix);
    int n2 = snprintf(tmp, sizeof tmp, "%s/%s-best.h5.tmp", dir, prefix);
    if (n1 < 0 || n2 < 0 || (size_t)n2 >= sizeof tmp) {
        return dp_error_set(DP_ERR_ARG, "%s: path of the best checkpoint is too long", dir);
    }
    dp_status st = copy_file(src, tmp);
    if (st == DP_OK && rename(tmp, best) != 0) {
        st = dp_error_set(DP_ERR_IO, "%s: cannot rename to %s: %s", tmp, best, strerror(errno));
    }
    if (st != DP_OK) {
        unlink(tmp);
        return st;
    }
    return fsync_path(dir, 1);
}
