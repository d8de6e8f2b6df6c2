// Metrics JSON-lines writer: a JSON string escaper (with UTF-8 validation), shortest
// round-trip number formatting, and an append-only file written one whole line per write(2).
// It decides nothing about which metrics exist; the trainer names them.
#include "io/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"

enum { TAIL_BLOCK = 4096 };

struct dp_metrics {
    int fd;
    char *path;
    off_t good_bytes; // the file ends after a whole line here
    char *line;       // the line being built, reused across records
    size_t cap;
};

// --- JSON text ---

// Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, surrogates or values past
// U+10FFFF), or 0 if s does not start one.
static size_t utf8_sequence(const unsigned char *s)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;
    if (c < 0x80) {
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }
    return n;
}

// Appends text[0..n) to out[0..cap) at *at (truncating, always NUL-terminated when cap > 0);
// *at counts the full length.
static void emit(char *out, size_t cap, size_t *at, const char *text, size_t n)
{
    if (*at < cap) {
        size_t room = cap - 1 - *at;
        memcpy(out + *at, text, n < room ? n : room);
        out[*at + (n < room ? n : room)] = '\0';
    }
    *at += n;
}

size_t dp_metrics_json_escape(char *out, size_t cap, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t at = 0;
    if (cap > 0) {
        out[0] = '\0';
    }
    while (*p != '\0') {
        char esc[8];
        size_t n = utf8_sequence(p);
        if (n == 0) {
            emit(out, cap, &at, "\\ufffd", 6);
            p++;
        } else if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p++;
            emit(out, cap, &at, esc, 2);
        } else if (*p < 0x20) {
            static const char short_form[] = "btn\0fr"; // \b \t \n (\v has none) \f \r
            if (*p >= '\b' && *p <= '\r' && short_form[*p - '\b'] != '\0') {
                esc[0] = '\\';
                esc[1] = short_form[*p - '\b'];
                emit(out, cap, &at, esc, 2);
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                emit(out, cap, &at, esc, 6);
            }
            p++;
        } else {
            emit(out, cap, &at, (const char *)p, n);
            p += n;
        }
    }
    return at;
}

size_t dp_metrics_json_number(char out[DP_METRICS_NUMBER_CAP], double v)
{
    if (!isfinite(v)) {
        memcpy(out, "null", 5);
        return 4;
    }
    if (v == 0.0) {
        const char *zero = signbit(v) ? "-0.0" : "0"; // "-0" would read back as the integer 0
        size_t n = strlen(zero);
        memcpy(out, zero, n + 1);
        return n;
    }
    char text[DP_METRICS_NUMBER_CAP]; // formatted here, then copied: keeps GCC's format
    int n = 0;                        // checks sure of the destination under sanitizers
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(text, sizeof text, "%.*g", prec, v);
        if (strtod(text, NULL) == v) {
            break; // %.17g always reads back, so the loop ends here at the latest
        }
    }
    // %g writes 10 as "1e+01" when one digit suffices; integers below 1e17 read better whole
    // ("%.0f" is exact for them: the exponent form was chosen only because they are integral).
    const char *e = strchr(text, 'e');
    if (e != NULL && e[1] == '+' && strtol(e + 2, NULL, 10) < 17) {
        n = snprintf(text, sizeof text, "%.0f", v);
    }
    // A locale with a decimal comma (setlocale by the host program) must not leak into JSON.
    for (char *c = text; *c != '\0'; c++) {
        if (*c == ',') {
            *c = '.';
        }
    }
    memcpy(out, text, (size_t)n + 1);
    return (size_t)n;
}

// --- lines ---

static dp_status check_record(const dp_metrics *m, const dp_metrics_record *r)
{
    if (r->kind == NULL || r->kind[0] == '\0' || r->n_fields < 0 ||
        (r->n_fields > 0 && r->fields == NULL)) {
        return dp_error_set(DP_ERR_ARG, "%s: a metrics record needs a kind and n_fields >= 0 "
                            "(kind %s, n_fields %d)", m->path, r->kind ? r->kind : "NULL",
                            r->n_fields);
    }
    for (int i = 0; i < r->n_fields; i++) {
        const char *name = r->fields[i].name;
        if (name == NULL || name[0] == '\0' || strcmp(name, "kind") == 0) {
            return dp_error_set(DP_ERR_ARG, "%s: %s record: field %d has name '%s'", m->path,
                                r->kind, i, name ? name : "NULL");
        }
        for (int k = 0; k < i; k++) {
            if (strcmp(r->fields[k].name, name) == 0) {
                return dp_error_set(DP_ERR_ARG, "%s: %s record: field '%s' appears twice",
                                    m->path, r->kind, name);
            }
        }
    }
    return DP_OK;
}

static dp_status reserve(dp_metrics *m, size_t bytes)
{
    if (bytes <= m->cap) {
        return DP_OK;
    }
    size_t cap = m->cap ? m->cap : 512;
    while (cap < bytes) {
        cap *= 2;
    }
    char *grown = realloc(m->line, cap);
    if (grown == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate %zu bytes for a line", m->path,
                            cap);
    }
    m->line = grown;
    m->cap = cap;
    return DP_OK;
}

// Appends "\"<escaped s>\"" to m->line at *at.
static dp_status put_string(dp_metrics *m, size_t *at, const char *s)
{
    size_t n = dp_metrics_json_escape(NULL, 0, s);
    DP_TRY(reserve(m, *at + n + 3));
    m->line[(*at)++] = '"';
    dp_metrics_json_escape(m->line + *at, n + 1, s);
    *at += n;
    m->line[(*at)++] = '"';
    return DP_OK;
}

static dp_status put_text(dp_metrics *m, size_t *at, const char *text, size_t n)
{
    DP_TRY(reserve(m, *at + n + 1));
    memcpy(m->line + *at, text, n);
    *at += n;
    return DP_OK;
}

// Builds the line of r (with its '\n') in m->line; returns its length in *n.
static dp_status build_line(dp_metrics *m, const dp_metrics_record *r, size_t *n)
{
    size_t at = 0;
    DP_TRY(put_text(m, &at, "{\"kind\":", 8));
    DP_TRY(put_string(m, &at, r->kind));
    for (int i = 0; i < r->n_fields; i++) {
        char number[DP_METRICS_NUMBER_CAP];
        size_t len = dp_metrics_json_number(number, r->fields[i].value);
        DP_TRY(put_text(m, &at, ",", 1));
        DP_TRY(put_string(m, &at, r->fields[i].name));
        DP_TRY(put_text(m, &at, ":", 1));
        DP_TRY(put_text(m, &at, number, len));
    }
    DP_TRY(put_text(m, &at, "}\n", 2));
    *n = at;
    return DP_OK;
}

dp_status dp_metrics_write(dp_metrics *m, const dp_metrics_record *r)
{
    DP_TRY(check_record(m, r));
    size_t n = 0;
    DP_TRY(build_line(m, r, &n));
    const char *p = m->line;
    size_t left = n;
    while (left > 0) {
        ssize_t k = write(m->fd, p, left);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            int err = k < 0 ? errno : EIO;
            // A torn line would make the file invalid JSON lines: drop it.
            if (ftruncate(m->fd, m->good_bytes) != 0) {
                return dp_error_set(DP_ERR_IO, "%s: write failed (%s), and the partial line "
                                    "could not be removed: %s", m->path, strerror(err),
                                    strerror(errno));
            }
            return dp_error_set(DP_ERR_IO, "%s: cannot write metrics: %s", m->path,
                                strerror(err));
        }
        p += k;
        left -= (size_t)k;
    }
    m->good_bytes += (off_t)n;
    return DP_OK;
}

// --- open and close ---

static dp_status read_at(const dp_metrics *m, void *buf, size_t n, off_t at)
{
    ssize_t k = pread(m->fd, buf, n, at);
    if (k != (ssize_t)n) {
        return dp_error_set(DP_ERR_IO, "%s: cannot read: %s", m->path,
                            k < 0 ? strerror(errno) : "short read");
    }
    return DP_OK;
}

// Offset just past the last '\n' before end (0 if none).
static dp_status last_line_end(const dp_metrics *m, off_t end, off_t *out)
{
    char block[TAIL_BLOCK];
    while (end > 0) {
        off_t start = end > TAIL_BLOCK ? end - TAIL_BLOCK : 0;
        DP_TRY(read_at(m, block, (size_t)(end - start), start));
        for (off_t i = end - start; i > 0; i--) {
            if (block[i - 1] == '\n') {
                *out = start + i;
                return DP_OK;
            }
        }
        end = start;
    }
    *out = 0;
    return DP_OK;
}

// Checks what the file holds and cuts off an unfinished last line.
static dp_status check_existing(dp_metrics *m)
{
    struct stat sb;
    if (fstat(m->fd, &sb) != 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot stat: %s", m->path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        return dp_error_set(DP_ERR_IO, "%s: metrics file is not a regular file", m->path);
    }
    m->good_bytes = sb.st_size;
    if (sb.st_size == 0) {
        return DP_OK;
    }
    char first = 0, last = 0;
    DP_TRY(read_at(m, &first, 1, 0));
    if (first != '{') {
        return dp_error_set(DP_ERR_DATA, "%s: exists and is not a JSON-lines metrics file "
                            "(it does not start with '{'); not appending to it", m->path);
    }
    DP_TRY(read_at(m, &last, 1, sb.st_size - 1));
    if (last == '\n') {
        return DP_OK;
    }
    off_t keep = 0;
    DP_TRY(last_line_end(m, sb.st_size, &keep));
    if (ftruncate(m->fd, keep) != 0) {
        return dp_error_set(DP_ERR_IO, "%s: cannot remove an unfinished last line: %s", m->path,
                            strerror(errno));
    }
    DP_LOG_WARN("%s: removed an unfinished last line of %lld bytes (left by an interrupted run)",
                m->path, (long long)(sb.st_size - keep));
    m->good_bytes = keep;
    return DP_OK;
}

static void metrics_free(dp_metrics *m)
{
    free(m->line);
    free(m->path);
    free(m);
}

dp_status dp_metrics_open(dp_metrics **out, const char *path)
{
    *out = NULL;
    dp_metrics *m = calloc(1, sizeof *m);
    size_t len = strlen(path);
    char *copy = malloc(len + 1);
    if (m == NULL || copy == NULL) {
        free(m);
        free(copy);
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate a metrics writer", path);
    }
    memcpy(copy, path, len + 1);
    m->path = copy;
    // O_RDWR: check_existing reads the tail. O_APPEND: every line goes to the end.
    m->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (m->fd < 0) {
        dp_status st = dp_error_set(DP_ERR_IO, "%s: cannot open the metrics file: %s", path,
                                    strerror(errno));
        metrics_free(m);
        return st;
    }
    dp_status st = check_existing(m);
    if (st != DP_OK) {
        close(m->fd); // the status of the first failure is what the caller needs
        metrics_free(m);
        return st;
    }
    *out = m;
    return DP_OK;
}

dp_status dp_metrics_close(dp_metrics *m)
{
    if (m == NULL) {
        return DP_OK;
    }
    dp_status st = DP_OK;
    if (fsync(m->fd) != 0) {
        st = dp_error_set(DP_ERR_IO, "%s: fsync failed: %s", m->path, strerror(errno));
    }
    if (close(m->fd) != 0 && st == DP_OK) {
        st = dp_error_set(DP_ERR_IO, "%s: close failed: %s", m->path, strerror(errno));
    }
    metrics_free(m);
    return st;
}

const char *dp_metrics_path(const dp_metrics *m)
{
    return m->path;
}
