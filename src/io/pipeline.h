// Prefetching data pipeline: one reader thread takes this rank's next local batches from the
// sampler and reads them from the dataset (sorted runs, one hyperslab read each) or generates
// them (synthetic source); worker threads augment and normalize each sample into float NCHW;
// finished batches wait in a pool of K buffers and the consumer pops them in order.
// It does no device copies: a trainer copies a popped batch to the GPU itself.
#ifndef DP_IO_PIPELINE_H
#define DP_IO_PIPELINE_H

#include <stdint.h>

#include "core/status.h"
#include "io/dataset.h"
#include "io/sampler.h"

// A source with no file: record i is a pure function of (seed, i).
typedef struct dp_pipeline_synthetic {
    int64_t n;       // records
    int64_t h, w, c; // image shape, HWC, 1 <= c <= DP_DATASET_MAX_CHANNELS
    int n_classes;
    uint64_t seed;   // of the images and labels (not of the shuffle)
} dp_pipeline_synthetic;

// Record `record` of a synthetic source: image (h, w, c) uint8 HWC and its label in
// [0, n_classes), from stream (seed; record, 0, DP_IO_RNG_SYNTHETIC).
void dp_pipeline_synthetic_record(const dp_pipeline_synthetic *syn, int64_t record,
                                  uint8_t *image, int32_t *label);

typedef struct dp_pipeline_config {
    // The source: a dataset (borrowed; the pipeline's reader thread uses it from create to
    // destroy, so the caller must not use it meanwhile), or, if NULL, the synthetic source.
    dp_dataset *dataset;
    dp_pipeline_synthetic synthetic;
    // Sharding and shuffle; n_records is taken from the source. Training runs for ever (the
    // consumer stops); evaluation ends after one epoch.
    dp_sampler_config sampler;
    const dp_sampler_state *resume; // NULL: epoch 0, batch 0
    int n_workers;                  // augmenting threads, 1..64
    int n_buffers;                  // K, batches in flight, 2..64
    int crop_pad;                   // training only: random crop with this zero padding
    int flip;                       // training only: random horizontal flip
    // Normalization per channel, of pixel/255; NULL: the dataset's (synthetic: mean 0.5 and
    // std 0.2898, those of uniform bytes).
    const float *mean;
    const float *std;
} dp_pipeline_config;

#define DP_PIPELINE_CONFIG_INIT                                                                   \
    {.dataset = NULL, .synthetic = {.n = 0, .h = 0, .w = 0, .c = 0, .n_classes = 0, .seed = 0},  \
     .sampler = DP_SAMPLER_CONFIG_INIT, .resume = NULL, .n_workers = 2, .n_buffers = 4,          \
     .crop_pad = 0, .flip = 0, .mean = NULL, .std = NULL}

// A ready batch; the pointers stay valid until it is released.
typedef struct dp_pipeline_batch {
    int64_t epoch, index;   // sampler epoch and global batch t
    int64_t count;          // samples in this local batch (<= dp_pipeline_max_batch)
    const int64_t *records; // [count] dataset record of each sample
    const int32_t *labels;  // [count] in [0, n_classes)
    const float *images;    // (count, C, H, W) NCHW float32, host, normalized
} dp_pipeline_batch;

typedef struct dp_pipeline dp_pipeline;

// Checks the config, allocates K batch buffers and starts the reader and worker threads, which
// begin prefetching at once. Returns DP_ERR_ARG naming the field, the sampler's DP_ERR_CFG,
// DP_ERR_NOMEM, DP_ERR_INTERNAL if a thread cannot start. On error *out is NULL and no thread
// is left running.
DP_MUST_CHECK dp_status dp_pipeline_create(dp_pipeline **out, const dp_pipeline_config *cfg);

// Stops and joins every thread (a read in progress finishes first) and frees everything,
// including batches not released. Safe at any point. Accepts NULL.
void dp_pipeline_destroy(dp_pipeline *p);

// Blocks until the next batch in order is ready and stores it in *out; in evaluation, *out is
// NULL once the epoch is over. If a thread failed, returns its status with its message (which
// names the file and the record index for a read error), now and on every later call.
// Returns DP_ERR_ARG if all K buffers are held by the caller. Consumer thread only.
DP_MUST_CHECK dp_status dp_pipeline_pop(dp_pipeline *p, const dp_pipeline_batch **out);

// Gives a popped batch's buffer back for prefetching. Batches may be held several at a time
// and released in any order. Consumer thread only.
void dp_pipeline_release(dp_pipeline *p, const dp_pipeline_batch *batch);

// The sampler state after the last popped batch (the resume state at first): what a checkpoint
// stores so that a run resumed from it sees the batches that come next. Consumer thread only.
void dp_pipeline_get_state(const dp_pipeline *p, dp_sampler_state *out);

// The largest count of a batch, the global batches per epoch (as the sampler's), and the image
// shape (H, W, C of the source).
int64_t dp_pipeline_max_batch(const dp_pipeline *p);
int64_t dp_pipeline_batches_per_epoch(const dp_pipeline *p);
void dp_pipeline_get_shape(const dp_pipeline *p, int64_t *h, int64_t *w, int64_t *c);

#endif
