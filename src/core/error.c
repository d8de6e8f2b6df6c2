// Thread-local error slot and dp_status names. Messages are truncated to a fixed size
// rather than allocated, so that setting an error can never fail.
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ERROR_MSG_BYTES = 2048, ERROR_ORIGIN_BYTES = 256 };

static _Thread_local struct {
    dp_status status;
    char message[ERROR_MSG_BYTES];
    char origin[ERROR_ORIGIN_BYTES];
} tls_error;

static const char *const status_text[] = {
#define DP_STATUS_TEXT(name, text) text,
    DP_STATUS_LIST(DP_STATUS_TEXT)
#undef DP_STATUS_TEXT
};

static const char *const status_names[] = {
#define DP_STATUS_NAME(name, text) #name,
    DP_STATUS_LIST(DP_STATUS_NAME)
#undef DP_STATUS_NAME
};

const char *dp_status_str(dp_status st)
{
    if ((unsigned)st >= DP_STATUS_COUNT_) {
        return "unknown status";
    }
    return status_text[st];
}

const char *dp_status_name(dp_status st)
{
    if ((unsigned)st >= DP_STATUS_COUNT_) {
        return "UNKNOWN";
    }
    return status_names[st];
}

dp_status dp__error_set(const char *file, int line, dp_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error.message, sizeof tls_error.message, fmt, ap);
    va_end(ap);
    snprintf(tls_error.origin, sizeof tls_error.origin, "%s:%d", file, line);
    tls_error.status = st;
    return st;
}

dp_status dp__error_context(dp_status st, const char *fmt, ...)
{
    char prefix[ERROR_MSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix - 2, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return st;
    }
    size_t plen = strlen(prefix);
    memcpy(prefix + plen, ": ", 3);
    plen += 2;
    size_t mlen = strlen(tls_error.message);
    if (plen + mlen >= ERROR_MSG_BYTES) {
        mlen = ERROR_MSG_BYTES - 1 - plen;
    }
    memmove(tls_error.message + plen, tls_error.message, mlen);
    memcpy(tls_error.message, prefix, plen);
    tls_error.message[plen + mlen] = '\0';
    if (tls_error.status == DP_OK) {
        tls_error.status = st;
    }
    return st;
}

const char *dp_error_message(void)
{
    return tls_error.message;
}

const char *dp_error_origin(void)
{
    return tls_error.origin;
}

dp_status dp_error_status(void)
{
    return tls_error.status;
}

void dp_error_clear(void)
{
    tls_error.status = DP_OK;
    tls_error.message[0] = '\0';
    tls_error.origin[0] = '\0';
}

void dp__assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "dptrain: internal assertion failed: %s (%s:%d)\n", cond, file, line);
    fflush(stderr);
    abort();
}
