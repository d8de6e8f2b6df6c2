// The reference for pipeline tests: what a batch of the pipeline must hold, decoded sample by
// sample on the calling thread from the public pieces (a one-rank sampler for the global batch,
// the mixing partners, augment.h), with no threads. Plain C (no Criterion), so that the TSan
// program uses it too. Test code only.
#ifndef DP_TESTS_IO_PIPELINE_REF_H
#define DP_TESTS_IO_PIPELINE_REF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/augment.h"
#include "io/dataset.h"
#include "io/pipeline.h"
#include "io/sampler.h"

typedef struct ref_ctx {
    dp_pipeline_config cfg;
    dp_dataset *direct; // the source read directly, or NULL for cfg.synthetic
    dp_sampler *whole;  // one-rank sampler of the same records, batch and seed
    dp_augment_config aug;
    int train, mixing;
    int64_t h, w, c, plane, global_batch, slice;
    float scale[DP_DATASET_MAX_CHANNELS], bias[DP_DATASET_MAX_CHANNELS];
    int64_t *global_records;
    int32_t *pairs;
    uint8_t *raw;
    float *own, *partner;
} ref_ctx;

// One batch as popped (copied or not).
typedef struct ref_batch {
    int64_t epoch, index, count;
    const int64_t *records;
    const int32_t *labels, *labels_b;
    const float *images, *mix_lambda;
} ref_batch;

static inline void ref_fini(ref_ctx *r)
{
    dp_sampler_destroy(r->whole);
    free(r->global_records);
    free(r->pairs);
    free(r->raw);
    free(r->own);
    free(r->partner);
    memset(r, 0, sizeof *r);
}

// Prepares the reference of pipelines made with cfg (training, rank cfg->sampler.rank);
// direct: a second handle on cfg->dataset, or NULL for the synthetic source. Returns 0, or -1
// with a message on stderr.
static inline int ref_init(ref_ctx *r, const dp_pipeline_config *cfg, dp_dataset *direct)
{
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    r->direct = direct;
    const dp_dataset_info *in = direct ? dp_dataset_get_info(direct) : NULL;
    r->h = in ? in->h : cfg->synthetic.h;
    r->w = in ? in->w : cfg->synthetic.w;
    r->c = in ? in->c : cfg->synthetic.c;
    r->plane = r->h * r->w * r->c;
    float mean[DP_DATASET_MAX_CHANNELS], std[DP_DATASET_MAX_CHANNELS];
    for (int64_t ch = 0; ch < r->c; ch++) {
        mean[ch] = cfg->mean ? cfg->mean[ch] : in ? in->mean[ch] : 0.5f;
        std[ch] = cfg->std ? cfg->std[ch] : in ? in->std[ch] : 0.2898f;
    }
    dp_augment_norm_coeffs(r->scale, r->bias, mean, std, r->c);
    r->train = cfg->sampler.mode == DP_SAMPLER_TRAIN;
    r->aug = (dp_augment_config)DP_AUGMENT_CONFIG_INIT;
    if (r->train) {
        r->aug = (dp_augment_config){cfg->crop_pad, cfg->flip, cfg->cutout, cfg->mixup_alpha,
                                     cfg->cutmix_alpha, cfg->mix_prob};
    }
    r->mixing = dp_augment_mixes(&r->aug);
    dp_sampler_config sc = cfg->sampler;
    sc.n_records = in ? in->n : cfg->synthetic.n;
    sc.rank = 0;
    sc.world_size = 1;
    r->global_batch = sc.global_batch;
    r->slice = cfg->sampler.global_batch / cfg->sampler.world_size;
    if (dp_sampler_create(&r->whole, &sc) != DP_OK) {
        fprintf(stderr, "ref: sampler: %s\n", dp_error_message());
        return -1;
    }
    r->global_records = malloc((size_t)sc.global_batch * sizeof *r->global_records);
    r->pairs = malloc((size_t)sc.global_batch * sizeof *r->pairs);
    r->raw = malloc((size_t)r->plane);
    r->own = malloc((size_t)r->plane * sizeof *r->own);
    r->partner = malloc((size_t)r->plane * sizeof *r->partner);
    if (!r->global_records || !r->pairs || !r->raw || !r->own || !r->partner) {
        fprintf(stderr, "ref: out of memory\n");
        ref_fini(r);
        return -1;
    }
    return 0;
}

// Reads and augments record into out (C, H, W); its label into *label. Returns 0 or -1.
static inline int ref_decode(ref_ctx *r, float *out, int32_t *label, int64_t epoch,
                             int64_t record)
{
    if (r->direct != NULL) {
        if (dp_dataset_read_records(r->direct, record, 1, r->raw, label) != DP_OK) {
            fprintf(stderr, "ref: %s\n", dp_error_message());
            return -1;
        }
    } else {
        dp_pipeline_synthetic_record(&r->cfg.synthetic, record, r->raw, label);
    }
    uint64_t seed = r->cfg.sampler.seed;
    dp_augment_draw d = dp_augment_sample(seed, epoch, record, &r->aug, r->h, r->w);
    dp_augment_apply(out, r->raw, r->h, r->w, r->c, r->aug.crop_pad, d, r->scale, r->bias);
    return 0;
}

// Compares training batch b of rank cfg.sampler.rank with the reference, bitwise (memcmp):
// its records (the sampler's slice), images, labels and, with mixing, labels_b and mix_lambda
// (which must be NULL without mixing). Returns the number of samples that differ (or -1 on a
// reference failure), and describes the first difference in msg.
static inline int ref_check_batch(ref_ctx *r, const ref_batch *b, char *msg, size_t msg_size)
{
    msg[0] = '\0';
    dp_sampler_batch whole;
    if (dp_sampler_batch_at(r->whole, b->epoch, b->index, r->global_records, &whole) != DP_OK) {
        snprintf(msg, msg_size, "ref: %s", dp_error_message());
        return -1;
    }
    if (b->count != r->slice || (r->mixing != (b->labels_b != NULL)) ||
        (r->mixing != (b->mix_lambda != NULL))) {
        snprintf(msg, msg_size, "batch %lld: count %lld (want %lld), labels_b %p, mix_lambda %p",
                 (long long)b->index, (long long)b->count, (long long)r->slice,
                 (const void *)b->labels_b, (const void *)b->mix_lambda);
        return (int)r->slice;
    }
    uint64_t seed = r->cfg.sampler.seed;
    dp_augment_mix_partners(r->pairs, whole.count, seed, b->epoch, b->index);
    int64_t offset = (int64_t)r->cfg.sampler.rank * r->slice;
    int bad = 0;
    for (int64_t i = 0; i < b->count; i++) {
        int64_t rec = r->global_records[offset + i];
        int32_t la, lb = 0;
        if (ref_decode(r, r->own, &la, b->epoch, rec) != 0) {
            return -1;
        }
        float lambda = 1.0f;
        dp_augment_mix m = dp_augment_mix_sample(seed, b->epoch, rec, &r->aug, r->h, r->w);
        lb = la;
        if (m.kind != DP_AUGMENT_MIX_NONE) {
            int64_t prec = r->global_records[r->pairs[offset + i]];
            if (ref_decode(r, r->partner, &lb, b->epoch, prec) != 0) {
                return -1;
            }
            dp_augment_mix_apply(r->own, r->partner, r->h, r->w, r->c, m);
            lambda = m.lambda;
        }
        int same = b->records[i] == rec && b->labels[i] == la &&
                   memcmp(b->images + i * r->plane, r->own, (size_t)r->plane * sizeof(float)) == 0;
        if (r->mixing) {
            same = same && b->labels_b[i] == lb &&
                   memcmp(&b->mix_lambda[i], &lambda, sizeof lambda) == 0;
        }
        if (!same && bad++ == 0) {
            snprintf(msg, msg_size, "epoch %lld batch %lld sample %lld (record %lld, want %lld) "
                     "differs from direct decoding (memcmp)", (long long)b->epoch,
                     (long long)b->index, (long long)i, (long long)b->records[i], (long long)rec);
        }
    }
    return bad;
}

#endif
