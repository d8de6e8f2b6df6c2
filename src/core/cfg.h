// The cfg file: Darknet-style INI ([section], key=value, # and ; comments) plus dptrain's own
// [data] and [train] sections. Parsing keeps every value's origin (file:line, or the command
// line for --set); validation checks every section and key against the schema (cfg_schema.h)
// and reports the first problem as `file:line: [section] key: what is wrong`.
// Not here: what the keys mean (layers, trainer and data pipeline read them with the getters).
#ifndef DP_CORE_CFG_H
#define DP_CORE_CFG_H

#include <stddef.h>
#include <stdio.h>

#include "core/status.h"

typedef struct dp_cfg dp_cfg;
typedef struct dp_cfg_section dp_cfg_section;

// Reads and parses the file at path. Syntax errors (a line that is neither a section header nor
// key=value, a key before the first section, an empty key or value, a duplicate key in a
// section) are DP_ERR_CFG naming file:line; a missing or unreadable file is DP_ERR_IO.
// On success the caller owns *out (dp_cfg_destroy).
DP_MUST_CHECK dp_status dp_cfg_load(dp_cfg **out, const char *path);

// The same from text in memory; name stands for the file in messages.
DP_MUST_CHECK dp_status dp_cfg_parse(dp_cfg **out, const char *text, size_t len,
                                     const char *name);

// Accepts NULL.
void dp_cfg_destroy(dp_cfg *cfg);

// Applies one command-line override "section.key=value": replaces the key in the first section
// of that name (aliases count: conv = convolutional), or adds it there; if the cfg has no such
// section and the schema knows it, an empty section is appended first. The value is then
// reported as coming from "--set section.key=value". Errors: DP_ERR_CFG for a malformed
// assignment or an unknown section.
DP_MUST_CHECK dp_status dp_cfg_set(dp_cfg *cfg, const char *assignment);

// Checks the whole cfg against the schema, section by section in file order: the first section
// is [net]; every section and key is known (with a "did you mean" for near misses); numbers
// parse completely and lie in range; enumerated values are known; required keys are present.
// Keys that dptrain knows but does not act on are logged once, in one warning listing them.
DP_MUST_CHECK dp_status dp_cfg_validate(dp_cfg *cfg);

// Writes "[section] key (line N), ..." of the ignored keys (each section/key once) into buf;
// returns how many there are. Valid after dp_cfg_validate.
int dp_cfg_ignored_keys(const dp_cfg *cfg, char *buf, size_t size);

// Writes the cfg as parsed, with --set overrides applied and marked, in the same INI syntax.
// Returns DP_ERR_IO if writing fails.
DP_MUST_CHECK dp_status dp_cfg_write(const dp_cfg *cfg, FILE *f);

const char *dp_cfg_path(const dp_cfg *cfg);
// The file's text exactly as read (for checkpoints).
const char *dp_cfg_text(const dp_cfg *cfg);

int dp_cfg_section_count(const dp_cfg *cfg);
const dp_cfg_section *dp_cfg_section_at(const dp_cfg *cfg, int index);
// First section with this canonical name ("net", "train", ...), or NULL.
const dp_cfg_section *dp_cfg_find(const dp_cfg *cfg, const char *name);

// Canonical name ("convolutional" for [conv]) and the name as written.
const char *dp_cfg_section_name(const dp_cfg_section *s);
const char *dp_cfg_section_header(const dp_cfg_section *s);
int dp_cfg_section_line(const dp_cfg_section *s);
int dp_cfg_section_key_count(const dp_cfg_section *s);
// Key i of the section, its value and line (0 for --set); NULL if i is out of range.
const char *dp_cfg_section_key_at(const dp_cfg_section *s, int i, const char **value, int *line);

// 1 if the section has the key.
int dp_cfg_has(const dp_cfg_section *s, const char *key);

// Writes where the key was set ("net.cfg:14", or "--set net.batch=8"), or where the section
// starts when key is NULL or absent, into buf and returns buf.
const char *dp_cfg_where(const dp_cfg_section *s, const char *key, char *buf, size_t size);

// --- typed getters ---
// Each returns the value of key, or def when the key is absent. A value that does not parse
// completely (strtol/strtod with an end-pointer check), lies outside the schema's range, or is
// not one of the schema's choices, is DP_ERR_CFG: `file:line: [section] key: what is wrong`.
// The require forms have no default: an absent key is DP_ERR_CFG naming the section's line.
DP_MUST_CHECK dp_status dp_cfg_get_int(const dp_cfg_section *s, const char *key, long def,
                                       long *out);
DP_MUST_CHECK dp_status dp_cfg_get_float(const dp_cfg_section *s, const char *key, double def,
                                         double *out);
// Accepts 0/1, true/false, yes/no, on/off.
DP_MUST_CHECK dp_status dp_cfg_get_bool(const dp_cfg_section *s, const char *key, int def,
                                        int *out);
// The string stays valid as long as the cfg.
DP_MUST_CHECK dp_status dp_cfg_get_str(const dp_cfg_section *s, const char *key, const char *def,
                                       const char **out);
// Comma-separated lists ("-1, -4"); at most cap items, else DP_ERR_CFG. An absent key gives
// *count = 0.
DP_MUST_CHECK dp_status dp_cfg_get_int_list(const dp_cfg_section *s, const char *key, long *out,
                                            int cap, int *count);
DP_MUST_CHECK dp_status dp_cfg_get_float_list(const dp_cfg_section *s, const char *key,
                                              double *out, int cap, int *count);
DP_MUST_CHECK dp_status dp_cfg_require_int(const dp_cfg_section *s, const char *key, long *out);
DP_MUST_CHECK dp_status dp_cfg_require_str(const dp_cfg_section *s, const char *key,
                                           const char **out);

#endif
