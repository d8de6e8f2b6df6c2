// Internals shared by cfg.c (parsing, storage) and cfg_check.c (validation, getters, --set).
#ifndef DP_CORE_CFG_INTERNAL_H
#define DP_CORE_CFG_INTERNAL_H

#include <stddef.h>

#include "core/cfg.h"
#include "core/cfg_schema.h"

typedef struct cfg_entry {
    char *key;
    char *value;
    int line;       // 0 when set from the command line
    char *set_text; // the --set assignment, or NULL
} cfg_entry;

struct dp_cfg_section {
    const dp_cfg *cfg;
    char *header; // as written, without brackets
    const dp_cfg_section_spec *spec; // NULL if unknown
    int line;
    char *set_text; // the --set that created this section, or NULL
    cfg_entry *entries;
    int n_entries;
    int cap_entries;
};

struct dp_cfg {
    char *path;
    char *text;
    dp_cfg_section **sections;
    int n_sections;
    int cap_sections;
    char *ignored; // "[net] hue (line 17), ..." after validation
    int n_ignored;
};

dp_status dp__cfg_add_section(dp_cfg *cfg, const char *header, size_t n, int line,
                              const char *set_text, dp_cfg_section **out);
dp_status dp__cfg_add_entry(dp_cfg_section *s, const char *key, size_t klen, const char *value,
                            size_t vlen, int line, const char *set_text);
cfg_entry *dp__cfg_find_entry(const dp_cfg_section *s, const char *key);

// "Did you mean": keeps in best (best_size bytes) the candidate closest to word when it is close
// enough to be a typo; *best_dist starts at a large number.
void dp__cfg_suggest(const char *word, const char *candidate, size_t cand_len, int *best_dist,
                     char *best, size_t best_size);
void dp__cfg_suggest_from_list(const char *word, const char *list, int *best_dist, char *best,
                               size_t best_size);

#endif
