// HDF5 version and build facts.
#include "io/h5_info.h"

#include <hdf5.h>
#include <stdio.h>

void dp_io_h5_version(char *buf, size_t size)
{
    unsigned major = 0, minor = 0, release = 0;
    hbool_t threadsafe = 0;
    H5get_libversion(&major, &minor, &release);
    H5is_library_threadsafe(&threadsafe);
    snprintf(buf, size, "%u.%u.%u%s", major, minor, release, threadsafe ? " (thread-safe)" : "");
}
