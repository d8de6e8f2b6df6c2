// Network construction: shapes, parameter counts and FLOPs against Darknet's own numbers for
// its classifier cfgs and against PyTorch's reference nets (../shared/bench/nets.py); shape
// errors naming file:line and the layer; the flat parameter layout.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"
#include "nn/net.h"

static dp_net *build(const char *path, dp_cfg **cfg_out)
{
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_load(&cfg, path), DP_OK, "%s", dp_error_message());
    dp_log_set_level(DP_LOG_LEVEL_ERROR);
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    dp_net *net = NULL;
    cr_assert_eq(dp_net_create(&net, cfg, NULL), DP_OK, "%s", dp_error_message());
    *cfg_out = cfg;
    return net;
}

static void source_path(char *buf, size_t size, const char *rel)
{
    const char *root = getenv("DP_SOURCE_ROOT");
    cr_assert_not_null(root, "DP_SOURCE_ROOT is not set (run through meson test)");
    snprintf(buf, size, "%s/%s", root, rel);
}

// Measured with Darknet itself (pjreddie/darknet f6afaabc, parse_network_cfg): layers, learnable
// parameters (weights + biases + batch-norm scales), forward FLOPs per sample as Darknet counts
// them (2 per multiply-add of convolutional and connected layers). Darknet's final [softmax]
// leaves its w/h/c unset; its net->outputs is 1000, which dptrain reports as 1x1x1000.
static const struct {
    const char *name;
    int layers;
    size_t params;
    double flops;
} darknet[] = {
    {"resnet50", 69, 22780456, 9741172736.0},    {"resnet18", 29, 11515688, 4688158720.0},
    {"darknet19", 26, 20842376, 7290748928.0},   {"darknet53", 78, 41609928, 18570231808.0},
    {"vgg-16", 25, 138357544, 30940528640.0},    {"densenet201", 305, 17173160, 10848043008.0},
    {"resnext50", 69, 22252328, 10110271488.0},  {"alexnet", 14, 62378344, 2270512192.0},
    {"extraction", 27, 23437224, 8518680576.0},  {"tiny", 22, 1042104, 983048192.0},
};

Test(net, darknet_classifier_cfgs_match_darknet_counts_and_shapes)
{
    for (size_t i = 0; i < sizeof darknet / sizeof darknet[0]; i++) {
        char rel[256], path[1024];
        snprintf(rel, sizeof rel, "tests/data/darknet/%s.cfg", darknet[i].name);
        source_path(path, sizeof path, rel);
        dp_cfg *cfg;
        dp_net *net = build(path, &cfg);
        dp_shape out = dp_net_output_shape(net);
        cr_expect_eq(dp_net_layer_count(net), darknet[i].layers, "%s", darknet[i].name);
        cr_expect_eq(dp_net_param_count(net), darknet[i].params, "%s: %zu params",
                     darknet[i].name, dp_net_param_count(net));
        cr_expect_eq(dp_net_flops(net), darknet[i].flops, "%s: %.0f flops", darknet[i].name,
                     dp_net_flops(net));
        cr_expect(out.dims[0] == 1000 && out.dims[1] == 1 && out.dims[2] == 1, "%s",
                  darknet[i].name);
        dp_net_destroy(net);
        dp_cfg_destroy(cfg);
    }
}

Test(net, resnet50_layer_shapes_follow_darknet)
{
    char path[1024];
    source_path(path, sizeof path, "tests/data/darknet/resnet50.cfg");
    dp_cfg *cfg;
    dp_net *net = build(path, &cfg);
    // Darknet: 0 conv 7x7/2 -> 128x128x64; 1 maxpool 2/2 with padding 1 -> 64x64x64;
    // 15 conv 3x3/2 -> 32x32x128; 66 avgpool -> 1x1x2048; 67 conv 1x1 -> 1x1x1000.
    const struct {
        int layer;
        int64_t c, h, w;
    } expect[] = {{0, 64, 128, 128}, {1, 64, 64, 64}, {5, 256, 64, 64}, {15, 128, 32, 32},
                  {55, 512, 8, 8},   {66, 2048, 1, 1}, {67, 1000, 1, 1}};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        const dp_layer *l = dp_net_layer(net, expect[i].layer);
        cr_expect(l->out_shape.dims[0] == expect[i].c && l->out_shape.dims[1] == expect[i].h &&
                      l->out_shape.dims[2] == expect[i].w,
                  "layer %d: %lldx%lldx%lld", expect[i].layer, (long long)l->out_shape.dims[1],
                  (long long)l->out_shape.dims[2], (long long)l->out_shape.dims[0]);
    }
    dp_net_destroy(net);
    dp_cfg_destroy(cfg);
}

Test(net, shipped_configs_match_pytorch_reference_nets)
{
    // ../shared/bench/nets.py: parameters and forward FLOPs (2 x MACs) per image.
    const struct {
        const char *cfg;
        size_t params;
        double flops;
    } ref[] = {{"configs/fmnist-resnet20.cfg", 272186, 62043904.0},
               {"configs/cifar-resnet20.cfg", 272474, 81626368.0},
               {"configs/fmnist-cnn.cfg", 3274634, 27767808.0}};
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        char path[1024];
        source_path(path, sizeof path, ref[i].cfg);
        dp_cfg *cfg;
        dp_net *net = build(path, &cfg);
        cr_expect_eq(dp_net_param_count(net), ref[i].params, "%s: %zu", ref[i].cfg,
                     dp_net_param_count(net));
        cr_expect_eq(dp_net_flops(net), ref[i].flops, "%s: %.0f", ref[i].cfg, dp_net_flops(net));
        dp_net_destroy(net);
        dp_cfg_destroy(cfg);
    }
}

static void expect_build_error(const char *text, dp_status want, const char *frag1,
                               const char *frag2)
{
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_parse(&cfg, text, strlen(text), "t.cfg"), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    dp_net *net = NULL;
    dp_status st = dp_net_create(&net, cfg, NULL);
    cr_expect_eq(st, want, "got %s: %s", dp_status_name(st), dp_error_message());
    cr_expect_null(net);
    cr_expect_not_null(strstr(dp_error_message(), frag1), "'%s' not in '%s'", frag1,
                       dp_error_message());
    if (frag2 != NULL) {
        cr_expect_not_null(strstr(dp_error_message(), frag2), "'%s' not in '%s'", frag2,
                           dp_error_message());
    }
    dp_cfg_destroy(cfg);
}

#define NET "[net]\nheight=28\nwidth=28\nchannels=3\n"

Test(net, shape_mismatches_name_file_line_and_layer)
{
    expect_build_error(NET "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\n"
                           "[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n",
                       DP_ERR_SHAPE, "t.cfg:13 [layer 2 route]: expected layer 0 to be 14x14",
                       "got 28x28x8");
    expect_build_error(NET "[convolutional]\nfilters=8\ngroups=2\n", DP_ERR_SHAPE,
                       "t.cfg:5 [layer 0 convolutional]",
                       "groups=2 must divide the input channels (3)");
    expect_build_error(NET "[convolutional]\nfilters=8\nsize=31\n", DP_ERR_SHAPE,
                       "t.cfg:5 [layer 0 convolutional]: expected an input of at least 31x31",
                       "got 28x28");
    expect_build_error(NET "[maxpool]\nsize=2\nstride=2\n[crop]\ncrop_height=20\ncrop_width=20\n",
                       DP_ERR_SHAPE, "t.cfg:8 [layer 1 crop]: expected an input of at least 20x20",
                       "got 14x14x3");
}

Test(net, bad_references_and_unsupported_layers_name_the_section)
{
    expect_build_error(NET "[convolutional]\nfilters=8\n[shortcut]\nfrom=-5\n", DP_ERR_CFG,
                       "t.cfg:7 [layer 1 shortcut]: refers to layer -4", NULL);
    expect_build_error(NET "[convolutional]\nfilters=8\n[route]\nlayers=3\n", DP_ERR_CFG,
                       "t.cfg:7 [layer 1 route]: refers to layer 3", NULL);
    expect_build_error(NET "[convolutional]\nfilters=8\n[yolo]\nclasses=80\n", DP_ERR_CFG,
                       "t.cfg:7 [layer 1 yolo]: layer type [yolo] is not supported", NULL);
    expect_build_error(NET "[convolutional]\nfilters=8\n[softmax]\ngroups=2\n", DP_ERR_UNSUPPORTED,
                       "t.cfg:7 [layer 1 softmax]: groups=2", NULL);
    expect_build_error(NET "[convolutional]\nfilters=8\n[cost]\n", DP_ERR_UNSUPPORTED,
                       "t.cfg:7 [layer 1 cost]", "only right after [softmax]");
    expect_build_error(NET "[train]\nepochs=1\n", DP_ERR_CFG, "t.cfg: no layers", NULL);
}

Test(net, flat_parameters_are_contiguous_last_layer_first)
{
    char path[1024];
    source_path(path, sizeof path, "configs/fmnist-resnet20.cfg");
    dp_cfg *cfg;
    dp_net *net = build(path, &cfg);
    size_t expect_offset = 0;
    for (int i = dp_net_layer_count(net) - 1; i >= 0; i--) {
        const dp_layer *l = dp_net_layer(net, i);
        for (int p = 0; p < l->n_params; p++) {
            cr_expect_eq(l->params[p].offset, expect_offset, "layer %d param %d", i, p);
            expect_offset += (size_t)dp_shape_count(&l->params[p].spec.shape);
        }
    }
    cr_expect_eq(expect_offset, dp_net_param_count(net));
    const dp_layer *last = dp_net_layer(net, dp_net_layer_count(net) - 2); // connected 64 -> 10
    cr_expect_eq(last->params[0].offset, 0, "the last layer with parameters comes first");
    cr_expect_str_eq(last->params[0].spec.name, "weights");
    dp_net_destroy(net);
    dp_cfg_destroy(cfg);
}

Test(net, summary_ends_with_the_check_line)
{
    char path[1024];
    source_path(path, sizeof path, "configs/fmnist-cnn.cfg");
    dp_cfg *cfg;
    dp_net *net = build(path, &cfg);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    cr_assert_eq(dp_net_print_summary(net, f), DP_OK);
    cr_assert_eq(fclose(f), 0);
    const char *want = "check: layers=8 params=3274634 output=1x1x10 flops=27767808\n";
    cr_assert_geq(len, strlen(want));
    cr_expect_str_eq(buf + len - strlen(want), want, "%s", buf);
    free(buf);
    dp_net_destroy(net);
    dp_cfg_destroy(cfg);
}
