// Sampler and sharding: which dataset records rank r reads for global batch t of epoch e.
// Training: epoch e has one permutation of [0, N) drawn from (seed, e) with the Philox RNG, the
// same on every rank; global batch t is positions [t*B, (t+1)*B) of it and rank r takes the
// contiguous slice r of B/P of them. The last N mod B records of a training epoch are dropped
// (each epoch drops different ones, since the permutation changes). Evaluation: no shuffle,
// batches of B in record order, the last partial batch kept; each batch is split over the P
// ranks as evenly as possible (slice sizes differ by at most one), so every record is seen
// exactly once across ranks. The sampler reads no data; the pipeline does.
#ifndef DP_IO_SAMPLER_H
#define DP_IO_SAMPLER_H

#include <stdint.h>

#include "core/status.h"

typedef enum dp_sampler_mode {
    DP_SAMPLER_TRAIN = 0, // shuffled per epoch, last partial batch dropped
    DP_SAMPLER_EVAL = 1,  // record order, every record once
} dp_sampler_mode;

typedef struct dp_sampler_config {
    int64_t n_records;    // N, records in the dataset; 1 .. 2^32 - 1
    int64_t global_batch; // B, records per step over all ranks
    int rank;             // r, 0 <= r < world_size
    int world_size;       // P
    uint64_t seed;
    dp_sampler_mode mode;
} dp_sampler_config;

#define DP_SAMPLER_CONFIG_INIT                                                                    \
    {.n_records = -1, .global_batch = -1, .rank = 0, .world_size = 1, .seed = 0,                 \
     .mode = DP_SAMPLER_TRAIN}

// Where a run is: the next call of dp_sampler_next returns batch next_batch of epoch epoch.
// Saved in checkpoints; restoring it resumes with the same batches.
typedef struct dp_sampler_state {
    uint64_t seed;
    int64_t epoch;      // >= 0
    int64_t next_batch; // 0 <= next_batch <= batches per epoch (== means the epoch is done)
} dp_sampler_state;

// One local batch: the slice of global batch `index` of `epoch` that this rank reads.
typedef struct dp_sampler_batch {
    int64_t epoch;
    int64_t index; // t, the global batch within the epoch
    int64_t first; // position of this slice in the epoch's order (t*B + offset of rank r)
    int64_t count; // records in this slice (0 is possible in eval mode when P > records left)
} dp_sampler_batch;

typedef struct dp_sampler dp_sampler;

// Creates a sampler at epoch 0, batch 0. Returns DP_ERR_CFG naming the numbers when, in
// training mode, B is not divisible by P or N < B; DP_ERR_ARG for N, B, P or r out of range;
// DP_ERR_NOMEM. A sampler is not thread-safe (it caches the current epoch's permutation).
DP_MUST_CHECK dp_status dp_sampler_create(dp_sampler **out, const dp_sampler_config *cfg);

// Accepts NULL.
void dp_sampler_destroy(dp_sampler *s);

// Global batches per epoch: floor(N / B) in training, ceil(N / B) in evaluation.
int64_t dp_sampler_batches_per_epoch(const dp_sampler *s);

// The most records one local batch can hold: B / P in training, ceil(B / P) in evaluation.
// Size record buffers with it.
int64_t dp_sampler_max_local_batch(const dp_sampler *s);

// Fills records[0..count) (capacity dp_sampler_max_local_batch) with the dataset indices of
// rank r's slice of global batch t of epoch, in permutation order, and describes it in *out.
// Random access; does not move the state. Returns DP_ERR_ARG if epoch < 0 or t is outside
// [0, batches per epoch).
DP_MUST_CHECK dp_status dp_sampler_batch_at(dp_sampler *s, int64_t epoch, int64_t t,
                                            int64_t *records, dp_sampler_batch *out);

// Returns the batch the state points at (moving to the next epoch first when the current one
// is done) and advances the state past it. records as in dp_sampler_batch_at.
DP_MUST_CHECK dp_status dp_sampler_next(dp_sampler *s, int64_t *records, dp_sampler_batch *out);

void dp_sampler_get_state(const dp_sampler *s, dp_sampler_state *out);

// Restores a state saved by dp_sampler_get_state (possibly by another process with the same
// N, B and P). Returns DP_ERR_ARG naming the field if epoch < 0 or next_batch is outside
// [0, batches per epoch]; the sampler is unchanged then.
DP_MUST_CHECK dp_status dp_sampler_set_state(dp_sampler *s, const dp_sampler_state *state);

// The permutation of epoch under seed: perm[0..n) (n < 2^32) by Fisher-Yates, the swap for
// position i drawn from the stream (seed; epoch, DP_IO_RNG_SHUFFLE) (io/rng_streams.h) without
// modulo bias. A pure function of (n, seed, epoch).
void dp_sampler_permutation(uint32_t *perm, int64_t n, uint64_t seed, int64_t epoch);

#endif
