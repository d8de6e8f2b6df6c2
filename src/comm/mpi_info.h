// Facts about the MPI library this build links, callable before MPI_Init (for --version).
#ifndef DP_COMM_MPI_INFO_H
#define DP_COMM_MPI_INFO_H

#include <stddef.h>

// Writes the first line of MPI_Get_library_version ("Open MPI v4.1.4, ...") and the MPI
// standard version into buf (size bytes). Never fails; thread-safe.
void dp_comm_mpi_library_version(char *buf, size_t size);

#endif
