// The trainer end to end on small synthetic and HDF5 data: it learns (memorizes a small set),
// runs are bitwise repeatable, a diverging run stops naming the step and the layer, and bad data
// (missing file, wrong image shape or class count) stops the run before the first step.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"
#include "io/dataset.h"
#include "train/trainer.h"

static const char *tiny = "[net]\nbatch=16\nsubdivisions=2\nheight=8\nwidth=8\nchannels=1\n"
                          "learning_rate=0.05\nmomentum=0.9\npolicy=constant\n"
                          "[data]\nsource=synthetic\nsamples=64\ntest_samples=32\n"
                          "[train]\nepochs=30\nlog_every=1000\neval_every=10\nseed=3\nthreads=1\n"
                          "[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\n"
                          "activation=relu\n"
                          "[maxpool]\nsize=2\nstride=2\n"
                          "[connected]\noutput=4\nactivation=linear\n"
                          "[softmax]\n";

typedef struct seen {
    double last_train_loss, last_train_top1;
    int epochs;
} seen;

static void record(const dp_train_progress *p, void *ctx)
{
    seen *s = ctx;
    if (p->event == DP_TRAIN_EVENT_EPOCH) {
        s->epochs++;
        s->last_train_loss = p->train_loss;
        s->last_train_top1 = p->train_top1;
    }
}

static dp_status run_text(const char *text, const char **sets, int n_sets, dp_train_result *res,
                          seen *s)
{
    dp_log_set_level(DP_LOG_LEVEL_ERROR);
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_parse(&cfg, text, strlen(text), "tiny.cfg"), DP_OK, "%s",
                 dp_error_message());
    for (int i = 0; i < n_sets; i++) {
        cr_assert_eq(dp_cfg_set(cfg, sets[i]), DP_OK, "%s", dp_error_message());
    }
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    dp_train_options opt = DP_TRAIN_OPTIONS_INIT;
    opt.progress = record;
    opt.progress_ctx = s;
    char dir[] = "/tmp/dptrain_test_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    opt.out_dir = dir;
    dp_status st = dp_train_run(cfg, &opt, res);
    dp_cfg_destroy(cfg);
    return st;
}

Test(trainer, memorizes_a_small_synthetic_set, .timeout = 120)
{
    dp_train_result res;
    seen s = {0};
    cr_assert_eq(run_text(tiny, NULL, 0, &res, &s), DP_OK, "%s", dp_error_message());
    cr_expect_eq(s.epochs, 30);
    cr_expect_eq(res.steps, 30 * 4);
    cr_expect_lt(s.last_train_loss, 0.1, "train loss %g", s.last_train_loss);
    cr_expect_eq(s.last_train_top1, 1.0);
    cr_expect(isfinite(res.test_top1) && res.test_top1 >= 0 && res.test_top1 <= 1);
    cr_expect_eq(strlen(res.params_sha256), 64);
}

Test(trainer, runs_are_bitwise_repeatable, .timeout = 120)
{
    dp_train_result a, b;
    seen s = {0};
    const char *sets[] = {"train.epochs=3"};
    cr_assert_eq(run_text(tiny, sets, 1, &a, &s), DP_OK, "%s", dp_error_message());
    cr_assert_eq(run_text(tiny, sets, 1, &b, &s), DP_OK, "%s", dp_error_message());
    cr_expect_str_eq(a.params_sha256, b.params_sha256, "params_sha256 differs between runs");
    const char *other[] = {"train.epochs=3", "train.seed=4"};
    cr_assert_eq(run_text(tiny, other, 2, &b, &s), DP_OK, "%s", dp_error_message());
    cr_expect_str_neq(a.params_sha256, b.params_sha256, "another seed, other weights");
}

Test(trainer, divergence_names_the_step_and_a_layer, .timeout = 60)
{
    dp_train_result res;
    seen s = {0};
    const char *sets[] = {"net.learning_rate=1000", "train.epochs=30"};
    dp_status st = run_text(tiny, sets, 2, &res, &s);
    cr_expect_eq(st, DP_ERR_DATA, "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_message(), "step "), "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_message(), "not finite"), "%s", dp_error_message());
}

Test(trainer, comm_nccl_on_the_cpu_is_a_cfg_error)
{
    dp_train_result res;
    seen s = {0};
    const char *sets[] = {"train.backend=cpu", "train.comm=nccl"};
    cr_expect_eq(run_text(tiny, sets, 2, &res, &s), DP_ERR_CFG, "%s", dp_error_message());
    cr_expect_not_null(strstr(dp_error_message(), "comm=nccl needs the GPU"), "%s",
                       dp_error_message());
    cr_expect_not_null(strstr(dp_error_message(), "tiny.cfg"), "%s", dp_error_message());
    const char *mpi[] = {"train.backend=cpu", "train.comm=mpi", "train.epochs=1"};
    cr_expect_eq(run_text(tiny, mpi, 3, &res, &s), DP_OK, "%s", dp_error_message());
}

Test(trainer, missing_dataset_names_the_file)
{
    dp_train_result res;
    seen s = {0};
    const char *sets[] = {"data.source=hdf5", "data.train=/no/such/train.h5"};
    cr_expect_eq(run_text(tiny, sets, 2, &res, &s), DP_ERR_IO);
    cr_expect_not_null(strstr(dp_error_message(), "/no/such/train.h5"), "%s", dp_error_message());
}

static void write_dataset(const char *path, int64_t h, int64_t w, int classes)
{
    const char *names[] = {"a", "b", "c", "d", "e"};
    dp_dataset_config dc = DP_DATASET_CONFIG_INIT;
    dc.n = 32;
    dc.h = h;
    dc.w = w;
    dc.c = 1;
    dc.n_classes = classes;
    dc.class_names = names;
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_create(&ds, path, &dc), DP_OK, "%s", dp_error_message());
    uint8_t *img = calloc((size_t)(32 * h * w), 1);
    int32_t labels[32];
    for (int i = 0; i < 32; i++) {
        labels[i] = i % classes;
    }
    cr_assert_eq(dp_dataset_append_records(ds, img, labels, 32), DP_OK, "%s", dp_error_message());
    float mean = 0.5f, std = 0.25f;
    cr_assert_eq(dp_dataset_set_normalization(ds, &mean, &std), DP_OK);
    cr_assert_eq(dp_dataset_finish(ds), DP_OK, "%s", dp_error_message());
    dp_dataset_destroy(ds);
    free(img);
}

Test(trainer, dataset_shape_and_classes_must_match_the_net)
{
    char path[] = "/tmp/dptrain_trainer_XXXXXX";
    cr_assert_not_null(mkdtemp(path));
    char wrong_shape[512], wrong_classes[512], set_train[600];
    snprintf(wrong_shape, sizeof wrong_shape, "%s/shape.h5", path);
    snprintf(wrong_classes, sizeof wrong_classes, "%s/classes.h5", path);
    write_dataset(wrong_shape, 10, 10, 4);
    write_dataset(wrong_classes, 8, 8, 5);
    dp_train_result res;
    seen s = {0};
    snprintf(set_train, sizeof set_train, "data.train=%s", wrong_shape);
    const char *a[] = {"data.source=hdf5", set_train};
    cr_expect_eq(run_text(tiny, a, 2, &res, &s), DP_ERR_SHAPE);
    cr_expect_not_null(strstr(dp_error_message(), "images are 10x10x1"), "%s", dp_error_message());
    snprintf(set_train, sizeof set_train, "data.train=%s", wrong_classes);
    cr_expect_eq(run_text(tiny, a, 2, &res, &s), DP_ERR_SHAPE);
    cr_expect_not_null(strstr(dp_error_message(), "5 classes"), "%s", dp_error_message());
    unlink(wrong_shape);
    unlink(wrong_classes);
    rmdir(path);
}

Test(trainer, bench_reports_both_rates, .timeout = 60)
{
    dp_log_set_level(DP_LOG_LEVEL_ERROR);
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_parse(&cfg, tiny, strlen(tiny), "tiny.cfg"), DP_OK);
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK);
    dp_train_options opt = DP_TRAIN_OPTIONS_INIT;
    opt.bench_steps = 3;
    dp_train_result res;
    cr_assert_eq(dp_train_run(cfg, &opt, &res), DP_OK, "%s", dp_error_message());
    cr_expect_gt(res.bench_train_img_per_s, 0);
    cr_expect_gt(res.bench_eval_img_per_s, 0);
    cr_expect_eq(res.steps, 8, "5 untimed + 3 timed steps");
    dp_cfg_destroy(cfg);
}

// --- outputs, checkpoints, resume ---

static dp_status run_opts(const char *text, const char **sets, int n_sets, dp_train_options *opt,
                          dp_train_result *res)
{
    dp_log_set_level(DP_LOG_LEVEL_ERROR);
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_parse(&cfg, text, strlen(text), "tiny.cfg"), DP_OK);
    for (int i = 0; i < n_sets; i++) {
        cr_assert_eq(dp_cfg_set(cfg, sets[i]), DP_OK, "%s", dp_error_message());
    }
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    dp_status st = dp_train_run(cfg, opt, res);
    dp_cfg_destroy(cfg);
    return st;
}

static void temp_dir(char *path, size_t size)
{
    snprintf(path, size, "/tmp/dptrain_run_XXXXXX");
    cr_assert_not_null(mkdtemp(path));
}

Test(trainer, resume_mid_epoch_is_bitwise_the_uninterrupted_run, .timeout = 120)
{
    // Augmentation (random crop, flip) and momentum are on, so data order, augmentation keys,
    // optimizer state and batch-norm statistics all have to be restored exactly.
    const char *sets[] = {"train.epochs=6", "train.checkpoint_every=3", "train.keep_checkpoints=50",
                          "data.crop_pad=1", "data.flip=1"};
    char dir[64], dir2[64], ckpt[256];
    temp_dir(dir, sizeof dir);
    temp_dir(dir2, sizeof dir2);
    dp_train_options opt = DP_TRAIN_OPTIONS_INIT;
    opt.out_dir = dir;
    dp_train_result full, resumed;
    cr_assert_eq(run_opts(tiny, sets, 5, &opt, &full), DP_OK, "%s", dp_error_message());
    cr_expect_eq(full.steps, 24);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt-step9.h5", dir); // step 9: epoch 3, batch 1 of 4
    cr_assert_eq(access(ckpt, R_OK), 0, "no %s", ckpt);
    opt.out_dir = dir2;
    opt.resume = ckpt;
    cr_assert_eq(run_opts(tiny, sets, 5, &opt, &resumed), DP_OK, "%s", dp_error_message());
    cr_expect_eq(resumed.steps, 24);
    cr_expect_str_eq(resumed.params_sha256, full.params_sha256,
                     "resumed at step 9: params_sha256 differs from the uninterrupted run");
    snprintf(ckpt, sizeof ckpt, "%s/metrics.jsonl", dir);
    cr_expect_eq(access(ckpt, R_OK), 0);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt-best.h5", dir);
    cr_expect_eq(access(ckpt, R_OK), 0);
    snprintf(ckpt, sizeof ckpt, "%s/resolved.cfg", dir);
    cr_expect_eq(access(ckpt, R_OK), 0);
}

Test(trainer, bad_checkpoints_stop_the_run_before_it_starts, .timeout = 120)
{
    const char *sets[] = {"train.epochs=1"};
    char dir[64], ckpt[256], bad[256];
    temp_dir(dir, sizeof dir);
    dp_train_options opt = DP_TRAIN_OPTIONS_INIT;
    opt.out_dir = dir;
    dp_train_result res;
    cr_assert_eq(run_opts(tiny, sets, 1, &opt, &res), DP_OK, "%s", dp_error_message());
    snprintf(ckpt, sizeof ckpt, "%s/ckpt-step4.h5", dir);

    // Another cfg: 6 filters instead of 8.
    const char *other[] = {"train.epochs=1", "conv.filters=6"};
    opt.resume = ckpt;
    cr_expect_eq(run_opts(tiny, other, 2, &opt, &res), DP_ERR_DATA);
    cr_expect_not_null(strstr(dp_error_message(), "does not fit the network"), "%s",
                       dp_error_message());
    cr_expect_not_null(strstr(dp_error_message(), "[8, 1, 3, 3]"), "%s", dp_error_message());
    cr_expect_eq(res.steps, 0, "no step ran");

    // Truncated.
    snprintf(bad, sizeof bad, "%s/truncated.h5", dir);
    FILE *in = fopen(ckpt, "rb"), *out = fopen(bad, "wb");
    cr_assert(in != NULL && out != NULL);
    char buf[2048];
    size_t n = fread(buf, 1, sizeof buf, in);
    cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
    opt.resume = bad;
    cr_expect_neq(run_opts(tiny, sets, 1, &opt, &res), DP_OK);
    cr_expect_not_null(strstr(dp_error_message(), "truncated.h5"), "%s", dp_error_message());

    // Missing.
    opt.resume = "/no/such/ckpt.h5";
    cr_expect_eq(run_opts(tiny, sets, 1, &opt, &res), DP_ERR_IO);
    cr_expect_not_null(strstr(dp_error_message(), "/no/such/ckpt.h5"), "%s", dp_error_message());
}

Test(trainer, eval_only_reproduces_the_final_evaluation, .timeout = 120)
{
    const char *sets[] = {"train.epochs=2"};
    char dir[64], ckpt[256];
    temp_dir(dir, sizeof dir);
    dp_train_options opt = DP_TRAIN_OPTIONS_INIT;
    opt.out_dir = dir;
    dp_train_result trained, evaluated;
    cr_assert_eq(run_opts(tiny, sets, 1, &opt, &trained), DP_OK, "%s", dp_error_message());
    snprintf(ckpt, sizeof ckpt, "%s/ckpt-step8.h5", dir);
    dp_train_options ev = DP_TRAIN_OPTIONS_INIT;
    ev.eval_only = ckpt;
    cr_assert_eq(run_opts(tiny, sets, 1, &ev, &evaluated), DP_OK, "%s", dp_error_message());
    cr_expect_eq(evaluated.test_top1, trained.test_top1);
    cr_expect_eq(evaluated.test_loss, trained.test_loss);
    cr_expect_str_eq(evaluated.params_sha256, trained.params_sha256);
}

Test(trainer, early_stopping_keeps_the_best_checkpoint, .timeout = 120)
{
    // Random labels: the test loss only gets worse while the net memorizes, so with patience 2
    // the run stops long before its 30 epochs.
    const char *sets[] = {"train.eval_every=1", "train.patience=2", "train.monitor=test_loss"};
    char dir[64], best[256];
    temp_dir(dir, sizeof dir);
    dp_train_options opt = DP_TRAIN_OPTIONS_INIT;
    opt.out_dir = dir;
    dp_train_result res;
    cr_assert_eq(run_opts(tiny, sets, 3, &opt, &res), DP_OK, "%s", dp_error_message());
    cr_expect_eq(res.stopped, 1);
    cr_expect_lt(res.epochs, 30);
    cr_expect_not_null(strstr(res.stop_reason, "early stopping"), "%s", res.stop_reason);
    snprintf(best, sizeof best, "%s/ckpt-best.h5", dir);
    cr_expect_eq(access(best, R_OK), 0);
}

Test(trainer, mixup_cutmix_and_cutout_train, .timeout = 120)
{
    const char *sets[] = {"train.epochs=3", "data.mixup=0.4", "data.cutmix=1.0", "data.cutout=2"};
    dp_train_result a, b;
    seen s = {0};
    cr_assert_eq(run_text(tiny, sets, 4, &a, &s), DP_OK, "%s", dp_error_message());
    cr_expect(isfinite(s.last_train_loss), "loss %g", s.last_train_loss);
    cr_assert_eq(run_text(tiny, sets, 4, &b, &s), DP_OK, "%s", dp_error_message());
    cr_expect_str_eq(a.params_sha256, b.params_sha256, "mixing is keyed, so runs repeat");
    const char *plain[] = {"train.epochs=3"};
    cr_assert_eq(run_text(tiny, plain, 1, &b, &s), DP_OK, "%s", dp_error_message());
    cr_expect_str_neq(a.params_sha256, b.params_sha256, "mixing changes training");
}

Test(trainer, early_stopping_on_fmnist_cnn_with_a_tiny_patience, .timeout = 180)
{
    // configs/fmnist-cnn.cfg as shipped, on a small synthetic subset (random labels, so the test
    // loss stops improving at once): patience 1 ends the run after two evaluations.
    char path[1024], dir[64];
    snprintf(path, sizeof path, "%s/configs/fmnist-cnn.cfg", getenv("DP_SOURCE_ROOT"));
    temp_dir(dir, sizeof dir);
    dp_log_set_level(DP_LOG_LEVEL_ERROR);
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_load(&cfg, path), DP_OK, "%s", dp_error_message());
    const char *sets[] = {"data.source=synthetic", "data.samples=512", "data.test_samples=256",
                          "train.epochs=20",       "train.patience=1", "train.eval_every=1",
                          "train.monitor=test_loss", "net.learning_rate=0.01"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        cr_assert_eq(dp_cfg_set(cfg, sets[i]), DP_OK, "%s", dp_error_message());
    }
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    dp_train_options opt = DP_TRAIN_OPTIONS_INIT;
    opt.out_dir = dir;
    dp_train_result res;
    cr_assert_eq(dp_train_run(cfg, &opt, &res), DP_OK, "%s", dp_error_message());
    cr_expect_eq(res.stopped, 1);
    cr_expect_lt(res.epochs, 20, "stopped after %ld epochs", res.epochs);
    cr_expect_not_null(strstr(res.stop_reason, "early stopping"), "%s", res.stop_reason);
    dp_cfg_destroy(cfg);
}
