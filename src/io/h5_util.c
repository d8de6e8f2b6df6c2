// HDF5 helpers shared by the dataset reader and writer: quiet error stack, error messages that
// name the file, generic close, string and numeric attributes. Deliberately knows nothing about
// the dataset layout (that is dataset.c).
#include "io/h5_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dp__h5_quiet(void)
{
    // Cannot fail for H5E_DEFAULT; if it did, HDF5 would only print more, so it is not checked.
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

typedef struct {
    char text[256];
} h5_detail;

// Walking upward, frame 0 is where HDF5 first detected the error: the most specific text.
static herr_t keep_innermost(unsigned n, const H5E_error2_t *err, void *ctx)
{
    h5_detail *d = ctx;
    if (n == 0 && err->desc != NULL) {
        snprintf(d->text, sizeof d->text, "%s", err->desc);
    }
    return 0;
}

dp_status dp__h5_fail(const char *file, int line, const char *path, const char *fmt, ...)
{
    h5_detail detail = {{0}};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, &detail);
    H5Eclear2(H5E_DEFAULT);
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (detail.text[0] != '\0') {
        return dp__error_set(file, line, DP_ERR_IO, "%s: %s: %s", path, what, detail.text);
    }
    return dp__error_set(file, line, DP_ERR_IO, "%s: %s", path, what);
}

void dp__h5_close(hid_t id)
{
    if (id < 0) {
        return;
    }
    switch (H5Iget_type(id)) {
    case H5I_FILE:
        H5Fclose(id);
        break;
    case H5I_GROUP:
        H5Gclose(id);
        break;
    case H5I_DATATYPE:
        H5Tclose(id);
        break;
    case H5I_DATASPACE:
        H5Sclose(id);
        break;
    case H5I_DATASET:
        H5Dclose(id);
        break;
    case H5I_ATTR:
        H5Aclose(id);
        break;
    case H5I_GENPROP_LST:
        H5Pclose(id);
        break;
    default:
        break;
    }
    H5Eclear2(H5E_DEFAULT);
}

static hid_t utf8_vlen_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) {
        return t;
    }
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static dp_status attr_write_vlen(hid_t obj, const char *name, const char *const *strings,
                                 hsize_t n, int rank, const char *path)
{
    dp_status st = DP_OK;
    hid_t type = utf8_vlen_type();
    hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t attr = -1;
    if (type < 0 || space < 0) {
        st = DP_H5_FAIL(path, "cannot make the type of attribute '%s'", name);
        goto out;
    }
    attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0) {
        st = DP_H5_FAIL(path, "cannot create attribute '%s'", name);
        goto out;
    }
    if (H5Awrite(attr, type, strings) < 0) {
        st = DP_H5_FAIL(path, "cannot write attribute '%s'", name);
        goto out;
    }
    if (H5Aclose(attr) < 0) {
        attr = -1;
        st = DP_H5_FAIL(path, "cannot close attribute '%s'", name);
        goto out;
    }
    attr = -1;
out:
    dp__h5_close(attr);
    dp__h5_close(space);
    dp__h5_close(type);
    return st;
}

dp_status dp__h5_attr_write_strings(hid_t obj, const char *name, const char *const *strings,
                                    int n, const char *path)
{
    return attr_write_vlen(obj, name, strings, (hsize_t)n, 1, path);
}

dp_status dp__h5_attr_write_string(hid_t obj, const char *name, const char *s, const char *path)
{
    const char *one[1] = {s};
    return attr_write_vlen(obj, name, one, 1, 0, path);
}

// Opens attribute name and its dataspace; checks rank <= 1 and returns the element count.
static dp_status attr_open(hid_t *attr, hid_t *space, hsize_t *count, hid_t obj, const char *name,
                           const char *path)
{
    *attr = -1;
    *space = -1;
    htri_t exists = H5Aexists(obj, name);
    if (exists < 0) {
        return DP_H5_FAIL(path, "cannot look up attribute '%s'", name);
    }
    if (exists == 0) {
        return dp_error_set(DP_ERR_DATA, "%s: attribute '%s' is missing", path, name);
    }
    *attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (*attr < 0) {
        return DP_H5_FAIL(path, "cannot open attribute '%s'", name);
    }
    *space = H5Aget_space(*attr);
    int rank = *space < 0 ? -1 : H5Sget_simple_extent_ndims(*space);
    if (rank < 0) {
        return DP_H5_FAIL(path, "cannot read the shape of attribute '%s'", name);
    }
    if (rank > 1) {
        return dp_error_set(DP_ERR_DATA, "%s: attribute '%s' has rank %d, expected a scalar or 1-D",
                            path, name, rank);
    }
    *count = 1;
    if (rank == 1 && H5Sget_simple_extent_dims(*space, count, NULL) < 0) {
        return DP_H5_FAIL(path, "cannot read the shape of attribute '%s'", name);
    }
    return DP_OK;
}

// Packs n strings (each len[i] bytes, not terminated) into one block: pointers, then text.
static dp_status pack_strings(char ***out, char *const *src, const size_t *len, hsize_t n)
{
    size_t total = n * sizeof(char *);
    for (hsize_t i = 0; i < n; i++) {
        total += len[i] + 1;
    }
    char **block = malloc(total);
    if (block == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "cannot allocate %zu bytes for strings", total);
    }
    char *text = (char *)(block + n);
    for (hsize_t i = 0; i < n; i++) {
        memcpy(text, src[i], len[i]);
        text[len[i]] = '\0';
        block[i] = text;
        text += len[i] + 1;
    }
    *out = block;
    return DP_OK;
}

static dp_status read_vlen(char ***out, hid_t attr, hid_t ftype, hsize_t n, const char *name,
                           const char *path)
{
    dp_status st = DP_OK;
    char **raw = calloc(n, sizeof *raw);
    char **text = calloc(n, sizeof *text);
    size_t *len = calloc(n, sizeof *len);
    hid_t mtype = H5Tcopy(H5T_C_S1);
    H5T_cset_t cset = H5Tget_cset(ftype);
    if (raw == NULL || text == NULL || len == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate attribute '%s'", path, name);
        goto out;
    }
    if (mtype < 0 || cset < 0 || H5Tset_size(mtype, H5T_VARIABLE) < 0 ||
        H5Tset_cset(mtype, cset) < 0) {
        st = DP_H5_FAIL(path, "cannot make the memory type of attribute '%s'", name);
        goto out;
    }
    if (H5Aread(attr, mtype, raw) < 0) {
        st = DP_H5_FAIL(path, "cannot read attribute '%s'", name);
        goto out;
    }
    static char empty[1] = "";
    for (hsize_t i = 0; i < n; i++) {
        len[i] = raw[i] == NULL ? 0 : strlen(raw[i]);
        text[i] = raw[i] == NULL ? empty : raw[i];
    }
    st = pack_strings(out, text, len, n);
    for (hsize_t i = 0; i < n; i++) {
        if (raw[i] != NULL) {
            H5free_memory(raw[i]);
        }
    }
out:
    dp__h5_close(mtype);
    free(len);
    free(text);
    free(raw);
    return st;
}

static dp_status read_fixed(char ***out, hid_t attr, hid_t ftype, hsize_t n, const char *name,
                            const char *path)
{
    dp_status st = DP_OK;
    size_t size = H5Tget_size(ftype);
    H5T_str_t pad = H5Tget_strpad(ftype);
    char *raw = size == 0 ? NULL : calloc(n, size);
    char **ptr = calloc(n, sizeof *ptr);
    size_t *len = calloc(n, sizeof *len);
    if (size == 0 || pad < 0) {
        st = DP_H5_FAIL(path, "cannot read the string type of attribute '%s'", name);
        goto out;
    }
    if (raw == NULL || ptr == NULL || len == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate attribute '%s'", path, name);
        goto out;
    }
    if (H5Aread(attr, ftype, raw) < 0) {
        st = DP_H5_FAIL(path, "cannot read attribute '%s'", name);
        goto out;
    }
    for (hsize_t i = 0; i < n; i++) {
        ptr[i] = raw + i * size;
        len[i] = strnlen(ptr[i], size);
        while (pad == H5T_STR_SPACEPAD && len[i] > 0 && ptr[i][len[i] - 1] == ' ') {
            len[i]--;
        }
    }
    st = pack_strings(out, ptr, len, n);
out:
    free(len);
    free(ptr);
    free(raw);
    return st;
}

dp_status dp__h5_attr_read_strings(char ***out, int *n_out, hid_t obj, const char *name,
                                   const char *path)
{
    hid_t attr, space, ftype = -1;
    hsize_t n = 0;
    dp_status st;
    *out = NULL;
    *n_out = 0;
    DP_TRY_GOTO(attr_open(&attr, &space, &n, obj, name, path), st, out);
    ftype = H5Aget_type(attr);
    H5T_class_t cls = ftype < 0 ? H5T_NO_CLASS : H5Tget_class(ftype);
    if (cls == H5T_NO_CLASS) {
        st = DP_H5_FAIL(path, "cannot read the type of attribute '%s'", name);
        goto out;
    }
    if (cls != H5T_STRING) {
        st = dp_error_set(DP_ERR_DATA, "%s: attribute '%s' is not a string or string array", path,
                          name);
        goto out;
    }
    if (n == 0 || n > (hsize_t)1 << 20) {
        st = dp_error_set(DP_ERR_DATA, "%s: attribute '%s' has %llu strings", path, name,
                          (unsigned long long)n);
        goto out;
    }
    htri_t vlen = H5Tis_variable_str(ftype);
    if (vlen < 0) {
        st = DP_H5_FAIL(path, "cannot read the string type of attribute '%s'", name);
        goto out;
    }
    st = vlen ? read_vlen(out, attr, ftype, n, name, path)
              : read_fixed(out, attr, ftype, n, name, path);
    if (st == DP_OK) {
        *n_out = (int)n;
    }
out:
    dp__h5_close(ftype);
    dp__h5_close(space);
    dp__h5_close(attr);
    return st;
}

dp_status dp__h5_attr_read_numbers(void *out, hid_t mem_type, H5T_class_t type_class, int n,
                                   hid_t obj, const char *name, const char *path)
{
    hid_t attr, space, ftype = -1;
    hsize_t count = 0;
    dp_status st;
    DP_TRY_GOTO(attr_open(&attr, &space, &count, obj, name, path), st, out);
    ftype = H5Aget_type(attr);
    H5T_class_t cls = ftype < 0 ? H5T_NO_CLASS : H5Tget_class(ftype);
    if (cls == H5T_NO_CLASS) {
        st = DP_H5_FAIL(path, "cannot read the type of attribute '%s'", name);
        goto out;
    }
    if (cls != type_class) {
        st = dp_error_set(DP_ERR_DATA, "%s: attribute '%s' is not of %s type", path, name,
                          type_class == H5T_FLOAT ? "floating-point" : "integer");
        goto out;
    }
    if (count != (hsize_t)n) {
        st = dp_error_set(DP_ERR_DATA, "%s: attribute '%s' has %llu values, expected %d", path,
                          name, (unsigned long long)count, n);
        goto out;
    }
    if (H5Aread(attr, mem_type, out) < 0) {
        st = DP_H5_FAIL(path, "cannot read attribute '%s'", name);
        goto out;
    }
out:
    dp__h5_close(ftype);
    dp__h5_close(space);
    dp__h5_close(attr);
    return st;
}
