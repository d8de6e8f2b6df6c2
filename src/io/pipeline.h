// Prefetching data pipeline: one reader thread takes this rank's next local batches from the
// sampler and reads them from the dataset (sorted runs, one hyperslab read each) or generates
// them (synthetic source), with the mixing partners of its samples when mixup/cutmix is on;
// worker threads augment and normalize each sample into float NCHW (augment.h); finished
// batches wait in a pool of K buffers and the consumer pops them in order.
// It does no device copies: a trainer copies a popped batch to the GPU itself (the batch
// buffers can be pinned host memory through the allocator hook).
#ifndef DP_IO_PIPELINE_H
#define DP_IO_PIPELINE_H

#include <stddef.h>
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
    int n_workers;                  // augmenting threads, 1..64 (dp_pipeline_default_workers)
    int n_buffers;                  // K, batches in flight, 2..64
    // Augmentation, training only (augment.h); evaluation only normalizes.
    int crop_pad;       // random crop from the image zero-padded by this, 0..1024; 0: off
    int flip;           // random horizontal flip
    int cutout;         // side of the square set to 0 after normalization, 0..4096; 0: off
    float mixup_alpha;  // Beta(alpha, alpha) of mixup's lambda, 0..100; 0: off
    float cutmix_alpha; // Beta(alpha, alpha) of cutmix's lambda, 0..100; 0: off
    float mix_prob;     // probability that a sample is mixed, 0..1 (when an alpha is > 0)
    // Normalization per channel, of pixel/255; NULL: the dataset's (synthetic: mean 0.5 and
    // std 0.2898, those of uniform bytes).
    const float *mean;
    const float *std;
    // Allocator of the K batch buffers (images, labels, labels_b, mix_lambda: one block per
    // buffer), e.g. cudaHostAlloc/cudaFreeHost for pinned memory, called from create and
    // destroy only, on the caller's thread, with alloc_ctx. Both NULL: malloc and free. alloc
    // returns NULL on failure; its blocks must be aligned for float (malloc's alignment).
    void *(*alloc)(size_t bytes, void *ctx);
    void (*free)(void *ptr, void *ctx);
    void *alloc_ctx;
} dp_pipeline_config;

#define DP_PIPELINE_CONFIG_INIT                                                                   \
    {.dataset = NULL, .synthetic = {.n = 0, .h = 0, .w = 0, .c = 0, .n_classes = 0, .seed = 0},  \
     .sampler = DP_SAMPLER_CONFIG_INIT, .resume = NULL, .n_workers = 2, .n_buffers = 4,          \
     .crop_pad = 0, .flip = 0, .cutout = 0, .mixup_alpha = 0.0f, .cutmix_alpha = 0.0f,           \
     .mix_prob = 1.0f, .mean = NULL, .std = NULL, .alloc = NULL, .free = NULL,                   \
     .alloc_ctx = NULL}

// A ready batch; the pointers stay valid until it is released.
// With mixing on (training, an alpha > 0 and mix_prob > 0), sample i is a mix of its own
// record and of a partner from the same global batch (augment.h), and its loss is
//     mix_lambda[i] * xent(labels[i]) + (1 - mix_lambda[i]) * xent(labels_b[i]);
// an unmixed sample has labels_b[i] == labels[i] and mix_lambda[i] == 1. With mixing off,
// labels_b and mix_lambda are NULL and the loss is xent(labels[i]).
typedef struct dp_pipeline_batch {
    int64_t epoch, index;      // sampler epoch and global batch t
    int64_t count;             // samples in this local batch (<= dp_pipeline_max_batch)
    const int64_t *records;    // [count] dataset record of each sample
    const int32_t *labels;     // [count] in [0, n_classes): label a, the sample's own
    const float *images;       // (count, C, H, W) NCHW float32, host, normalized
    const int32_t *labels_b;   // [count] label b, the partner's; NULL when mixing is off
    const float *mix_lambda;   // [count] weight of label a, in [0, 1]; NULL when mixing is off
} dp_pipeline_batch;

// Time the consumer spent in dp_pipeline_pop (waiting for a batch, almost all of it): the
// trainer's "data wait".
typedef struct dp_pipeline_wait_stats {
    int64_t pops;      // calls of dp_pipeline_pop that returned a batch
    double wait_s;     // seconds spent in dp_pipeline_pop, over all calls
    double max_wait_s; // the longest single call
} dp_pipeline_wait_stats;

typedef struct dp_pipeline dp_pipeline;

// Checks the config, allocates K batch buffers and starts the reader and worker threads, which
// begin prefetching at once. Returns DP_ERR_ARG naming the field (a count, an augmentation
// setting out of range, only one of alloc and free set), the sampler's DP_ERR_CFG, DP_ERR_NOMEM
// (also when cfg->alloc returns NULL), DP_ERR_INTERNAL if a thread cannot start. On error *out
// is NULL, no thread is left running and every block allocated has been freed.
DP_MUST_CHECK dp_status dp_pipeline_create(dp_pipeline **out, const dp_pipeline_config *cfg);

// Stops and joins every thread (a read in progress finishes first) and frees everything,
// including batches not released. Safe at any point. Accepts NULL.
void dp_pipeline_destroy(dp_pipeline *p);

// Blocks until the next batch in order is ready and stores it in *out; in evaluation, *out is
// NULL once the epoch is over. If a thread failed, returns its status with its message (which
// names the file and the record index for a read error), now and on every later call.
// Returns DP_ERR_ARG if all K buffers are held by the caller. The time spent here is counted
// (dp_pipeline_get_wait_stats). Consumer thread only.
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

// The consumer's waiting so far (monotonic clock). A trainer reports the difference of two
// calls as the data wait of an interval. Consumer thread only.
void dp_pipeline_get_wait_stats(const dp_pipeline *p, dp_pipeline_wait_stats *out);

// --- worker count ---

// The worker count for one rank: the CPUs this rank may use, less one for its training thread,
// at least 1 and at most 64. A rank's CPUs: cpus_available (those of the process's affinity
// mask) if the launcher bound the rank to a share of the node (cpus_available * ranks_per_node
// <= cpus_online), else cpus_available / ranks_per_node (rounded down), since the ranks of the
// node share the mask. So the workers of all ranks of a node, with their training threads, never
// outnumber the CPUs, except that a rank with a single CPU still gets one worker (a pipeline
// needs one). The reader thread is not counted: it mostly waits for a free buffer or for I/O.
// Pure; arguments < 1 count as 1.
int dp_pipeline_workers_for(int64_t cpus_available, int64_t cpus_online, int ranks_per_node);

// dp_pipeline_workers_for with this process's CPUs: sched_getaffinity (sysconf's online count if
// that fails) and sysconf(_SC_NPROCESSORS_ONLN). Returns DP_ERR_ARG if ranks_per_node < 1.
DP_MUST_CHECK dp_status dp_pipeline_default_workers(int *out, int ranks_per_node);

#endif
