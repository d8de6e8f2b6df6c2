// Stress test of the pipeline's threads, in plain C so that it runs under ThreadSanitizer
// (Criterion's runner cannot start under TSan). It runs in the normal 'io' suite too. Exit 0 on
// success, 1 with a message on any failure. What it checks, over many pipelines of 1-4 workers
// and 2-5 buffers, with and without cutout/mixup/cutmix:
//   - every batch equals the single-threaded reference decoding (pipeline_ref.h), bitwise;
//   - shutdown at any point (batches held, slots mid-decode, the reader waiting) is clean;
//   - a worker's error and a reader's error reach the consumer, on every later pop too.
// Under TSan (a separate build directory; only this program and libdptrain are built):
//   meson setup /tmp/build-tsan -Db_sanitize=thread -Db_lundef=false -Dcuda=disabled
//   ninja -C /tmp/build-tsan tests/io/tsan_pipeline
//   TSAN_OPTIONS='halt_on_error=1 second_deadlock_stack=1' /tmp/build-tsan/tests/io/tsan_pipeline
// (If TSan stops with "unexpected memory mapping", run it under `setarch -R`.)
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/dataset.h"
#include "io/pipeline.h"
#include "io/pipeline_internal.h"
#include "pipeline_ref.h"

static int failures;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tsan_pipeline: FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    failures++;
}

static dp_pipeline_config base_config(int64_t n, int64_t batch, int workers, int buffers)
{
    dp_pipeline_config cfg = DP_PIPELINE_CONFIG_INIT;
    cfg.synthetic = (dp_pipeline_synthetic){.n = n, .h = 9, .w = 7, .c = 3, .n_classes = 5,
                                            .seed = 3};
    cfg.sampler.global_batch = batch;
    cfg.sampler.seed = 77;
    cfg.n_workers = workers;
    cfg.n_buffers = buffers;
    cfg.crop_pad = 2;
    cfg.flip = 1;
    return cfg;
}

// Pops n batches of a pipeline made with cfg and checks each against the reference.
static void check_batches(const dp_pipeline_config *cfg, int n, const char *what)
{
    ref_ctx ref;
    if (ref_init(&ref, cfg, NULL) != 0) {
        fail("%s: reference set-up", what);
        return;
    }
    dp_pipeline *p = NULL;
    if (dp_pipeline_create(&p, cfg) != DP_OK) {
        fail("%s: create: %s", what, dp_error_message());
        ref_fini(&ref);
        return;
    }
    for (int t = 0; t < n; t++) {
        const dp_pipeline_batch *b = NULL;
        if (dp_pipeline_pop(p, &b) != DP_OK || b == NULL) {
            fail("%s: pop %d: %s", what, t, b == NULL ? "no batch" : dp_error_message());
            break;
        }
        ref_batch rb = {b->epoch, b->index, b->count, b->records, b->labels, b->labels_b,
                        b->images, b->mix_lambda};
        char msg[256];
        int bad = ref_check_batch(&ref, &rb, msg, sizeof msg);
        dp_pipeline_release(p, b);
        if (bad != 0) {
            fail("%s: %d samples differ: %s", what, bad, msg);
            break;
        }
    }
    dp_pipeline_destroy(p);
    ref_fini(&ref);
}

static void batches_equal_single_threaded_decoding(void)
{
    for (int round = 0; round < 8; round++) {
        dp_pipeline_config cfg = base_config(90, 12, 1 + round % 4, 2 + round % 4);
        if (round % 2 == 1) {
            cfg.cutout = 4;
            cfg.mixup_alpha = 0.3f;
            cfg.cutmix_alpha = 1.0f;
            cfg.mix_prob = 0.8f;
        }
        if (round >= 4) { // rank 1 of 3
            cfg.sampler.world_size = 3;
            cfg.sampler.rank = 1;
        }
        char what[64];
        snprintf(what, sizeof what, "round %d (%d workers, %d buffers)", round, cfg.n_workers,
                 cfg.n_buffers);
        check_batches(&cfg, 20, what);
    }
}

static void shutdown_mid_epoch(void)
{
    for (int round = 0; round < 40; round++) {
        dp_pipeline_config cfg = base_config(200, 16, 1 + round % 4, 2 + round % 4);
        if (round % 3 == 0) {
            cfg.mixup_alpha = 1.0f;
        }
        dp_pipeline *p = NULL;
        if (dp_pipeline_create(&p, &cfg) != DP_OK) {
            fail("shutdown round %d: create: %s", round, dp_error_message());
            return;
        }
        const dp_pipeline_batch *held = NULL;
        for (int i = 0; i < round % 6; i++) {
            const dp_pipeline_batch *b = NULL;
            if (dp_pipeline_pop(p, &b) != DP_OK || b == NULL) {
                fail("shutdown round %d: pop %d: %s", round, i, dp_error_message());
                break;
            }
            if (held != NULL) {
                dp_pipeline_release(p, held);
            }
            held = b; // destroy below runs with this batch still held
        }
        dp_pipeline_destroy(p);
    }
}

// Pops until an error; expects status want with fragment in its message, then the same again.
static void expect_error_reaches_consumer(dp_pipeline *p, dp_status want, const char *fragment,
                                          const char *what)
{
    dp_status st = DP_OK;
    for (int i = 0; st == DP_OK && i < 1000; i++) {
        const dp_pipeline_batch *b = NULL;
        st = dp_pipeline_pop(p, &b);
        if (st == DP_OK && b == NULL) {
            fail("%s: the epoch ended without the error", what);
            return;
        }
        if (st == DP_OK) {
            dp_pipeline_release(p, b);
        }
    }
    for (int again = 0; again < 2; again++) {
        if (st != want || strstr(dp_error_message(), fragment) == NULL) {
            fail("%s: got %s '%s', want %s with '%s'", what, dp_status_name(st),
                 dp_error_message(), dp_status_name(want), fragment);
            return;
        }
        const dp_pipeline_batch *b = NULL;
        st = dp_pipeline_pop(p, &b);
    }
}

static void worker_error_reaches_consumer(void)
{
    for (int round = 0; round < 8; round++) {
        dp_pipeline_config cfg = base_config(120, 12, 1 + round % 4, 2 + round % 3);
        cfg.sampler.mode = round % 2 ? DP_SAMPLER_EVAL : DP_SAMPLER_TRAIN;
        cfg.cutmix_alpha = 1.0f;
        dp_pipeline *p = NULL;
        if (dp__pipeline_create_failing(&p, &cfg, 37 + round) != DP_OK) {
            fail("worker error round %d: create: %s", round, dp_error_message());
            return;
        }
        char fragment[64], what[64];
        snprintf(fragment, sizeof fragment, "injected worker failure at record %d", 37 + round);
        snprintf(what, sizeof what, "worker error round %d", round);
        expect_error_reaches_consumer(p, DP_ERR_INTERNAL, fragment, what);
        dp_pipeline_destroy(p);
    }
}

// Writes a 60-record dataset whose record 41 has label 9 (of 3 classes). Returns 0 or -1.
static int write_bad_dataset(const char *path)
{
    enum { N = 60, H = 5, W = 4, C = 1 };
    const char *const names[3] = {"a", "b", "c"};
    dp_dataset_config dc = DP_DATASET_CONFIG_INIT;
    dc.n = N;
    dc.h = H;
    dc.w = W;
    dc.c = C;
    dc.n_classes = 3;
    dc.class_names = names;
    dc.chunk_records = 8;
    static uint8_t images[N * H * W * C];
    int32_t labels[N];
    for (int i = 0; i < N * H * W * C; i++) {
        images[i] = (uint8_t)(i * 7);
    }
    for (int i = 0; i < N; i++) {
        labels[i] = i % 3;
    }
    const float mean[1] = {0.5f}, std[1] = {0.25f};
    dp_dataset *ds = NULL;
    if (dp_dataset_create(&ds, path, &dc) != DP_OK ||
        dp_dataset_append_records(ds, images, labels, N) != DP_OK ||
        dp_dataset_set_normalization(ds, mean, std) != DP_OK || dp_dataset_finish(ds) != DP_OK) {
        fail("writing %s: %s", path, dp_error_message());
        dp_dataset_destroy(ds);
        return -1;
    }
    dp_dataset_destroy(ds);
    labels[41] = 9;
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, "labels", H5P_DEFAULT);
    herr_t w = d < 0 ? -1 : H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
    int closed = (d < 0 || H5Dclose(d) >= 0) && (f < 0 || H5Fclose(f) >= 0);
    if (w < 0 || !closed) {
        fail("cannot overwrite the labels of %s", path);
        return -1;
    }
    return 0;
}

static void reader_error_reaches_consumer(void)
{
    char dir[] = "/tmp/dp-tsan-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        fail("mkdtemp");
        return;
    }
    char path[64];
    snprintf(path, sizeof path, "%s/bad.h5", dir);
    if (write_bad_dataset(path) == 0) {
        for (int round = 0; round < 6; round++) {
            dp_dataset *ds = NULL;
            if (dp_dataset_open(&ds, path) != DP_OK) {
                fail("open %s: %s", path, dp_error_message());
                break;
            }
            dp_pipeline_config cfg = base_config(0, 6, 1 + round % 3, 2 + round % 2);
            cfg.dataset = ds;
            cfg.mixup_alpha = round % 2 ? 0.5f : 0.0f;
            dp_pipeline *p = NULL;
            if (dp_pipeline_create(&p, &cfg) != DP_OK) {
                fail("reader error round %d: create: %s", round, dp_error_message());
                dp_dataset_destroy(ds);
                break;
            }
            char what[64];
            snprintf(what, sizeof what, "reader error round %d", round);
            expect_error_reaches_consumer(p, DP_ERR_DATA, "record 41 has label 9", what);
            dp_pipeline_destroy(p);
            dp_dataset_destroy(ds);
        }
    }
    if (unlink(path) != 0 || rmdir(dir) != 0) {
        fail("cannot remove %s", dir);
    }
}

int main(void)
{
    batches_equal_single_threaded_decoding();
    shutdown_mid_epoch();
    worker_error_reaches_consumer();
    reader_error_reaches_consumer();
    if (failures > 0) {
        fprintf(stderr, "tsan_pipeline: %d failures\n", failures);
        return 1;
    }
    printf("tsan_pipeline: ok (batches bitwise equal to single-threaded decoding, shutdown "
           "mid-epoch, worker and reader errors reach the consumer)\n");
    return 0;
}
