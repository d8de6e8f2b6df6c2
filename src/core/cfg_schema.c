// The section and key tables of the cfg. Darknet's sections and keys come from its parser
// (parse_net_options, parse_convolutional, ...); keys it reads that dptrain does not act on are
// IGNORED. Sections for layers dptrain does not build (detection, recurrent) accept any key;
// building the network reports them as unsupported with their file:line.
#include "core/cfg_schema.h"

#include <string.h>

#define BIG 1e9
#define NOLIMIT 1e300

#define ACTIVATIONS                                                                                \
    "linear|relu|leaky|logistic|tanh|elu|selu|relie|ramp|plse|hardtan|lhtan|stair|loggy|prelu|"    \
    "swish|mish|gelu|relu6|hard_mish|normalize_channels|normalize_channels_softmax|"               \
    "normalize_channels_softmax_maxval"

#define INITS "default|pytorch|kaiming_normal|kaiming_uniform|xavier_normal|xavier_uniform|lecun_normal"

// Keys Darknet reads for every layer section (parse_network_cfg).
static const dp_cfg_key_spec layer_keys[] = {
    {"truth", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"onlyforward", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"stopbackward", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"dontsave", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"dontload", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"numload", DP_CFG_INT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"dontloadscales", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"learning_rate", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"smooth", DP_CFG_FLOAT, 0, 1, DP_CFG_IGNORED, NULL},
    {"name", DP_CFG_STR, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec net_keys[] = {
    {"batch", DP_CFG_INT, 1, 1 << 20, 0, NULL},
    {"subdivisions", DP_CFG_INT, 1, 1 << 16, 0, NULL},
    {"height", DP_CFG_INT, 1, 1 << 16, DP_CFG_REQUIRED, NULL},
    {"width", DP_CFG_INT, 1, 1 << 16, DP_CFG_REQUIRED, NULL},
    {"channels", DP_CFG_INT, 1, 1 << 16, DP_CFG_REQUIRED, NULL},
    {"learning_rate", DP_CFG_FLOAT, 0, 1e3, 0, NULL},
    {"momentum", DP_CFG_FLOAT, 0, 1, 0, NULL},
    {"decay", DP_CFG_FLOAT, 0, 1, 0, NULL},
    {"policy", DP_CFG_ENUM, 0, 0, 0, "constant|step|steps|exp|poly|sigmoid|cosine|random|sgdr"},
    {"step", DP_CFG_INT, 1, BIG, 0, NULL},
    {"scale", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"steps", DP_CFG_INT_LIST, -1, BIG, 0, NULL},
    {"scales", DP_CFG_FLOAT_LIST, 0, BIG, 0, NULL},
    {"gamma", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"power", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"burn_in", DP_CFG_INT, 0, BIG, 0, NULL},
    {"max_batches", DP_CFG_INT, 0, BIG, 0, NULL},
    {"adam", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"B1", DP_CFG_FLOAT, 0, 1, 0, NULL},
    {"B2", DP_CFG_FLOAT, 0, 1, 0, NULL},
    {"eps", DP_CFG_FLOAT, 0, 1, 0, NULL},
    // Darknet reads these for detection, RNNs and its own augmentation; dptrain does not.
    {"inputs", DP_CFG_INT, 1, BIG, DP_CFG_IGNORED, NULL},
    {"time_steps", DP_CFG_INT, 1, BIG, DP_CFG_IGNORED, NULL},
    {"notruth", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"random", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"max_crop", DP_CFG_INT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"min_crop", DP_CFG_INT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"max_ratio", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"min_ratio", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"center", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"clip", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"angle", DP_CFG_FLOAT, -360, 360, DP_CFG_IGNORED, NULL},
    {"aspect", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"saturation", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"exposure", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"hue", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"flip", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"mosaic", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"cutmix", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"mixup", DP_CFG_INT, 0, 4, DP_CFG_IGNORED, NULL},
    {"blur", DP_CFG_INT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"gaussian_noise", DP_CFG_INT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"letter_box", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"label_smooth_eps", DP_CFG_FLOAT, 0, 1, DP_CFG_IGNORED, NULL},
    {"cudnn_half", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"loss_scale", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"optimized_memory", DP_CFG_INT, 0, 3, DP_CFG_IGNORED, NULL},
    {"workspace_size_limit_MB", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"sgdr_cycle", DP_CFG_INT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"sgdr_mult", DP_CFG_INT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"seq_scales", DP_CFG_FLOAT_LIST, 0, BIG, DP_CFG_IGNORED, NULL},
    {"batches_per_cycle", DP_CFG_INT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"try_fix_nan", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"adversarial_lr", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"max_chart_loss", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"show_receptive_field", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec conv_keys[] = {
    {"filters", DP_CFG_INT, 1, 1 << 20, 0, NULL},
    {"size", DP_CFG_INT, 1, 1024, 0, NULL},
    {"stride", DP_CFG_INT, 1, 1024, 0, NULL},
    {"pad", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"padding", DP_CFG_INT, 0, 1024, 0, NULL},
    {"groups", DP_CFG_INT, 1, 1 << 20, 0, NULL},
    {"dilation", DP_CFG_INT, 1, 1024, 0, NULL},
    {"batch_normalize", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"activation", DP_CFG_ENUM, 0, 0, 0, ACTIVATIONS},
    {"slope", DP_CFG_FLOAT, -BIG, BIG, 0, NULL},
    {"bias", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"init", DP_CFG_ENUM, 0, 0, 0, INITS},
    {"binary", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"xnor", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"flipped", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"dot", DP_CFG_FLOAT, -BIG, BIG, DP_CFG_IGNORED, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec deconv_keys[] = {
    {"filters", DP_CFG_INT, 1, 1 << 20, 0, NULL},
    {"size", DP_CFG_INT, 1, 1024, 0, NULL},
    {"stride", DP_CFG_INT, 1, 1024, 0, NULL},
    {"pad", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"padding", DP_CFG_INT, 0, 1024, 0, NULL},
    {"batch_normalize", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"activation", DP_CFG_ENUM, 0, 0, 0, ACTIVATIONS},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec local_keys[] = {
    {"filters", DP_CFG_INT, 1, 1 << 20, 0, NULL},
    {"size", DP_CFG_INT, 1, 1024, 0, NULL},
    {"stride", DP_CFG_INT, 1, 1024, 0, NULL},
    {"pad", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"activation", DP_CFG_ENUM, 0, 0, 0, ACTIVATIONS},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec connected_keys[] = {
    {"output", DP_CFG_INT, 1, 1 << 24, 0, NULL},
    {"activation", DP_CFG_ENUM, 0, 0, 0, ACTIVATIONS},
    {"slope", DP_CFG_FLOAT, -BIG, BIG, 0, NULL},
    {"batch_normalize", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"bias", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"init", DP_CFG_ENUM, 0, 0, 0, INITS},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec maxpool_keys[] = {
    {"size", DP_CFG_INT, 1, 1024, 0, NULL},
    {"stride", DP_CFG_INT, 1, 1024, 0, NULL},
    {"padding", DP_CFG_INT, 0, 1024, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

// Darknet's [avgpool] is global; with size (and stride, padding) it is a local average pool.
static const dp_cfg_key_spec avgpool_keys[] = {
    {"size", DP_CFG_INT, 1, 1024, 0, NULL},
    {"stride", DP_CFG_INT, 1, 1024, 0, NULL},
    {"padding", DP_CFG_INT, 0, 1024, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec dropout_keys[] = {
    {"probability", DP_CFG_FLOAT, 0, 0.999999, 0, NULL},
    {"alpha", DP_CFG_BOOL, 0, 1, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec softmax_keys[] = {
    {"groups", DP_CFG_INT, 1, 1 << 20, 0, NULL},
    {"temperature", DP_CFG_FLOAT, 1e-6, BIG, 0, NULL},
    {"label_smoothing", DP_CFG_FLOAT, 0, 0.999999, 0, NULL},
    {"tree", DP_CFG_STR, 0, 0, DP_CFG_IGNORED, NULL},
    {"spatial", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"noloss", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec cost_keys[] = {
    {"type", DP_CFG_ENUM, 0, 0, 0, "sse|masked|smooth|L1|seg|wgan"},
    {"scale", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"ratio", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"noobj", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"thresh", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec crop_keys[] = {
    {"crop_height", DP_CFG_INT, 1, 1 << 16, 0, NULL},
    {"crop_width", DP_CFG_INT, 1, 1 << 16, 0, NULL},
    {"flip", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"angle", DP_CFG_FLOAT, -360, 360, DP_CFG_IGNORED, NULL},
    {"saturation", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"exposure", DP_CFG_FLOAT, 0, BIG, DP_CFG_IGNORED, NULL},
    {"shift", DP_CFG_FLOAT, -BIG, BIG, DP_CFG_IGNORED, NULL},
    {"noadjust", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec shortcut_keys[] = {
    {"from", DP_CFG_INT_LIST, -BIG, BIG, DP_CFG_REQUIRED, NULL},
    {"activation", DP_CFG_ENUM, 0, 0, 0, ACTIVATIONS},
    {"slope", DP_CFG_FLOAT, -BIG, BIG, 0, NULL},
    {"alpha", DP_CFG_FLOAT, -BIG, BIG, 0, NULL},
    {"beta", DP_CFG_FLOAT, -BIG, BIG, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec route_keys[] = {
    {"layers", DP_CFG_INT_LIST, -BIG, BIG, DP_CFG_REQUIRED, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec activation_keys[] = {
    {"activation", DP_CFG_ENUM, 0, 0, 0, ACTIVATIONS},
    {"slope", DP_CFG_FLOAT, -BIG, BIG, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec normalization_keys[] = {
    {"alpha", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"beta", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"kappa", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"size", DP_CFG_INT, 1, 1024, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec upsample_keys[] = {
    {"stride", DP_CFG_INT, -64, 64, 0, NULL},
    {"scale", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec reorg_keys[] = {
    {"stride", DP_CFG_INT, 1, 64, 0, NULL},
    {"reverse", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"flatten", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"extra", DP_CFG_INT, 0, BIG, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec no_keys[] = {
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_key_spec data_keys[] = {
    {"source", DP_CFG_ENUM, 0, 0, 0, "hdf5|synthetic"},
    {"train", DP_CFG_STR, 0, 0, 0, NULL},
    {"test", DP_CFG_STR, 0, 0, 0, NULL},
    {"classes", DP_CFG_INT, 1, 1 << 20, 0, NULL},
    {"samples", DP_CFG_INT, 1, BIG, 0, NULL},
    {"test_samples", DP_CFG_INT, 1, BIG, 0, NULL},
    {"workers", DP_CFG_INT, 0, 64, 0, NULL},
    {"prefetch", DP_CFG_INT, 1, 64, 0, NULL},
    {"crop_pad", DP_CFG_INT, 0, 1024, 0, NULL},
    {"flip", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"cutout", DP_CFG_INT, 0, 4096, 0, NULL},
    {"mixup", DP_CFG_FLOAT, 0, 100, 0, NULL},
    {"cutmix", DP_CFG_FLOAT, 0, 100, 0, NULL},
    {"mix_prob", DP_CFG_FLOAT, 0, 1, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

// Keys marked IGNORED here belong to parts not built yet (data parallelism, the CUDA backend):
// they parse and validate, and a cfg that sets them is told once that they are not acted on.
static const dp_cfg_key_spec train_keys[] = {
    {"epochs", DP_CFG_INT, 1, BIG, 0, NULL},
    {"optimizer", DP_CFG_ENUM, 0, 0, 0, "sgd|adam|adamw|adagrad|adadelta|rmsprop|nadam"},
    {"nesterov", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"schedule", DP_CFG_ENUM, 0, 0, 0,
     "darknet|constant|step|steps|exp|poly|sigmoid|cosine|one_cycle"},
    {"warmup_epochs", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"min_lr", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"label_smoothing", DP_CFG_FLOAT, 0, 0.999999, 0, NULL},
    {"weight_decay_norm", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"init", DP_CFG_ENUM, 0, 0, 0, INITS},
    {"eval_every", DP_CFG_INT, 0, BIG, 0, NULL},
    {"log_every", DP_CFG_INT, 1, BIG, 0, NULL},
    {"checkpoint_every", DP_CFG_INT, 0, BIG, 0, NULL},
    {"keep_checkpoints", DP_CFG_INT, 1, 1000, 0, NULL},
    {"patience", DP_CFG_INT, 0, BIG, 0, NULL},
    {"monitor", DP_CFG_ENUM, 0, 0, 0, "test_top1|test_loss"},
    {"min_delta", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"seed", DP_CFG_INT, 0, 9007199254740992.0, 0, NULL},
    {"threads", DP_CFG_INT, 0, 1024, 0, NULL},
    {"backend", DP_CFG_ENUM, 0, 0, 0, "auto|cpu|cuda"},
    {"precision", DP_CFG_ENUM, 0, 0, 0, "auto|fp32|tf32|bf16|fp16"},
    {"deterministic", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"micro_batch", DP_CFG_INT, 1, 1 << 20, 0, NULL},
    {"bucket_mb", DP_CFG_FLOAT, 0.001, 4096, 0, NULL},
    {"comm", DP_CFG_ENUM, 0, 0, 0, "auto|mpi|nccl"},
    {"collective_timeout", DP_CFG_FLOAT, 0.1, 1e7, 0, NULL},
    {"replica_check_every", DP_CFG_INT, 0, BIG, 0, NULL},
    {"cuda_graph", DP_CFG_BOOL, 0, 1, DP_CFG_IGNORED, NULL},
    {"dampening", DP_CFG_FLOAT, 0, 1, 0, NULL},
    {"amsgrad", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"weight_decay_mode", DP_CFG_ENUM, 0, 0, 0, "l2|decoupled"},
    {"rho", DP_CFG_FLOAT, 0, 1, 0, NULL},
    {"alpha", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"centered", DP_CFG_BOOL, 0, 1, 0, NULL},
    {"lr_decay", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"momentum_decay", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"clip_grad_norm", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"max_norm", DP_CFG_FLOAT, 0, BIG, 0, NULL},
    {"one_cycle_pct", DP_CFG_FLOAT, 0, 1, 0, NULL},
    {"one_cycle_div", DP_CFG_FLOAT, 1, BIG, 0, NULL},
    {"one_cycle_final_div", DP_CFG_FLOAT, 1, BIG, 0, NULL},
    {"lr_scaling_reference_batch", DP_CFG_INT, 0, BIG, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const dp_cfg_section_spec sections[] = {
    {"net", "network", 0, net_keys},
    {"convolutional", "conv", DP_CFG_SECTION_LAYER, conv_keys},
    {"connected", "conn", DP_CFG_SECTION_LAYER, connected_keys},
    {"maxpool", "max", DP_CFG_SECTION_LAYER, maxpool_keys},
    {"avgpool", "avg", DP_CFG_SECTION_LAYER, avgpool_keys},
    {"dropout", NULL, DP_CFG_SECTION_LAYER, dropout_keys},
    {"softmax", "soft", DP_CFG_SECTION_LAYER, softmax_keys},
    {"cost", NULL, DP_CFG_SECTION_LAYER, cost_keys},
    {"crop", NULL, DP_CFG_SECTION_LAYER, crop_keys},
    {"shortcut", NULL, DP_CFG_SECTION_LAYER, shortcut_keys},
    {"route", NULL, DP_CFG_SECTION_LAYER, route_keys},
    {"batchnorm", NULL, DP_CFG_SECTION_LAYER, no_keys},
    {"activation", NULL, DP_CFG_SECTION_LAYER, activation_keys},
    {"flatten", NULL, DP_CFG_SECTION_LAYER, no_keys},
    {"normalization", "lrn", DP_CFG_SECTION_LAYER, normalization_keys},
    {"deconvolutional", "deconv", DP_CFG_SECTION_LAYER, deconv_keys},
    {"local", NULL, DP_CFG_SECTION_LAYER, local_keys},
    {"upsample", NULL, DP_CFG_SECTION_LAYER, upsample_keys},
    {"reorg", NULL, DP_CFG_SECTION_LAYER, reorg_keys},
    {"l2norm", NULL, DP_CFG_SECTION_LAYER, no_keys},
    {"logistic", NULL, DP_CFG_SECTION_LAYER, no_keys},
    {"yolo", NULL, DP_CFG_SECTION_LAYER | DP_CFG_SECTION_ANY_KEYS | DP_CFG_SECTION_UNSUPPORTED,
     no_keys},
    {"region", NULL, DP_CFG_SECTION_LAYER | DP_CFG_SECTION_ANY_KEYS | DP_CFG_SECTION_UNSUPPORTED,
     no_keys},
    {"detection", NULL,
     DP_CFG_SECTION_LAYER | DP_CFG_SECTION_ANY_KEYS | DP_CFG_SECTION_UNSUPPORTED, no_keys},
    {"iseg", NULL, DP_CFG_SECTION_LAYER | DP_CFG_SECTION_ANY_KEYS | DP_CFG_SECTION_UNSUPPORTED,
     no_keys},
    {"rnn", NULL, DP_CFG_SECTION_LAYER | DP_CFG_SECTION_ANY_KEYS | DP_CFG_SECTION_UNSUPPORTED,
     no_keys},
    {"gru", NULL, DP_CFG_SECTION_LAYER | DP_CFG_SECTION_ANY_KEYS | DP_CFG_SECTION_UNSUPPORTED,
     no_keys},
    {"lstm", NULL, DP_CFG_SECTION_LAYER | DP_CFG_SECTION_ANY_KEYS | DP_CFG_SECTION_UNSUPPORTED,
     no_keys},
    {"crnn", NULL, DP_CFG_SECTION_LAYER | DP_CFG_SECTION_ANY_KEYS | DP_CFG_SECTION_UNSUPPORTED,
     no_keys},
    {"data", NULL, 0, data_keys},
    {"train", NULL, 0, train_keys},
};

static int name_in_list(const char *name, const char *list)
{
    if (list == NULL) {
        return 0;
    }
    size_t n = strlen(name);
    const char *p = list;
    while (*p != '\0') {
        const char *bar = strchr(p, '|');
        size_t len = bar != NULL ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) {
            return 1;
        }
        p += len;
        if (*p == '|') {
            p++;
        }
    }
    return 0;
}

const dp_cfg_section_spec *dp_cfg_schema_section(const char *name)
{
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        if (strcmp(sections[i].name, name) == 0 || name_in_list(name, sections[i].aliases)) {
            return &sections[i];
        }
    }
    return NULL;
}

static const dp_cfg_key_spec *find_key(const dp_cfg_key_spec *keys, const char *key)
{
    for (const dp_cfg_key_spec *k = keys; k->name != NULL; k++) {
        if (strcmp(k->name, key) == 0) {
            return k;
        }
    }
    return NULL;
}

const dp_cfg_key_spec *dp_cfg_schema_key(const dp_cfg_section_spec *sec, const char *key)
{
    const dp_cfg_key_spec *k = find_key(sec->keys, key);
    if (k == NULL && (sec->flags & DP_CFG_SECTION_LAYER)) {
        k = find_key(layer_keys, key);
    }
    return k;
}

const dp_cfg_section_spec *dp_cfg_schema_sections(int *count)
{
    *count = (int)(sizeof sections / sizeof sections[0]);
    return sections;
}

const dp_cfg_key_spec *dp_cfg_schema_layer_keys(void)
{
    return layer_keys;
}

const char *dp_cfg_schema_activations(void)
{
    return ACTIVATIONS;
}
