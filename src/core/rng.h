// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11, as in Random123).
// A stream is keyed by identity, never by a per-rank or per-thread state: the key is the
// 64-bit seed and three 32-bit words of the counter name the stream (e.g. epoch, global
// sample index, layer), the fourth counts 128-bit blocks. Word i of a stream is therefore a
// pure function of (seed, a, b, c, i), on any rank, thread or device.
#ifndef DP_CORE_RNG_H
#define DP_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

// One Philox4x32-10 block: out = philox(ctr, key).
void dp_philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

// A stream (plain value; copy it to fork a position). Fields are private to rng.c.
typedef struct dp_rng {
    uint32_t key[2];
    uint32_t ctr[4]; // ctr[0]: block counter; ctr[1..3]: stream identity
    uint32_t block[4];
    uint32_t next_word; // index of the next unused word of block (4: none left)
    int has_spare;
    float spare; // second value of the last Box-Muller pair
} dp_rng;

// Starts the stream (seed; a, b, c) at word 0.
void dp_rng_init(dp_rng *r, uint64_t seed, uint32_t a, uint32_t b, uint32_t c);

// Next 32 random bits.
uint32_t dp_rng_u32(dp_rng *r);

// Uniform in [0, 1) with 24 random bits (every value is an exact float).
float dp_rng_uniform(dp_rng *r);

// Standard normal (Box-Muller; the second value of each pair is kept for the next call).
float dp_rng_normal(dp_rng *r);

// Bits -> [0, 1): the top 24 bits times 2^-24.
static inline float dp_rng_bits_to_unit(uint32_t x)
{
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

// Fills out[i] = lo + (hi - lo) * unit(word i of the stream (seed; a, b, c)), i in [0, n):
// position-addressable, so a GPU kernel can reproduce element i alone.
void dp_rng_fill_uniform(float *out, size_t n, float lo, float hi, uint64_t seed, uint32_t a,
                         uint32_t b, uint32_t c);

// Fills out[i] = mean + std * z_i, where (z_2j, z_2j+1) is the Box-Muller pair of words
// (2j, 2j+1) of the stream (seed; a, b, c).
void dp_rng_fill_normal(float *out, size_t n, float mean, float std, uint64_t seed, uint32_t a,
                        uint32_t b, uint32_t c);

#endif
