// cfg parser: syntax, every error path (status + file:line + key in the message), CRLF,
// --set overrides, getters, the one warning for ignored keys, a real Darknet classifier cfg.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"

static dp_cfg *parse_ok(const char *text)
{
    dp_cfg *cfg = NULL;
    dp_status st = dp_cfg_parse(&cfg, text, strlen(text), "t.cfg");
    cr_assert_eq(st, DP_OK, "parse failed: %s", dp_error_message());
    return cfg;
}

// Parses and validates text; expects DP_ERR_CFG and a message containing every fragment.
static void expect_cfg_error(const char *text, const char *frag1, const char *frag2)
{
    dp_cfg *cfg = NULL;
    dp_status st = dp_cfg_parse(&cfg, text, strlen(text), "t.cfg");
    if (st == DP_OK) {
        st = dp_cfg_validate(cfg);
    }
    cr_expect_eq(st, DP_ERR_CFG, "status %s for:\n%s", dp_status_name(st), text);
    cr_expect_not_null(strstr(dp_error_message(), frag1), "'%s' not in '%s'", frag1,
                       dp_error_message());
    if (frag2 != NULL) {
        cr_expect_not_null(strstr(dp_error_message(), frag2), "'%s' not in '%s'", frag2,
                           dp_error_message());
    }
    dp_cfg_destroy(cfg);
}

#define NET "[net]\nheight=28\nwidth=28\nchannels=1\n"

Test(cfg, sections_keys_comments_and_spaces)
{
    dp_cfg *cfg = parse_ok("# a comment\n; another\n\n[net]\n batch = 64 \nheight=28 # inline\n"
                           "width=28\nchannels=1\n\n[convolutional]\nfilters=16\n"
                           "[convolutional]\nfilters=32\n[conv]\nfilters=8\n");
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    cr_expect_eq(dp_cfg_section_count(cfg), 4);
    const dp_cfg_section *net = dp_cfg_section_at(cfg, 0);
    long batch, h;
    cr_assert_eq(dp_cfg_get_int(net, "batch", 1, &batch), DP_OK);
    cr_assert_eq(dp_cfg_get_int(net, "height", 1, &h), DP_OK);
    cr_expect_eq(batch, 64);
    cr_expect_eq(h, 28);
    long f[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(dp_cfg_get_int(dp_cfg_section_at(cfg, i + 1), "filters", 1, &f[i]), DP_OK);
    }
    cr_expect(f[0] == 16 && f[1] == 32 && f[2] == 8, "repeated sections keep file order");
    cr_expect_str_eq(dp_cfg_section_name(dp_cfg_section_at(cfg, 3)), "convolutional");
    cr_expect_str_eq(dp_cfg_section_header(dp_cfg_section_at(cfg, 3)), "conv");
    cr_expect_eq(dp_cfg_section_line(dp_cfg_section_at(cfg, 1)), 10);
    char where[64];
    cr_expect_str_eq(dp_cfg_where(net, "height", where, sizeof where), "t.cfg:6");
    dp_cfg_destroy(cfg);
}

Test(cfg, crlf_file_parses_like_lf)
{
    const char *path = "cfg_crlf_test.cfg";
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs("[net]\r\nheight=32\r\nwidth=32\r\nchannels=3\r\n\r\n[maxpool]\r\nsize=2\r\n", f);
    cr_assert_eq(fclose(f), 0);
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_load(&cfg, path), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    long size, w;
    cr_assert_eq(dp_cfg_get_int(dp_cfg_section_at(cfg, 1), "size", 0, &size), DP_OK);
    cr_assert_eq(dp_cfg_get_int(dp_cfg_section_at(cfg, 0), "width", 0, &w), DP_OK);
    cr_expect_eq(size, 2);
    cr_expect_eq(w, 32);
    dp_cfg_destroy(cfg);
    remove(path);
}

Test(cfg, unknown_section_names_line_and_suggests)
{
    expect_cfg_error(NET "\n[convolutionl]\nfilters=3\n", "t.cfg:6: [convolutionl]",
                     "did you mean [convolutional]");
}

Test(cfg, unknown_key_names_line_and_suggests)
{
    expect_cfg_error(NET "[convolutional]\nfliters=3\n", "t.cfg:6: [convolutional] fliters",
                     "did you mean 'filters'");
    expect_cfg_error(NET "[maxpool]\nwobble=3\n", "t.cfg:6: [maxpool] wobble", "unknown key");
}

Test(cfg, malformed_number_names_line_and_key)
{
    expect_cfg_error(NET "[convolutional]\nfilters=3x\n", "t.cfg:6: [convolutional] filters",
                     "expected an integer, got '3x'");
    expect_cfg_error("[net]\nheight=28\nwidth=28\nchannels=1\nlearning_rate=0.1.2\n",
                     "t.cfg:5: [net] learning_rate", "expected a finite number");
    expect_cfg_error("[net]\nheight=28\nwidth=28\nchannels=1\nmomentum=nan\n",
                     "t.cfg:5: [net] momentum", "finite");
    expect_cfg_error(NET "[convolutional]\nfilters=99999999999999999999999\n",
                     "t.cfg:6: [convolutional] filters", "expected an integer");
}

Test(cfg, value_out_of_range_names_line_key_and_range)
{
    expect_cfg_error(NET "[convolutional]\nfilters=0\n", "t.cfg:6: [convolutional] filters",
                     "out of range [1,");
    expect_cfg_error(NET "[dropout]\nprobability=1.5\n", "t.cfg:6: [dropout] probability",
                     "out of range");
    expect_cfg_error(NET "[convolutional]\nbatch_normalize=2\n",
                     "t.cfg:6: [convolutional] batch_normalize", "expected 0 or 1");
}

Test(cfg, missing_required_key_names_section_line)
{
    expect_cfg_error(NET "[convolutional]\nfilters=3\n\n[route]\n", "t.cfg:8: [route] layers",
                     "missing required key");
    expect_cfg_error("[net]\nheight=28\nwidth=28\n", "t.cfg:1: [net] channels",
                     "missing required key");
}

Test(cfg, duplicate_key_names_both_lines)
{
    expect_cfg_error(NET "[convolutional]\nfilters=3\nsize=3\nfilters=4\n",
                     "t.cfg:8: [convolutional] filters", "duplicate key (first set at line 6)");
}

Test(cfg, syntax_errors_name_the_line)
{
    expect_cfg_error(NET "[convolutional]\nfilters 3\n", "t.cfg:6:", "expected 'key=value'");
    expect_cfg_error("batch=1\n[net]\n", "t.cfg:1: batch", "before the first [section]");
    expect_cfg_error(NET "[convolutional\n", "t.cfg:5:", "does not end with ']'");
    expect_cfg_error(NET "[convolutional]\nfilters=\n", "t.cfg:6: [convolutional] filters",
                     "empty value");
    expect_cfg_error(NET "[convolutional]\nfil ters=3\n", "t.cfg:6:", "not a valid key name");
    expect_cfg_error(NET "[route]\nlayers=-1,,-3\n", "t.cfg:6: [route] layers",
                     "item 2 of '-1,,-3' is empty");
    expect_cfg_error(NET "[route]\nlayers=-1,x\n", "t.cfg:6: [route] layers", "got 'x'");
}

Test(cfg, structure_errors)
{
    expect_cfg_error("[convolutional]\nfilters=3\n[net]\n", "t.cfg:1: [convolutional]",
                     "first section must be [net]");
    expect_cfg_error("# nothing\n", "t.cfg: no sections", NULL);
    expect_cfg_error(NET "[train]\nepochs=1\n[train]\nepochs=2\n", "t.cfg:7: [train]",
                     "repeated section (first at line 5)");
}

Test(cfg, unknown_enum_value_suggests)
{
    expect_cfg_error(NET "[convolutional]\nactivation=reul\n",
                     "t.cfg:6: [convolutional] activation", "did you mean 'relu'");
    expect_cfg_error(NET "[train]\noptimizer=lion\n", "t.cfg:6: [train] optimizer",
                     "expected one of: sgd|adam|adamw");
}

Test(cfg, nul_byte_is_rejected)
{
    const char text[] = "[net]\nheight=1\0\n";
    dp_cfg *cfg = NULL;
    cr_expect_eq(dp_cfg_parse(&cfg, text, sizeof text - 1, "bin.cfg"), DP_ERR_CFG);
    cr_expect_not_null(strstr(dp_error_message(), "bin.cfg"));
    cr_expect_null(cfg);
}

Test(cfg, missing_file_is_io_error_naming_path)
{
    dp_cfg *cfg = NULL;
    cr_expect_eq(dp_cfg_load(&cfg, "/nonexistent/x.cfg"), DP_ERR_IO);
    cr_expect_not_null(strstr(dp_error_message(), "/nonexistent/x.cfg"), "%s",
                       dp_error_message());
}

Test(cfg, set_overrides_adds_and_reports_command_line)
{
    dp_cfg *cfg = parse_ok(NET "learning_rate=0.1\n[convolutional]\nfilters=3\n"
                               "[convolutional]\nfilters=5\n");
    cr_assert_eq(dp_cfg_set(cfg, "net.learning_rate=0.05"), DP_OK);
    cr_assert_eq(dp_cfg_set(cfg, "conv.size=3"), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_cfg_set(cfg, "train.epochs=1"), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    const dp_cfg_section *net = dp_cfg_find(cfg, "net");
    double lr;
    cr_assert_eq(dp_cfg_get_float(net, "learning_rate", 0, &lr), DP_OK);
    cr_expect_float_eq(lr, 0.05, 1e-12);
    char where[128];
    cr_expect_str_eq(dp_cfg_where(net, "learning_rate", where, sizeof where),
                     "--set net.learning_rate=0.05");
    long size0, size1 = -1, epochs;
    cr_assert_eq(dp_cfg_get_int(dp_cfg_section_at(cfg, 1), "size", 1, &size0), DP_OK);
    cr_assert_eq(dp_cfg_get_int(dp_cfg_section_at(cfg, 2), "size", -1, &size1), DP_OK);
    cr_expect_eq(size0, 3, "first section of that name gets the key");
    cr_expect_eq(size1, -1, "later sections are untouched");
    cr_assert_eq(dp_cfg_get_int(dp_cfg_find(cfg, "train"), "epochs", 0, &epochs), DP_OK);
    cr_expect_eq(epochs, 1);
    dp_cfg_destroy(cfg);
}

Test(cfg, set_errors)
{
    dp_cfg *cfg = parse_ok(NET);
    cr_expect_eq(dp_cfg_set(cfg, "netbatch=3"), DP_ERR_CFG);
    cr_expect_not_null(strstr(dp_error_message(), "section.key=value"));
    cr_expect_eq(dp_cfg_set(cfg, "wibble.batch=3"), DP_ERR_CFG);
    cr_expect_not_null(strstr(dp_error_message(), "unknown section [wibble]"));
    cr_expect_eq(dp_cfg_set(cfg, "net.batch="), DP_ERR_CFG);
    cr_assert_eq(dp_cfg_set(cfg, "net.batch=abc"), DP_OK);
    cr_expect_eq(dp_cfg_validate(cfg), DP_ERR_CFG);
    cr_expect_not_null(strstr(dp_error_message(), "--set net.batch=abc: [net] batch: expected an "
                                                  "integer"),
                       "%s", dp_error_message());
    dp_cfg_destroy(cfg);
}

Test(cfg, getters_types_defaults_and_lists)
{
    dp_cfg *cfg = parse_ok(NET "policy=steps\nsteps=100, 200,300\nscales=.1,.1,.5\nadam=true\n"
                               "[route]\nlayers=-1,-4\n");
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    const dp_cfg_section *net = dp_cfg_find(cfg, "net");
    long steps[8];
    double scales[8];
    int n = 0, adam = 0;
    cr_assert_eq(dp_cfg_get_int_list(net, "steps", steps, 8, &n), DP_OK);
    cr_expect(n == 3 && steps[0] == 100 && steps[2] == 300);
    cr_assert_eq(dp_cfg_get_float_list(net, "scales", scales, 8, &n), DP_OK);
    cr_expect(n == 3 && scales[2] == 0.5);
    cr_assert_eq(dp_cfg_get_int_list(net, "steps", steps, 2, &n), DP_ERR_CFG);
    cr_expect_not_null(strstr(dp_error_message(), "more than 2 items"));
    cr_assert_eq(dp_cfg_get_bool(net, "adam", 0, &adam), DP_OK);
    cr_expect_eq(adam, 1);
    const char *policy;
    cr_assert_eq(dp_cfg_get_str(net, "policy", "constant", &policy), DP_OK);
    cr_expect_str_eq(policy, "steps");
    double momentum;
    cr_assert_eq(dp_cfg_get_float(net, "momentum", 0.9, &momentum), DP_OK);
    cr_expect_eq(momentum, 0.9);
    long layers[4];
    cr_assert_eq(dp_cfg_get_int_list(dp_cfg_find(cfg, "route"), "layers", layers, 4, &n), DP_OK);
    cr_expect(n == 2 && layers[0] == -1 && layers[1] == -4);
    long missing;
    cr_expect_eq(dp_cfg_require_int(net, "burn_in", &missing), DP_ERR_CFG);
    cr_expect_not_null(strstr(dp_error_message(), "t.cfg:1: [net] burn_in: missing required"));
    dp_cfg_destroy(cfg);
}

static int n_warnings;
static char warning[4096];

static void count_warnings(dp_log_level level, const char *line, void *ctx)
{
    (void)ctx;
    if (level == DP_LOG_LEVEL_WARN) {
        n_warnings++;
        snprintf(warning, sizeof warning, "%s", line);
    }
}

Test(cfg, real_darknet_classifier_cfg_parses_with_one_warning_for_ignored_keys)
{
    const char *root = getenv("DP_SOURCE_ROOT");
    cr_assert_not_null(root, "DP_SOURCE_ROOT is not set (run through meson test)");
    const char *names[] = {"resnet50", "darknet19", "vgg-16", "densenet201", "resnext50",
                           "darknet53", "alexnet", "resnet18", "extraction", "tiny"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/data/darknet/%s.cfg", root, names[i]);
        dp_cfg *cfg = NULL;
        n_warnings = 0;
        dp_log_set_sink(count_warnings, NULL);
        cr_assert_eq(dp_cfg_load(&cfg, path), DP_OK, "%s", dp_error_message());
        dp_status st = dp_cfg_validate(cfg);
        dp_log_set_sink(NULL, NULL);
        cr_assert_eq(st, DP_OK, "%s: %s", names[i], dp_error_message());
        cr_expect_leq(n_warnings, 1, "%s: ignored keys reported in one warning", names[i]);
        char ignored[4096];
        int n_ignored = dp_cfg_ignored_keys(cfg, ignored, sizeof ignored);
        cr_expect_eq(n_warnings, n_ignored > 0, "%s", names[i]);
        if (strcmp(names[i], "resnet50") == 0) {
            cr_expect_eq(dp_cfg_section_count(cfg), 70);
            cr_expect_eq(n_ignored, 7, "%s", ignored);
            cr_expect_not_null(strstr(warning, "[net] max_crop (line 14)"), "%s", warning);
            cr_expect_not_null(strstr(warning, "[net] hue"), "%s", warning);
        }
        dp_cfg_destroy(cfg);
    }
}

Test(cfg, write_round_trips_with_overrides)
{
    dp_cfg *cfg = parse_ok(NET "[convolutional]\nfilters=16\nactivation=leaky\n");
    cr_assert_eq(dp_cfg_set(cfg, "conv.filters=8"), DP_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(dp_cfg_write(cfg, f), DP_OK);
    cr_assert_eq(fclose(f), 0);
    cr_expect_not_null(strstr(buf, "filters=8  # --set conv.filters=8"), "%s", buf);
    dp_cfg *again = NULL;
    cr_assert_eq(dp_cfg_parse(&again, buf, len, "resolved.cfg"), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_cfg_validate(again), DP_OK, "%s", dp_error_message());
    long filters;
    const char *act;
    cr_assert_eq(dp_cfg_get_int(dp_cfg_section_at(again, 1), "filters", 0, &filters), DP_OK);
    cr_assert_eq(dp_cfg_get_str(dp_cfg_section_at(again, 1), "activation", "", &act), DP_OK);
    cr_expect_eq(filters, 8);
    cr_expect_str_eq(act, "leaky");
    free(buf);
    dp_cfg_destroy(cfg);
    dp_cfg_destroy(again);
}
