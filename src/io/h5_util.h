// Internal HDF5 helpers of src/io: silence HDF5's own error printing, turn a failed call into a
// dp_status whose message names the file and keeps HDF5's innermost description, close any id,
// and read/write string attributes (variable- or fixed-length). Not part of the public API.
#ifndef DP_IO_H5_UTIL_H
#define DP_IO_H5_UTIL_H

#include <hdf5.h>

#include "core/error.h"

// Turns off HDF5's automatic error printing for the calling thread (the error stack of a
// thread-safe HDF5 is per thread, so every thread that calls HDF5 does this first).
void dp__h5_quiet(void);

// Sets DP_ERR_IO with "<path>: <formatted text>[: <HDF5's innermost message>]", clears the
// HDF5 error stack and returns DP_ERR_IO. Use right after the failing call.
#define DP_H5_FAIL(path, ...) dp__h5_fail(__FILE__, __LINE__, (path), __VA_ARGS__)
dp_status dp__h5_fail(const char *file, int line, const char *path, const char *fmt, ...)
    DP_PRINTF(4, 5);

// Closes an id of any kind (file, dataset, dataspace, datatype, attribute, property list,
// group); ignores ids < 0 and errors (for cleanup paths that already carry a status).
void dp__h5_close(hid_t id);

// Writes attribute name on obj as a 1-D array of n variable-length UTF-8 strings.
DP_MUST_CHECK dp_status dp__h5_attr_write_strings(hid_t obj, const char *name,
                                                  const char *const *strings, int n,
                                                  const char *path);

// Writes attribute name on obj as a scalar variable-length UTF-8 string.
DP_MUST_CHECK dp_status dp__h5_attr_write_string(hid_t obj, const char *name, const char *s,
                                                 const char *path);

// Reads string attribute name of obj: a scalar (*n_out = 1) or a 1-D array, variable- or
// fixed-length. *out receives one malloc'd block: n pointers followed by the text; free(*out)
// releases all. Returns DP_ERR_DATA naming path and the attribute if it is missing or not a
// string array, DP_ERR_IO on a read failure, DP_ERR_NOMEM.
DP_MUST_CHECK dp_status dp__h5_attr_read_strings(char ***out, int *n_out, hid_t obj,
                                                 const char *name, const char *path);

// Reads numeric attribute name of obj (scalar or 1-D) converted to mem_type (e.g.
// H5T_NATIVE_FLOAT), expecting exactly n elements. Returns DP_ERR_DATA naming path and the
// attribute if it is missing, not of type_class, or of another length.
DP_MUST_CHECK dp_status dp__h5_attr_read_numbers(void *out, hid_t mem_type, H5T_class_t type_class,
                                                 int n, hid_t obj, const char *name,
                                                 const char *path);

#endif
