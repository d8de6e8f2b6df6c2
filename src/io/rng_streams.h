// The Philox streams drawn by src/io, in one list so that they never collide. A stream is
// (seed; a, b, c) (core/rng.h); io puts its tag in c, which other modules do not use with
// these values (tags are 'io' in the top 16 bits).
//   shuffle:   (seed; epoch low 32 bits, epoch high 32 bits, DP_IO_RNG_SHUFFLE)
//   augment:   (seed; epoch, record index, DP_IO_RNG_AUGMENT) (crop, flip, cutout)
//   mix:       (seed; epoch, record index, DP_IO_RNG_MIX) (mixup/cutmix choice, lambda, box)
//   mix pair:  (seed; epoch, global batch t, DP_IO_RNG_MIX_PAIR) (partners in global batch t)
//   split:     (0; class index, 0, DP_IO_RNG_SPLIT) (folder converter: test images of a class)
//   synthetic: (seed; record index, 0, DP_IO_RNG_SYNTHETIC) (no epoch: a record is fixed)
#ifndef DP_IO_RNG_STREAMS_H
#define DP_IO_RNG_STREAMS_H

enum {
    DP_IO_RNG_SHUFFLE = 0x696f0001u,
    DP_IO_RNG_AUGMENT = 0x696f0002u,
    DP_IO_RNG_SYNTHETIC = 0x696f0003u,
    DP_IO_RNG_MIX = 0x696f0004u,
    DP_IO_RNG_MIX_PAIR = 0x696f0005u,
    DP_IO_RNG_SPLIT = 0x696f0006u,
};

#endif
