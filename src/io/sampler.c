// Sampler: per-epoch permutations (Fisher-Yates over Philox, keyed by seed and epoch) and the
// split of each global batch over ranks. The permutation of the current epoch is cached; no
// dataset access happens here.
#include "io/sampler.h"

#include <stdlib.h>

#include "core/error.h"
#include "core/rng.h"
#include "io/rng_streams.h"

struct dp_sampler {
    dp_sampler_config cfg;
    int64_t batches;     // per epoch
    int64_t max_local;   // records per local batch, at most
    dp_sampler_state state;
    uint32_t *perm;      // [N], permutation of perm_epoch (training only)
    int64_t perm_epoch;  // -1: none cached
    uint64_t perm_seed;
};

// --- permutation ---

// Uniform in [0, range) for 1 <= range <= 2^32 (Lemire's multiply-shift with rejection).
static uint32_t uniform_below(dp_rng *r, uint64_t range)
{
    if (range > UINT32_MAX) {
        return dp_rng_u32(r); // range == 2^32: every word is uniform
    }
    uint32_t bound = (uint32_t)range;
    uint64_t m = (uint64_t)dp_rng_u32(r) * bound;
    uint32_t low = (uint32_t)m;
    if (low < bound) {
        uint32_t threshold = (uint32_t)(-bound) % bound;
        while (low < threshold) {
            m = (uint64_t)dp_rng_u32(r) * bound;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void dp_sampler_permutation(uint32_t *perm, int64_t n, uint64_t seed, int64_t epoch)
{
    for (int64_t i = 0; i < n; i++) {
        perm[i] = (uint32_t)i;
    }
    dp_rng r;
    dp_rng_init(&r, seed, (uint32_t)epoch, (uint32_t)((uint64_t)epoch >> 32), DP_IO_RNG_SHUFFLE);
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t j = uniform_below(&r, (uint64_t)i + 1);
        uint32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

// --- create ---

static dp_status check_config(const dp_sampler_config *c)
{
    if (c->n_records < 1 || c->n_records > (int64_t)UINT32_MAX) {
        return dp_error_set(DP_ERR_ARG, "sampler: dataset of %lld records; need 1 .. 2^32 - 1",
                            (long long)c->n_records);
    }
    if (c->global_batch < 1) {
        return dp_error_set(DP_ERR_ARG, "sampler: global batch %lld must be >= 1",
                            (long long)c->global_batch);
    }
    if (c->world_size < 1 || c->rank < 0 || c->rank >= c->world_size) {
        return dp_error_set(DP_ERR_ARG, "sampler: rank %d of %d ranks is out of range", c->rank,
                            c->world_size);
    }
    if (c->mode != DP_SAMPLER_TRAIN && c->mode != DP_SAMPLER_EVAL) {
        return dp_error_set(DP_ERR_ARG, "sampler: unknown mode %d", (int)c->mode);
    }
    if (c->mode == DP_SAMPLER_TRAIN && c->global_batch % c->world_size != 0) {
        return dp_error_set(DP_ERR_CFG,
                            "global batch %lld is not divisible by the %d ranks (each rank must "
                            "get the same number of records)",
                            (long long)c->global_batch, c->world_size);
    }
    if (c->mode == DP_SAMPLER_TRAIN && c->n_records < c->global_batch) {
        return dp_error_set(DP_ERR_CFG,
                            "the dataset has %lld records, fewer than one global batch of %lld",
                            (long long)c->n_records, (long long)c->global_batch);
    }
    return DP_OK;
}

dp_status dp_sampler_create(dp_sampler **out, const dp_sampler_config *cfg)
{
    *out = NULL;
    DP_TRY(check_config(cfg));
    dp_sampler *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "sampler: cannot allocate");
    }
    s->cfg = *cfg;
    int64_t n = cfg->n_records, b = cfg->global_batch, p = cfg->world_size;
    if (cfg->mode == DP_SAMPLER_TRAIN) {
        s->batches = n / b;
        s->max_local = b / p;
        s->perm = malloc((size_t)n * sizeof *s->perm);
        if (s->perm == NULL) {
            free(s);
            return dp_error_set(DP_ERR_NOMEM, "sampler: cannot allocate a permutation of %lld",
                                (long long)n);
        }
    } else {
        s->batches = (n + b - 1) / b;
        s->max_local = (b + p - 1) / p;
    }
    s->state.seed = cfg->seed;
    s->perm_epoch = -1;
    *out = s;
    return DP_OK;
}

void dp_sampler_destroy(dp_sampler *s)
{
    if (s == NULL) {
        return;
    }
    free(s->perm);
    free(s);
}

int64_t dp_sampler_batches_per_epoch(const dp_sampler *s)
{
    return s->batches;
}

int64_t dp_sampler_max_local_batch(const dp_sampler *s)
{
    return s->max_local;
}

// --- batches ---

// This rank's slice of global batch t: [*first, *first + *count) in epoch order.
static void local_slice(const dp_sampler *s, int64_t t, int64_t *first, int64_t *count)
{
    int64_t b = s->cfg.global_batch, p = s->cfg.world_size, r = s->cfg.rank;
    int64_t start = t * b;
    if (s->cfg.mode == DP_SAMPLER_TRAIN) {
        *first = start + r * (b / p);
        *count = b / p;
        return;
    }
    int64_t m = s->cfg.n_records - start < b ? s->cfg.n_records - start : b;
    int64_t base = m / p, rem = m % p;
    *first = start + r * base + (r < rem ? r : rem);
    *count = base + (r < rem ? 1 : 0);
}

dp_status dp_sampler_batch_at(dp_sampler *s, int64_t epoch, int64_t t, int64_t *records,
                              dp_sampler_batch *out)
{
    if (epoch < 0 || t < 0 || t >= s->batches) {
        return dp_error_set(DP_ERR_ARG, "sampler: batch %lld of epoch %lld is outside [0, %lld)",
                            (long long)t, (long long)epoch, (long long)s->batches);
    }
    int64_t first, count;
    local_slice(s, t, &first, &count);
    if (s->cfg.mode == DP_SAMPLER_TRAIN) {
        if (s->perm_epoch != epoch || s->perm_seed != s->state.seed) {
            dp_sampler_permutation(s->perm, s->cfg.n_records, s->state.seed, epoch);
            s->perm_epoch = epoch;
            s->perm_seed = s->state.seed;
        }
        for (int64_t i = 0; i < count; i++) {
            records[i] = s->perm[first + i];
        }
    } else {
        for (int64_t i = 0; i < count; i++) {
            records[i] = first + i;
        }
    }
    out->epoch = epoch;
    out->index = t;
    out->first = first;
    out->count = count;
    return DP_OK;
}

dp_status dp_sampler_next(dp_sampler *s, int64_t *records, dp_sampler_batch *out)
{
    if (s->state.next_batch >= s->batches) {
        s->state.epoch++;
        s->state.next_batch = 0;
    }
    DP_TRY(dp_sampler_batch_at(s, s->state.epoch, s->state.next_batch, records, out));
    s->state.next_batch++;
    return DP_OK;
}

void dp_sampler_get_state(const dp_sampler *s, dp_sampler_state *out)
{
    *out = s->state;
}

dp_status dp_sampler_set_state(dp_sampler *s, const dp_sampler_state *state)
{
    if (state->epoch < 0) {
        return dp_error_set(DP_ERR_ARG, "sampler state: epoch %lld is negative",
                            (long long)state->epoch);
    }
    if (state->next_batch < 0 || state->next_batch > s->batches) {
        return dp_error_set(DP_ERR_ARG,
                            "sampler state: next batch %lld is outside [0, %lld] (batches per "
                            "epoch of this dataset, batch size and world size)",
                            (long long)state->next_batch, (long long)s->batches);
    }
    s->state = *state;
    return DP_OK;
}
