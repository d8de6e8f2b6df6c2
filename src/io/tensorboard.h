// TensorBoard event files: scalars written as tf.Event protocol buffers in TFRecord framing,
// readable by TensorBoard (and tf.data) without TensorFlow or protobuf here. The writer encodes
// the few fields it needs itself:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
// and frames each Event as uint64 length (LE), uint32 masked CRC32C of those 8 bytes, the data,
// uint32 masked CRC32C of the data. It writes events only; reading is TensorBoard's job.
#ifndef DP_IO_TENSORBOARD_H
#define DP_IO_TENSORBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct dp_tb dp_tb;

// One scalar of a batch: tag ("train/loss") and its value (stored as float32).
typedef struct dp_tb_value {
    const char *tag;
    double value;
} dp_tb_value;

// Creates dir if it is missing (with its parents) and a new event file in it named
// "events.out.tfevents.<unix time>.<hostname>" (".<pid>.<k>" appended if that name is taken),
// and writes the first Event { wall_time: now, file_version: "brain.Event:2" }. Returns
// DP_ERR_IO naming the directory or the file, DP_ERR_NOMEM; on error *out is NULL. A dp_tb is
// not thread-safe: one thread (rank 0's trainer) writes it.
DP_MUST_CHECK dp_status dp_tb_open(dp_tb **out, const char *dir);

// Writes one Event holding the n scalars of values at step with wall_time (seconds since the
// Unix epoch, as dp_tb_now gives), and hands it to the kernel (write(2)) before returning, so
// TensorBoard sees it at once. Values beyond float range become +-inf. Returns DP_ERR_ARG (n < 1,
// a NULL or empty tag), DP_ERR_IO naming the file; after DP_ERR_IO the file is cut back to its
// last whole event, so later events still read.
DP_MUST_CHECK dp_status dp_tb_scalars(dp_tb *tb, int64_t step, double wall_time,
                                      const dp_tb_value *values, int n);

// dp_tb_scalars with one value.
DP_MUST_CHECK dp_status dp_tb_scalar(dp_tb *tb, const char *tag, int64_t step, double value,
                                     double wall_time);

// Closes the file (after fsync, so a finished run's curves survive a crash) and frees tb, in
// every case. Returns DP_ERR_IO naming the file if fsync or close fails. Accepts NULL.
DP_MUST_CHECK dp_status dp_tb_close(dp_tb *tb);

// The event file's path; valid while tb lives.
const char *dp_tb_path(const dp_tb *tb);

// Seconds since the Unix epoch (CLOCK_REALTIME), with sub-second precision.
double dp_tb_now(void);

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of data[0..n_bytes), as TFRecord uses:
// dp_tb_crc32c("123456789", 9) == 0xE3069283.
uint32_t dp_tb_crc32c(const void *data, size_t n_bytes);

// TFRecord's masking of a CRC stored next to the data: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t dp_tb_crc32c_mask(uint32_t crc);

#endif
