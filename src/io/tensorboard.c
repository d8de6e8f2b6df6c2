// TensorBoard event-file writer: protobuf wire encoding of Event/Summary/Value (varints,
// fixed64, fixed32, length-delimited), TFRecord framing with masked CRC32C, one write(2) per
// event. No protobuf or TensorFlow library; no reader (TensorBoard reads these files).
#include "io/tensorboard.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

enum {
    PATH_CAP = 4096,
    HOST_CAP = 256,
    FRAME_HEAD = 12, // uint64 length + uint32 masked CRC of it
    FRAME_TAIL = 4,  // uint32 masked CRC of the data
    NAME_TRIES = 100,
};

struct dp_tb {
    int fd;
    char *path;
    off_t good_bytes; // the file ends after a whole event here
    uint8_t *buf;     // the record being built, reused across events
    size_t cap;
};

// --- CRC32C ---

uint32_t dp_tb_crc32c(const void *data, size_t n_bytes)
{
    // Bitwise: events are ~100 bytes a few times a second, so a table buys nothing here.
    const uint8_t *p = data;
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n_bytes; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

uint32_t dp_tb_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

double dp_tb_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return (double)time(NULL); // CLOCK_REALTIME cannot fail on Linux; keep a sane value
    }
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// --- protobuf wire encoding ---

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_le(uint8_t *p, uint64_t v, int n_bytes)
{
    for (int i = 0; i < n_bytes; i++) {
        *p++ = (uint8_t)(v >> (8 * i));
    }
    return p;
}

static uint8_t *put_key(uint8_t *p, unsigned field, unsigned wire)
{
    return put_varint(p, (uint64_t)(field << 3 | wire));
}

static uint8_t *put_bytes(uint8_t *p, unsigned field, const void *data, size_t n)
{
    p = put_key(p, field, WIRE_LEN);
    p = put_varint(p, n);
    memcpy(p, data, n);
    return p + n;
}

static uint8_t *put_double(uint8_t *p, unsigned field, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return put_le(put_key(p, field, WIRE_FIXED64), bits, 8);
}

static uint8_t *put_float(uint8_t *p, unsigned field, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return put_le(put_key(p, field, WIRE_FIXED32), bits, 4);
}

// Bytes of a length-delimited field of a single-byte key holding n bytes.
static size_t field_len(size_t n)
{
    return 1 + varint_len(n) + n;
}

// Bytes of Value { tag, simple_value }.
static size_t value_len(const dp_tb_value *v)
{
    return field_len(strlen(v->tag)) + 1 + 4;
}

static float to_float(double v)
{
    // Converting a double outside float's range is undefined behaviour in C: saturate first.
    if (v > FLT_MAX) {
        return INFINITY;
    }
    if (v < -FLT_MAX) {
        return -INFINITY;
    }
    return (float)v;
}

// --- records ---

static dp_status reserve(dp_tb *tb, size_t bytes)
{
    if (bytes <= tb->cap) {
        return DP_OK;
    }
    size_t cap = tb->cap ? tb->cap : 256;
    while (cap < bytes) {
        cap *= 2;
    }
    uint8_t *grown = realloc(tb->buf, cap);
    if (grown == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate %zu bytes for an event", tb->path,
                            cap);
    }
    tb->buf = grown;
    tb->cap = cap;
    return DP_OK;
}

// Frames the event data at buf[FRAME_HEAD, FRAME_HEAD + n) and writes the record; on failure
// cuts the file back to its last whole record.
static dp_status write_record(dp_tb *tb, size_t n)
{
    uint8_t *head = tb->buf;
    put_le(head, n, 8);
    put_le(head + 8, dp_tb_crc32c_mask(dp_tb_crc32c(head, 8)), 4);
    put_le(head + FRAME_HEAD + n, dp_tb_crc32c_mask(dp_tb_crc32c(head + FRAME_HEAD, n)), 4);
    size_t total = FRAME_HEAD + n + FRAME_TAIL;
    const uint8_t *p = head;
    size_t left = total;
    while (left > 0) {
        ssize_t k = write(tb->fd, p, left);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            int err = k < 0 ? errno : EIO;
            // A torn record would end TensorBoard's reading of this file: drop it.
            if (ftruncate(tb->fd, tb->good_bytes) != 0 ||
                lseek(tb->fd, tb->good_bytes, SEEK_SET) < 0) {
                return dp_error_set(DP_ERR_IO, "%s: write failed (%s), and the partial event "
                                    "could not be removed: %s", tb->path, strerror(err),
                                    strerror(errno));
            }
            return dp_error_set(DP_ERR_IO, "%s: cannot write an event: %s", tb->path,
                                strerror(err));
        }
        p += k;
        left -= (size_t)k;
    }
    tb->good_bytes += (off_t)total;
    return DP_OK;
}

static dp_status write_file_version(dp_tb *tb)
{
    static const char version[] = "brain.Event:2";
    size_t n = 9 + field_len(sizeof version - 1);
    DP_TRY(reserve(tb, FRAME_HEAD + n + FRAME_TAIL));
    uint8_t *p = tb->buf + FRAME_HEAD;
    p = put_double(p, 1, dp_tb_now());
    p = put_bytes(p, 3, version, sizeof version - 1);
    DP_ASSERT((size_t)(p - (tb->buf + FRAME_HEAD)) == n);
    return write_record(tb, n);
}

dp_status dp_tb_scalars(dp_tb *tb, int64_t step, double wall_time, const dp_tb_value *values,
                        int n)
{
    if (n < 1 || values == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: an event needs at least one scalar (got %d)",
                            tb->path, n);
    }
    size_t summary = 0;
    for (int i = 0; i < n; i++) {
        if (values[i].tag == NULL || values[i].tag[0] == '\0') {
            return dp_error_set(DP_ERR_ARG, "%s: scalar %d of step %lld has no tag", tb->path, i,
                                (long long)step);
        }
        summary += field_len(value_len(&values[i]));
    }
    size_t event = 9 + 1 + varint_len((uint64_t)step) + field_len(summary);
    DP_TRY(reserve(tb, FRAME_HEAD + event + FRAME_TAIL));
    uint8_t *p = tb->buf + FRAME_HEAD;
    p = put_double(p, 1, wall_time);
    p = put_varint(put_key(p, 2, WIRE_VARINT), (uint64_t)step); // int64: two's complement
    p = put_varint(put_key(p, 5, WIRE_LEN), summary);
    for (int i = 0; i < n; i++) {
        p = put_varint(put_key(p, 1, WIRE_LEN), value_len(&values[i]));
        p = put_bytes(p, 1, values[i].tag, strlen(values[i].tag));
        p = put_float(p, 2, to_float(values[i].value));
    }
    DP_ASSERT((size_t)(p - (tb->buf + FRAME_HEAD)) == event);
    return write_record(tb, event);
}

dp_status dp_tb_scalar(dp_tb *tb, const char *tag, int64_t step, double value, double wall_time)
{
    dp_tb_value v = {tag, value};
    return dp_tb_scalars(tb, step, wall_time, &v, 1);
}

// --- open and close ---

// mkdir -p dir (mode 0755).
static dp_status make_dirs(const char *dir)
{
    char path[PATH_CAP];
    int len = snprintf(path, sizeof path, "%s", dir);
    if (len <= 0 || (size_t)len >= sizeof path) {
        return dp_error_set(DP_ERR_ARG, "TensorBoard directory '%s' is empty or too long", dir);
    }
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') {
            continue;
        }
        char keep = *p;
        *p = '\0';
        struct stat sb;
        if (mkdir(path, 0755) != 0 && (errno != EEXIST || stat(path, &sb) != 0 ||
                                       !S_ISDIR(sb.st_mode))) {
            int err = errno == EEXIST ? ENOTDIR : errno;
            return dp_error_set(DP_ERR_IO, "%s: cannot create the TensorBoard directory: %s",
                                path, strerror(err));
        }
        *p = keep;
        if (keep == '\0') {
            return DP_OK;
        }
    }
}

// The host name with '/' (impossible in a file name) replaced.
static void host_name(char *out, size_t cap)
{
    if (gethostname(out, cap) != 0) {
        snprintf(out, cap, "localhost");
    }
    out[cap - 1] = '\0';
    for (char *p = out; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '_';
        }
    }
}

// Creates a new event file in dir (never reusing one: two runs started in the same second on
// one host get different names).
static dp_status create_file(dp_tb *tb, const char *dir)
{
    char host[HOST_CAP], path[PATH_CAP];
    host_name(host, sizeof host);
    long long now = (long long)time(NULL);
    for (int k = 0; k < NAME_TRIES; k++) {
        int len = k == 0 ? snprintf(path, sizeof path, "%s/events.out.tfevents.%lld.%s", dir, now,
                                    host)
                         : snprintf(path, sizeof path, "%s/events.out.tfevents.%lld.%s.%ld.%d",
                                    dir, now, host, (long)getpid(), k);
        if (len < 0 || (size_t)len >= sizeof path) {
            return dp_error_set(DP_ERR_ARG, "%s: TensorBoard file name too long", dir);
        }
        tb->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (tb->fd >= 0) {
            tb->path = malloc((size_t)len + 1);
            if (tb->path == NULL) {
                close(tb->fd);
                tb->fd = -1;
                unlink(path);
                return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate the path", path);
            }
            memcpy(tb->path, path, (size_t)len + 1);
            return DP_OK;
        }
        if (errno != EEXIST) {
            return dp_error_set(DP_ERR_IO, "%s: cannot create the event file: %s", path,
                                strerror(errno));
        }
    }
    return dp_error_set(DP_ERR_IO, "%s: %d event files of this second and host already exist",
                        dir, NAME_TRIES);
}

dp_status dp_tb_open(dp_tb **out, const char *dir)
{
    *out = NULL;
    dp_tb *tb = calloc(1, sizeof *tb);
    if (tb == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "%s: cannot allocate a TensorBoard writer", dir);
    }
    tb->fd = -1;
    dp_status st;
    DP_TRY_GOTO(make_dirs(dir), st, fail);
    DP_TRY_GOTO(create_file(tb, dir), st, fail);
    DP_TRY_GOTO(write_file_version(tb), st, fail);
    *out = tb;
    return DP_OK;
fail:
    if (tb->path != NULL) {
        unlink(tb->path); // an event file without its first event is of no use
    }
    if (tb->fd >= 0) {
        close(tb->fd); // the status of the first failure is what the caller needs
    }
    free(tb->buf);
    free(tb->path);
    free(tb);
    return st;
}

dp_status dp_tb_close(dp_tb *tb)
{
    if (tb == NULL) {
        return DP_OK;
    }
    dp_status st = DP_OK;
    if (fsync(tb->fd) != 0) {
        st = dp_error_set(DP_ERR_IO, "%s: fsync failed: %s", tb->path, strerror(errno));
    }
    if (close(tb->fd) != 0 && st == DP_OK) {
        st = dp_error_set(DP_ERR_IO, "%s: close failed: %s", tb->path, strerror(errno));
    }
    free(tb->buf);
    free(tb->path);
    free(tb);
    return st;
}

const char *dp_tb_path(const dp_tb *tb)
{
    return tb->path;
}
