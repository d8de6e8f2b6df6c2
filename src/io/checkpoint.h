// Checkpoint files (HDF5, format_version 1): an atomic writer, a validating reader, retention of
// the newest K step checkpoints and an atomic copy for "best". It takes plain descriptions
// (dataset paths, float arrays, dims), never a dp_net: the trainer walks the network and names
// the tensors, so io stays independent of nn. The layout the trainer writes:
//   /params/<layer name>/<param name>    float32, the parameter's shape
//   /buffers/<layer name>/<buffer name>  float32 (batch-norm running statistics)
//   /optimizer/<state name>              float32 [n], flat like the parameter buffer
//   /cfg_text                            scalar UTF-8 string, the cfg the run was started with
//   root attributes: format_version, step, epoch, world_size (int64), sampler_seed (uint64),
//   sampler_epoch, sampler_next_batch (int64), cfg_sha256 (string, hex of /cfg_text)
// Files are plain HDF5 readable with h5py (h5py.File(p)["params/0_convolutional/weights"]).
#ifndef DP_IO_CHECKPOINT_H
#define DP_IO_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/sampler.h"

enum {
    DP_CKPT_FORMAT_VERSION = 1,
    DP_CKPT_MAX_NDIM = 8,    // rank of a tensor: 0 (scalar) .. 8
    DP_CKPT_SHA256_HEX = 65, // 64 hex digits and the terminating NUL
};

// The state of a run besides its tensors.
typedef struct dp_ckpt_meta {
    int64_t step;       // optimizer steps done
    int64_t epoch;      // the epoch the next step belongs to
    int64_t world_size; // ranks of the run that wrote it
    dp_sampler_state sampler;
    char cfg_sha256[DP_CKPT_SHA256_HEX]; // read: lower-case hex; ignored by dp_ckpt_write_meta
} dp_ckpt_meta;

// --- writer ---

typedef struct dp_ckpt_writer dp_ckpt_writer;

// Creates "<final_path>.tmp" (truncating a stale one left by a crash) and returns a writer into
// it. Nothing is visible at final_path until dp_ckpt_writer_commit; a checkpoint already there
// stays intact whatever happens before then (error, crash, abort). Returns DP_ERR_ARG (path too
// long), DP_ERR_IO naming the temp file, DP_ERR_NOMEM; on error *out is NULL. A writer is not
// thread-safe, and HDF5 calls of one process must not run concurrently unless HDF5 is
// thread-safe (Debian's is).
DP_MUST_CHECK dp_status dp_ckpt_writer_open(dp_ckpt_writer **out, const char *final_path);

// Writes data as a float32 dataset at dataset (absolute, e.g. "/params/3_conv/weights"),
// creating missing groups on the way. data: dims[0] * ... * dims[ndim-1] floats, host, C order;
// ndim 0 writes a scalar. Returns DP_ERR_ARG (ndim outside 0..DP_CKPT_MAX_NDIM, a dim < 0, a
// relative path), DP_ERR_IO naming the file and dataset (for instance when it already exists).
DP_MUST_CHECK dp_status dp_ckpt_write_tensor(dp_ckpt_writer *w, const char *dataset,
                                             const float *data, const int64_t *dims, int ndim);

// Writes text (NUL-terminated UTF-8) as a scalar variable-length string dataset.
DP_MUST_CHECK dp_status dp_ckpt_write_string(dp_ckpt_writer *w, const char *dataset,
                                             const char *text);

// Sets attribute name of object (a group or dataset path already written, "/" for the root),
// replacing one of that name: int64, uint64, float64 or a UTF-8 string. Returns DP_ERR_IO naming
// the file, the object and the attribute.
DP_MUST_CHECK dp_status dp_ckpt_write_attr_i64(dp_ckpt_writer *w, const char *object,
                                               const char *name, int64_t value);
DP_MUST_CHECK dp_status dp_ckpt_write_attr_u64(dp_ckpt_writer *w, const char *object,
                                               const char *name, uint64_t value);
DP_MUST_CHECK dp_status dp_ckpt_write_attr_f64(dp_ckpt_writer *w, const char *object,
                                               const char *name, double value);
DP_MUST_CHECK dp_status dp_ckpt_write_attr_str(dp_ckpt_writer *w, const char *object,
                                               const char *name, const char *value);

// Writes the root attributes of meta (format_version included), /cfg_text = cfg_text and
// cfg_sha256 = its SHA-256 (meta->cfg_sha256 is not used).
DP_MUST_CHECK dp_status dp_ckpt_write_meta(dp_ckpt_writer *w, const dp_ckpt_meta *meta,
                                           const char *cfg_text);

// Finishes the file and publishes it: closes it, fsyncs it, renames it over final_path and
// fsyncs the directory, so after DP_OK final_path holds the new checkpoint even across a power
// cut. Frees w in every case; on error the temp file is removed and final_path keeps what it
// had. Returns DP_ERR_IO naming the file and the step that failed.
DP_MUST_CHECK dp_status dp_ckpt_writer_commit(dp_ckpt_writer *w);

// Abandons w: closes and removes the temp file and frees w; final_path is untouched. Accepts
// NULL. For error paths, so it returns nothing (a failed unlink leaves only a ".tmp" file).
void dp_ckpt_writer_abort(dp_ckpt_writer *w);

// --- reader ---

typedef struct dp_ckpt dp_ckpt;

// Opens a checkpoint for reading. Returns DP_ERR_IO if path is missing or unreadable,
// DP_ERR_DATA if it is not HDF5, is truncated or damaged, or has no format_version attribute,
// DP_ERR_UNSUPPORTED for a format_version newer than DP_CKPT_FORMAT_VERSION, DP_ERR_NOMEM; the
// message names path. On error *out is NULL. Not thread-safe (as the writer).
DP_MUST_CHECK dp_status dp_ckpt_open(dp_ckpt **out, const char *path);

// Closes r. Accepts NULL.
void dp_ckpt_close(dp_ckpt *r);

// The path r was opened with; valid while r lives.
const char *dp_ckpt_path(const dp_ckpt *r);

// *out = 1 if an object (group or dataset) exists at path, else 0. DP_ERR_IO on a read failure.
DP_MUST_CHECK dp_status dp_ckpt_exists(dp_ckpt *r, const char *path, int *out);

// The shape of the float dataset at dataset: dims[0..*ndim), dims has room for
// DP_CKPT_MAX_NDIM. Returns DP_ERR_DATA naming the file and the dataset if it is missing, not a
// dataset, not floating-point or of rank > DP_CKPT_MAX_NDIM.
DP_MUST_CHECK dp_status dp_ckpt_tensor_shape(dp_ckpt *r, const char *dataset, int64_t *dims,
                                             int *ndim);

// Reads the float dataset at dataset into out (host, C order, as many floats as expect_dims
// give), converting from the stored floating-point type. Returns DP_ERR_DATA naming the file
// and the dataset if it is missing or not floating-point, or naming both shapes if its shape is
// not expect_dims[0..ndim); DP_ERR_IO on a read failure. out is unchanged on DP_ERR_DATA.
DP_MUST_CHECK dp_status dp_ckpt_read_tensor(dp_ckpt *r, const char *dataset, float *out,
                                            const int64_t *expect_dims, int ndim);

// Reads the string dataset at dataset (variable- or fixed-length) into *out, one malloc'd
// NUL-terminated block the caller frees. DP_ERR_DATA naming it if missing or not a scalar string.
DP_MUST_CHECK dp_status dp_ckpt_read_string(dp_ckpt *r, const char *dataset, char **out);

// Reads attribute name of object ("/" for the root), converted to the C type. Returns
// DP_ERR_DATA naming the file, object and attribute if it is missing, of another type class
// (integer, float, string) or not a single value.
DP_MUST_CHECK dp_status dp_ckpt_read_attr_i64(dp_ckpt *r, const char *object, const char *name,
                                              int64_t *out);
DP_MUST_CHECK dp_status dp_ckpt_read_attr_u64(dp_ckpt *r, const char *object, const char *name,
                                              uint64_t *out);
DP_MUST_CHECK dp_status dp_ckpt_read_attr_f64(dp_ckpt *r, const char *object, const char *name,
                                              double *out);
// *out: one malloc'd NUL-terminated string the caller frees.
DP_MUST_CHECK dp_status dp_ckpt_read_attr_str(dp_ckpt *r, const char *object, const char *name,
                                              char **out);

// Reads the root attributes written by dp_ckpt_write_meta, and checks that cfg_sha256 is the
// SHA-256 of /cfg_text (DP_ERR_DATA naming the file if not). Use dp_ckpt_read_string for the
// text itself.
DP_MUST_CHECK dp_status dp_ckpt_read_meta(dp_ckpt *r, dp_ckpt_meta *out);

// --- files of a run ---

// SHA-256 of data[0..n_bytes) as 64 lower-case hex digits and a NUL (OpenSSL's EVP).
// Returns DP_ERR_INTERNAL if libcrypto fails.
DP_MUST_CHECK dp_status dp_ckpt_sha256_hex(char out[DP_CKPT_SHA256_HEX], const void *data,
                                           size_t n_bytes);

// Writes "<dir>/<prefix>-step<step>.h5" into out[0..cap). DP_ERR_ARG if it does not fit or
// step < 0.
DP_MUST_CHECK dp_status dp_ckpt_step_path(char *out, size_t cap, const char *dir,
                                          const char *prefix, int64_t step);

// Deletes the files "<prefix>-step<N>.h5" of dir (N decimal digits) except the keep_last with
// the largest N. Never touches "<prefix>-best.h5", temp files or anything else. Returns
// DP_ERR_ARG if keep_last < 1, DP_ERR_IO naming dir or the file that could not be listed or
// removed (files before it are already gone), DP_ERR_NOMEM.
DP_MUST_CHECK dp_status dp_ckpt_retain(const char *dir, const char *prefix, int keep_last);

// Makes "<dir>/<prefix>-best.h5" a copy of the checkpoint at src, atomically: it copies into
// "<dir>/<prefix>-best.h5.tmp", fsyncs, renames and fsyncs dir, so a reader sees the old best
// or the new one, never a mix. src is untouched (it may be deleted later by dp_ckpt_retain).
// Returns DP_ERR_IO naming the file that failed (the temp file is removed then), DP_ERR_ARG if
// the path does not fit.
DP_MUST_CHECK dp_status dp_ckpt_save_best(const char *src, const char *dir, const char *prefix);

#endif
