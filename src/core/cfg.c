// cfg parsing, --set overrides, schema validation and typed getters. The text is kept as read;
// sections and entries own copies of their strings. Number syntax is strict (strtol/strtod
// with an end-pointer check, no trailing garbage, finite floats), unlike Darknet's atoi.
#include "core/cfg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cfg_internal.h"
#include "core/cfg_schema.h"
#include "core/error.h"
#include "core/log.h"

// --- small helpers ---

static char *dup_range(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static char *dup_str(const char *s)
{
    return dup_range(s, strlen(s));
}

static const char *trim(const char *s, size_t *len)
{
    size_t n = *len;
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        n--;
    }
    *len = n;
    return s;
}

static int is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

static int valid_name(const char *s, size_t n)
{
    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_name_char(s[i])) {
            return 0;
        }
    }
    return 1;
}

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) {
        return 99;
    }
    int row[64];
    for (size_t j = 0; j <= lb; j++) {
        row[j] = (int)j;
    }
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            int best = diag + cost;
            if (row[j] + 1 < best) {
                best = row[j] + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

// Keeps in *best the candidate closest to word, if close enough to be a likely typo.
void dp__cfg_suggest(const char *word, const char *candidate, size_t cand_len, int *best_dist,
                     char *best, size_t best_size)
{
    char tmp[64];
    if (cand_len >= sizeof tmp) {
        return;
    }
    memcpy(tmp, candidate, cand_len);
    tmp[cand_len] = '\0';
    int d = edit_distance(word, tmp);
    int limit = strlen(tmp) <= 3 ? 1 : (strlen(tmp) <= 6 ? 2 : 3);
    if (d <= limit && d < *best_dist) {
        *best_dist = d;
        snprintf(best, best_size, "%s", tmp);
    }
}

void dp__cfg_suggest_from_list(const char *word, const char *list, int *best_dist, char *best,
                          size_t best_size)
{
    const char *p = list;
    while (p != NULL && *p != '\0') {
        const char *bar = strchr(p, '|');
        size_t len = bar != NULL ? (size_t)(bar - p) : strlen(p);
        dp__cfg_suggest(word, p, len, best_dist, best, best_size);
        p = bar != NULL ? bar + 1 : p + len;
    }
}

// --- construction ---

static dp_status cfg_new(dp_cfg **out, const char *path)
{
    dp_cfg *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL || (cfg->path = dup_str(path)) == NULL) {
        free(cfg);
        return dp_error_set(DP_ERR_NOMEM, "cfg %s: out of memory", path);
    }
    *out = cfg;
    return DP_OK;
}

dp_status dp__cfg_add_section(dp_cfg *cfg, const char *header, size_t n, int line,
                             const char *set_text, dp_cfg_section **out)
{
    if (cfg->n_sections == cfg->cap_sections) {
        int cap = cfg->cap_sections ? 2 * cfg->cap_sections : 16;
        dp_cfg_section **grown = realloc(cfg->sections, (size_t)cap * sizeof *grown);
        if (grown == NULL) {
            return dp_error_set(DP_ERR_NOMEM, "cfg %s: out of memory", cfg->path);
        }
        cfg->sections = grown;
        cfg->cap_sections = cap;
    }
    dp_cfg_section *s = calloc(1, sizeof *s);
    if (s == NULL || (s->header = dup_range(header, n)) == NULL ||
        (set_text != NULL && (s->set_text = dup_str(set_text)) == NULL)) {
        if (s != NULL) {
            free(s->header);
        }
        free(s);
        return dp_error_set(DP_ERR_NOMEM, "cfg %s: out of memory", cfg->path);
    }
    s->cfg = cfg;
    s->line = line;
    s->spec = dp_cfg_schema_section(s->header);
    cfg->sections[cfg->n_sections++] = s;
    *out = s;
    return DP_OK;
}

cfg_entry *dp__cfg_find_entry(const dp_cfg_section *s, const char *key)
{
    for (int i = 0; i < s->n_entries; i++) {
        if (strcmp(s->entries[i].key, key) == 0) {
            return &s->entries[i];
        }
    }
    return NULL;
}

dp_status dp__cfg_add_entry(dp_cfg_section *s, const char *key, size_t klen, const char *value,
                           size_t vlen, int line, const char *set_text)
{
    if (s->n_entries == s->cap_entries) {
        int cap = s->cap_entries ? 2 * s->cap_entries : 8;
        cfg_entry *grown = realloc(s->entries, (size_t)cap * sizeof *grown);
        if (grown == NULL) {
            return dp_error_set(DP_ERR_NOMEM, "cfg %s: out of memory", s->cfg->path);
        }
        s->entries = grown;
        s->cap_entries = cap;
    }
    cfg_entry *e = &s->entries[s->n_entries];
    memset(e, 0, sizeof *e);
    e->key = dup_range(key, klen);
    e->value = dup_range(value, vlen);
    e->set_text = set_text != NULL ? dup_str(set_text) : NULL;
    e->line = line;
    if (e->key == NULL || e->value == NULL || (set_text != NULL && e->set_text == NULL)) {
        free(e->key);
        free(e->value);
        free(e->set_text);
        return dp_error_set(DP_ERR_NOMEM, "cfg %s: out of memory", s->cfg->path);
    }
    s->n_entries++;
    return DP_OK;
}

// --- parsing ---

// Length of the line's content before a comment: '#' or ';' at the start, or after whitespace.
static size_t strip_comment(const char *line, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((line[i] == '#' || line[i] == ';') && (i == 0 || isspace((unsigned char)line[i - 1]))) {
            return i;
        }
    }
    return n;
}

static dp_status parse_line(dp_cfg *cfg, dp_cfg_section **cur, const char *line, size_t n,
                            int lineno)
{
    n = strip_comment(line, n);
    line = trim(line, &n);
    if (n == 0) {
        return DP_OK;
    }
    if (line[0] == '[') {
        if (line[n - 1] != ']') {
            return dp_error_set(DP_ERR_CFG, "%s:%d: section header '%.*s' does not end with ']'",
                                cfg->path, lineno, (int)n, line);
        }
        size_t hn = n - 2;
        const char *h = trim(line + 1, &hn);
        if (!valid_name(h, hn)) {
            return dp_error_set(DP_ERR_CFG, "%s:%d: '%.*s' is not a valid section name",
                                cfg->path, lineno, (int)n, line);
        }
        return dp__cfg_add_section(cfg, h, hn, lineno, NULL, cur);
    }
    const char *eq = memchr(line, '=', n);
    if (eq == NULL) {
        return dp_error_set(DP_ERR_CFG, "%s:%d: expected 'key=value' or '[section]', got '%.*s'",
                            cfg->path, lineno, (int)n, line);
    }
    size_t klen = (size_t)(eq - line), vlen = n - klen - 1;
    const char *key = trim(line, &klen);
    const char *value = trim(eq + 1, &vlen);
    if (!valid_name(key, klen)) {
        return dp_error_set(DP_ERR_CFG, "%s:%d: '%.*s' is not a valid key name (letters, digits, _)",
                            cfg->path, lineno, (int)klen, key);
    }
    if (*cur == NULL) {
        return dp_error_set(DP_ERR_CFG, "%s:%d: %.*s: key before the first [section]", cfg->path,
                            lineno, (int)klen, key);
    }
    char kbuf[128];
    snprintf(kbuf, sizeof kbuf, "%.*s", (int)klen, key);
    if (vlen == 0) {
        return dp_error_set(DP_ERR_CFG, "%s:%d: [%s] %s: empty value", cfg->path, lineno,
                            (*cur)->header, kbuf);
    }
    const cfg_entry *dup = dp__cfg_find_entry(*cur, kbuf);
    if (dup != NULL) {
        return dp_error_set(DP_ERR_CFG, "%s:%d: [%s] %s: duplicate key (first set at line %d)",
                            cfg->path, lineno, (*cur)->header, kbuf, dup->line);
    }
    return dp__cfg_add_entry(*cur, key, klen, value, vlen, lineno, NULL);
}

dp_status dp_cfg_parse(dp_cfg **out, const char *text, size_t len, const char *name)
{
    *out = NULL;
    dp_cfg *cfg = NULL;
    DP_TRY(cfg_new(&cfg, name));
    dp_status st = DP_OK;
    if (memchr(text, '\0', len) != NULL) {
        st = dp_error_set(DP_ERR_CFG, "%s: contains a NUL byte; not a text cfg file", name);
        goto out;
    }
    if ((cfg->text = dup_range(text, len)) == NULL) {
        st = dp_error_set(DP_ERR_NOMEM, "cfg %s: out of memory", name);
        goto out;
    }
    dp_cfg_section *cur = NULL;
    const char *p = text, *end = text + len;
    for (int lineno = 1; p < end; lineno++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        DP_TRY_GOTO(parse_line(cfg, &cur, p, n, lineno), st, out);
        p += n + 1;
    }
out:
    if (st != DP_OK) {
        dp_cfg_destroy(cfg);
        return st;
    }
    *out = cfg;
    return DP_OK;
}

dp_status dp_cfg_load(dp_cfg **out, const char *path)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return dp_error_set(DP_ERR_IO, "cannot open cfg '%s': %s", path, strerror(errno));
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    dp_status st = DP_OK;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 65536;
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                st = dp_error_set(DP_ERR_NOMEM, "cfg %s: out of memory", path);
                goto out;
            }
            buf = grown;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        st = dp_error_set(DP_ERR_IO, "cannot read cfg '%s': %s", path, strerror(errno));
        goto out;
    }
    st = dp_cfg_parse(out, buf != NULL ? buf : "", len, path);
out:
    free(buf);
    fclose(f);
    return st;
}

void dp_cfg_destroy(dp_cfg *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (int i = 0; i < cfg->n_sections; i++) {
        dp_cfg_section *s = cfg->sections[i];
        for (int j = 0; j < s->n_entries; j++) {
            free(s->entries[j].key);
            free(s->entries[j].value);
            free(s->entries[j].set_text);
        }
        free(s->entries);
        free(s->header);
        free(s->set_text);
        free(s);
    }
    free(cfg->sections);
    free(cfg->ignored);
    free(cfg->text);
    free(cfg->path);
    free(cfg);
}

// --- accessors ---

const char *dp_cfg_path(const dp_cfg *cfg)
{
    return cfg->path;
}

const char *dp_cfg_text(const dp_cfg *cfg)
{
    return cfg->text != NULL ? cfg->text : "";
}

int dp_cfg_section_count(const dp_cfg *cfg)
{
    return cfg->n_sections;
}

const dp_cfg_section *dp_cfg_section_at(const dp_cfg *cfg, int index)
{
    if (index < 0 || index >= cfg->n_sections) {
        return NULL;
    }
    return cfg->sections[index];
}

const char *dp_cfg_section_name(const dp_cfg_section *s)
{
    return s->spec != NULL ? s->spec->name : s->header;
}

const dp_cfg_section *dp_cfg_find(const dp_cfg *cfg, const char *name)
{
    for (int i = 0; i < cfg->n_sections; i++) {
        if (strcmp(dp_cfg_section_name(cfg->sections[i]), name) == 0) {
            return cfg->sections[i];
        }
    }
    return NULL;
}

const char *dp_cfg_section_header(const dp_cfg_section *s)
{
    return s->header;
}

int dp_cfg_section_line(const dp_cfg_section *s)
{
    return s->line;
}

int dp_cfg_section_key_count(const dp_cfg_section *s)
{
    return s->n_entries;
}

const char *dp_cfg_section_key_at(const dp_cfg_section *s, int i, const char **value, int *line)
{
    if (i < 0 || i >= s->n_entries) {
        return NULL;
    }
    if (value != NULL) {
        *value = s->entries[i].value;
    }
    if (line != NULL) {
        *line = s->entries[i].line;
    }
    return s->entries[i].key;
}

int dp_cfg_has(const dp_cfg_section *s, const char *key)
{
    return dp__cfg_find_entry(s, key) != NULL;
}

const char *dp_cfg_where(const dp_cfg_section *s, const char *key, char *buf, size_t size)
{
    const cfg_entry *e = key != NULL ? dp__cfg_find_entry(s, key) : NULL;
    if (e != NULL && e->set_text != NULL) {
        snprintf(buf, size, "--set %s", e->set_text);
    } else if (e != NULL) {
        snprintf(buf, size, "%s:%d", s->cfg->path, e->line);
    } else if (s->set_text != NULL) {
        snprintf(buf, size, "--set %s", s->set_text);
    } else {
        snprintf(buf, size, "%s:%d", s->cfg->path, s->line);
    }
    return buf;
}

int dp_cfg_ignored_keys(const dp_cfg *cfg, char *buf, size_t size)
{
    if (size > 0) {
        snprintf(buf, size, "%s", cfg->ignored != NULL ? cfg->ignored : "");
    }
    return cfg->n_ignored;
}

dp_status dp_cfg_write(const dp_cfg *cfg, FILE *f)
{
    int bad = fprintf(f, "# resolved from %s\n", cfg->path) < 0;
    for (int i = 0; i < cfg->n_sections && !bad; i++) {
        const dp_cfg_section *s = cfg->sections[i];
        bad |= fprintf(f, "%s[%s]\n", i > 0 ? "\n" : "", s->header) < 0;
        for (int j = 0; j < s->n_entries && !bad; j++) {
            const cfg_entry *e = &s->entries[j];
            if (e->set_text != NULL) {
                bad |= fprintf(f, "%s=%s  # --set %s\n", e->key, e->value, e->set_text) < 0;
            } else {
                bad |= fprintf(f, "%s=%s\n", e->key, e->value) < 0;
            }
        }
    }
    if (bad || ferror(f)) {
        return dp_error_set(DP_ERR_IO, "writing cfg %s: %s", cfg->path, strerror(errno));
    }
    return DP_OK;
}
