// The prefetch pipeline: K slots, each going FREE -> READING (reader thread) -> DECODING
// (workers take chunks of samples, oldest batch first) -> READY -> HELD (consumer) -> FREE.
// The reader puts batch number seq into any free slot; the consumer pops seq 0, 1, 2, ... in
// order. One mutex guards every slot state and counter; three condition variables wake the
// reader (a slot was freed), the workers (samples to decode) and the consumer (a batch is
// ready, an error, the end). Slot buffers are touched without the lock only by the thread whose
// state owns them. With mixing on, the reader also reads each sample's partner (records of the
// global batch come from a second, one-rank sampler) and draws how the sample is mixed; a
// worker augments the partner into its own scratch image and mixes it in.
#include "io/pipeline.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "core/timer.h"
#include "io/augment.h"
#include "io/pipeline_internal.h"
#include "io/rng_streams.h"

enum { MAX_THREADS = 64, MAX_BUFFERS = 64, WORK_CHUNK = 4, ERROR_BYTES = 1024, ALIGN = 64 };

typedef enum slot_state {
    SLOT_FREE,
    SLOT_READING,
    SLOT_DECODING,
    SLOT_READY,
    SLOT_HELD,
} slot_state;

typedef struct slot {
    slot_state state;
    int64_t seq;         // position of its batch in the stream (READING and later)
    int64_t next_sample; // DECODING: next sample a worker may take
    int64_t done;        // DECODING: samples finished
    dp_sampler_batch info;
    int64_t *records;    // [max] sampler order
    int64_t *partners;   // [max] mixing: the partner record of each sample, sampler order
    dp_augment_mix *mix; // [max] mixing: how each sample is mixed, sampler order
    int64_t *sorted;     // [n_read] the records to read (samples and partners), increasing
    int64_t n_read;
    int32_t *src;        // [max] src[i]: position of sample i in sorted order
    int32_t *psrc;       // [max] mixing: position of sample i's partner in sorted order
    uint8_t *raw;        // (n_read, H, W, C) in sorted order
    int32_t *raw_labels; // [n_read] sorted order
    // The batch buffer, one block from cfg.alloc: images, labels, then with mixing labels_b
    // and mix_lambda, each at a multiple of ALIGN bytes.
    void *block;
    float *images;       // (max, C, H, W)
    int32_t *labels;     // [max] sampler order
    int32_t *labels_b;   // [max] mixing only
    float *mix_lambda;   // [max] mixing only
    dp_pipeline_batch pub;
} slot;

// A worker thread and its scratch image (the augmented partner of a mixed sample).
typedef struct worker {
    dp_pipeline *p;
    pthread_t thread;
    float *scratch; // (C, H, W); mixing only
} worker;

struct dp_pipeline {
    dp_pipeline_config cfg; // pointers in it are not kept past create, except the allocator's
    dp_dataset *ds;
    dp_sampler *sampler; // reader thread only, once started
    dp_sampler *global;  // mixing: one-rank sampler giving whole global batches; reader only
    int64_t *global_records; // [B] reader scratch: the records of a global batch
    int32_t *pairs;          // [B] reader scratch: partner positions in a global batch
    int64_t h, w, c, record_bytes, max;
    int64_t batches; // per epoch
    float scale[DP_DATASET_MAX_CHANNELS], bias[DP_DATASET_MAX_CHANNELS];
    int train;
    dp_augment_config aug; // all off in evaluation
    int mixing;            // training with mixup or cutmix on
    int64_t fail_record;   // test seam (pipeline_internal.h); -1: none
    slot *slots;
    int k;

    pthread_mutex_t mu;
    pthread_cond_t reader_cv, worker_cv, consumer_cv;
    int sync_ready; // mutex and condvars initialized
    pthread_t reader;
    int reader_started;
    worker workers[MAX_THREADS];
    int n_workers_started;

    dp_pipeline_wait_stats wait; // consumer thread only

    // Guarded by mu.
    int stop;
    dp_status error;
    char error_msg[ERROR_BYTES];
    int64_t next_pop;  // sequence number of the next batch to pop
    int64_t end_seq;   // evaluation: the number of batches; -1 until the reader reaches it
    dp_sampler_state consumed;
};

// --- locking (a failing pthread lock call is a broken invariant, not a user error) ---

static void lock(dp_pipeline *p)
{
    DP_ASSERT(pthread_mutex_lock(&p->mu) == 0);
}

static void unlock(dp_pipeline *p)
{
    DP_ASSERT(pthread_mutex_unlock(&p->mu) == 0);
}

static void wait_on(pthread_cond_t *cv, dp_pipeline *p)
{
    DP_ASSERT(pthread_cond_wait(cv, &p->mu) == 0);
}

static void wake_all(pthread_cond_t *cv)
{
    DP_ASSERT(pthread_cond_broadcast(cv) == 0);
}

// Records the first failure of any thread (its message is thread-local, so it is copied) and
// wakes everyone. Caller holds mu.
static void fail_locked(dp_pipeline *p, dp_status st)
{
    if (p->error == DP_OK) {
        p->error = st;
        snprintf(p->error_msg, sizeof p->error_msg, "%s", dp_error_message());
    }
    wake_all(&p->reader_cv);
    wake_all(&p->worker_cv);
    wake_all(&p->consumer_cv);
}

// --- synthetic source ---

void dp_pipeline_synthetic_record(const dp_pipeline_synthetic *syn, int64_t record,
                                  uint8_t *image, int32_t *label)
{
    dp_rng r;
    dp_rng_init(&r, syn->seed, (uint32_t)record, (uint32_t)((uint64_t)record >> 32),
                DP_IO_RNG_SYNTHETIC);
    *label = (int32_t)(((uint64_t)dp_rng_u32(&r) * (uint32_t)syn->n_classes) >> 32);
    int64_t bytes = syn->h * syn->w * syn->c;
    for (int64_t i = 0; i < bytes; i += 4) {
        uint32_t word = dp_rng_u32(&r);
        for (int64_t j = 0; j < 4 && i + j < bytes; j++) {
            image[i + j] = (uint8_t)(word >> (8 * j));
        }
    }
}

// --- reader thread ---

// A slot in state st (and, if seq >= 0, holding batch seq), or NULL. Caller holds mu.
static slot *find_state(dp_pipeline *p, slot_state st, int64_t seq)
{
    for (int i = 0; i < p->k; i++) {
        if (p->slots[i].state == st && (seq < 0 || p->slots[i].seq == seq)) {
            return &p->slots[i];
        }
    }
    return NULL;
}

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

// Position of record in s->sorted (it is there).
static int32_t sorted_position(const slot *s, int64_t record)
{
    const int64_t *hit = bsearch(&record, s->sorted, (size_t)s->n_read, sizeof *s->sorted,
                                 compare_i64);
    DP_ASSERT(hit != NULL);
    return (int32_t)(hit - s->sorted);
}

// Mixing: the partner record and the mixing draw of each sample of s. A sample's partner is
// found by its position in the whole global batch, so it is the same for any number of ranks.
static dp_status find_partners(dp_pipeline *p, slot *s)
{
    const dp_sampler_batch *b = &s->info;
    dp_sampler_batch whole;
    DP_TRY(dp_sampler_batch_at(p->global, b->epoch, b->index, p->global_records, &whole));
    dp_augment_mix_partners(p->pairs, whole.count, p->cfg.sampler.seed, b->epoch, b->index);
    int64_t offset = b->first - whole.first; // of this rank's slice in the global batch
    DP_ASSERT(offset >= 0 && offset + b->count <= whole.count);
    for (int64_t i = 0; i < b->count; i++) {
        DP_ASSERT(p->global_records[offset + i] == s->records[i]);
        s->partners[i] = p->global_records[p->pairs[offset + i]];
        s->mix[i] = dp_augment_mix_sample(p->cfg.sampler.seed, b->epoch, s->records[i], &p->aug,
                                          p->h, p->w);
    }
    return DP_OK;
}

// The records to read for s, increasing and distinct: its samples and, with mixing, the
// partners of its mixed samples; then where each sample and partner lies among them.
static void plan_reads(dp_pipeline *p, slot *s)
{
    int64_t n = s->info.count, m = n;
    memcpy(s->sorted, s->records, (size_t)n * sizeof *s->sorted);
    for (int64_t i = 0; p->mixing && i < n; i++) {
        if (s->mix[i].kind != DP_AUGMENT_MIX_NONE) {
            s->sorted[m++] = s->partners[i];
        }
    }
    qsort(s->sorted, (size_t)m, sizeof *s->sorted, compare_i64);
    int64_t distinct = 0;
    for (int64_t i = 0; i < m; i++) {
        if (distinct == 0 || s->sorted[i] != s->sorted[distinct - 1]) {
            s->sorted[distinct++] = s->sorted[i];
        }
    }
    s->n_read = distinct;
    for (int64_t i = 0; i < n; i++) {
        s->src[i] = sorted_position(s, s->records[i]);
        int mixed = p->mixing && s->mix[i].kind != DP_AUGMENT_MIX_NONE;
        s->psrc[i] = mixed ? sorted_position(s, s->partners[i]) : -1;
    }
}

// Fills s (state READING, owned by the reader) with the next batch of the sampler.
static dp_status read_batch(dp_pipeline *p, slot *s)
{
    DP_TRY(dp_sampler_next(p->sampler, s->records, &s->info));
    if (p->mixing) {
        DP_TRY(find_partners(p, s));
    }
    plan_reads(p, s);
    int64_t n = s->n_read;
    if (p->ds != NULL) {
        return dp_dataset_read_indices(p->ds, s->sorted, n, s->raw, s->raw_labels);
    }
    for (int64_t i = 0; i < n; i++) {
        dp_pipeline_synthetic_record(&p->cfg.synthetic, s->sorted[i], s->raw + i * p->record_bytes,
                                     &s->raw_labels[i]);
    }
    return DP_OK;
}

static void *reader_main(void *arg)
{
    dp_pipeline *p = arg;
    lock(p);
    for (int64_t seq = 0;; seq++) {
        slot *s = NULL;
        while (!p->stop && p->error == DP_OK && (s = find_state(p, SLOT_FREE, -1)) == NULL) {
            wait_on(&p->reader_cv, p);
        }
        if (p->stop || p->error != DP_OK) {
            break;
        }
        if (!p->train && seq == p->batches) {
            p->end_seq = seq;
            wake_all(&p->consumer_cv);
            break;
        }
        s->state = SLOT_READING;
        s->seq = seq;
        unlock(p);
        dp_status st = read_batch(p, s);
        lock(p);
        if (st != DP_OK) {
            fail_locked(p, st);
            break;
        }
        s->next_sample = 0;
        s->done = 0;
        s->state = s->info.count == 0 ? SLOT_READY : SLOT_DECODING;
        wake_all(s->state == SLOT_READY ? &p->consumer_cv : &p->worker_cv);
    }
    unlock(p);
    return NULL;
}

// --- worker threads ---

// The DECODING slot of the oldest batch with samples left, or NULL. Caller holds mu.
static slot *find_work(dp_pipeline *p)
{
    slot *best = NULL;
    for (int i = 0; i < p->k; i++) {
        slot *s = &p->slots[i];
        if (s->state == SLOT_DECODING && s->next_sample < s->info.count &&
            (best == NULL || s->seq < best->seq)) {
            best = s;
        }
    }
    return best;
}

// Augments and normalizes record (raw image at position j of s->sorted) into out (C, H, W).
static void decode_one(dp_pipeline *p, const slot *s, float *out, int64_t record, int32_t j)
{
    dp_augment_draw d = dp_augment_sample(p->cfg.sampler.seed, s->info.epoch, record, &p->aug,
                                          p->h, p->w);
    dp_augment_apply(out, s->raw + j * p->record_bytes, p->h, p->w, p->c, p->aug.crop_pad, d,
                     p->scale, p->bias);
}

static dp_status decode_samples(worker *wk, slot *s, int64_t first, int64_t end)
{
    dp_pipeline *p = wk->p;
    int64_t plane = p->h * p->w * p->c;
    for (int64_t i = first; i < end; i++) {
        if (s->records[i] == p->fail_record) {
            return dp_error_set(DP_ERR_INTERNAL, "pipeline: injected worker failure at record "
                                "%lld", (long long)s->records[i]);
        }
        float *out = s->images + i * plane;
        decode_one(p, s, out, s->records[i], s->src[i]);
        s->labels[i] = s->raw_labels[s->src[i]];
        if (!p->mixing) {
            continue;
        }
        s->labels_b[i] = s->labels[i];
        s->mix_lambda[i] = 1.0f;
        if (s->psrc[i] >= 0) {
            decode_one(p, s, wk->scratch, s->partners[i], s->psrc[i]);
            dp_augment_mix_apply(out, wk->scratch, p->h, p->w, p->c, s->mix[i]);
            s->labels_b[i] = s->raw_labels[s->psrc[i]];
            s->mix_lambda[i] = s->mix[i].lambda;
        }
    }
    return DP_OK;
}

static void *worker_main(void *arg)
{
    worker *wk = arg;
    dp_pipeline *p = wk->p;
    lock(p);
    while (!p->stop && p->error == DP_OK) {
        slot *s = find_work(p);
        if (s == NULL) {
            wait_on(&p->worker_cv, p);
            continue;
        }
        int64_t first = s->next_sample;
        int64_t end = first + WORK_CHUNK < s->info.count ? first + WORK_CHUNK : s->info.count;
        s->next_sample = end;
        unlock(p);
        dp_status st = decode_samples(wk, s, first, end);
        lock(p);
        if (st != DP_OK) {
            fail_locked(p, st);
            break;
        }
        s->done += end - first;
        if (s->done == s->info.count) {
            s->state = SLOT_READY;
            wake_all(&p->consumer_cv);
        }
    }
    unlock(p);
    return NULL;
}

// --- create ---

static dp_status check_config(dp_pipeline *p, const dp_pipeline_config *cfg)
{
    if (cfg->n_workers < 1 || cfg->n_workers > MAX_THREADS || cfg->n_buffers < 2 ||
        cfg->n_buffers > MAX_BUFFERS) {
        return dp_error_set(DP_ERR_ARG, "pipeline: %d workers and %d buffers; need 1..%d and 2..%d",
                            cfg->n_workers, cfg->n_buffers, MAX_THREADS, MAX_BUFFERS);
    }
    if (cfg->crop_pad < 0 || cfg->crop_pad > 1024 || cfg->cutout < 0 || cfg->cutout > 4096) {
        return dp_error_set(DP_ERR_ARG, "pipeline: crop padding %d, cutout %d; need 0..1024 and "
                            "0..4096", cfg->crop_pad, cfg->cutout);
    }
    if (!(cfg->mixup_alpha >= 0.0f && cfg->mixup_alpha <= 100.0f) ||
        !(cfg->cutmix_alpha >= 0.0f && cfg->cutmix_alpha <= 100.0f) ||
        !(cfg->mix_prob >= 0.0f && cfg->mix_prob <= 1.0f)) {
        return dp_error_set(DP_ERR_ARG, "pipeline: mixup alpha %g, cutmix alpha %g, mix "
                            "probability %g; need 0..100, 0..100 and 0..1",
                            (double)cfg->mixup_alpha, (double)cfg->cutmix_alpha,
                            (double)cfg->mix_prob);
    }
    if ((cfg->alloc == NULL) != (cfg->free == NULL)) {
        return dp_error_set(DP_ERR_ARG, "pipeline: alloc and free must be set together (or "
                            "both left NULL for malloc and free)");
    }
    if (cfg->dataset != NULL) {
        const dp_dataset_info *in = dp_dataset_get_info(cfg->dataset);
        p->h = in->h;
        p->w = in->w;
        p->c = in->c;
        return DP_OK;
    }
    const dp_pipeline_synthetic *syn = &cfg->synthetic;
    if (syn->n < 1 || syn->h < 1 || syn->w < 1 || syn->c < 1 || syn->c > DP_DATASET_MAX_CHANNELS ||
        syn->n_classes < 1) {
        return dp_error_set(DP_ERR_ARG,
                            "pipeline: synthetic source of %lld records of %lldx%lldx%lld, %d "
                            "classes; need all >= 1 and c <= %d",
                            (long long)syn->n, (long long)syn->h, (long long)syn->w,
                            (long long)syn->c, syn->n_classes, DP_DATASET_MAX_CHANNELS);
    }
    p->h = syn->h;
    p->w = syn->w;
    p->c = syn->c;
    return DP_OK;
}

static dp_status set_normalization(dp_pipeline *p, const dp_pipeline_config *cfg)
{
    float mean[DP_DATASET_MAX_CHANNELS], std[DP_DATASET_MAX_CHANNELS];
    const dp_dataset_info *in = cfg->dataset ? dp_dataset_get_info(cfg->dataset) : NULL;
    for (int64_t ch = 0; ch < p->c; ch++) {
        mean[ch] = cfg->mean ? cfg->mean[ch] : in ? in->mean[ch] : 0.5f;
        std[ch] = cfg->std ? cfg->std[ch] : in ? in->std[ch] : 0.2898f;
        if (!(std[ch] > 0.0f)) {
            return dp_error_set(DP_ERR_ARG, "pipeline: std of channel %lld is %g; need > 0",
                                (long long)ch, (double)std[ch]);
        }
    }
    dp_augment_norm_coeffs(p->scale, p->bias, mean, std, p->c);
    return DP_OK;
}

static void *default_alloc(size_t bytes, void *ctx)
{
    (void)ctx;
    return malloc(bytes);
}

static void default_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

static size_t align_up(size_t bytes)
{
    return (bytes + ALIGN - 1) / ALIGN * ALIGN;
}

// The batch buffer of s: one block from the allocator, carved into the published arrays.
static dp_status alloc_block(dp_pipeline *p, slot *s)
{
    size_t m = (size_t)p->max, image_bytes = align_up(m * (size_t)p->record_bytes * sizeof(float));
    size_t label_bytes = align_up(m * sizeof(int32_t)), lambda_bytes = align_up(m * sizeof(float));
    size_t bytes = image_bytes + label_bytes + (p->mixing ? label_bytes + lambda_bytes : 0);
    s->block = p->cfg.alloc(bytes, p->cfg.alloc_ctx);
    if (s->block == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "pipeline: the allocator returned no %zu-byte batch "
                            "buffer", bytes);
    }
    char *at = s->block;
    s->images = (float *)at;
    s->labels = (int32_t *)(at + image_bytes);
    if (p->mixing) {
        s->labels_b = (int32_t *)(at + image_bytes + label_bytes);
        s->mix_lambda = (float *)(at + image_bytes + 2 * label_bytes);
    }
    return DP_OK;
}

static dp_status alloc_slots(dp_pipeline *p)
{
    p->slots = calloc((size_t)p->k, sizeof *p->slots);
    if (p->slots == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "pipeline: cannot allocate %d slots", p->k);
    }
    // With mixing, a batch reads up to one partner per sample besides its samples.
    size_t m = (size_t)p->max, reads = p->mixing ? 2 * m : m, rec = (size_t)p->record_bytes;
    for (int i = 0; i < p->k; i++) {
        slot *s = &p->slots[i];
        s->records = malloc(m * sizeof *s->records);
        s->sorted = malloc(reads * sizeof *s->sorted);
        s->src = malloc(m * sizeof *s->src);
        s->psrc = malloc(m * sizeof *s->psrc);
        s->raw = malloc(reads * rec);
        s->raw_labels = malloc(reads * sizeof *s->raw_labels);
        if (p->mixing) {
            s->partners = malloc(m * sizeof *s->partners);
            s->mix = malloc(m * sizeof *s->mix);
        }
        if (!s->records || !s->sorted || !s->src || !s->psrc || !s->raw || !s->raw_labels ||
            (p->mixing && (!s->partners || !s->mix))) {
            return dp_error_set(DP_ERR_NOMEM, "pipeline: cannot allocate %d buffers of %zu "
                                "samples of %zu bytes", p->k, m, rec);
        }
        DP_TRY(alloc_block(p, s));
    }
    return DP_OK;
}

// Mixing: the one-rank sampler of whole global batches and the reader's and workers' scratch.
static dp_status alloc_mixing(dp_pipeline *p, const dp_sampler_config *sc)
{
    dp_sampler_config whole = *sc;
    whole.rank = 0;
    whole.world_size = 1;
    DP_TRY(dp_sampler_create(&p->global, &whole));
    size_t b = (size_t)whole.global_batch;
    p->global_records = malloc(b * sizeof *p->global_records);
    p->pairs = malloc(b * sizeof *p->pairs);
    if (p->global_records == NULL || p->pairs == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "pipeline: cannot allocate a global batch of %zu", b);
    }
    for (int i = 0; i < p->cfg.n_workers; i++) {
        p->workers[i].scratch = malloc((size_t)p->record_bytes * sizeof(float));
        if (p->workers[i].scratch == NULL) {
            return dp_error_set(DP_ERR_NOMEM, "pipeline: cannot allocate worker scratch");
        }
    }
    return DP_OK;
}

static dp_status init_sync(dp_pipeline *p)
{
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        return dp_error_set(DP_ERR_INTERNAL, "pipeline: cannot create a mutex");
    }
    if (pthread_cond_init(&p->reader_cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        return dp_error_set(DP_ERR_INTERNAL, "pipeline: cannot create a condition variable");
    }
    if (pthread_cond_init(&p->worker_cv, NULL) != 0) {
        pthread_cond_destroy(&p->reader_cv);
        pthread_mutex_destroy(&p->mu);
        return dp_error_set(DP_ERR_INTERNAL, "pipeline: cannot create a condition variable");
    }
    if (pthread_cond_init(&p->consumer_cv, NULL) != 0) {
        pthread_cond_destroy(&p->worker_cv);
        pthread_cond_destroy(&p->reader_cv);
        pthread_mutex_destroy(&p->mu);
        return dp_error_set(DP_ERR_INTERNAL, "pipeline: cannot create a condition variable");
    }
    p->sync_ready = 1;
    return DP_OK;
}

static dp_status start_threads(dp_pipeline *p)
{
    for (int i = 0; i < p->cfg.n_workers; i++) {
        p->workers[i].p = p;
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
            return dp_error_set(DP_ERR_INTERNAL, "pipeline: cannot start worker thread %d", i);
        }
        p->n_workers_started++;
    }
    if (pthread_create(&p->reader, NULL, reader_main, p) != 0) {
        return dp_error_set(DP_ERR_INTERNAL, "pipeline: cannot start the reader thread");
    }
    p->reader_started = 1;
    return DP_OK;
}

static dp_status make_sampler(dp_pipeline *p, const dp_pipeline_config *cfg)
{
    dp_sampler_config sc = cfg->sampler;
    sc.n_records = cfg->dataset ? dp_dataset_get_info(cfg->dataset)->n : cfg->synthetic.n;
    DP_TRY(dp_sampler_create(&p->sampler, &sc));
    if (cfg->resume != NULL) {
        DP_TRY(dp_sampler_set_state(p->sampler, cfg->resume));
    }
    dp_sampler_get_state(p->sampler, &p->consumed);
    p->cfg.sampler.seed = p->consumed.seed; // the state's seed keys augmentation too
    p->max = dp_sampler_max_local_batch(p->sampler);
    p->batches = dp_sampler_batches_per_epoch(p->sampler);
    p->train = sc.mode == DP_SAMPLER_TRAIN;
    if (p->train) {
        p->aug = (dp_augment_config){.crop_pad = cfg->crop_pad,
                                     .flip = cfg->flip,
                                     .cutout = cfg->cutout,
                                     .mixup_alpha = cfg->mixup_alpha,
                                     .cutmix_alpha = cfg->cutmix_alpha,
                                     .mix_prob = cfg->mix_prob};
    } else {
        p->aug = (dp_augment_config)DP_AUGMENT_CONFIG_INIT;
    }
    p->mixing = dp_augment_mixes(&p->aug);
    if (p->mixing) {
        sc.seed = p->cfg.sampler.seed;
        DP_TRY(alloc_mixing(p, &sc));
    }
    return DP_OK;
}

dp_status dp_pipeline_create(dp_pipeline **out, const dp_pipeline_config *cfg)
{
    return dp__pipeline_create_failing(out, cfg, -1);
}

dp_status dp__pipeline_create_failing(dp_pipeline **out, const dp_pipeline_config *cfg,
                                      int64_t fail_record)
{
    *out = NULL;
    dp_pipeline *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "pipeline: cannot allocate");
    }
    p->cfg = *cfg;
    p->cfg.resume = NULL;
    p->cfg.mean = p->cfg.std = NULL;
    if (p->cfg.alloc == NULL) {
        p->cfg.alloc = default_alloc;
        p->cfg.free = default_free;
    }
    p->ds = cfg->dataset;
    p->k = cfg->n_buffers;
    p->end_seq = -1;
    p->fail_record = fail_record;
    dp_status st;
    DP_TRY_GOTO(check_config(p, cfg), st, fail);
    p->record_bytes = p->h * p->w * p->c;
    DP_TRY_GOTO(set_normalization(p, cfg), st, fail);
    DP_TRY_GOTO(make_sampler(p, cfg), st, fail);
    DP_TRY_GOTO(alloc_slots(p), st, fail);
    DP_TRY_GOTO(init_sync(p), st, fail);
    DP_TRY_GOTO(start_threads(p), st, fail);
    *out = p;
    return DP_OK;
fail:
    dp_pipeline_destroy(p);
    return st;
}

void dp_pipeline_destroy(dp_pipeline *p)
{
    if (p == NULL) {
        return;
    }
    if (p->sync_ready) {
        lock(p);
        p->stop = 1;
        wake_all(&p->reader_cv);
        wake_all(&p->worker_cv);
        wake_all(&p->consumer_cv);
        unlock(p);
    }
    if (p->reader_started) {
        pthread_join(p->reader, NULL);
    }
    for (int i = 0; i < p->n_workers_started; i++) {
        pthread_join(p->workers[i].thread, NULL);
    }
    if (p->sync_ready) {
        pthread_cond_destroy(&p->consumer_cv);
        pthread_cond_destroy(&p->worker_cv);
        pthread_cond_destroy(&p->reader_cv);
        pthread_mutex_destroy(&p->mu);
    }
    for (int i = 0; p->slots != NULL && i < p->k; i++) {
        slot *s = &p->slots[i];
        free(s->records);
        free(s->partners);
        free(s->mix);
        free(s->sorted);
        free(s->src);
        free(s->psrc);
        free(s->raw);
        free(s->raw_labels);
        if (s->block != NULL) {
            p->cfg.free(s->block, p->cfg.alloc_ctx);
        }
    }
    for (int i = 0; i < MAX_THREADS; i++) {
        free(p->workers[i].scratch);
    }
    free(p->slots);
    free(p->global_records);
    free(p->pairs);
    dp_sampler_destroy(p->global);
    dp_sampler_destroy(p->sampler);
    free(p);
}

// --- consumer ---

// Adds the time of one dp_pipeline_pop call that started at start_ns.
static void count_wait(dp_pipeline *p, uint64_t start_ns, const dp_pipeline_batch *got)
{
    double s = (double)(dp_time_ns() - start_ns) * 1e-9;
    p->wait.wait_s += s;
    p->wait.max_wait_s = s > p->wait.max_wait_s ? s : p->wait.max_wait_s;
    p->wait.pops += got != NULL;
}

static dp_status pop_locked(dp_pipeline *p, const dp_pipeline_batch **out);

dp_status dp_pipeline_pop(dp_pipeline *p, const dp_pipeline_batch **out)
{
    uint64_t start_ns = dp_time_ns();
    *out = NULL;
    lock(p);
    dp_status st = pop_locked(p, out); // unlocks
    count_wait(p, start_ns, *out);
    return st;
}

// dp_pipeline_pop with mu held on entry; releases it.
static dp_status pop_locked(dp_pipeline *p, const dp_pipeline_batch **out)
{
    int held = 0;
    for (int i = 0; i < p->k; i++) {
        held += p->slots[i].state == SLOT_HELD;
    }
    if (held == p->k) {
        unlock(p);
        return dp_error_set(DP_ERR_ARG, "pipeline: all %d buffers are held; release a batch "
                            "before popping another", p->k);
    }
    slot *s = NULL;
    while (p->error == DP_OK && p->next_pop != p->end_seq &&
           (s = find_state(p, SLOT_READY, p->next_pop)) == NULL) {
        wait_on(&p->consumer_cv, p);
    }
    if (p->error != DP_OK) {
        dp_status st = p->error;
        char msg[ERROR_BYTES];
        memcpy(msg, p->error_msg, sizeof msg);
        unlock(p);
        return dp_error_set(st, "%s", msg);
    }
    if (p->next_pop == p->end_seq) {
        unlock(p);
        return DP_OK;
    }
    s->state = SLOT_HELD;
    p->next_pop++;
    p->consumed.epoch = s->info.epoch;
    p->consumed.next_batch = s->info.index + 1;
    unlock(p);
    s->pub = (dp_pipeline_batch){.epoch = s->info.epoch,
                                 .index = s->info.index,
                                 .count = s->info.count,
                                 .records = s->records,
                                 .labels = s->labels,
                                 .images = s->images,
                                 .labels_b = s->labels_b,
                                 .mix_lambda = s->mix_lambda};
    *out = &s->pub;
    return DP_OK;
}

void dp_pipeline_release(dp_pipeline *p, const dp_pipeline_batch *batch)
{
    if (batch == NULL) {
        return;
    }
    lock(p);
    for (int i = 0; i < p->k; i++) {
        if (&p->slots[i].pub == batch) {
            DP_ASSERT(p->slots[i].state == SLOT_HELD);
            p->slots[i].state = SLOT_FREE;
            wake_all(&p->reader_cv);
        }
    }
    unlock(p);
}

void dp_pipeline_get_state(const dp_pipeline *p, dp_sampler_state *out)
{
    *out = p->consumed; // written only by dp_pipeline_pop, on this same (consumer) thread
}

int64_t dp_pipeline_batches_per_epoch(const dp_pipeline *p)
{
    return p->batches;
}

int64_t dp_pipeline_max_batch(const dp_pipeline *p)
{
    return p->max;
}

void dp_pipeline_get_shape(const dp_pipeline *p, int64_t *h, int64_t *w, int64_t *c)
{
    *h = p->h;
    *w = p->w;
    *c = p->c;
}

void dp_pipeline_get_wait_stats(const dp_pipeline *p, dp_pipeline_wait_stats *out)
{
    *out = p->wait; // written only by dp_pipeline_pop, on this same (consumer) thread
}
