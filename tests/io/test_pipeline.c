// Prefetch pipeline: batches come in order and equal single-threaded decoding of the sampler's
// records (bitwise), with or without cutout, mixup and cutmix, whatever the number of workers,
// buffers or ranks; evaluation ends after one epoch; resuming from a saved state continues the
// same batches; a read error in the reader thread and a worker's error reach the consumer;
// shutdown is clean at any point; batch buffers come from the allocator hook; the consumer's
// wait is counted; the default worker count never oversubscribes.
#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/timer.h"
#include "io/augment.h"
#include "io/dataset.h"
#include "io/pipeline.h"
#include "io/pipeline_internal.h"
#include "io/sampler.h"
#include "io_test_util.h"
#include "pipeline_ref.h"

TestSuite(pipeline, .init = scratch_make, .fini = scratch_remove, .timeout = 30);

enum { SH = 6, SW = 5, SC = 3, REC = SH * SW * SC, MAXB = 16 };

// A popped batch, copied out.
typedef struct copied {
    int64_t epoch, index, count;
    int64_t records[MAXB];
    int32_t labels[MAXB];
    float images[MAXB * REC];
    int mixed; // labels_b and mix_lambda were not NULL
    int32_t labels_b[MAXB];
    float mix_lambda[MAXB];
} copied;

static ref_batch as_ref(const copied *c)
{
    return (ref_batch){.epoch = c->epoch, .index = c->index, .count = c->count,
                       .records = c->records, .labels = c->labels,
                       .labels_b = c->mixed ? c->labels_b : NULL, .images = c->images,
                       .mix_lambda = c->mixed ? c->mix_lambda : NULL};
}

static dp_pipeline_config synthetic_config(int64_t n, int64_t batch, dp_sampler_mode mode)
{
    dp_pipeline_config cfg = DP_PIPELINE_CONFIG_INIT;
    cfg.synthetic = (dp_pipeline_synthetic){
        .n = n, .h = SH, .w = SW, .c = SC, .n_classes = 7, .seed = 5};
    cfg.sampler.global_batch = batch;
    cfg.sampler.seed = 21;
    cfg.sampler.mode = mode;
    cfg.n_workers = 2;
    cfg.n_buffers = 3;
    if (mode == DP_SAMPLER_TRAIN) {
        cfg.crop_pad = 2;
        cfg.flip = 1;
    }
    return cfg;
}

static dp_pipeline *start(const dp_pipeline_config *cfg)
{
    dp_pipeline *p = NULL;
    cr_assert_eq(dp_pipeline_create(&p, cfg), DP_OK, "%s", dp_error_message());
    return p;
}

// Pops n batches into out[0..n) (releasing each); returns how many came before the end.
static int collect(dp_pipeline *p, copied *out, int n)
{
    for (int i = 0; i < n; i++) {
        const dp_pipeline_batch *b = NULL;
        cr_assert_eq(dp_pipeline_pop(p, &b), DP_OK, "%s", dp_error_message());
        if (b == NULL) {
            return i;
        }
        cr_assert_leq(b->count, MAXB);
        out[i].epoch = b->epoch;
        out[i].index = b->index;
        out[i].count = b->count;
        memcpy(out[i].records, b->records, (size_t)b->count * sizeof *b->records);
        memcpy(out[i].labels, b->labels, (size_t)b->count * sizeof *b->labels);
        memcpy(out[i].images, b->images, (size_t)(b->count * REC) * sizeof(float));
        cr_assert_eq(b->labels_b == NULL, b->mix_lambda == NULL);
        out[i].mixed = b->labels_b != NULL;
        if (out[i].mixed) {
            memcpy(out[i].labels_b, b->labels_b, (size_t)b->count * sizeof *b->labels_b);
            memcpy(out[i].mix_lambda, b->mix_lambda, (size_t)b->count * sizeof *b->mix_lambda);
        }
        dp_pipeline_release(p, b);
    }
    return n;
}

// Checks sample i of c against decoding record rec (raw image, label) directly, bitwise.
static void expect_sample(const copied *c, int64_t i, const uint8_t *raw, int32_t label,
                          uint64_t seed, int crop, int flip, const float *mean, const float *std)
{
    float scale[SC], bias[SC], want[REC];
    dp_augment_norm_coeffs(scale, bias, mean, std, SC);
    dp_augment_config aug = DP_AUGMENT_CONFIG_INIT;
    aug.crop_pad = crop;
    aug.flip = flip;
    dp_augment_draw d = dp_augment_sample(seed, c->epoch, c->records[i], &aug, SH, SW);
    dp_augment_apply(want, raw, SH, SW, SC, crop, d, scale, bias);
    cr_expect_eq(c->labels[i], label, "batch %lld sample %lld", (long long)c->index,
                 (long long)i);
    cr_expect_eq(memcmp(c->images + i * REC, want, sizeof want), 0,
                 "batch %lld sample %lld (record %lld) differs from direct decoding (memcmp)",
                 (long long)c->index, (long long)i, (long long)c->records[i]);
}

Test(pipeline, synthetic_evaluation_is_one_ordered_epoch)
{
    dp_pipeline_config cfg = synthetic_config(37, 8, DP_SAMPLER_EVAL);
    dp_pipeline *p = start(&cfg);
    cr_expect_eq(dp_pipeline_batches_per_epoch(p), 5);
    static copied got[8];
    int n = collect(p, got, 8);
    cr_expect_eq(n, 5, "ceil(37 / 8) batches, then the end");
    const float mean[SC] = {0.5f, 0.5f, 0.5f}, std[SC] = {0.2898f, 0.2898f, 0.2898f};
    int64_t next = 0;
    for (int t = 0; t < n; t++) {
        cr_expect_eq(got[t].index, t);
        for (int64_t i = 0; i < got[t].count; i++, next++) {
            cr_expect_eq(got[t].records[i], next, "evaluation reads in record order");
            uint8_t raw[REC];
            int32_t label;
            dp_pipeline_synthetic_record(&cfg.synthetic, next, raw, &label);
            cr_expect(label >= 0 && label < 7);
            expect_sample(&got[t], i, raw, label, 21, 0, 0, mean, std);
        }
    }
    cr_expect_eq(next, 37);
    const dp_pipeline_batch *b = (const dp_pipeline_batch *)1;
    cr_expect_eq(dp_pipeline_pop(p, &b), DP_OK);
    cr_expect_null(b, "still the end");
    dp_pipeline_destroy(p);
}

Test(pipeline, evaluation_rank_with_an_empty_slice)
{
    // N = 9, B = 4, P = 4: batches of 4, 4, 1 records; rank 3 gets 1, 1, 0.
    dp_pipeline_config cfg = synthetic_config(9, 4, DP_SAMPLER_EVAL);
    cfg.sampler.world_size = 4;
    cfg.sampler.rank = 3;
    dp_pipeline *p = start(&cfg);
    static copied got[4];
    cr_assert_eq(collect(p, got, 4), 3);
    cr_expect_eq(got[0].count, 1);
    cr_expect_eq(got[0].records[0], 3);
    cr_expect_eq(got[1].count, 1);
    cr_expect_eq(got[1].records[0], 7);
    cr_expect_eq(got[2].count, 0, "the last batch has nothing for rank 3");
    cr_expect_eq(got[2].index, 2);
    dp_pipeline_destroy(p);
}

// Writes a dataset of n records (label of record r: r % 4, or bad_label at bad_record).
static void write_dataset(const char *path, int64_t n, int64_t bad_record, int32_t bad_label)
{
    const char *const names[4] = {"w", "x", "y", "z"};
    dp_dataset_config dc = DP_DATASET_CONFIG_INIT;
    dc.n = n;
    dc.h = SH;
    dc.w = SW;
    dc.c = SC;
    dc.n_classes = 4;
    dc.class_names = names;
    dc.chunk_records = 7;
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_create(&ds, path, &dc), DP_OK, "%s", dp_error_message());
    uint8_t *images = malloc((size_t)(n * REC));
    int32_t *labels = malloc((size_t)n * sizeof *labels);
    cr_assert(images && labels);
    for (int64_t i = 0; i < n * REC; i++) {
        images[i] = (uint8_t)(i * 29 + i / 7);
    }
    for (int64_t r = 0; r < n; r++) {
        labels[r] = (int32_t)(r % 4);
    }
    const float mean[SC] = {0.4f, 0.5f, 0.6f}, std[SC] = {0.2f, 0.25f, 0.3f};
    cr_assert_eq(dp_dataset_append_records(ds, images, labels, n), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_dataset_set_normalization(ds, mean, std), DP_OK);
    cr_assert_eq(dp_dataset_finish(ds), DP_OK, "%s", dp_error_message());
    dp_dataset_destroy(ds);
    if (bad_record >= 0) {
        labels[bad_record] = bad_label;
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT);
        cr_assert_geq(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels), 0);
        H5Dclose(d);
        H5Fclose(f);
    }
    free(images);
    free(labels);
}

Test(pipeline, dataset_training_batches_match_sampler_and_direct_decoding)
{
    const char *path = scratch_path("d.h5");
    write_dataset(path, 43, -1, 0);
    dp_dataset *ds = NULL, *direct = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_dataset_open(&direct, path), DP_OK, "%s", dp_error_message());
    dp_pipeline_config cfg = synthetic_config(0, 8, DP_SAMPLER_TRAIN);
    cfg.dataset = ds;
    dp_pipeline *p = start(&cfg);
    static copied got[12];
    cr_assert_eq(collect(p, got, 12), 12); // 5 batches per epoch: into epoch 2
    dp_pipeline_destroy(p);

    dp_sampler_config sc = cfg.sampler;
    sc.n_records = 43;
    dp_sampler *ref = NULL;
    cr_assert_eq(dp_sampler_create(&ref, &sc), DP_OK);
    const dp_dataset_info *in = dp_dataset_get_info(direct);
    for (int t = 0; t < 12; t++) {
        int64_t rec[8];
        dp_sampler_batch b;
        cr_assert_eq(dp_sampler_next(ref, rec, &b), DP_OK);
        cr_expect_eq(got[t].epoch, t / 5);
        cr_expect_eq(got[t].index, t % 5);
        cr_expect_eq(got[t].count, 8);
        cr_expect_eq(memcmp(got[t].records, rec, sizeof rec), 0, "batch %d records", t);
        for (int64_t i = 0; i < 8; i++) {
            uint8_t raw[REC];
            int32_t label;
            cr_assert_eq(dp_dataset_read_records(direct, rec[i], 1, raw, &label), DP_OK);
            expect_sample(&got[t], i, raw, label, 21, 2, 1, in->mean, in->std);
        }
    }
    dp_sampler_destroy(ref);
    dp_dataset_destroy(ds);
    dp_dataset_destroy(direct);
}

Test(pipeline, same_batches_for_any_workers_and_buffers)
{
    static copied a[10], b[10];
    dp_pipeline_config cfg = synthetic_config(50, 8, DP_SAMPLER_TRAIN);
    cfg.n_workers = 1;
    cfg.n_buffers = 2;
    dp_pipeline *p = start(&cfg);
    cr_assert_eq(collect(p, a, 10), 10);
    dp_pipeline_destroy(p);
    cfg.n_workers = 3;
    cfg.n_buffers = 5;
    p = start(&cfg);
    cr_assert_eq(collect(p, b, 10), 10);
    dp_pipeline_destroy(p);
    cr_expect_eq(memcmp(a, b, sizeof a), 0, "batches differ between 1 and 3 workers (memcmp)");
}

Test(pipeline, ranks_get_slices_of_the_same_augmented_batch)
{
    enum { B = 12, P = 3, T = 7 };
    static copied whole[T], part[P][T];
    dp_pipeline_config cfg = synthetic_config(40, B, DP_SAMPLER_TRAIN);
    dp_pipeline *p = start(&cfg);
    cr_assert_eq(collect(p, whole, T), T);
    dp_pipeline_destroy(p);
    cfg.sampler.world_size = P;
    for (int r = 0; r < P; r++) {
        cfg.sampler.rank = r;
        p = start(&cfg);
        cr_assert_eq(collect(p, part[r], T), T);
        dp_pipeline_destroy(p);
    }
    for (int t = 0; t < T; t++) {
        for (int r = 0; r < P; r++) {
            const copied *c = &part[r][t];
            int64_t at = r * (B / P);
            cr_expect_eq(c->count, B / P);
            cr_expect_eq(memcmp(c->records, whole[t].records + at, (B / P) * sizeof(int64_t)), 0);
            cr_expect_eq(memcmp(c->labels, whole[t].labels + at, (B / P) * sizeof(int32_t)), 0);
            cr_expect_eq(memcmp(c->images, whole[t].images + at * REC,
                                (B / P) * REC * sizeof(float)),
                         0, "rank %d batch %d: augmentation depends on the rank (memcmp)", r, t);
        }
    }
}

Test(pipeline, resume_from_saved_state_continues_the_same_batches)
{
    static copied first[7], rest_a[6], rest_b[6];
    dp_pipeline_config cfg = synthetic_config(30, 6, DP_SAMPLER_TRAIN);
    dp_pipeline *a = start(&cfg);
    cr_assert_eq(collect(a, first, 7), 7);
    dp_sampler_state saved;
    dp_pipeline_get_state(a, &saved);
    cr_expect_eq(saved.epoch, 1);
    cr_expect_eq(saved.next_batch, 2);
    cr_assert_eq(collect(a, rest_a, 6), 6);
    dp_pipeline_destroy(a);

    cfg.resume = &saved;
    cfg.sampler.seed = 999; // the state's seed wins
    dp_pipeline *b = start(&cfg);
    dp_sampler_state at_start;
    dp_pipeline_get_state(b, &at_start);
    cr_expect_eq(memcmp(&at_start, &saved, sizeof saved), 0);
    cr_assert_eq(collect(b, rest_b, 6), 6);
    dp_pipeline_destroy(b);
    cr_expect_eq(memcmp(rest_a, rest_b, sizeof rest_a), 0, "resumed batches differ (memcmp)");
}

Test(pipeline, read_error_reaches_consumer_naming_record_and_file)
{
    char path[512];
    snprintf(path, sizeof path, "%s", scratch_path("bad.h5"));
    write_dataset(path, 40, 17, 9);
    dp_dataset *ds = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    dp_pipeline_config cfg = synthetic_config(0, 8, DP_SAMPLER_EVAL);
    cfg.dataset = ds;
    dp_pipeline *p = start(&cfg);
    dp_status st = DP_OK;
    int popped = 0;
    while (st == DP_OK) {
        const dp_pipeline_batch *b = NULL;
        st = dp_pipeline_pop(p, &b);
        cr_assert(st != DP_OK || b != NULL, "the epoch ended without reporting record 17");
        if (st == DP_OK) {
            cr_expect_lt(b->index, 2, "batch %lld holds record 17 and cannot be ready",
                         (long long)b->index);
            popped++;
            dp_pipeline_release(p, b);
        }
    }
    expect_error(st, DP_ERR_DATA, path, "record 17 has label 9, outside [0, 4)");
    cr_expect_leq(popped, 2);
    const dp_pipeline_batch *b = NULL;
    expect_error(dp_pipeline_pop(p, &b), DP_ERR_DATA, "record 17");
    dp_pipeline_destroy(p);
    dp_dataset_destroy(ds);
}

Test(pipeline, shutdown_is_clean_at_any_point)
{
    for (int round = 0; round < 24; round++) {
        dp_pipeline_config cfg = synthetic_config(64, 8, DP_SAMPLER_TRAIN);
        cfg.n_workers = 1 + round % 3;
        cfg.n_buffers = 2 + round % 3;
        dp_pipeline *p = start(&cfg);
        const dp_pipeline_batch *held[2] = {NULL, NULL};
        for (int i = 0; i < round % 5; i++) {
            if (held[i % 2] != NULL) {
                dp_pipeline_release(p, held[i % 2]);
            }
            // Keeps up to two batches unreleased (one while popping, so K = 2 never runs dry).
            cr_assert_eq(dp_pipeline_pop(p, &held[i % 2]), DP_OK, "%s", dp_error_message());
        }
        dp_pipeline_destroy(p); // with batches held, slots mid-decode, the reader waiting
    }
    dp_pipeline_destroy(NULL);
}

Test(pipeline, pop_with_every_buffer_held_is_an_error)
{
    dp_pipeline_config cfg = synthetic_config(64, 8, DP_SAMPLER_TRAIN);
    cfg.n_buffers = 2;
    dp_pipeline *p = start(&cfg);
    const dp_pipeline_batch *a = NULL, *b = NULL, *c = NULL;
    cr_assert_eq(dp_pipeline_pop(p, &a), DP_OK);
    cr_assert_eq(dp_pipeline_pop(p, &b), DP_OK);
    expect_error(dp_pipeline_pop(p, &c), DP_ERR_ARG, "all 2 buffers are held");
    dp_pipeline_release(p, a);
    cr_assert_eq(dp_pipeline_pop(p, &c), DP_OK, "%s", dp_error_message());
    cr_expect_eq(c->index, 2);
    dp_pipeline_destroy(p);
}

Test(pipeline, a_batch_held_for_long_does_not_stall_the_others)
{
    dp_pipeline_config cfg = synthetic_config(64, 8, DP_SAMPLER_TRAIN);
    cfg.n_buffers = 3;
    dp_pipeline *p = start(&cfg);
    const dp_pipeline_batch *kept = NULL;
    cr_assert_eq(dp_pipeline_pop(p, &kept), DP_OK);
    static float copy[8 * REC];
    int64_t copy_records[8];
    memcpy(copy, kept->images, sizeof copy);
    memcpy(copy_records, kept->records, sizeof copy_records);
    for (int64_t t = 1; t < 20; t++) { // many times round the pool, batch 0 still held
        const dp_pipeline_batch *b = NULL;
        cr_assert_eq(dp_pipeline_pop(p, &b), DP_OK, "batch %lld: %s", (long long)t,
                     dp_error_message());
        cr_expect_eq(b->epoch * 8 + b->index, t, "batches stay in order");
        dp_pipeline_release(p, b);
    }
    cr_expect_eq(kept->index, 0);
    cr_expect_eq(memcmp(kept->images, copy, sizeof copy), 0, "a held batch was overwritten");
    cr_expect_eq(memcmp(kept->records, copy_records, sizeof copy_records), 0);
    dp_pipeline_release(p, kept);
    dp_pipeline_destroy(p);
}

Test(pipeline, configuration_errors)
{
    dp_pipeline *p = (dp_pipeline *)1;
    dp_pipeline_config cfg = synthetic_config(64, 8, DP_SAMPLER_TRAIN);
    cfg.n_workers = 0;
    expect_error(dp_pipeline_create(&p, &cfg), DP_ERR_ARG, "0 workers");
    cr_expect_null(p);
    cfg = synthetic_config(0, 8, DP_SAMPLER_TRAIN);
    expect_error(dp_pipeline_create(&p, &cfg), DP_ERR_ARG, "synthetic source of 0 records");
    cfg = synthetic_config(64, 8, DP_SAMPLER_TRAIN);
    cfg.sampler.world_size = 3;
    expect_error(dp_pipeline_create(&p, &cfg), DP_ERR_CFG, "global batch 8",
                 "not divisible by the 3 ranks");
    cfg = synthetic_config(64, 8, DP_SAMPLER_TRAIN);
    dp_sampler_state bad = {.seed = 1, .epoch = 0, .next_batch = 99};
    cfg.resume = &bad;
    expect_error(dp_pipeline_create(&p, &cfg), DP_ERR_ARG, "next batch 99");
}

// --- cutout, mixup, cutmix ---

static dp_pipeline_config mixing_config(int64_t n, int64_t batch)
{
    dp_pipeline_config cfg = synthetic_config(n, batch, DP_SAMPLER_TRAIN);
    cfg.cutout = 3;
    cfg.mixup_alpha = 0.4f;
    cfg.cutmix_alpha = 1.0f;
    cfg.mix_prob = 0.75f;
    return cfg;
}

// Expects every batch of got[0..n) to equal the reference of cfg (bitwise).
static void expect_reference(const dp_pipeline_config *cfg, dp_dataset *direct, const copied *got,
                             int n)
{
    ref_ctx r;
    cr_assert_eq(ref_init(&r, cfg, direct), 0);
    for (int t = 0; t < n; t++) {
        char msg[256];
        ref_batch b = as_ref(&got[t]);
        int bad = ref_check_batch(&r, &b, msg, sizeof msg);
        cr_expect_eq(bad, 0, "rank %d: %d samples differ: %s", cfg->sampler.rank, bad, msg);
    }
    ref_fini(&r);
}

Test(pipeline, mixed_batches_match_direct_decoding)
{
    enum { T = 14 };
    static copied got[T];
    dp_pipeline_config cfg = mixing_config(50, 8);
    dp_pipeline *p = start(&cfg);
    cr_assert_eq(collect(p, got, T), T); // 6 batches per epoch: into epoch 2
    dp_pipeline_destroy(p);
    expect_reference(&cfg, NULL, got, T);
    int kinds[3] = {0, 0, 0}, cross = 0;
    for (int t = 0; t < T; t++) {
        cr_assert(got[t].mixed, "mixing on: labels_b and mix_lambda are set");
        for (int64_t i = 0; i < got[t].count; i++) {
            dp_augment_mix m = dp_augment_mix_sample(21, got[t].epoch, got[t].records[i],
                                                     &(dp_augment_config){.mixup_alpha = 0.4f,
                                                                          .cutmix_alpha = 1.0f,
                                                                          .mix_prob = 0.75f},
                                                     SH, SW);
            kinds[m.kind]++;
            cross += m.kind != DP_AUGMENT_MIX_NONE && got[t].labels_b[i] != got[t].labels[i];
        }
    }
    // 112 samples at mix_prob 0.75: each kind is well represented; partners of other classes.
    cr_expect(kinds[0] > 10 && kinds[1] > 20 && kinds[2] > 20, "kinds %d %d %d", kinds[0],
              kinds[1], kinds[2]);
    cr_expect_gt(cross, 20, "mixed samples with a partner of another class: %d", cross);
}

Test(pipeline, dataset_mixed_batches_match_direct_decoding)
{
    const char *path = scratch_path("m.h5");
    write_dataset(path, 43, -1, 0);
    dp_dataset *ds = NULL, *direct = NULL;
    cr_assert_eq(dp_dataset_open(&ds, path), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_dataset_open(&direct, path), DP_OK, "%s", dp_error_message());
    dp_pipeline_config cfg = mixing_config(0, 8);
    cfg.dataset = ds;
    cfg.mix_prob = 1.0f;
    static copied got[7];
    dp_pipeline *p = start(&cfg);
    cr_assert_eq(collect(p, got, 7), 7);
    dp_pipeline_destroy(p);
    expect_reference(&cfg, direct, got, 7);
    dp_dataset_destroy(ds);
    dp_dataset_destroy(direct);
}

Test(pipeline, mixed_batches_are_identical_for_any_workers_and_ranks)
{
    // Bitwise (memcmp): 1 worker vs 3, and P = 1 vs the concatenated slices of P = 2 and 4.
    enum { B = 16, T = 6 };
    static copied one[T], three[T], part[4][T];
    dp_pipeline_config cfg = mixing_config(70, B);
    cfg.n_workers = 1;
    dp_pipeline *p = start(&cfg);
    cr_assert_eq(collect(p, one, T), T);
    dp_pipeline_destroy(p);
    cfg.n_workers = 3;
    p = start(&cfg);
    cr_assert_eq(collect(p, three, T), T);
    dp_pipeline_destroy(p);
    cr_expect_eq(memcmp(one, three, sizeof one), 0, "1 and 3 workers differ (memcmp)");
    const int ranks[2] = {2, 4};
    for (int k = 0; k < 2; k++) {
        int np = ranks[k], slice = B / np;
        cfg.sampler.world_size = np;
        for (int r = 0; r < np; r++) {
            cfg.sampler.rank = r;
            cfg.n_workers = 1 + r % 2;
            p = start(&cfg);
            cr_assert_eq(collect(p, part[r], T), T);
            dp_pipeline_destroy(p);
        }
        for (int t = 0; t < T; t++) {
            for (int r = 0; r < np; r++) {
                const copied *c = &part[r][t], *w = &one[t];
                int64_t at = (int64_t)r * slice;
                cr_assert_eq(c->count, slice);
                cr_expect_eq(memcmp(c->records, w->records + at, slice * sizeof(int64_t)), 0);
                cr_expect_eq(memcmp(c->labels, w->labels + at, slice * sizeof(int32_t)), 0);
                cr_expect_eq(memcmp(c->labels_b, w->labels_b + at, slice * sizeof(int32_t)), 0,
                             "P %d rank %d batch %d: labels_b (memcmp)", np, r, t);
                cr_expect_eq(memcmp(c->mix_lambda, w->mix_lambda + at, slice * sizeof(float)), 0,
                             "P %d rank %d batch %d: mix_lambda (memcmp)", np, r, t);
                cr_expect_eq(memcmp(c->images, w->images + at * REC, slice * REC * sizeof(float)),
                             0, "P %d rank %d batch %d: images depend on the ranks (memcmp)", np,
                             r, t);
            }
        }
    }
}

Test(pipeline, no_mixing_gives_null_labels_b_and_evaluation_only_normalizes)
{
    static copied train[2], eval[5];
    dp_pipeline_config cfg = synthetic_config(37, 8, DP_SAMPLER_TRAIN);
    cfg.cutout = 2;
    cfg.mixup_alpha = 0.5f;
    cfg.mix_prob = 0.0f; // an alpha but no probability: no mixing
    dp_pipeline *p = start(&cfg);
    cr_assert_eq(collect(p, train, 2), 2);
    dp_pipeline_destroy(p);
    cr_expect_eq(train[0].mixed, 0, "labels_b and mix_lambda are NULL without mixing");
    expect_reference(&cfg, NULL, train, 2);

    cfg = mixing_config(37, 8);
    cfg.sampler.mode = DP_SAMPLER_EVAL;
    p = start(&cfg);
    cr_assert_eq(collect(p, eval, 5), 5);
    dp_pipeline_destroy(p);
    const float mean[SC] = {0.5f, 0.5f, 0.5f}, std[SC] = {0.2898f, 0.2898f, 0.2898f};
    for (int t = 0; t < 5; t++) {
        cr_expect_eq(eval[t].mixed, 0, "evaluation does not mix");
        for (int64_t i = 0; i < eval[t].count; i++) {
            uint8_t raw[REC];
            int32_t label;
            dp_pipeline_synthetic_record(&cfg.synthetic, eval[t].records[i], raw, &label);
            expect_sample(&eval[t], i, raw, label, 21, 0, 0, mean, std);
        }
    }
}

// --- allocator hook ---

typedef struct counting_alloc {
    int allocs, frees, fail;
    size_t bytes;
    void *blocks[8];
} counting_alloc;

static void *count_alloc(size_t bytes, void *ctx)
{
    counting_alloc *a = ctx;
    if (a->fail || a->allocs == 8) {
        return NULL;
    }
    a->bytes = bytes;
    void *block = malloc(bytes);
    a->blocks[a->allocs++] = block;
    return block;
}

static void count_free(void *ptr, void *ctx)
{
    counting_alloc *a = ctx;
    for (int i = 0; i < a->allocs; i++) {
        if (a->blocks[i] == ptr) {
            a->blocks[i] = NULL;
            a->frees++;
        }
    }
    free(ptr);
}

// 1 if [p, p + bytes) lies in one of a's live blocks.
static int in_blocks(const counting_alloc *a, const void *p, size_t bytes)
{
    for (int i = 0; i < a->allocs; i++) {
        const char *b = a->blocks[i];
        if (b != NULL && (const char *)p >= b && (const char *)p + bytes <= b + a->bytes) {
            return 1;
        }
    }
    return 0;
}

Test(pipeline, batch_buffers_come_from_the_allocator_hook)
{
    counting_alloc a = {0};
    dp_pipeline_config cfg = mixing_config(64, 8);
    cfg.n_buffers = 3;
    cfg.alloc = count_alloc;
    cfg.free = count_free;
    cfg.alloc_ctx = &a;
    dp_pipeline *p = start(&cfg);
    cr_expect_eq(a.allocs, 3, "one block per buffer");
    cr_expect_geq(a.bytes, 8 * REC * sizeof(float) + 8 * (2 * sizeof(int32_t) + sizeof(float)));
    for (int t = 0; t < 5; t++) {
        const dp_pipeline_batch *b = NULL;
        cr_assert_eq(dp_pipeline_pop(p, &b), DP_OK, "%s", dp_error_message());
        cr_expect(in_blocks(&a, b->images, 8 * REC * sizeof(float)) &&
                      in_blocks(&a, b->labels, 8 * sizeof(int32_t)) &&
                      in_blocks(&a, b->labels_b, 8 * sizeof(int32_t)) &&
                      in_blocks(&a, b->mix_lambda, 8 * sizeof(float)),
                  "batch %d lies outside the allocated blocks", t);
        dp_pipeline_release(p, b);
    }
    dp_pipeline_destroy(p);
    cr_expect_eq(a.frees, 3, "every block goes back through the hook");

    counting_alloc failing = {.fail = 1};
    cfg.alloc_ctx = &failing;
    expect_error(dp_pipeline_create(&p, &cfg), DP_ERR_NOMEM, "allocator returned no");
    cr_expect_null(p);
    cfg.free = NULL;
    expect_error(dp_pipeline_create(&p, &cfg), DP_ERR_ARG, "alloc and free must be set together");
}

// --- wait accounting, worker count, errors ---

Test(pipeline, wait_stats_count_the_consumers_time_in_pop)
{
    dp_pipeline_config cfg = synthetic_config(64, 8, DP_SAMPLER_EVAL);
    cfg.synthetic.h = cfg.synthetic.w = 200; // slow enough to wait for
    cfg.synthetic.n = 32;
    cfg.n_workers = 1;
    dp_pipeline *p = start(&cfg);
    dp_pipeline_wait_stats w;
    dp_pipeline_get_wait_stats(p, &w);
    cr_expect(w.pops == 0 && w.wait_s == 0.0 && w.max_wait_s == 0.0);
    double start_s = dp_time_s();
    int n = 0;
    for (;;) {
        const dp_pipeline_batch *b = NULL;
        cr_assert_eq(dp_pipeline_pop(p, &b), DP_OK, "%s", dp_error_message());
        if (b == NULL) {
            break;
        }
        n++;
        dp_pipeline_release(p, b);
    }
    double wall_s = dp_time_s() - start_s;
    dp_pipeline_get_wait_stats(p, &w);
    cr_expect_eq(n, 4);
    cr_expect_eq(w.pops, 4, "the end-of-epoch pop returns no batch and is not a pop");
    cr_expect_gt(w.wait_s, 0.0);
    cr_expect_gt(w.max_wait_s, 0.0);
    cr_expect_leq(w.max_wait_s, w.wait_s);
    cr_expect_leq(w.wait_s, wall_s, "waited %g s of %g s", w.wait_s, wall_s);
    // The consumer does nothing else, so it spends nearly all its time waiting.
    cr_expect_gt(w.wait_s, 0.5 * wall_s, "waited %g s of %g s", w.wait_s, wall_s);
    dp_pipeline_destroy(p);
}

Test(pipeline, worker_count_never_oversubscribes)
{
    // (CPUs in the mask, CPUs online, ranks per node) -> workers.
    const int64_t cases[][4] = {
        {2, 2, 1, 1},    {16, 16, 1, 15}, {16, 16, 2, 7}, {16, 16, 4, 3}, {16, 16, 16, 1},
        {16, 16, 32, 1}, {4, 16, 4, 3},   {8, 64, 8, 7},  {1, 64, 8, 1},  {256, 256, 1, 64},
        {0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = dp_pipeline_workers_for(cases[i][0], cases[i][1], (int)cases[i][2]);
        cr_expect_eq(got, cases[i][3], "%lld CPUs of %lld, %lld ranks: %d workers, want %lld",
                     (long long)cases[i][0], (long long)cases[i][1], (long long)cases[i][2], got,
                     (long long)cases[i][3]);
    }
    int n = 0;
    cr_assert_eq(dp_pipeline_default_workers(&n, 1), DP_OK);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cr_expect(n >= 1 && n <= (online > 1 ? online - 1 : 1), "%d workers on %ld CPUs", n, online);
    expect_error(dp_pipeline_default_workers(&n, 0), DP_ERR_ARG, "0 ranks per node");
}

Test(pipeline, worker_error_reaches_the_consumer)
{
    dp_pipeline_config cfg = mixing_config(64, 8);
    cfg.sampler.mode = DP_SAMPLER_EVAL; // record order: record 21 is in batch 2
    dp_pipeline *p = NULL;
    cr_assert_eq(dp__pipeline_create_failing(&p, &cfg, 21), DP_OK, "%s", dp_error_message());
    dp_status st = DP_OK;
    int popped = 0;
    while (st == DP_OK) {
        const dp_pipeline_batch *b = NULL;
        st = dp_pipeline_pop(p, &b);
        cr_assert(st != DP_OK || b != NULL, "the epoch ended without the worker's error");
        if (st == DP_OK) {
            cr_expect_lt(b->index, 2, "batch %lld holds record 21", (long long)b->index);
            popped++;
            dp_pipeline_release(p, b);
        }
    }
    expect_error(st, DP_ERR_INTERNAL, "injected worker failure at record 21");
    cr_expect_leq(popped, 2);
    const dp_pipeline_batch *b = NULL;
    expect_error(dp_pipeline_pop(p, &b), DP_ERR_INTERNAL, "record 21");
    dp_pipeline_destroy(p);
}

Test(pipeline, augmentation_configuration_errors)
{
    dp_pipeline *p = (dp_pipeline *)1;
    dp_pipeline_config cfg = mixing_config(64, 8);
    cfg.mix_prob = 1.5f;
    expect_error(dp_pipeline_create(&p, &cfg), DP_ERR_ARG, "mix probability 1.5");
    cr_expect_null(p);
    cfg = mixing_config(64, 8);
    cfg.mixup_alpha = -1.0f;
    expect_error(dp_pipeline_create(&p, &cfg), DP_ERR_ARG, "mixup alpha -1");
    cfg = mixing_config(64, 8);
    cfg.cutout = 5000;
    expect_error(dp_pipeline_create(&p, &cfg), DP_ERR_ARG, "cutout 5000");
}
