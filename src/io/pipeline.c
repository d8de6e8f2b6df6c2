// The prefetch pipeline: K slots, each going FREE -> READING (reader thread) -> DECODING
// (workers take chunks of samples, oldest batch first) -> READY -> HELD (consumer) -> FREE.
// The reader puts batch number seq into any free slot; the consumer pops seq 0, 1, 2, ... in
// order. One mutex guards every slot state and counter; three condition variables wake the
// reader (a slot was freed), the workers (samples to decode) and the consumer (a batch is
// ready, an error, the end). Slot buffers are touched without the lock only by the thread whose
// state owns them.
#include "io/pipeline.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "io/augment.h"
#include "io/rng_streams.h"

enum { MAX_THREADS = 64, MAX_BUFFERS = 64, WORK_CHUNK = 4, ERROR_BYTES = 1024 };

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
    int64_t *sorted;     // [max] the same records, increasing
    int32_t *src;        // [max] src[i]: position of sample i in sorted order
    uint8_t *raw;        // (max, H, W, C) in sorted order
    int32_t *raw_labels; // [max] sorted order
    int32_t *labels;     // [max] sampler order
    float *images;       // (max, C, H, W)
    dp_pipeline_batch pub;
} slot;

struct dp_pipeline {
    dp_pipeline_config cfg; // pointers in it are not kept past create
    dp_dataset *ds;
    dp_sampler *sampler; // reader thread only, once started
    int64_t h, w, c, record_bytes, max;
    int64_t batches; // per epoch
    float scale[DP_DATASET_MAX_CHANNELS], bias[DP_DATASET_MAX_CHANNELS];
    int train;
    slot *slots;
    int k;

    pthread_mutex_t mu;
    pthread_cond_t reader_cv, worker_cv, consumer_cv;
    int sync_ready; // mutex and condvars initialized
    pthread_t reader;
    int reader_started;
    pthread_t workers[MAX_THREADS];
    int n_workers_started;

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

// Fills s (state READING, owned by the reader) with the next batch of the sampler.
static dp_status read_batch(dp_pipeline *p, slot *s)
{
    DP_TRY(dp_sampler_next(p->sampler, s->records, &s->info));
    int64_t n = s->info.count;
    memcpy(s->sorted, s->records, (size_t)n * sizeof *s->sorted);
    qsort(s->sorted, (size_t)n, sizeof *s->sorted, compare_i64);
    for (int64_t i = 0; i < n; i++) {
        const int64_t *hit = bsearch(&s->records[i], s->sorted, (size_t)n, sizeof *s->sorted,
                                     compare_i64);
        s->src[i] = (int32_t)(hit - s->sorted);
    }
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

static void decode_samples(dp_pipeline *p, slot *s, int64_t first, int64_t end)
{
    int64_t plane = p->h * p->w * p->c;
    int crop = p->train ? p->cfg.crop_pad : 0;
    int flip = p->train ? p->cfg.flip : 0;
    for (int64_t i = first; i < end; i++) {
        int32_t j = s->src[i];
        dp_augment_draw d = dp_augment_sample(p->cfg.sampler.seed, s->info.epoch, s->records[i],
                                              crop, flip);
        dp_augment_apply(s->images + i * plane, s->raw + j * p->record_bytes, p->h, p->w, p->c,
                         crop, d, p->scale, p->bias);
        s->labels[i] = s->raw_labels[j];
    }
}

static void *worker_main(void *arg)
{
    dp_pipeline *p = arg;
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
        decode_samples(p, s, first, end);
        lock(p);
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
    if (cfg->crop_pad < 0 || cfg->crop_pad > 1024) {
        return dp_error_set(DP_ERR_ARG, "pipeline: crop padding %d is outside 0..1024",
                            cfg->crop_pad);
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

static dp_status alloc_slots(dp_pipeline *p)
{
    p->slots = calloc((size_t)p->k, sizeof *p->slots);
    if (p->slots == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "pipeline: cannot allocate %d slots", p->k);
    }
    size_t m = (size_t)p->max, rec = (size_t)p->record_bytes;
    for (int i = 0; i < p->k; i++) {
        slot *s = &p->slots[i];
        s->records = malloc(m * sizeof *s->records);
        s->sorted = malloc(m * sizeof *s->sorted);
        s->src = malloc(m * sizeof *s->src);
        s->raw = malloc(m * rec);
        s->raw_labels = malloc(m * sizeof *s->raw_labels);
        s->labels = malloc(m * sizeof *s->labels);
        s->images = malloc(m * rec * sizeof *s->images);
        if (!s->records || !s->sorted || !s->src || !s->raw || !s->raw_labels || !s->labels ||
            !s->images) {
            return dp_error_set(DP_ERR_NOMEM, "pipeline: cannot allocate %d buffers of %zu "
                                "samples of %zu bytes", p->k, m, rec);
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
        if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
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
    return DP_OK;
}

dp_status dp_pipeline_create(dp_pipeline **out, const dp_pipeline_config *cfg)
{
    *out = NULL;
    dp_pipeline *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "pipeline: cannot allocate");
    }
    p->cfg = *cfg;
    p->cfg.resume = NULL;
    p->cfg.mean = p->cfg.std = NULL;
    p->ds = cfg->dataset;
    p->k = cfg->n_buffers;
    p->end_seq = -1;
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
        pthread_join(p->workers[i], NULL);
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
        free(s->sorted);
        free(s->src);
        free(s->raw);
        free(s->raw_labels);
        free(s->labels);
        free(s->images);
    }
    free(p->slots);
    dp_sampler_destroy(p->sampler);
    free(p);
}

// --- consumer ---

dp_status dp_pipeline_pop(dp_pipeline *p, const dp_pipeline_batch **out)
{
    *out = NULL;
    lock(p);
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
                                 .images = s->images};
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
