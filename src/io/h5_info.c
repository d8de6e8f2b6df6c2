// HDF5 version and build facts.
#include "io/h5_info.h"

#include <hdf5.h>
#include <stdio.h>

void dp_io_h5_version(char *buf, size_t size)
{
    unsigned major = 0, minor = 0, release = 0;
    hbool_t threadsafe = 0;
    if (H5get_libversion(&major, &minor, &release) < 0) {
        snprintf(buf, size, "unknown");
        return;
    }
    if (H5is_library_threadsafe(&threadsafe) < 0) {
        threadsafe = 0;
    }
    snprintf(buf, size, "%u.%u.%u%s", major, minor, release, threadsafe ? " (thread-safe)" : "");
}
