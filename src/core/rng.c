// Philox4x32-10 and the distributions drawn from it. Known-answer vectors from Random123's
// kat_vectors are checked in tests/core/test_rng.c.
#include "core/rng.h"

#include <math.h>

enum {
    PHILOX_M0 = 0xD2511F53u,
    PHILOX_M1 = 0xCD9E8D57u,
    PHILOX_W0 = 0x9E3779B9u,
    PHILOX_W1 = 0xBB67AE85u,
};

static inline void philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0];
    uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

void dp_philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2])
{
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    for (int i = 0; i < 4; i++) {
        out[i] = c[i];
    }
}

void dp_rng_init(dp_rng *r, uint64_t seed, uint32_t a, uint32_t b, uint32_t c)
{
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = 0;
    r->ctr[1] = a;
    r->ctr[2] = b;
    r->ctr[3] = c;
    r->next_word = 4;
    r->has_spare = 0;
    r->spare = 0.0f;
}

uint32_t dp_rng_u32(dp_rng *r)
{
    if (r->next_word == 4) {
        dp_philox4x32_10(r->block, r->ctr, r->key);
        r->ctr[0]++;
        r->next_word = 0;
    }
    return r->block[r->next_word++];
}

float dp_rng_uniform(dp_rng *r)
{
    return dp_rng_bits_to_unit(dp_rng_u32(r));
}

// Box-Muller on two words; u1 is in (0, 1] so the log is finite.
static void box_muller(uint32_t w1, uint32_t w2, float *z0, float *z1)
{
    const double two_pi = 6.283185307179586476925286766559;
    double u1 = ((double)(w1 >> 8) + 1.0) * (1.0 / 16777216.0);
    double u2 = (double)(w2 >> 8) * (1.0 / 16777216.0);
    double radius = sqrt(-2.0 * log(u1));
    *z0 = (float)(radius * cos(two_pi * u2));
    *z1 = (float)(radius * sin(two_pi * u2));
}

float dp_rng_normal(dp_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    uint32_t w1 = dp_rng_u32(r);
    uint32_t w2 = dp_rng_u32(r);
    float z0;
    box_muller(w1, w2, &z0, &r->spare);
    r->has_spare = 1;
    return z0;
}

void dp_rng_fill_uniform(float *out, size_t n, float lo, float hi, uint64_t seed, uint32_t a,
                         uint32_t b, uint32_t c)
{
    dp_rng r;
    dp_rng_init(&r, seed, a, b, c);
    float span = hi - lo;
    for (size_t i = 0; i < n; i++) {
        out[i] = lo + span * dp_rng_uniform(&r);
    }
}

void dp_rng_fill_normal(float *out, size_t n, float mean, float std, uint64_t seed, uint32_t a,
                        uint32_t b, uint32_t c)
{
    dp_rng r;
    dp_rng_init(&r, seed, a, b, c);
    for (size_t i = 0; i < n; i += 2) {
        uint32_t w1 = dp_rng_u32(&r);
        uint32_t w2 = dp_rng_u32(&r);
        float z0, z1;
        box_muller(w1, w2, &z0, &z1);
        out[i] = mean + std * z0;
        if (i + 1 < n) {
            out[i + 1] = mean + std * z1;
        }
    }
}
