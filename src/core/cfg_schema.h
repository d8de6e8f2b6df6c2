// The schema of the cfg: every section dptrain knows (Darknet's, with their aliases, and
// dptrain's [data] and [train]) and, per section, every key with its type, range and whether
// dptrain acts on it. Darknet keys that dptrain does not act on are listed as IGNORED, so a
// Darknet cfg parses as it is and the user is told once what is ignored.
#ifndef DP_CORE_CFG_SCHEMA_H
#define DP_CORE_CFG_SCHEMA_H

typedef enum dp_cfg_type {
    DP_CFG_INT,
    DP_CFG_FLOAT,
    DP_CFG_BOOL,
    DP_CFG_STR,
    DP_CFG_ENUM, // one of choices ("a|b|c")
    DP_CFG_INT_LIST,
    DP_CFG_FLOAT_LIST,
} dp_cfg_type;

enum {
    DP_CFG_REQUIRED = 1u << 0, // validation fails when the key is absent
    DP_CFG_IGNORED = 1u << 1,  // known (Darknet) key that dptrain does not act on
};

typedef struct dp_cfg_key_spec {
    const char *name;
    dp_cfg_type type;
    double min; // inclusive range for numbers (and list items)
    double max;
    unsigned flags;
    const char *choices; // DP_CFG_ENUM: "a|b|c"
} dp_cfg_key_spec;

enum {
    DP_CFG_SECTION_LAYER = 1u << 0,       // a layer: also takes the keys common to all layers
    DP_CFG_SECTION_ANY_KEYS = 1u << 1,    // keys are not checked (sections dptrain cannot build)
    DP_CFG_SECTION_UNSUPPORTED = 1u << 2, // Darknet layer dptrain does not build
};

typedef struct dp_cfg_section_spec {
    const char *name;    // canonical
    const char *aliases; // "conv" or "conv|..." or NULL
    unsigned flags;
    const dp_cfg_key_spec *keys; // terminated by a {NULL} entry
} dp_cfg_section_spec;

// Looks up a section by canonical name or alias; NULL if unknown.
const dp_cfg_section_spec *dp_cfg_schema_section(const char *name);

// Looks up a key of a section (including the keys common to all layers); NULL if unknown.
const dp_cfg_key_spec *dp_cfg_schema_key(const dp_cfg_section_spec *sec, const char *key);

// All sections, for "did you mean" and documentation; *count receives their number.
const dp_cfg_section_spec *dp_cfg_schema_sections(int *count);

// The keys common to every layer section (terminated by {NULL}).
const dp_cfg_key_spec *dp_cfg_schema_layer_keys(void);

// The activation names the parser accepts ("linear|relu|..."), for messages and tests.
const char *dp_cfg_schema_activations(void);

#endif
