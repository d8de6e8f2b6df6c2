// HDF5 library identification (for --version).
#ifndef DP_IO_H5_INFO_H
#define DP_IO_H5_INFO_H

#include <stddef.h>

// Writes "1.10.8 (thread-safe)" or similar into buf (size bytes). Never fails.
void dp_io_h5_version(char *buf, size_t size);

#endif
