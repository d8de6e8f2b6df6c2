// Metrics as JSON lines: one object per line, {"kind": "step", "<name>": <number>, ...}, for
// machines (jq, pandas.read_json(lines=True)), not for people (that is the progress line).
// The file is opened for appending, so a resumed run continues it; numbers are the shortest
// text that reads back as the same double; NaN and infinities, which JSON lacks, are null.
#ifndef DP_IO_METRICS_H
#define DP_IO_METRICS_H

#include <stddef.h>

#include "core/status.h"

enum { DP_METRICS_NUMBER_CAP = 32 }; // room for any number dp_metrics_json_number writes

typedef struct dp_metrics dp_metrics;

typedef struct dp_metrics_field {
    const char *name; // UTF-8, non-empty, unique in a record, not "kind"
    double value;
} dp_metrics_field;

typedef struct dp_metrics_record {
    const char *kind;               // "step" (a log interval), "epoch" or "eval"; non-empty
    const dp_metrics_field *fields; // [n_fields], written in this order after "kind"
    int n_fields;                   // >= 0
} dp_metrics_record;

// Opens path for appending, creating it if missing. A non-empty file must look like a metrics
// file (first byte '{'); a last line left unfinished by a crash is cut off (with a warning), so
// every line stays valid JSON. Returns DP_ERR_IO naming path (missing directory, permissions),
// DP_ERR_DATA naming path if it holds something else, DP_ERR_NOMEM; on error *out is NULL.
// A dp_metrics is not thread-safe: one thread (rank 0's trainer) writes it.
DP_MUST_CHECK dp_status dp_metrics_open(dp_metrics **out, const char *path);

// Appends r as one line with one write(2) (no user-space buffering: the line is in the kernel
// when this returns). Returns DP_ERR_ARG (empty kind, a NULL, empty, duplicate or "kind" name,
// n_fields < 0) with nothing written, DP_ERR_IO naming the file (the file is cut back to its
// last whole line then), DP_ERR_NOMEM.
DP_MUST_CHECK dp_status dp_metrics_write(dp_metrics *m, const dp_metrics_record *r);

// fsyncs, closes and frees m, in every case. Returns DP_ERR_IO naming the file if fsync or close
// fails. Accepts NULL.
DP_MUST_CHECK dp_status dp_metrics_close(dp_metrics *m);

// The path m was opened with; valid while m lives.
const char *dp_metrics_path(const dp_metrics *m);

// Writes s (NUL-terminated) escaped for the inside of a JSON string ('"', '\\', control
// characters; invalid UTF-8 bytes become \ufffd) into out[0..cap), NUL-terminated and truncated
// as snprintf does (out may be NULL when cap is 0). Returns the length of the whole escaped text,
// so a return >= cap means it did not fit.
size_t dp_metrics_json_escape(char *out, size_t cap, const char *s);

// Writes v as a JSON number: the shortest %.{1..17}g text that reads back as v ("0.1",
// "1e+300", "1.5e-07"), integers below 1e17 in full ("10", not "1e+01"), negative zero as
// "-0.0" (JSON parsers read "-0" as the integer 0), or "null" for NaN and infinities. Returns
// its length.
size_t dp_metrics_json_number(char out[DP_METRICS_NUMBER_CAP], double v);

#endif
