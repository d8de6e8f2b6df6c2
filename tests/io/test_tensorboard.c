// TensorBoard event files: CRC32C against the RFC 3720 vectors, one event against bytes
// encoded by hand, the whole file decoded by an independent reader (Python standard library
// only: framing, both CRCs, protobuf wire format), TensorBoard's own reader when it can be
// imported, write errors (the file is cut back to whole events), argument errors.
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/tensorboard.h"
#include "io_test_util.h"

// Prints one line per event: "<wall_time %.6f> <step> <parts>", parts being
// "file_version <v>" or "<tag>=<value %.9g>" for each Value. Exits non-zero on any framing,
// CRC or wire-format error.
static const char stdlib_reader[] =
    "import struct, sys\n"
    "def crc32c(data):\n"
    "    crc = 0xffffffff\n"
    "    for b in data:\n"
    "        crc ^= b\n"
    "        for _ in range(8):\n"
    "            crc = (crc >> 1) ^ (0x82f63b78 & -(crc & 1))\n"
    "    return crc ^ 0xffffffff\n"
    "def masked(data):\n"
    "    c = crc32c(data)\n"
    "    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xffffffff\n"
    "def varint(b, i):\n"
    "    shift = result = 0\n"
    "    while True:\n"
    "        x = b[i]\n"
    "        i += 1\n"
    "        result |= (x & 0x7f) << shift\n"
    "        shift += 7\n"
    "        if not x & 0x80:\n"
    "            return result, i\n"
    "def fields(b):\n"
    "    i, out = 0, []\n"
    "    while i < len(b):\n"
    "        key, i = varint(b, i)\n"
    "        f, wt = key >> 3, key & 7\n"
    "        if wt == 0:\n"
    "            v, i = varint(b, i)\n"
    "        elif wt == 1:\n"
    "            v, i = b[i:i + 8], i + 8\n"
    "        elif wt == 5:\n"
    "            v, i = b[i:i + 4], i + 4\n"
    "        elif wt == 2:\n"
    "            n, i = varint(b, i)\n"
    "            v, i = b[i:i + n], i + n\n"
    "        else:\n"
    "            sys.exit('wire type %d' % wt)\n"
    "        if i > len(b):\n"
    "            sys.exit('field %d runs past its message' % f)\n"
    "        out.append((f, wt, v))\n"
    "    return out\n"
    "data = open(sys.argv[1], 'rb').read()\n"
    "i = 0\n"
    "while i < len(data):\n"
    "    if len(data) - i < 12:\n"
    "        sys.exit('truncated record header at %d' % i)\n"
    "    head = data[i:i + 8]\n"
    "    n, = struct.unpack('<Q', head)\n"
    "    if struct.unpack('<I', data[i + 8:i + 12])[0] != masked(head):\n"
    "        sys.exit('bad length CRC at %d' % i)\n"
    "    if len(data) - i < 16 + n:\n"
    "        sys.exit('truncated record at %d' % i)\n"
    "    body = data[i + 12:i + 12 + n]\n"
    "    if struct.unpack('<I', data[i + 12 + n:i + 16 + n])[0] != masked(body):\n"
    "        sys.exit('bad data CRC at %d' % i)\n"
    "    i += 16 + n\n"
    "    wall, step, parts = 0.0, 0, []\n"
    "    for f, wt, v in fields(body):\n"
    "        if (f, wt) == (1, 1):\n"
    "            wall, = struct.unpack('<d', v)\n"
    "        elif (f, wt) == (2, 0):\n"
    "            step = v - (1 << 64) if v >= 1 << 63 else v\n"
    "        elif (f, wt) == (3, 2):\n"
    "            parts.append('file_version ' + v.decode())\n"
    "        elif (f, wt) == (5, 2):\n"
    "            for sf, swt, sv in fields(v):\n"
    "                if (sf, swt) != (1, 2):\n"
    "                    sys.exit('Summary field %d/%d' % (sf, swt))\n"
    "                tag = val = None\n"
    "                for vf, vwt, vv in fields(sv):\n"
    "                    if (vf, vwt) == (1, 2):\n"
    "                        tag = vv.decode()\n"
    "                    elif (vf, vwt) == (2, 5):\n"
    "                        val, = struct.unpack('<f', vv)\n"
    "                    else:\n"
    "                        sys.exit('Value field %d/%d' % (vf, vwt))\n"
    "                parts.append('%s=%.9g' % (tag, val))\n"
    "        else:\n"
    "            sys.exit('Event field %d/%d' % (f, wt))\n"
    "    print('%.6f %d %s' % (wall, step, ' '.join(parts)))\n";

// The same lines from TensorBoard's reader (which checks both CRCs and stops at a bad record),
// and TensorBoard's scalar view of the directory.
static const char tensorboard_reader[] =
    "import os, sys\n"
    "from tensorboard.backend.event_processing import event_accumulator, event_file_loader\n"
    "for ev in event_file_loader.LegacyEventFileLoader(sys.argv[1]).Load():\n"
    "    parts = []\n"
    "    if ev.HasField('file_version'):\n"
    "        parts.append('file_version ' + ev.file_version)\n"
    "    if ev.HasField('summary'):\n"
    "        parts += ['%s=%.9g' % (v.tag, v.simple_value) for v in ev.summary.value]\n"
    "    print('%.6f %d %s' % (ev.wall_time, ev.step, ' '.join(parts)))\n"
    "acc = event_accumulator.EventAccumulator(os.path.dirname(sys.argv[1]))\n"
    "acc.Reload()\n"
    "loss = acc.Scalars('train/loss')\n"
    "print('accumulator train/loss steps', ' '.join(str(s.step) for s in loss))\n";

typedef struct {
    int64_t step;
    double wall;
    dp_tb_value v[3];
    int n;
} event;

static const event events[] = {
    {1, 1700000000.25, {{"train/loss", 2.302585}}, 1},
    {2, 1700000001.5, {{"train/loss", 1.75}, {"train/lr", 0.1}, {"train/top1", 0.5}}, 3},
    {1ll << 40, 1700000002.0, {{"train/loss", -1e-30}}, 1},
    {-7, 1700000003.0, {{"weird/inf", INFINITY}, {"weird/huge", 1e300}}, 2},
    {3, 1700000004.0, {{"train/loss", 0.0}, {"eval/\xc3\xa9t\xc3\xa9 top-5", 0.875}}, 2},
};
enum { N_EVENTS = sizeof events / sizeof events[0] };

static void write_events(dp_tb *tb, int first, int count)
{
    for (int i = first; i < first + count; i++) {
        const event *e = &events[i];
        dp_status st = e->n == 1 ? dp_tb_scalar(tb, e->v[0].tag, e->step, e->v[0].value, e->wall)
                                 : dp_tb_scalars(tb, e->step, e->wall, e->v, e->n);
        cr_assert_eq(st, DP_OK, "event %d: %s", i, dp_error_message());
    }
}

// The lines the readers print for events[first, first + count).
static void expected_lines(char *out, size_t cap, int first, int count)
{
    size_t at = 0;
    out[0] = '\0';
    for (int i = first; i < first + count; i++) {
        const event *e = &events[i];
        at += (size_t)snprintf(out + at, cap - at, "%.6f %lld", e->wall, (long long)e->step);
        for (int k = 0; k < e->n; k++) {
            double v = e->v[k].value > 3.5e38 ? INFINITY : (double)(float)e->v[k].value;
            at += (size_t)snprintf(out + at, cap - at, " %s=%.9g", e->v[k].tag, v);
        }
        at += (size_t)snprintf(out + at, cap - at, "\n");
        cr_assert_lt(at, cap);
    }
}

// Runs "<python> <script> <file>" and returns its stdout (malloc'd) and exit status.
static char *run_python(const char *python, const char *script, const char *file, int *status)
{
    const char *script_path = scratch_path("reader.py");
    FILE *f = fopen(script_path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(script, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", python, script_path, file);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *out = calloc(1, cap);
    cr_assert_not_null(out);
    size_t k;
    while ((k = fread(out + n, 1, cap - 1 - n, p)) > 0) {
        n += k;
    }
    *status = pclose(p);
    return out;
}

// Splits off the first line (the file_version event) and checks it; returns the rest.
static const char *check_first_line(const char *out, double t0, double t1)
{
    double wall = 0;
    long long step = -1;
    char version[64] = "";
    cr_assert_eq(sscanf(out, "%lf %lld file_version %63s", &wall, &step, version), 3,
                 "first event: %s", out);
    cr_expect_str_eq(version, "brain.Event:2");
    cr_expect_eq(step, 0);
    cr_expect(wall >= t0 - 1e-3 && wall <= t1 + 1e-3, "wall_time %f outside [%f, %f]", wall, t0,
              t1);
    const char *rest = strchr(out, '\n');
    cr_assert_not_null(rest);
    return rest + 1;
}

static long size_of(const char *path)
{
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    return (long)sb.st_size;
}

static char *read_file(const char *path, long *n)
{
    *n = size_of(path);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    char *buf = malloc((size_t)*n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return buf;
}

TestSuite(tensorboard, .init = scratch_make, .fini = scratch_remove);

Test(tensorboard, crc32c_matches_known_vectors)
{
    uint8_t zeros[32] = {0}, ones[32], up[32], down[32];
    for (int i = 0; i < 32; i++) {
        ones[i] = 0xff;
        up[i] = (uint8_t)i;
        down[i] = (uint8_t)(31 - i);
    }
    cr_expect_eq(dp_tb_crc32c("123456789", 9), 0xE3069283u);
    cr_expect_eq(dp_tb_crc32c(zeros, 32), 0x8A9136AAu); // RFC 3720 B.4
    cr_expect_eq(dp_tb_crc32c(ones, 32), 0x62A8AB43u);
    cr_expect_eq(dp_tb_crc32c(up, 32), 0x46DD794Eu);
    cr_expect_eq(dp_tb_crc32c(down, 32), 0x113FDB5Cu);
    cr_expect_eq(dp_tb_crc32c("", 0), 0u);
    cr_expect_eq(dp_tb_crc32c_mask(0), 0xa282ead8u);
    cr_expect_eq(dp_tb_crc32c_mask(0xE3069283u), 0xc78ab0e5u);
    cr_expect_eq(dp_tb_crc32c_mask(0xffffffffu), 0xa282ead7u, "the addition wraps");
}

Test(tensorboard, file_is_named_for_tensorboard_and_starts_with_the_version_event)
{
    const char *dir = scratch_path("runs/a/b");
    dp_tb *tb = NULL;
    cr_assert_eq(dp_tb_open(&tb, dir), DP_OK, "%s", dp_error_message());
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/events.out.tfevents.", dir);
    const char *path = dp_tb_path(tb);
    cr_expect_eq(strncmp(path, prefix, strlen(prefix)), 0, "%s", path);
    char host[256] = "";
    gethostname(host, sizeof host);
    cr_expect_not_null(strstr(path, host), "%s lacks the host name %s", path, host);
    // Event { wall_time (9 bytes), file_version "brain.Event:2" (15 bytes) }: 24 bytes framed.
    long n = 0;
    char *bytes = read_file(path, &n);
    cr_assert_eq(n, 12 + 24 + 4);
    const uint8_t head[12] = {24, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0x7f, 0x4b, 0x22};
    cr_expect_eq(memcmp(bytes, head, 12), 0, "length and its masked CRC");
    cr_expect_eq(bytes[12], 0x09);
    cr_expect_eq(memcmp(bytes + 21, "\x1a\x0d" "brain.Event:2", 15), 0);
    free(bytes);
    cr_assert_eq(dp_tb_close(tb), DP_OK, "%s", dp_error_message());
    cr_expect_eq(dp_tb_close(NULL), DP_OK);
}

Test(tensorboard, an_event_matches_bytes_encoded_by_hand)
{
    dp_tb *tb = NULL;
    cr_assert_eq(dp_tb_open(&tb, scratch_dir), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_tb_scalar(tb, "a", 3, 2.0, 1.5), DP_OK, "%s", dp_error_message());
    long n = 0;
    char *bytes = read_file(dp_tb_path(tb), &n);
    cr_assert_eq(n, 40 + 12 + 23 + 4);
    const uint8_t want[23] = {
        0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, // wall_time 1.5 (fixed64)
        0x10, 0x03,                          // step 3 (varint)
        0x2a, 10,                            // summary, 10 bytes
        0x0a, 8,                             //   value, 8 bytes
        0x0a, 1, 'a',                        //     tag "a"
        0x15, 0, 0, 0, 0x40,                 //     simple_value 2.0f (fixed32)
    };
    const uint8_t *rec = (const uint8_t *)bytes + 40;
    cr_expect_eq(rec[0], 23);
    cr_expect_eq(memcmp(rec + 12, want, sizeof want), 0, "event bytes differ");
    uint32_t crc = dp_tb_crc32c_mask(dp_tb_crc32c(want, sizeof want));
    uint32_t stored = (uint32_t)rec[35] | (uint32_t)rec[36] << 8 | (uint32_t)rec[37] << 16 |
                      (uint32_t)rec[38] << 24;
    cr_expect_eq(stored, crc, "data CRC");
    free(bytes);
    cr_assert_eq(dp_tb_close(tb), DP_OK, "%s", dp_error_message());
}

Test(tensorboard, stdlib_reader_decodes_every_event)
{
    double t0 = dp_tb_now();
    dp_tb *tb = NULL;
    cr_assert_eq(dp_tb_open(&tb, scratch_dir), DP_OK, "%s", dp_error_message());
    double t1 = dp_tb_now();
    write_events(tb, 0, N_EVENTS);
    char path[1024];
    snprintf(path, sizeof path, "%s", dp_tb_path(tb));
    cr_assert_eq(dp_tb_close(tb), DP_OK, "%s", dp_error_message());
    int status = -1;
    char *out = run_python("/usr/bin/python3", stdlib_reader, path, &status);
    cr_assert_eq(status, 0, "reader failed (%d): %s", status, out);
    char want[4096];
    expected_lines(want, sizeof want, 0, N_EVENTS);
    cr_expect_str_eq(check_first_line(out, t0, t1), want);
    free(out);
}

Test(tensorboard, tensorboard_reads_the_file)
{
    const char *python = getenv("DP_TB_PYTHON") ? getenv("DP_TB_PYTHON") : "/usr/bin/python3";
    char check[1024];
    snprintf(check, sizeof check, "'%s' -c 'import tensorboard' >/dev/null 2>&1", python);
    if (system(check) != 0) {
        cr_skip_test("%s cannot import tensorboard (pip install tensorboard into a venv and set "
                     "DP_TB_PYTHON to its python); the stdlib reader test still checks the file",
                     python);
    }
    double t0 = dp_tb_now();
    dp_tb *tb = NULL;
    cr_assert_eq(dp_tb_open(&tb, scratch_path("tb")), DP_OK, "%s", dp_error_message());
    double t1 = dp_tb_now();
    write_events(tb, 0, N_EVENTS);
    char path[1024];
    snprintf(path, sizeof path, "%s", dp_tb_path(tb));
    cr_assert_eq(dp_tb_close(tb), DP_OK, "%s", dp_error_message());
    int status = -1;
    char *out = run_python(python, tensorboard_reader, path, &status);
    cr_assert_eq(status, 0, "TensorBoard's reader failed (%d): %s", status, out);
    char want[4096];
    expected_lines(want, sizeof want, 0, N_EVENTS);
    strcat(want, "accumulator train/loss steps 1 2 1099511627776 3\n");
    cr_expect_str_eq(check_first_line(out, t0, t1), want);
    free(out);
}

Test(tensorboard, failed_write_cuts_the_file_back_to_whole_events)
{
    dp_tb *tb = NULL;
    cr_assert_eq(dp_tb_open(&tb, scratch_dir), DP_OK, "%s", dp_error_message());
    write_events(tb, 0, 2);
    char path[1024];
    snprintf(path, sizeof path, "%s", dp_tb_path(tb));
    long good = size_of(path);
    // The next event (> 40 bytes) fits only partly under this file-size limit: write(2) stores
    // 20 bytes, then fails with EFBIG (SIGXFSZ ignored). Criterion runs each test in its own
    // process, so the limit stays here.
    cr_assert_neq(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
    struct rlimit lim = {(rlim_t)good + 20, (rlim_t)good + 20};
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim.rlim_max = old.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    expect_error(dp_tb_scalars(tb, events[2].step, events[2].wall, events[2].v, events[2].n),
                 DP_ERR_IO, path, "File too large");
    cr_expect_eq(size_of(path), good, "the partial event was not removed");
    lim.rlim_cur = old.rlim_cur;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    write_events(tb, 3, 2);
    cr_assert_eq(dp_tb_close(tb), DP_OK, "%s", dp_error_message());
    int status = -1;
    char *out = run_python("/usr/bin/python3", stdlib_reader, path, &status);
    cr_assert_eq(status, 0, "reader failed (%d): %s", status, out);
    char want[4096], tail[2048];
    expected_lines(want, sizeof want, 0, 2);
    expected_lines(tail, sizeof tail, 3, 2);
    strcat(want, tail);
    cr_expect_str_eq(check_first_line(out, 0, 1e12), want);
    free(out);
}

Test(tensorboard, rejects_bad_arguments)
{
    dp_tb *tb = NULL;
    cr_assert_eq(dp_tb_open(&tb, scratch_dir), DP_OK, "%s", dp_error_message());
    const dp_tb_value bad[2] = {{"ok", 1.0}, {"", 2.0}};
    expect_error(dp_tb_scalars(tb, 5, 0.0, bad, 2), DP_ERR_ARG, "scalar 1", "no tag");
    expect_error(dp_tb_scalars(tb, 5, 0.0, bad, 0), DP_ERR_ARG, "at least one");
    expect_error(dp_tb_scalar(tb, NULL, 5, 1.0, 0.0), DP_ERR_ARG, "no tag");
    cr_expect_eq(size_of(dp_tb_path(tb)), 40, "a rejected event must write nothing");
    cr_assert_eq(dp_tb_close(tb), DP_OK, "%s", dp_error_message());
}

Test(tensorboard, directory_that_cannot_be_made_is_an_io_error_naming_it)
{
    const char *file = scratch_path("plain");
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fclose(f), 0);
    dp_tb *tb = (dp_tb *)1;
    expect_error(dp_tb_open(&tb, scratch_path("plain/runs")), DP_ERR_IO, "plain");
    cr_expect_null(tb);
}

Test(tensorboard, two_writers_in_one_second_get_two_files)
{
    dp_tb *a = NULL, *b = NULL;
    cr_assert_eq(dp_tb_open(&a, scratch_dir), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_tb_open(&b, scratch_dir), DP_OK, "%s", dp_error_message());
    cr_expect_str_neq(dp_tb_path(a), dp_tb_path(b));
    cr_assert_eq(dp_tb_close(a), DP_OK);
    cr_assert_eq(dp_tb_close(b), DP_OK);
    int files = 0;
    DIR *d = opendir(scratch_dir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        files += strncmp(e->d_name, "events.out.tfevents.", 20) == 0;
    }
    closedir(d);
    cr_expect_eq(files, 2);
}
