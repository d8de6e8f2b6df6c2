// What a run leaves on disk: the output directory with the resolved cfg, metrics.jsonl (one
// JSON object per log interval and per epoch), a TensorBoard event file with the same scalars,
// and atomic HDF5 checkpoints (the newest K and the best), which --resume reads back.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/error.h"
#include "core/log.h"
#include "train/trainer_internal.h"

static const char ckpt_prefix[] = "ckpt";

dp_status dp__train_read_output_settings(trainer *t)
{
    const dp_cfg_section *train = dp_cfg_find(t->cfg, "train");
    long every = 0, keep = 3, patience = 0;
    double min_delta = 0;
    const char *monitor = "test_top1";
    if (train != NULL) {
        DP_TRY(dp_cfg_get_int(train, "checkpoint_every", 0, &every));
        DP_TRY(dp_cfg_get_int(train, "keep_checkpoints", 3, &keep));
        DP_TRY(dp_cfg_get_int(train, "patience", 0, &patience));
        DP_TRY(dp_cfg_get_float(train, "min_delta", 0.0, &min_delta));
        DP_TRY(dp_cfg_get_str(train, "monitor", "test_top1", &monitor));
    }
    t->checkpoint_every = every;
    t->keep_checkpoints = (int)keep;
    t->patience = patience;
    t->min_delta = min_delta;
    t->monitor_loss = strcmp(monitor, "test_loss") == 0;
    t->best = NAN;
    return DP_OK;
}

// mkdir -p.
static dp_status make_dirs(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                return dp_error_set(DP_ERR_IO, "cannot create directory %s: %s", buf,
                                    strerror(errno));
            }
            *p = '/';
        }
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
        return dp_error_set(DP_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
    }
    return DP_OK;
}

// runs/<cfg file name without .cfg>-<UTC time>
static void default_out_dir(const trainer *t, char *out, size_t size)
{
    const char *path = dp_cfg_path(t->cfg);
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".cfg") == 0) {
        len -= 4;
    }
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(out, size, "runs/%.*s-%s", (int)len, base, stamp);
}

// A fresh default directory: runs/<name>-<time>, or -2, -3, ... when two runs start within the
// same second (mkdir is the atomic test).
static dp_status make_fresh_dir(trainer *t)
{
    char base[1000];
    default_out_dir(t, base, sizeof base);
    DP_TRY(make_dirs("runs"));
    for (int k = 1; k < 1000; k++) {
        if (k == 1) {
            snprintf(t->out_dir, sizeof t->out_dir, "%s", base);
        } else {
            snprintf(t->out_dir, sizeof t->out_dir, "%s-%d", base, k);
        }
        if (mkdir(t->out_dir, 0777) == 0) {
            return DP_OK;
        }
        if (errno != EEXIST) {
            return dp_error_set(DP_ERR_IO, "cannot create directory %s: %s", t->out_dir,
                                strerror(errno));
        }
    }
    return dp_error_set(DP_ERR_IO, "cannot create a fresh output directory %s-N", base);
}

dp_status dp__train_open_outputs(trainer *t)
{
    if (t->opt.out_dir != NULL) {
        snprintf(t->out_dir, sizeof t->out_dir, "%s", t->opt.out_dir);
        DP_TRY(make_dirs(t->out_dir));
    } else {
        DP_TRY(make_fresh_dir(t));
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/resolved.cfg", t->out_dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return dp_error_set(DP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    dp_status st = dp_cfg_write(t->cfg, f);
    if (fclose(f) != 0 && st == DP_OK) {
        st = dp_error_set(DP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    DP_TRY(st);
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->out_dir);
    DP_TRY(dp_metrics_open(&t->metrics, path));
    return dp_tb_open(&t->tb, t->out_dir);
}

void dp__train_close_outputs(trainer *t)
{
    if (t->metrics != NULL && dp_metrics_close(t->metrics) != DP_OK) {
        DP_LOG_WARN("%s", dp_error_message());
    }
    if (t->tb != NULL && dp_tb_close(t->tb) != DP_OK) {
        DP_LOG_WARN("%s", dp_error_message());
    }
    t->metrics = NULL;
    t->tb = NULL;
}

dp_status dp__train_log(trainer *t, const dp_train_progress *p)
{
    if (t->metrics == NULL || p->event == DP_TRAIN_EVENT_START) {
        return DP_OK;
    }
    dp_metrics_field f[12] = {
        {"step", (double)p->step},        {"epoch", (double)p->epoch}, {"lr", p->lr},
        {"loss", p->train_loss},          {"top1", p->train_top1},     {"img_per_s", p->img_per_s},
        {"data_wait", p->data_wait_frac}, {"time", p->elapsed_s},
    };
    int n = 8;
    if (p->evaluated) {
        f[n++] = (dp_metrics_field){"test_loss", p->test_loss};
        f[n++] = (dp_metrics_field){"test_top1", p->test_top1};
        f[n++] = (dp_metrics_field){"test_top5", p->test_top5};
    }
    dp_metrics_record r = {p->event == DP_TRAIN_EVENT_EPOCH ? "epoch" : "step", f, n};
    DP_TRY(dp_metrics_write(t->metrics, &r));
    dp_tb_value v[8];
    int m = 0;
    if (isfinite(p->train_loss)) {
        v[m++] = (dp_tb_value){"train/loss", p->train_loss};
        v[m++] = (dp_tb_value){"train/top1", p->train_top1};
        v[m++] = (dp_tb_value){"train/img_per_s", p->img_per_s};
    }
    v[m++] = (dp_tb_value){"train/lr", p->lr};
    if (p->evaluated) {
        v[m++] = (dp_tb_value){"test/loss", p->test_loss};
        v[m++] = (dp_tb_value){"test/top1", p->test_top1};
        v[m++] = (dp_tb_value){"test/top5", p->test_top5};
    }
    return dp_tb_scalars(t->tb, p->step, dp_tb_now(), v, m);
}

// --- checkpoints ---

static dp_status write_tensors(trainer *t, dp_ckpt_writer *w)
{
    char path[256];
    for (int i = 0; i < dp_net_layer_count(t->net); i++) {
        const dp_layer *l = dp_net_layer(t->net, i);
        for (int p = 0; p < l->n_params; p++) {
            snprintf(path, sizeof path, "/params/%s/%s", l->name, l->params[p].spec.name);
            const dp_shape *s = &l->params[p].spec.shape;
            DP_TRY(dp_ckpt_write_tensor(w, path, l->params[p].data, s->dims, s->ndim));
        }
        for (int b = 0; b < l->n_buffers; b++) {
            snprintf(path, sizeof path, "/buffers/%s/%s", l->name, l->buffers[b].spec.name);
            const dp_shape *s = &l->buffers[b].spec.shape;
            DP_TRY(dp_ckpt_write_tensor(w, path, l->buffers[b].data, s->dims, s->ndim));
        }
    }
    for (int i = 0; i < dp_optim_state_count(t->optim); i++) {
        const char *name;
        float *data;
        size_t n;
        DP_TRY(dp_optim_state_at(t->optim, i, &name, &data, &n));
        snprintf(path, sizeof path, "/optimizer/%s", name);
        int64_t dims[1] = {(int64_t)n};
        DP_TRY(dp_ckpt_write_tensor(w, path, data, dims, 1));
    }
    return dp_ckpt_write_attr_i64(w, "/", "optimizer_steps", dp_optim_step_count(t->optim));
}

dp_status dp__train_cfg_text(const trainer *t, char **out)
{
    size_t len = 0;
    *out = NULL;
    FILE *f = open_memstream(out, &len);
    if (f == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "out of memory for the cfg text");
    }
    dp_status st = dp_cfg_write(t->cfg, f);
    if (fclose(f) != 0 && st == DP_OK) {
        st = dp_error_set(DP_ERR_NOMEM, "out of memory for the cfg text");
    }
    return st;
}

dp_status dp__train_save_checkpoint(trainer *t, int best)
{
    if (t->cuda != NULL) { // the host copy of parameters and optimizer state is written
        DP_TRY(dp__train_cuda_download(t));
    }
    DP_TRY(dp__train_dist_sync_buffers(t)); // collective: every rank comes here
    if (t->rank != 0) {
        return DP_OK;
    }
    char path[1100];
    DP_TRY(dp_ckpt_step_path(path, sizeof path, t->out_dir, ckpt_prefix, t->step));
    dp_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.step = t->step;
    dp_pipeline_get_state(t->train_pipe, &meta.sampler);
    meta.epoch = meta.sampler.epoch;
    meta.world_size = t->world;
    char *text = NULL;
    DP_TRY(dp__train_cfg_text(t, &text));
    dp_ckpt_writer *w = NULL;
    dp_status st;
    DP_TRY_GOTO(dp_ckpt_writer_open(&w, path), st, fail);
    DP_TRY_GOTO(write_tensors(t, w), st, fail);
    DP_TRY_GOTO(dp_ckpt_write_meta(w, &meta, text), st, fail);
    st = dp_ckpt_writer_commit(w); // frees w
    w = NULL;
    DP_TRY_GOTO(st, st, fail);
    free(text);
    snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", path);
    if (best) {
        DP_TRY(dp_ckpt_save_best(path, t->out_dir, ckpt_prefix));
    }
    return dp_ckpt_retain(t->out_dir, ckpt_prefix, t->keep_checkpoints);
fail:
    dp_ckpt_writer_abort(w);
    free(text);
    return st;
}

static dp_status read_tensors(trainer *t, dp_ckpt *r, int with_optimizer)
{
    char path[256];
    for (int i = 0; i < dp_net_layer_count(t->net); i++) {
        const dp_layer *l = dp_net_layer(t->net, i);
        for (int p = 0; p < l->n_params; p++) {
            snprintf(path, sizeof path, "/params/%s/%s", l->name, l->params[p].spec.name);
            const dp_shape *s = &l->params[p].spec.shape;
            DP_TRY(dp_ckpt_read_tensor(r, path, l->params[p].data, s->dims, s->ndim));
        }
        for (int b = 0; b < l->n_buffers; b++) {
            snprintf(path, sizeof path, "/buffers/%s/%s", l->name, l->buffers[b].spec.name);
            const dp_shape *s = &l->buffers[b].spec.shape;
            DP_TRY(dp_ckpt_read_tensor(r, path, l->buffers[b].data, s->dims, s->ndim));
        }
    }
    if (!with_optimizer) {
        return DP_OK;
    }
    for (int i = 0; i < dp_optim_state_count(t->optim); i++) {
        const char *name;
        float *data;
        size_t n;
        DP_TRY(dp_optim_state_at(t->optim, i, &name, &data, &n));
        snprintf(path, sizeof path, "/optimizer/%s", name);
        int64_t dims[1] = {(int64_t)n};
        DP_TRY(dp_ckpt_read_tensor(r, path, data, dims, 1));
    }
    int64_t steps;
    DP_TRY(dp_ckpt_read_attr_i64(r, "/", "optimizer_steps", &steps));
    return dp_optim_step_count_set(t->optim, (long)steps);
}

dp_status dp__train_load_checkpoint(trainer *t, const char *path, int with_optimizer)
{
    dp_ckpt *r = NULL;
    DP_TRY(dp_ckpt_open(&r, path));
    dp_ckpt_meta meta;
    dp_status st;
    DP_TRY_GOTO(dp_ckpt_read_meta(r, &meta), st, out);
    st = read_tensors(t, r, with_optimizer);
    if (st != DP_OK) {
        st = dp_error_context(st, "checkpoint %s does not fit the network of %s", path,
                              dp_cfg_path(t->cfg));
        goto out;
    }
    t->step = (long)meta.step;
    t->resume_state = meta.sampler;
    t->resumed = 1;
out:
    dp_ckpt_close(r);
    return st;
}
