// Philox4x32-10 against the Random123 known-answer vectors (kat_vectors, Salmon et al. SC'11),
// and the moments of the uniform and normal distributions drawn from it.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "core/rng.h"

typedef struct {
    uint32_t ctr[4];
    uint32_t key[2];
    uint32_t expect[4];
} kat;

// philox4x32 with 10 rounds, from Random123's kat_vectors.
static const kat kat_vectors[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

Test(rng, philox4x32_10_matches_random123_known_answers)
{
    for (size_t v = 0; v < sizeof kat_vectors / sizeof kat_vectors[0]; v++) {
        uint32_t out[4];
        dp_philox4x32_10(out, kat_vectors[v].ctr, kat_vectors[v].key);
        for (int i = 0; i < 4; i++) {
            cr_expect_eq(out[i], kat_vectors[v].expect[i], "vector %zu word %d: %08x != %08x", v,
                         i, out[i], kat_vectors[v].expect[i]);
        }
    }
}

Test(rng, stream_words_come_from_consecutive_blocks)
{
    // Word 4*j+i of stream (seed; a, b, c) is word i of philox({j, a, b, c}, seed).
    const uint64_t seed = 0x0123456789abcdefull;
    dp_rng r;
    dp_rng_init(&r, seed, 7, 8, 9);
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (uint32_t j = 0; j < 3; j++) {
        uint32_t ctr[4] = {j, 7, 8, 9}, block[4];
        dp_philox4x32_10(block, ctr, key);
        for (int i = 0; i < 4; i++) {
            cr_expect_eq(dp_rng_u32(&r), block[i], "block %u word %d", j, i);
        }
    }
}

Test(rng, different_identity_gives_different_stream)
{
    dp_rng a, b;
    dp_rng_init(&a, 1, 0, 0, 0);
    dp_rng_init(&b, 1, 0, 0, 1);
    int same = 0;
    for (int i = 0; i < 64; i++) {
        same += dp_rng_u32(&a) == dp_rng_u32(&b);
    }
    cr_expect_lt(same, 2);
}

Test(rng, uniform_is_in_unit_interval_with_expected_moments)
{
    const size_t n = 1 << 20;
    float *x = malloc(n * sizeof *x);
    cr_assert_not_null(x);
    dp_rng_fill_uniform(x, n, 0.0f, 1.0f, 42, 1, 2, 3);
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(x[i] >= 0.0f && x[i] < 1.0f, "x[%zu] = %g", i, x[i]);
        sum += x[i];
        sum2 += (double)x[i] * x[i];
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    // Standard errors: 0.29/sqrt(n) = 2.8e-4 for the mean; allow 5 sigma.
    cr_expect(fabs(mean - 0.5) < 1.5e-3, "mean %g", mean);
    cr_expect(fabs(var - 1.0 / 12.0) < 1.5e-3, "variance %g", var);
    free(x);
}

Test(rng, fill_uniform_equals_stream_and_respects_bounds)
{
    float x[10];
    dp_rng_fill_uniform(x, 10, -2.0f, 3.0f, 5, 0, 0, 0);
    dp_rng r;
    dp_rng_init(&r, 5, 0, 0, 0);
    for (int i = 0; i < 10; i++) {
        float expect = -2.0f + 5.0f * dp_rng_uniform(&r);
        cr_expect_eq(x[i], expect, "element %d: bitwise %a vs %a", i, x[i], expect);
        cr_expect(x[i] >= -2.0f && x[i] < 3.0f);
    }
}

Test(rng, normal_has_zero_mean_unit_variance_and_gaussian_tails)
{
    const size_t n = 1 << 20;
    float *x = malloc(n * sizeof *x);
    cr_assert_not_null(x);
    dp_rng_fill_normal(x, n, 0.0f, 1.0f, 2024, 0, 0, 0);
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
    size_t beyond2 = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        cr_assert(isfinite(v));
        s1 += v;
        s2 += v * v;
        s3 += v * v * v;
        s4 += v * v * v * v;
        beyond2 += fabs(v) > 2.0;
    }
    double mean = s1 / n, var = s2 / n - mean * mean;
    cr_expect(fabs(mean) < 5e-3, "mean %g", mean);
    cr_expect(fabs(var - 1.0) < 1e-2, "variance %g", var);
    cr_expect(fabs(s3 / n) < 2e-2, "skewness %g", s3 / n);
    cr_expect(fabs(s4 / n - 3.0) < 5e-2, "kurtosis %g", s4 / n);
    // P(|z| > 2) = 0.0455
    double tail = (double)beyond2 / n;
    cr_expect(fabs(tail - 0.0455) < 2e-3, "tail mass %g", tail);
    free(x);
}

Test(rng, normal_stream_matches_fill_normal)
{
    float x[9];
    dp_rng_fill_normal(x, 9, 1.0f, 2.0f, 77, 4, 5, 6);
    dp_rng r;
    dp_rng_init(&r, 77, 4, 5, 6);
    for (int i = 0; i < 9; i++) {
        float expect = 1.0f + 2.0f * dp_rng_normal(&r);
        cr_expect_eq(x[i], expect, "element %d: %a vs %a", i, x[i], expect);
    }
}
