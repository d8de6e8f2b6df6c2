// Schema validation, --set overrides and typed getters of the cfg. Every error names where the
// value came from and the key: `file:line: [section] key: what is wrong`.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cfg_internal.h"
#include "core/error.h"
#include "core/log.h"

enum { WHERE_BYTES = 512, LIST_MAX = 1024 };

// Sets DP_ERR_CFG with "where: [header] key: message".
static dp_status key_error(const dp_cfg_section *s, const char *key, const char *fmt, ...)
    DP_PRINTF(3, 4);

static dp_status key_error(const dp_cfg_section *s, const char *key, const char *fmt, ...)
{
    char where[WHERE_BYTES], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dp_cfg_where(s, key, where, sizeof where);
    if (key == NULL) {
        return dp_error_set(DP_ERR_CFG, "%s: [%s]: %s", where, s->header, msg);
    }
    return dp_error_set(DP_ERR_CFG, "%s: [%s] %s: %s", where, s->header, key, msg);
}

static const dp_cfg_key_spec *spec_of(const dp_cfg_section *s, const char *key)
{
    return s->spec != NULL ? dp_cfg_schema_key(s->spec, key) : NULL;
}

// --- value parsing (strict) ---

static int parse_long(const char *text, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE) {
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_double(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v)) {
        return 0;
    }
    *out = v;
    return 1;
}

static dp_status check_range(const dp_cfg_section *s, const char *key,
                             const dp_cfg_key_spec *spec, double v, const char *text)
{
    if (spec != NULL && (v < spec->min || v > spec->max)) {
        return key_error(s, key, "value %s is out of range [%.15g, %.15g]", text, spec->min,
                         spec->max);
    }
    return DP_OK;
}

static dp_status value_long(const dp_cfg_section *s, const cfg_entry *e, long *out)
{
    if (!parse_long(e->value, out)) {
        return key_error(s, e->key, "expected an integer, got '%s'", e->value);
    }
    return check_range(s, e->key, spec_of(s, e->key), (double)*out, e->value);
}

static dp_status value_double(const dp_cfg_section *s, const cfg_entry *e, double *out)
{
    if (!parse_double(e->value, out)) {
        return key_error(s, e->key, "expected a finite number, got '%s'", e->value);
    }
    return check_range(s, e->key, spec_of(s, e->key), *out, e->value);
}

static dp_status value_bool(const dp_cfg_section *s, const cfg_entry *e, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(e->value, yes[i]) == 0) {
            *out = 1;
            return DP_OK;
        }
        if (strcasecmp(e->value, no[i]) == 0) {
            *out = 0;
            return DP_OK;
        }
    }
    return key_error(s, e->key, "expected 0 or 1, got '%s'", e->value);
}

static int in_choices(const char *value, const char *choices)
{
    size_t n = strlen(value);
    for (const char *p = choices; *p != '\0';) {
        const char *bar = strchr(p, '|');
        size_t len = bar != NULL ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) {
            return 1;
        }
        p += len + (bar != NULL);
    }
    return 0;
}

static dp_status value_enum(const dp_cfg_section *s, const cfg_entry *e,
                            const dp_cfg_key_spec *spec)
{
    if (in_choices(e->value, spec->choices)) {
        return DP_OK;
    }
    char best[64] = "";
    int dist = 1 << 20;
    dp__cfg_suggest_from_list(e->value, spec->choices, &dist, best, sizeof best);
    if (best[0] != '\0') {
        return key_error(s, e->key, "unknown value '%s' (did you mean '%s'?)", e->value, best);
    }
    return key_error(s, e->key, "unknown value '%s' (expected one of: %s)", e->value,
                     spec->choices);
}

// Parses a comma-separated list into out (cap items; out may be NULL to only check).
static dp_status value_list(const dp_cfg_section *s, const cfg_entry *e, int is_int,
                            double *out, int cap, int *count)
{
    const dp_cfg_key_spec *spec = spec_of(s, e->key);
    int n = 0;
    const char *p = e->value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char item[64];
        size_t tl = len;
        const char *t = p;
        while (tl > 0 && isspace((unsigned char)*t)) {
            t++;
            tl--;
        }
        while (tl > 0 && isspace((unsigned char)t[tl - 1])) {
            tl--;
        }
        if (tl == 0 || tl >= sizeof item) {
            return key_error(s, e->key, "item %d of '%s' is %s", n + 1, e->value,
                             tl == 0 ? "empty" : "too long");
        }
        memcpy(item, t, tl);
        item[tl] = '\0';
        long lv = 0;
        double dv = 0;
        if (is_int ? !parse_long(item, &lv) : !parse_double(item, &dv)) {
            return key_error(s, e->key, "item %d of '%s': expected %s, got '%s'", n + 1, e->value,
                             is_int ? "an integer" : "a finite number", item);
        }
        if (is_int) {
            dv = (double)lv;
        }
        DP_TRY(check_range(s, e->key, spec, dv, item));
        if (out != NULL && n >= cap) {
            return key_error(s, e->key, "more than %d items", cap);
        }
        if (out != NULL) {
            out[n] = dv;
        }
        n++;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    *count = n;
    return DP_OK;
}

static dp_status check_entry(const dp_cfg_section *s, const cfg_entry *e,
                             const dp_cfg_key_spec *spec)
{
    long lv;
    double dv;
    int bv, count;
    switch (spec->type) {
    case DP_CFG_INT:
        return value_long(s, e, &lv);
    case DP_CFG_FLOAT:
        return value_double(s, e, &dv);
    case DP_CFG_BOOL:
        return value_bool(s, e, &bv);
    case DP_CFG_STR:
        return DP_OK;
    case DP_CFG_ENUM:
        return value_enum(s, e, spec);
    case DP_CFG_INT_LIST:
        return value_list(s, e, 1, NULL, 0, &count);
    case DP_CFG_FLOAT_LIST:
        return value_list(s, e, 0, NULL, 0, &count);
    }
    DP_ASSERT(!"unknown cfg type");
}

// --- validation ---

static dp_status unknown_section(const dp_cfg_section *s)
{
    int n, dist = 1 << 20;
    char best[64] = "";
    const dp_cfg_section_spec *all = dp_cfg_schema_sections(&n);
    for (int i = 0; i < n; i++) {
        dp__cfg_suggest(s->header, all[i].name, strlen(all[i].name), &dist, best, sizeof best);
        if (all[i].aliases != NULL) {
            dp__cfg_suggest_from_list(s->header, all[i].aliases, &dist, best, sizeof best);
        }
    }
    if (best[0] != '\0') {
        return key_error(s, NULL, "unknown section (did you mean [%s]?)", best);
    }
    return key_error(s, NULL, "unknown section");
}

static dp_status unknown_key(const dp_cfg_section *s, const char *key)
{
    int dist = 1 << 20;
    char best[64] = "";
    for (const dp_cfg_key_spec *k = s->spec->keys; k->name != NULL; k++) {
        dp__cfg_suggest(key, k->name, strlen(k->name), &dist, best, sizeof best);
    }
    if (s->spec->flags & DP_CFG_SECTION_LAYER) {
        for (const dp_cfg_key_spec *k = dp_cfg_schema_layer_keys(); k->name != NULL; k++) {
            dp__cfg_suggest(key, k->name, strlen(k->name), &dist, best, sizeof best);
        }
    }
    if (best[0] != '\0') {
        return key_error(s, key, "unknown key (did you mean '%s'?)", best);
    }
    return key_error(s, key, "unknown key for [%s]", s->spec->name);
}

// Appends "[section] key (where)" to cfg->ignored unless that section/key is listed already.
static dp_status note_ignored(dp_cfg *cfg, const dp_cfg_section *s, const cfg_entry *e)
{
    char item[256], where[WHERE_BYTES];
    snprintf(item, sizeof item, "[%s] %s", s->spec->name, e->key);
    if (cfg->ignored != NULL) {
        for (const char *p = strstr(cfg->ignored, item); p != NULL; p = strstr(p + 1, item)) {
            char next = p[strlen(item)];
            if ((p == cfg->ignored || p[-1] == ' ') && next == ' ') {
                return DP_OK;
            }
        }
    }
    if (e->set_text != NULL) {
        snprintf(where, sizeof where, "--set %s", e->set_text);
    } else {
        snprintf(where, sizeof where, "line %d", e->line);
    }
    size_t old = cfg->ignored != NULL ? strlen(cfg->ignored) : 0;
    size_t add = strlen(item) + strlen(where) + 8;
    char *grown = realloc(cfg->ignored, old + add);
    if (grown == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "cfg %s: out of memory", cfg->path);
    }
    cfg->ignored = grown;
    snprintf(cfg->ignored + old, add, "%s%s (%s)", old > 0 ? ", " : "", item, where);
    cfg->n_ignored++;
    return DP_OK;
}

static dp_status check_section(dp_cfg *cfg, const dp_cfg_section *s)
{
    if (s->spec == NULL) {
        return unknown_section(s);
    }
    if (s->spec->flags & DP_CFG_SECTION_ANY_KEYS) {
        return DP_OK;
    }
    for (int j = 0; j < s->n_entries; j++) {
        const cfg_entry *e = &s->entries[j];
        const dp_cfg_key_spec *spec = dp_cfg_schema_key(s->spec, e->key);
        if (spec == NULL) {
            return unknown_key(s, e->key);
        }
        DP_TRY(check_entry(s, e, spec));
        if (spec->flags & DP_CFG_IGNORED) {
            DP_TRY(note_ignored(cfg, s, e));
        }
    }
    for (const dp_cfg_key_spec *k = s->spec->keys; k->name != NULL; k++) {
        if ((k->flags & DP_CFG_REQUIRED) && dp__cfg_find_entry(s, k->name) == NULL) {
            return key_error(s, k->name, "missing required key");
        }
    }
    return DP_OK;
}

dp_status dp_cfg_validate(dp_cfg *cfg)
{
    free(cfg->ignored);
    cfg->ignored = NULL;
    cfg->n_ignored = 0;
    if (cfg->n_sections == 0) {
        return dp_error_set(DP_ERR_CFG, "%s: no sections (a cfg starts with [net])", cfg->path);
    }
    const dp_cfg_section *first = cfg->sections[0];
    if (first->spec == NULL || strcmp(first->spec->name, "net") != 0) {
        return key_error(first, NULL, "the first section must be [net] or [network]");
    }
    for (int i = 0; i < cfg->n_sections; i++) {
        const dp_cfg_section *s = cfg->sections[i];
        if (i > 0 && s->spec != NULL && !(s->spec->flags & DP_CFG_SECTION_LAYER)) {
            const dp_cfg_section *prev = dp_cfg_find(cfg, s->spec->name);
            if (prev != s) {
                return key_error(s, NULL, "repeated section (first at line %d)", prev->line);
            }
        }
        DP_TRY(check_section(cfg, s));
    }
    if (cfg->n_ignored > 0) {
        DP_LOG_WARN("%s: %d key%s that dptrain does not act on %s ignored: %s", cfg->path,
                    cfg->n_ignored, cfg->n_ignored == 1 ? "" : "s",
                    cfg->n_ignored == 1 ? "is" : "are", cfg->ignored);
    }
    return DP_OK;
}

// --- --set ---

dp_status dp_cfg_set(dp_cfg *cfg, const char *assignment)
{
    const char *dot = strchr(assignment, '.');
    const char *eq = strchr(assignment, '=');
    if (dot == NULL || eq == NULL || dot > eq || dot == assignment || eq == dot + 1) {
        return dp_error_set(DP_ERR_CFG, "--set %s: expected section.key=value", assignment);
    }
    char sec[64], key[128];
    size_t sn = (size_t)(dot - assignment), kn = (size_t)(eq - dot - 1);
    if (sn >= sizeof sec || kn >= sizeof key) {
        return dp_error_set(DP_ERR_CFG, "--set %s: section or key name too long", assignment);
    }
    memcpy(sec, assignment, sn);
    sec[sn] = '\0';
    memcpy(key, dot + 1, kn);
    key[kn] = '\0';
    const char *value = eq + 1;
    if (*value == '\0') {
        return dp_error_set(DP_ERR_CFG, "--set %s: empty value", assignment);
    }
    const dp_cfg_section_spec *spec = dp_cfg_schema_section(sec);
    if (spec == NULL) {
        return dp_error_set(DP_ERR_CFG, "--set %s: unknown section [%s]", assignment, sec);
    }
    dp_cfg_section *target = (dp_cfg_section *)dp_cfg_find(cfg, spec->name);
    if (target == NULL) {
        DP_TRY(dp__cfg_add_section(cfg, spec->name, strlen(spec->name), 0, assignment, &target));
    }
    cfg_entry *e = dp__cfg_find_entry(target, key);
    if (e == NULL) {
        return dp__cfg_add_entry(target, key, kn, value, strlen(value), 0, assignment);
    }
    char *v = malloc(strlen(value) + 1), *t = malloc(strlen(assignment) + 1);
    if (v == NULL || t == NULL) {
        free(v);
        free(t);
        return dp_error_set(DP_ERR_NOMEM, "--set %s: out of memory", assignment);
    }
    strcpy(v, value);
    strcpy(t, assignment);
    free(e->value);
    free(e->set_text);
    e->value = v;
    e->set_text = t;
    e->line = 0;
    return DP_OK;
}

// --- getters ---

dp_status dp_cfg_get_int(const dp_cfg_section *s, const char *key, long def, long *out)
{
    const cfg_entry *e = dp__cfg_find_entry(s, key);
    *out = def;
    return e != NULL ? value_long(s, e, out) : DP_OK;
}

dp_status dp_cfg_get_float(const dp_cfg_section *s, const char *key, double def, double *out)
{
    const cfg_entry *e = dp__cfg_find_entry(s, key);
    *out = def;
    return e != NULL ? value_double(s, e, out) : DP_OK;
}

dp_status dp_cfg_get_bool(const dp_cfg_section *s, const char *key, int def, int *out)
{
    const cfg_entry *e = dp__cfg_find_entry(s, key);
    *out = def;
    return e != NULL ? value_bool(s, e, out) : DP_OK;
}

dp_status dp_cfg_get_str(const dp_cfg_section *s, const char *key, const char *def,
                         const char **out)
{
    const cfg_entry *e = dp__cfg_find_entry(s, key);
    *out = def;
    if (e == NULL) {
        return DP_OK;
    }
    const dp_cfg_key_spec *spec = spec_of(s, key);
    if (spec != NULL && spec->type == DP_CFG_ENUM) {
        DP_TRY(value_enum(s, e, spec));
    }
    *out = e->value;
    return DP_OK;
}

dp_status dp_cfg_get_int_list(const dp_cfg_section *s, const char *key, long *out, int cap,
                              int *count)
{
    *count = 0;
    const cfg_entry *e = dp__cfg_find_entry(s, key);
    if (e == NULL) {
        return DP_OK;
    }
    double tmp[LIST_MAX];
    int n = 0;
    DP_TRY(value_list(s, e, 1, tmp, cap < LIST_MAX ? cap : LIST_MAX, &n));
    for (int i = 0; i < n; i++) {
        out[i] = (long)tmp[i];
    }
    *count = n;
    return DP_OK;
}

dp_status dp_cfg_get_float_list(const dp_cfg_section *s, const char *key, double *out, int cap,
                                int *count)
{
    *count = 0;
    const cfg_entry *e = dp__cfg_find_entry(s, key);
    return e != NULL ? value_list(s, e, 0, out, cap, count) : DP_OK;
}

dp_status dp_cfg_require_int(const dp_cfg_section *s, const char *key, long *out)
{
    if (dp__cfg_find_entry(s, key) == NULL) {
        return key_error(s, key, "missing required key");
    }
    return dp_cfg_get_int(s, key, 0, out);
}

dp_status dp_cfg_require_str(const dp_cfg_section *s, const char *key, const char **out)
{
    if (dp__cfg_find_entry(s, key) == NULL) {
        *out = NULL;
        return key_error(s, key, "missing required key");
    }
    return dp_cfg_get_str(s, key, NULL, out);
}
