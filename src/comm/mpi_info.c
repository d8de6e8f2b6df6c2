// MPI library identification; MPI_Get_library_version and MPI_Get_version may be called
// before MPI_Init.
#include "comm/mpi_info.h"

#include <mpi.h>
#include <stdio.h>
#include <string.h>

void dp_comm_mpi_library_version(char *buf, size_t size)
{
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    int major = 0, minor = 0;
    MPI_Get_library_version(lib, &len);
    MPI_Get_version(&major, &minor);
    lib[len < MPI_MAX_LIBRARY_VERSION_STRING ? len : MPI_MAX_LIBRARY_VERSION_STRING - 1] = '\0';
    char *eol = strpbrk(lib, ",\n");
    if (eol != NULL) {
        *eol = '\0';
    }
    snprintf(buf, size, "%s (MPI %d.%d)", lib, major, minor);
}
