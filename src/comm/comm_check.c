// Replica checks: a byte checksum (FNV-1a 64) and dp_comm_check_equal, which compares it across
// ranks and names every rank that differs from rank 0 (for "replica parameters" after a step,
// "cfg text" at start-up). A checksum, not a cryptographic hash: it finds divergence, it does not
// resist forgery.
#include "comm/comm_internal.h"

#include <stdarg.h>
#include <stdio.h>

enum { MAX_NAMED = 16 };

uint64_t dp_comm_checksum(const void *data, size_t bytes)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < bytes; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

enum { TEXT_BYTES = 1536 };

// Appends to text (TEXT_BYTES) at len, truncating; returns the new length.
DP_PRINTF(3, 4) static size_t append(char *text, size_t len, const char *fmt, ...)
{
    if (len >= TEXT_BYTES - 1) {
        return len;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text + len, TEXT_BYTES - len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return len;
    }
    return len + (size_t)n < TEXT_BYTES - 1 ? len + (size_t)n : TEXT_BYTES - 1;
}

// Names the ranks whose (hash, bytes) in c->gather differ from rank 0's; DP_OK if none.
static dp_status report(const dp_comm *c, const char *what)
{
    const uint64_t *g = c->gather;
    char text[TEXT_BYTES] = "";
    size_t len = 0;
    int n_diff = 0;
    for (int q = 1; q < c->size; q++) {
        if (g[2 * q] == g[0] && g[2 * q + 1] == g[1]) {
            continue;
        }
        if (n_diff < MAX_NAMED) {
            len = append(text, len, "%s rank %d (fnv1a64 0x%016llx, %llu bytes)",
                         n_diff == 0 ? "" : ",", q, (unsigned long long)g[2 * q],
                         (unsigned long long)g[2 * q + 1]);
        }
        n_diff++;
    }
    if (n_diff == 0) {
        return DP_OK;
    }
    if (n_diff > MAX_NAMED) {
        len = append(text, len, " and %d more ranks", n_diff - MAX_NAMED);
    }
    (void)len;
    return dp_error_set(DP_ERR_DATA,
                        "%s differ across ranks at step %ld:%s differ%s from rank 0 (fnv1a64 "
                        "0x%016llx, %llu bytes)",
                        what, c->step, text, n_diff == 1 ? "s" : "", (unsigned long long)g[0],
                        (unsigned long long)g[1]);
}

dp_status dp_comm_check_equal(dp_comm *c, const void *data, size_t bytes, const char *what)
{
    if (c == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_check_equal: communicator is NULL");
    }
    DP_TRY(dp__comm_check_usable(c));
    if (data == NULL && bytes > 0) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_check_equal: data is NULL for %zu bytes", bytes);
    }
    if (what == NULL) {
        what = "data";
    }
    if (c->backend == DP_COMM_BACKEND_NONE) {
        return DP_OK;
    }
    c->gather_mine[0] = dp_comm_checksum(data, bytes);
    c->gather_mine[1] = (uint64_t)bytes;
    dp__comm_wait_ctx w = {.op = DP__COMM_OP_CHECK_EQUAL, .seq = ++c->seq, .count = bytes};
    DP_MPI_TRY(MPI_Iallgather(c->gather_mine, 2, MPI_UINT64_T, c->gather, 2, MPI_UINT64_T, c->comm,
                              &c->internal[0]));
    DP_TRY(dp__comm_wait_watched(c, 1, c->internal, &w));
    return report(c, what);
}
