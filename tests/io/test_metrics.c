// Metrics JSON lines: every line parsed back by Python's json module (values compared bitwise,
// names byte for byte), appending on resume, an unfinished last line cut off, a foreign file
// refused, the escaper and the number formatter on their edge cases, argument and write errors.
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "io/metrics.h"
#include "io_test_util.h"

// Prints, per line: the kind, then "<hex of the UTF-8 name>=<hex of the little-endian double>"
// (or "=null") per field, in file order. json.loads fails on anything that is not JSON.
static const char json_reader[] =
    "import json, struct, sys\n"
    "for line in open(sys.argv[1], encoding='utf-8'):\n"
    "    assert line.endswith('\\n'), 'unterminated line'\n"
    "    obj = json.loads(line)\n"
    "    parts = [obj.pop('kind')]\n"
    "    for k, v in obj.items():\n"
    "        assert v is None or type(v) in (int, float), (k, v)\n"
    "        val = 'null' if v is None else struct.pack('<d', float(v)).hex()\n"
    "        parts.append(k.encode('utf-8').hex() + '=' + val)\n"
    "    print(' '.join(parts))\n";

static const dp_metrics_field step_fields[] = {
    {"step", 1200},
    {"epoch", 3},
    {"loss", 0.1},
    {"lr", 1.0 / 3.0},
    {"tiny", 4.9406564584124654e-324},
    {"big", 1.7976931348623157e308},
    {"neg_zero", -0.0},
    {"nan", NAN},
    {"inf", INFINITY},
    {"-inf", -INFINITY},
    {"2^53+2", 9007199254740994.0},
    {"images/s", 12345.678901234567},
};
static const dp_metrics_field epoch_fields[] = {
    {"with \"quotes\" and \\ and\nnewline\t\x01", 1.5},
    {"\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", -2.25e-7},
};
static const dp_metrics_record records[] = {
    {"step", step_fields, sizeof step_fields / sizeof step_fields[0]},
    {"epoch", epoch_fields, 2},
    {"eval", NULL, 0},
};
enum { N_RECORDS = sizeof records / sizeof records[0] };

static void hex(char *out, const void *data, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

// What json_reader prints for records[first, first + count).
static void expected(char *out, size_t cap, int first, int count)
{
    size_t at = 0;
    for (int i = first; i < first + count; i++) {
        at += (size_t)snprintf(out + at, cap - at, "%s", records[i].kind);
        for (int k = 0; k < records[i].n_fields; k++) {
            const dp_metrics_field *f = &records[i].fields[k];
            char name[256], value[32] = "null";
            hex(name, f->name, strlen(f->name));
            if (isfinite(f->value)) {
                hex(value, &f->value, sizeof f->value); // x86-64 and aarch64: little-endian
            }
            at += (size_t)snprintf(out + at, cap - at, " %s=%s", name, value);
        }
        at += (size_t)snprintf(out + at, cap - at, "\n");
        cr_assert_lt(at, cap);
    }
}

static void write_records(dp_metrics *m, int first, int count)
{
    for (int i = first; i < first + count; i++) {
        cr_assert_eq(dp_metrics_write(m, &records[i]), DP_OK, "record %d: %s", i,
                     dp_error_message());
    }
}

// Runs json_reader on path; returns its stdout (malloc'd) and exit status.
static char *parse_with_python(const char *path, int *status)
{
    const char *script = scratch_path("reader.py");
    FILE *f = fopen(script, "w");
    cr_assert_not_null(f);
    cr_assert(fputs(json_reader, f) >= 0);
    cr_assert_eq(fclose(f), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t cap = 1 << 16, n = 0, k;
    char *out = calloc(1, cap);
    cr_assert_not_null(out);
    while ((k = fread(out + n, 1, cap - 1 - n, p)) > 0) {
        n += k;
    }
    *status = pclose(p);
    return out;
}

static void expect_python_reads(const char *path, const char *want)
{
    int status = -1;
    char *out = parse_with_python(path, &status);
    cr_expect_eq(status, 0, "python could not parse %s (status %d): %s", path, status, out);
    cr_expect_str_eq(out, want);
    free(out);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert(fputs(text, f) >= 0);
    cr_assert_eq(fclose(f), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    char *buf = calloc(1, 1 << 16);
    cr_assert_not_null(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static char warnings[1024];

static void keep_warning(dp_log_level level, const char *line, void *ctx)
{
    (void)ctx;
    if (level == DP_LOG_LEVEL_WARN) {
        snprintf(warnings + strlen(warnings), sizeof warnings - strlen(warnings), "%s\n", line);
    }
}

TestSuite(metrics, .init = scratch_make, .fini = scratch_remove);

Test(metrics, python_json_parses_every_line_to_the_same_values)
{
    const char *path = scratch_path("metrics.jsonl");
    dp_metrics *m = NULL;
    cr_assert_eq(dp_metrics_open(&m, path), DP_OK, "%s", dp_error_message());
    cr_expect_str_eq(dp_metrics_path(m), path);
    write_records(m, 0, N_RECORDS);
    cr_assert_eq(dp_metrics_close(m), DP_OK, "%s", dp_error_message());
    char want[8192];
    expected(want, sizeof want, 0, N_RECORDS);
    expect_python_reads(path, want);
    cr_expect_eq(dp_metrics_close(NULL), DP_OK);
}

Test(metrics, lines_are_compact_with_kind_first)
{
    const char *path = scratch_path("m.jsonl");
    dp_metrics *m = NULL;
    cr_assert_eq(dp_metrics_open(&m, path), DP_OK, "%s", dp_error_message());
    const dp_metrics_field f[] = {{"step", 10}, {"loss", 0.5}, {"acc", NAN}};
    const dp_metrics_record r = {"step", f, 3};
    cr_assert_eq(dp_metrics_write(m, &r), DP_OK, "%s", dp_error_message());
    // Written at once: readable before close.
    char *text = slurp(path);
    cr_expect_str_eq(text, "{\"kind\":\"step\",\"step\":10,\"loss\":0.5,\"acc\":null}\n");
    free(text);
    cr_assert_eq(dp_metrics_close(m), DP_OK, "%s", dp_error_message());
}

Test(metrics, reopening_appends_so_a_resumed_run_continues_the_file)
{
    const char *path = scratch_path("metrics.jsonl");
    dp_metrics *m = NULL;
    cr_assert_eq(dp_metrics_open(&m, path), DP_OK, "%s", dp_error_message());
    write_records(m, 0, 2);
    cr_assert_eq(dp_metrics_close(m), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_metrics_open(&m, path), DP_OK, "%s", dp_error_message());
    write_records(m, 2, 1);
    cr_assert_eq(dp_metrics_close(m), DP_OK, "%s", dp_error_message());
    char want[8192];
    expected(want, sizeof want, 0, N_RECORDS);
    expect_python_reads(path, want);
}

Test(metrics, unfinished_last_line_is_cut_off_on_open)
{
    const char *path = scratch_path("metrics.jsonl");
    write_text(path, "{\"kind\":\"eval\"}\n{\"kind\":\"eval\"}\n{\"kind\":\"st");
    dp_metrics *m = NULL;
    dp_log_set_sink(keep_warning, NULL);
    cr_assert_eq(dp_metrics_open(&m, path), DP_OK, "%s", dp_error_message());
    dp_log_set_sink(NULL, NULL);
    cr_expect_not_null(strstr(warnings, path), "no warning naming the file: '%s'", warnings);
    cr_expect_not_null(strstr(warnings, "unfinished last line of 11 bytes"), "%s", warnings);
    write_records(m, 2, 1);
    cr_assert_eq(dp_metrics_close(m), DP_OK, "%s", dp_error_message());
    expect_python_reads(path, "eval\neval\neval\n");

    // Only one, unfinished line, longer than the block the tail is searched in.
    char *big = malloc(10000);
    cr_assert_not_null(big);
    memset(big, 'x', 9999);
    big[0] = '{';
    big[9999] = '\0';
    write_text(path, big);
    free(big);
    cr_assert_eq(dp_metrics_open(&m, path), DP_OK, "%s", dp_error_message());
    write_records(m, 2, 1);
    cr_assert_eq(dp_metrics_close(m), DP_OK, "%s", dp_error_message());
    expect_python_reads(path, "eval\n");
}

Test(metrics, a_file_that_is_not_metrics_is_refused_and_left_alone)
{
    const char *path = scratch_path("notes.txt");
    write_text(path, "my notes, no newline at the end");
    dp_metrics *m = (dp_metrics *)1;
    expect_error(dp_metrics_open(&m, path), DP_ERR_DATA, path, "not a JSON-lines metrics file");
    cr_expect_null(m);
    char *text = slurp(path);
    cr_expect_str_eq(text, "my notes, no newline at the end");
    free(text);
}

Test(metrics, missing_directory_is_an_io_error_naming_the_file)
{
    const char *path = scratch_path("no/such/dir/metrics.jsonl");
    dp_metrics *m = (dp_metrics *)1;
    expect_error(dp_metrics_open(&m, path), DP_ERR_IO, path, "No such file");
    cr_expect_null(m);
}

Test(metrics, bad_records_are_rejected_and_write_nothing)
{
    const char *path = scratch_path("m.jsonl");
    dp_metrics *m = NULL;
    cr_assert_eq(dp_metrics_open(&m, path), DP_OK, "%s", dp_error_message());
    const dp_metrics_field dup[] = {{"loss", 1}, {"lr", 2}, {"loss", 3}};
    const dp_metrics_field kind[] = {{"kind", 1}};
    const dp_metrics_field empty[] = {{"", 1}};
    const dp_metrics_record r1 = {"step", dup, 3}, r2 = {"step", kind, 1}, r3 = {"", NULL, 0},
                            r4 = {"step", empty, 1}, r5 = {"step", NULL, -1};
    expect_error(dp_metrics_write(m, &r1), DP_ERR_ARG, path, "'loss' appears twice");
    expect_error(dp_metrics_write(m, &r2), DP_ERR_ARG, "field 0", "'kind'");
    expect_error(dp_metrics_write(m, &r3), DP_ERR_ARG, "kind");
    expect_error(dp_metrics_write(m, &r4), DP_ERR_ARG, "field 0");
    expect_error(dp_metrics_write(m, &r5), DP_ERR_ARG, "n_fields -1");
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_expect_eq(sb.st_size, 0, "a rejected record wrote %lld bytes", (long long)sb.st_size);
    cr_assert_eq(dp_metrics_close(m), DP_OK, "%s", dp_error_message());
}

Test(metrics, failed_write_cuts_the_file_back_to_whole_lines)
{
    const char *path = scratch_path("m.jsonl");
    dp_metrics *m = NULL;
    cr_assert_eq(dp_metrics_open(&m, path), DP_OK, "%s", dp_error_message());
    write_records(m, 1, 2);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    // The step record (> 200 bytes) fits only partly under this limit (SIGXFSZ ignored: write
    // fails with EFBIG). Criterion runs each test in its own process.
    cr_assert_neq(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
    struct rlimit old, lim;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim.rlim_cur = (rlim_t)sb.st_size + 50;
    lim.rlim_max = old.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    expect_error(dp_metrics_write(m, &records[0]), DP_ERR_IO, path, "File too large");
    lim.rlim_cur = old.rlim_cur;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    write_records(m, 2, 1);
    cr_assert_eq(dp_metrics_close(m), DP_OK, "%s", dp_error_message());
    char want[8192];
    expected(want, sizeof want, 1, 2);
    strcat(want, "eval\n");
    expect_python_reads(path, want);
}

Test(metrics, escaper_handles_specials_control_characters_and_bad_utf8)
{
    char out[128];
    size_t n = dp_metrics_json_escape(out, sizeof out, "a\"b\\c\nd\te\x01\x1f\x7f\b\f\r\v");
    cr_expect_str_eq(out, "a\\\"b\\\\c\\nd\\te\\u0001\\u001f\x7f\\b\\f\\r\\u000b");
    cr_expect_eq(n, strlen(out));
    dp_metrics_json_escape(out, sizeof out, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    cr_expect_str_eq(out, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "valid UTF-8 passes as is");
    // Lone continuation, truncated sequence, overlong, surrogate, past U+10FFFF, 0xff.
    dp_metrics_json_escape(out, sizeof out, "\x80|\xc3|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xff");
    cr_expect_str_eq(out, "\\ufffd|\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                          "\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd");
    // Truncation as snprintf: the return value is the full length.
    char small[5];
    n = dp_metrics_json_escape(small, sizeof small, "ab\"cd");
    cr_expect_eq(n, 6);
    cr_expect_str_eq(small, "ab\\\"");
    cr_expect_eq(dp_metrics_json_escape(NULL, 0, "\n"), 2);
}

Test(metrics, numbers_are_shortest_round_trip_or_null)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0.1, "0.1"},
        {1200, "1200"},
        {-2.5, "-2.5"},
        {1.0 / 3.0, "0.3333333333333333"},
        {10, "10"},
        {-1e16, "-10000000000000000"},
        {1.5e17, "1.5e+17"},
        {123456789012.5, "123456789012.5"},
        {1e300, "1e+300"},
        {1.5e-7, "1.5e-07"},
        {4.9406564584124654e-324, "5e-324"},
        {0.0, "0"},
        {-0.0, "-0.0"},
        {NAN, "null"},
        {INFINITY, "null"},
        {-INFINITY, "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[DP_METRICS_NUMBER_CAP];
        size_t n = dp_metrics_json_number(out, cases[i].v);
        cr_expect_str_eq(out, cases[i].text, "case %zu", i);
        cr_expect_eq(n, strlen(out));
        if (isfinite(cases[i].v)) {
            cr_expect_eq(strtod(out, NULL), cases[i].v, "%s does not read back", out);
        }
    }
}
