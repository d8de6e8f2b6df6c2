// Reference-file reader and float comparison for the tests/optim suites (see ref_text.h).
#include "ref_text.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *ref_load(const char *rel)
{
    const char *root = getenv("DP_SOURCE_ROOT");
    cr_assert_not_null(root, "DP_SOURCE_ROOT is not set (run through meson test)");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    cr_assert_geq(len, 0);
    cr_assert_eq(fseek(f, 0, SEEK_SET), 0);
    char *buf = malloc((size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len, "short read of %s", path);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

char *ref_next_line(char **cursor)
{
    char *s = *cursor;
    if (s == NULL || *s == '\0') {
        return NULL;
    }
    char *nl = strchr(s, '\n');
    if (nl != NULL) {
        *nl = '\0';
        *cursor = nl + 1;
    } else {
        *cursor = s + strlen(s);
    }
    return s;
}

int ref_parse_doubles(const char *s, double *out, int cap)
{
    int n = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == ',' || *s == '\r') {
            s++;
        }
        if (*s == '\0') {
            return n;
        }
        char *end = NULL;
        double v = strtod(s, &end);
        cr_assert(end != s, "not a number at '%.20s'", s);
        cr_assert_lt(n, cap, "more than %d numbers", cap);
        out[n++] = v;
        s = end;
    }
}

int ref_parse_floats(const char *s, float *out, int cap)
{
    double *tmp = malloc((size_t)cap * sizeof *tmp);
    cr_assert_not_null(tmp);
    int n = ref_parse_doubles(s, tmp, cap);
    for (int i = 0; i < n; i++) {
        out[i] = (float)tmp[i];
    }
    free(tmp);
    return n;
}

ref_err ref_max_rel_err(const float *got, const float *want, const float *scale, size_t n,
                        double floor)
{
    ref_err e = {0.0, 0, 0.0, 0.0};
    for (size_t i = 0; i < n; i++) {
        double w = want[i], d = fabs((double)got[i] - w);
        double den = fmax(fabs(w), floor);
        if (scale != NULL) {
            den = fmax(den, fabs((double)scale[i]));
        }
        double r = d / den;
        if (!(r <= e.max)) { // NaN counts as worst
            e.max = isnan(r) ? INFINITY : r;
            e.index = i;
            e.got = got[i];
            e.want = w;
        }
    }
    return e;
}
