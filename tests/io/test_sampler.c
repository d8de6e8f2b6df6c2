// Sampler: permutations are permutations (uniform, keyed by seed and epoch, pinned), every
// simulated rank sees the same global batch and the ranks' slices partition it, training drops
// the last partial batch, evaluation covers every record once for P = 1..4, state save/restore
// resumes exactly, configuration errors name the numbers.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "io/sampler.h"
#include "io_test_util.h"

static dp_sampler *make(int64_t n, int64_t b, int rank, int p, uint64_t seed,
                        dp_sampler_mode mode)
{
    dp_sampler_config cfg = DP_SAMPLER_CONFIG_INIT;
    cfg.n_records = n;
    cfg.global_batch = b;
    cfg.rank = rank;
    cfg.world_size = p;
    cfg.seed = seed;
    cfg.mode = mode;
    dp_sampler *s = NULL;
    cr_assert_eq(dp_sampler_create(&s, &cfg), DP_OK, "%s", dp_error_message());
    return s;
}

Test(sampler, permutation_is_a_permutation_keyed_by_seed_and_epoch)
{
    const int64_t sizes[] = {1, 2, 7, 1000, 60000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k];
        uint32_t *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
        uint8_t *seen = calloc((size_t)n, 1);
        cr_assert(a && b && seen);
        dp_sampler_permutation(a, n, 7, 0);
        for (int64_t i = 0; i < n; i++) {
            cr_assert_lt(a[i], (uint32_t)n, "n %lld: value %u out of range", (long long)n, a[i]);
            cr_assert_eq(seen[a[i]], 0, "n %lld: %u appears twice", (long long)n, a[i]);
            seen[a[i]] = 1;
        }
        dp_sampler_permutation(b, n, 7, 0);
        cr_expect_eq(memcmp(a, b, (size_t)n * sizeof *a), 0, "same key, same permutation");
        if (n >= 7) {
            dp_sampler_permutation(b, n, 7, 1);
            cr_expect_neq(memcmp(a, b, (size_t)n * sizeof *a), 0, "epoch changes it (n %lld)",
                          (long long)n);
            dp_sampler_permutation(b, n, 8, 0);
            cr_expect_neq(memcmp(a, b, (size_t)n * sizeof *a), 0, "seed changes it (n %lld)",
                          (long long)n);
        }
        free(a);
        free(b);
        free(seen);
    }
}

Test(sampler, permutation_is_pinned)
{
    // Pinned when written: changing the shuffle would change the batches of resumed runs.
    const uint32_t want[10] = {7, 0, 6, 8, 5, 1, 3, 9, 4, 2};
    uint32_t got[10];
    dp_sampler_permutation(got, 10, 42, 3);
    cr_expect_eq(memcmp(got, want, sizeof want), 0, "got %u %u %u %u %u %u %u %u %u %u", got[0],
                 got[1], got[2], got[3], got[4], got[5], got[6], got[7], got[8], got[9]);
}

Test(sampler, permutations_of_four_are_uniform)
{
    // 24 orders, 24000 epochs: each count ~ 1000 with sd ~ 31; accept +- 160 (5 sd).
    int counts[4 * 4 * 4 * 4] = {0};
    for (int64_t e = 0; e < 24000; e++) {
        uint32_t p[4];
        dp_sampler_permutation(p, 4, 99, e);
        counts[((p[0] * 4 + p[1]) * 4 + p[2]) * 4 + p[3]]++;
    }
    int orders = 0;
    for (int i = 0; i < 256; i++) {
        if (counts[i] > 0) {
            orders++;
            cr_expect(counts[i] > 840 && counts[i] < 1160, "order %d seen %d times", i, counts[i]);
        }
    }
    cr_expect_eq(orders, 24);
}

Test(sampler, ranks_see_one_global_batch_and_partition_it)
{
    enum { N = 103, B = 12, P = 4, EPOCHS = 3 };
    dp_sampler *ranks[P];
    for (int r = 0; r < P; r++) {
        ranks[r] = make(N, B, r, P, 1234, DP_SAMPLER_TRAIN);
    }
    cr_assert_eq(dp_sampler_batches_per_epoch(ranks[0]), N / B);
    cr_assert_eq(dp_sampler_max_local_batch(ranks[0]), B / P);
    uint32_t perm[N];
    for (int64_t e = 0; e < EPOCHS; e++) {
        dp_sampler_permutation(perm, N, 1234, e);
        int seen[N] = {0};
        for (int64_t t = 0; t < N / B; t++) {
            int64_t global[B];
            int64_t filled = 0;
            for (int r = 0; r < P; r++) {
                int64_t rec[B / P];
                dp_sampler_batch b;
                cr_assert_eq(dp_sampler_next(ranks[r], rec, &b), DP_OK, "%s", dp_error_message());
                cr_expect_eq(b.epoch, e);
                cr_expect_eq(b.index, t);
                cr_expect_eq(b.count, B / P);
                cr_expect_eq(b.first, t * B + r * (B / P));
                memcpy(global + filled, rec, sizeof rec);
                filled += b.count;
            }
            // Rank slices in rank order are the global batch: positions [tB, (t+1)B).
            for (int64_t i = 0; i < B; i++) {
                cr_expect_eq(global[i], (int64_t)perm[t * B + i], "epoch %lld batch %lld pos %lld",
                             (long long)e, (long long)t, (long long)i);
                seen[global[i]]++;
            }
        }
        // Training drops the last N mod B = 7 records: 96 distinct records are seen once.
        int once = 0, never = 0;
        for (int i = 0; i < N; i++) {
            cr_expect_leq(seen[i], 1, "record %d seen %d times in epoch %lld", i, seen[i],
                          (long long)e);
            once += seen[i] == 1;
            never += seen[i] == 0;
        }
        cr_expect_eq(once, (N / B) * B);
        cr_expect_eq(never, N % B);
    }
    for (int r = 0; r < P; r++) {
        dp_sampler_destroy(ranks[r]);
    }
}

Test(sampler, eval_covers_every_record_once_for_1_to_4_ranks)
{
    enum { N = 23, B = 10 };
    for (int p = 1; p <= 4; p++) {
        int seen[N] = {0};
        int64_t batches = -1;
        for (int r = 0; r < p; r++) {
            dp_sampler *s = make(N, B, r, p, 5, DP_SAMPLER_EVAL);
            if (batches < 0) {
                batches = dp_sampler_batches_per_epoch(s);
            }
            cr_expect_eq(dp_sampler_batches_per_epoch(s), 3, "ceil(23 / 10) batches on each rank");
            int64_t cap = dp_sampler_max_local_batch(s);
            cr_expect_eq(cap, (B + p - 1) / p);
            for (int64_t t = 0; t < batches; t++) {
                int64_t rec[B];
                dp_sampler_batch b;
                cr_assert_eq(dp_sampler_next(s, rec, &b), DP_OK, "%s", dp_error_message());
                cr_assert_leq(b.count, cap);
                int64_t m = t < 2 ? B : N - 2 * B;
                cr_expect(b.count == m / p || b.count == m / p + 1,
                          "P %d rank %d batch %lld: %lld records of %lld", p, r, (long long)t,
                          (long long)b.count, (long long)m);
                for (int64_t i = 0; i < b.count; i++) {
                    cr_expect_eq(rec[i], b.first + i, "evaluation is in record order");
                    seen[rec[i]]++;
                }
            }
            dp_sampler_destroy(s);
        }
        for (int i = 0; i < N; i++) {
            cr_expect_eq(seen[i], 1, "P %d: record %d seen %d times", p, i, seen[i]);
        }
    }
}

Test(sampler, state_restore_resumes_the_same_batches)
{
    enum { N = 50, B = 8, P = 2, LOCAL = B / P };
    dp_sampler *a = make(N, B, 1, P, 77, DP_SAMPLER_TRAIN);
    int64_t rec_a[LOCAL], rec_b[LOCAL];
    dp_sampler_batch ba, bb;
    for (int i = 0; i < 13; i++) { // 6 batches per epoch: stop inside epoch 2
        cr_assert_eq(dp_sampler_next(a, rec_a, &ba), DP_OK, "%s", dp_error_message());
    }
    dp_sampler_state saved;
    dp_sampler_get_state(a, &saved);
    cr_expect_eq(saved.epoch, 2);
    cr_expect_eq(saved.next_batch, 1);
    cr_expect_eq(saved.seed, 77u);

    // A fresh sampler (another seed in its config: the state's seed wins) resumes exactly.
    dp_sampler *b = make(N, B, 1, P, 1, DP_SAMPLER_TRAIN);
    cr_assert_eq(dp_sampler_set_state(b, &saved), DP_OK, "%s", dp_error_message());
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(dp_sampler_next(a, rec_a, &ba), DP_OK);
        cr_assert_eq(dp_sampler_next(b, rec_b, &bb), DP_OK);
        cr_expect_eq(ba.epoch, bb.epoch);
        cr_expect_eq(ba.index, bb.index);
        cr_expect_eq(memcmp(rec_a, rec_b, sizeof rec_a), 0, "step %d differs after resume", i);
    }
    // A state at the end of an epoch moves on to the next epoch.
    dp_sampler_state end = {.seed = 77, .epoch = 4, .next_batch = 6};
    cr_assert_eq(dp_sampler_set_state(b, &end), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_sampler_next(b, rec_b, &bb), DP_OK);
    cr_expect_eq(bb.epoch, 5);
    cr_expect_eq(bb.index, 0);
    dp_sampler_destroy(a);
    dp_sampler_destroy(b);
}

Test(sampler, configuration_errors_name_the_numbers)
{
    dp_sampler_config cfg = DP_SAMPLER_CONFIG_INIT;
    cfg.n_records = 100;
    cfg.global_batch = 10;
    cfg.world_size = 3;
    dp_sampler *s = (dp_sampler *)1;
    expect_error(dp_sampler_create(&s, &cfg), DP_ERR_CFG, "global batch 10",
                 "not divisible by the 3 ranks");
    cr_expect_null(s);
    cfg.world_size = 2;
    cfg.n_records = 6;
    expect_error(dp_sampler_create(&s, &cfg), DP_ERR_CFG, "6 records",
                 "fewer than one global batch of 10");
    cfg.mode = DP_SAMPLER_EVAL; // evaluation keeps a partial batch: fine
    cr_assert_eq(dp_sampler_create(&s, &cfg), DP_OK, "%s", dp_error_message());
    cr_expect_eq(dp_sampler_batches_per_epoch(s), 1);
    dp_sampler_destroy(s);
    cfg.rank = 2;
    expect_error(dp_sampler_create(&s, &cfg), DP_ERR_ARG, "rank 2 of 2");
    cfg.rank = 0;
    cfg.global_batch = 0;
    expect_error(dp_sampler_create(&s, &cfg), DP_ERR_ARG, "global batch 0");
    cfg.global_batch = 2;
    cfg.n_records = 0;
    expect_error(dp_sampler_create(&s, &cfg), DP_ERR_ARG, "0 records");
    dp_sampler_destroy(NULL);
}

Test(sampler, bad_state_and_batch_index_are_rejected)
{
    dp_sampler *s = make(40, 8, 0, 2, 3, DP_SAMPLER_TRAIN);
    dp_sampler_state before, bad = {.seed = 3, .epoch = 0, .next_batch = 6}, after;
    dp_sampler_get_state(s, &before);
    expect_error(dp_sampler_set_state(s, &bad), DP_ERR_ARG, "next batch 6", "[0, 5]");
    bad.next_batch = 0;
    bad.epoch = -1;
    expect_error(dp_sampler_set_state(s, &bad), DP_ERR_ARG, "epoch -1");
    dp_sampler_get_state(s, &after);
    cr_expect_eq(memcmp(&before, &after, sizeof before), 0, "state unchanged after an error");
    int64_t rec[4];
    dp_sampler_batch b;
    expect_error(dp_sampler_batch_at(s, 0, 5, rec, &b), DP_ERR_ARG, "batch 5 of epoch 0");
    dp_sampler_destroy(s);
}
