// Helpers shared by the tests/optim suites: reading the text reference files that
// tests/data/torch/make_optim_ref.py writes (lines of "tag value value ..."; floats as C99 hex
// literals, exact through strtod) and comparing float arrays with the worst element reported.
#ifndef DP_TESTS_OPTIM_REF_TEXT_H
#define DP_TESTS_OPTIM_REF_TEXT_H

#include <stddef.h>

// Reads $DP_SOURCE_ROOT/rel (the source tree; meson's test_env sets it) into a NUL-terminated
// buffer the caller frees; fails the test when the file cannot be read.
char *ref_load(const char *rel);

// Returns the next line of the buffer at *cursor (its '\n' replaced by '\0') and advances
// *cursor past it; NULL at the end.
char *ref_next_line(char **cursor);

// Parses up to cap whitespace-separated numbers of s (strtod: decimal or hex) into out, as
// double; returns how many; fails the test on a token that is not a number.
int ref_parse_doubles(const char *s, double *out, int cap);

// The same, rounded to float.
int ref_parse_floats(const char *s, float *out, int cap);

// The worst element of got against want by |got - want| / max(|want|, scale[i], floor), with
// scale (may be NULL) the largest magnitude the element had earlier in the run: rounding made
// while a parameter was large stays when later updates carry it towards 0.
typedef struct ref_err {
    double max;
    size_t index;
    double got, want;
} ref_err;

ref_err ref_max_rel_err(const float *got, const float *want, const float *scale, size_t n,
                        double floor);

#endif
