// Checkpoint files: writer/reader round trip (bitwise), h5py interop, every user error of the
// reader (missing, not HDF5, truncated, not a checkpoint, newer format, missing dataset, shape
// mismatch, tampered cfg hash), atomicity (abort, failed commit, reader during a write),
// retention of the newest K and the atomic "best" copy.
#include <criterion/criterion.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io_test_util.h"

static const char cfg_text[] = "[net]\nbatch=64\nchannels=1\n\n[convolutional]\nfilters=4\n"
                               "# non-ASCII: \xc3\xa9t\xc3\xa9\n";

enum { CO = 4, CI = 1, KH = 3, KW = 3, NW = CO * CI * KH * KW, NOPT = 2 * (NW + CO) };

typedef struct {
    float weights[NW]; // (4, 1, 3, 3) OIHW
    float biases[CO];
    float mean[CO];
    float variance[CO];
    float momentum[NOPT];
} tensors;

static void fill(tensors *t, float base)
{
    for (int i = 0; i < NW; i++) {
        t->weights[i] = base + 0.125f * (float)i - 1.0f / 3.0f;
    }
    for (int i = 0; i < CO; i++) {
        t->biases[i] = base - (float)i;
        t->mean[i] = base * 0.5f + (float)i;
        t->variance[i] = 1.0f + (float)i / 7.0f;
    }
    for (int i = 0; i < NOPT; i++) {
        t->momentum[i] = base * 1e-3f * (float)(i - 20);
    }
}

static const int64_t w_dims[4] = {CO, CI, KH, KW};
static const int64_t c_dims[1] = {CO};
static const int64_t opt_dims[1] = {NOPT};

static dp_ckpt_meta test_meta(void)
{
    dp_ckpt_meta m = {0};
    m.step = 1200;
    m.epoch = 3;
    m.world_size = 4;
    m.sampler.seed = 0xfedcba9876543210ull; // above INT64_MAX: stored as uint64
    m.sampler.epoch = 3;
    m.sampler.next_batch = 17;
    return m;
}

// Writes a complete checkpoint of t to path through the public writer.
static void write_ckpt(const char *path, const tensors *t)
{
    dp_ckpt_writer *w = NULL;
    cr_assert_eq(dp_ckpt_writer_open(&w, path), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_write_tensor(w, "/params/0_convolutional/weights", t->weights, w_dims, 4),
                 DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_write_tensor(w, "/params/0_convolutional/biases", t->biases, c_dims, 1),
                 DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_write_tensor(w, "/buffers/0_convolutional/rolling_mean", t->mean, c_dims,
                                      1),
                 DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_write_tensor(w, "/buffers/0_convolutional/rolling_variance", t->variance,
                                      c_dims, 1),
                 DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_write_tensor(w, "/optimizer/momentum", t->momentum, opt_dims, 1), DP_OK,
                 "%s", dp_error_message());
    dp_ckpt_meta m = test_meta();
    cr_assert_eq(dp_ckpt_write_meta(w, &m, cfg_text), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_write_attr_str(w, "/optimizer", "name", "sgd"), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_ckpt_write_attr_f64(w, "/optimizer", "lr", 0.1), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_ckpt_writer_commit(w), DP_OK, "%s", dp_error_message());
}

static void read_all(dp_ckpt *r, tensors *t)
{
    cr_assert_eq(dp_ckpt_read_tensor(r, "/params/0_convolutional/weights", t->weights, w_dims, 4),
                 DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_read_tensor(r, "/params/0_convolutional/biases", t->biases, c_dims, 1),
                 DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_read_tensor(r, "/buffers/0_convolutional/rolling_mean", t->mean, c_dims,
                                     1),
                 DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_read_tensor(r, "/buffers/0_convolutional/rolling_variance", t->variance,
                                     c_dims, 1),
                 DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_read_tensor(r, "/optimizer/momentum", t->momentum, opt_dims, 1), DP_OK,
                 "%s", dp_error_message());
}

// Reads path and expects exactly the tensors of fill(base) (bitwise).
static void expect_ckpt(const char *path, float base)
{
    tensors want, got;
    fill(&want, base);
    memset(&got, 0xff, sizeof got);
    dp_ckpt *r = NULL;
    cr_assert_eq(dp_ckpt_open(&r, path), DP_OK, "%s", dp_error_message());
    read_all(r, &got);
    cr_expect_eq(memcmp(&want, &got, sizeof want), 0, "tensors differ bitwise from base %g",
                 (double)base);
    dp_ckpt_close(r);
}

static long file_size(const char *path)
{
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "stat %s", path);
    return (long)sb.st_size;
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fclose(f), 0);
}

TestSuite(checkpoint, .init = scratch_make, .fini = scratch_remove);

// --- round trip ---

Test(checkpoint, round_trip_keeps_tensors_bitwise_and_the_run_state)
{
    const char *path = scratch_path("run-step1200.h5");
    tensors t;
    fill(&t, 2.5f);
    write_ckpt(path, &t);
    cr_expect(!file_exists(scratch_path("run-step1200.h5.tmp")), "temp file left behind");
    expect_ckpt(path, 2.5f);

    dp_ckpt *r = NULL;
    cr_assert_eq(dp_ckpt_open(&r, path), DP_OK, "%s", dp_error_message());
    cr_expect_str_eq(dp_ckpt_path(r), path);
    dp_ckpt_meta m;
    memset(&m, 0xab, sizeof m);
    cr_assert_eq(dp_ckpt_read_meta(r, &m), DP_OK, "%s", dp_error_message());
    dp_ckpt_meta want = test_meta();
    cr_expect_eq(m.step, want.step);
    cr_expect_eq(m.epoch, want.epoch);
    cr_expect_eq(m.world_size, want.world_size);
    cr_expect_eq(m.sampler.seed, want.sampler.seed);
    cr_expect_eq(m.sampler.epoch, want.sampler.epoch);
    cr_expect_eq(m.sampler.next_batch, want.sampler.next_batch);
    char sha[DP_CKPT_SHA256_HEX];
    cr_assert_eq(dp_ckpt_sha256_hex(sha, cfg_text, strlen(cfg_text)), DP_OK);
    cr_expect_str_eq(m.cfg_sha256, sha);

    char *text = NULL;
    cr_assert_eq(dp_ckpt_read_string(r, "/cfg_text", &text), DP_OK, "%s", dp_error_message());
    cr_expect_str_eq(text, cfg_text);
    free(text);

    int64_t version = 0;
    cr_expect_eq(dp_ckpt_read_attr_i64(r, "/", "format_version", &version), DP_OK);
    cr_expect_eq(version, DP_CKPT_FORMAT_VERSION);
    double lr = 0;
    cr_expect_eq(dp_ckpt_read_attr_f64(r, "/optimizer", "lr", &lr), DP_OK, "%s",
                 dp_error_message());
    cr_expect_eq(lr, 0.1);
    char *name = NULL;
    cr_expect_eq(dp_ckpt_read_attr_str(r, "/optimizer", "name", &name), DP_OK, "%s",
                 dp_error_message());
    cr_expect_str_eq(name ? name : "(null)", "sgd");
    free(name);

    int64_t dims[DP_CKPT_MAX_NDIM];
    int ndim = -1;
    cr_assert_eq(dp_ckpt_tensor_shape(r, "/params/0_convolutional/weights", dims, &ndim), DP_OK,
                 "%s", dp_error_message());
    cr_expect_eq(ndim, 4);
    cr_expect_eq(memcmp(dims, w_dims, sizeof w_dims), 0);
    int exists = -1;
    cr_expect_eq(dp_ckpt_exists(r, "/buffers/0_convolutional", &exists), DP_OK);
    cr_expect_eq(exists, 1);
    cr_expect_eq(dp_ckpt_exists(r, "/buffers/1_convolutional/rolling_mean", &exists), DP_OK);
    cr_expect_eq(exists, 0);
    dp_ckpt_close(r);
}

Test(checkpoint, scalar_and_empty_tensors_round_trip)
{
    const char *path = scratch_path("small.h5");
    dp_ckpt_writer *w = NULL;
    cr_assert_eq(dp_ckpt_writer_open(&w, path), DP_OK, "%s", dp_error_message());
    const float scalar = 0.75f;
    const int64_t zero[1] = {0};
    cr_assert_eq(dp_ckpt_write_tensor(w, "/scalar", &scalar, NULL, 0), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_ckpt_write_tensor(w, "/optimizer/empty", NULL, zero, 1), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_ckpt_write_attr_i64(w, "/scalar", "answer", -42), DP_OK, "%s",
                 dp_error_message());
    cr_assert_eq(dp_ckpt_write_attr_i64(w, "/scalar", "answer", 42), DP_OK,
                 "replacing an attribute: %s", dp_error_message());
    cr_assert_eq(dp_ckpt_writer_commit(w), DP_OK, "%s", dp_error_message());

    dp_ckpt *r = NULL;
    cr_assert_eq(dp_ckpt_open(&r, path), DP_OK, "%s", dp_error_message());
    float got = 0;
    cr_expect_eq(dp_ckpt_read_tensor(r, "/scalar", &got, NULL, 0), DP_OK, "%s",
                 dp_error_message());
    cr_expect_eq(got, scalar);
    cr_expect_eq(dp_ckpt_read_tensor(r, "/optimizer/empty", NULL, zero, 1), DP_OK, "%s",
                 dp_error_message());
    int64_t answer = 0;
    cr_expect_eq(dp_ckpt_read_attr_i64(r, "/scalar", "answer", &answer), DP_OK);
    cr_expect_eq(answer, 42);
    dp_ckpt_close(r);
}

Test(checkpoint, h5py_reads_a_written_checkpoint)
{
    if (!have_h5py()) {
        cr_skip_test("/usr/bin/python3 cannot import h5py (install python3-h5py)");
    }
    const char *path = scratch_path("ckpt.h5");
    tensors t;
    fill(&t, 2.5f);
    write_ckpt(path, &t);
    // The expected values are fill(2.5) recomputed in Python: float32 arithmetic of exact
    // binary fractions, so == holds.
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c '\n"
             "import h5py, hashlib, numpy as np, sys\n"
             "f = h5py.File(sys.argv[1], \"r\")\n"
             "w = f[\"params/0_convolutional/weights\"]\n"
             "assert w.dtype == np.float32 and w.shape == (4, 1, 3, 3), (w.dtype, w.shape)\n"
             "i = np.arange(36, dtype=np.float32).reshape(4, 1, 3, 3)\n"
             "want = np.float32(2.5) + np.float32(0.125) * i - np.float32(1.0) / np.float32(3.0)\n"
             "assert np.array_equal(w[()], want), (w[()], want)\n"
             "assert np.array_equal(f[\"params/0_convolutional/biases\"][()],\n"
             "                      np.float32(2.5) - np.arange(4, dtype=np.float32))\n"
             "assert f[\"buffers/0_convolutional/rolling_variance\"].shape == (4,)\n"
             "assert f[\"optimizer/momentum\"].shape == (80,)\n"
             "a = f.attrs\n"
             "assert (a[\"step\"], a[\"epoch\"], a[\"world_size\"]) == (1200, 3, 4)\n"
             "assert a[\"format_version\"] == 1\n"
             "assert int(a[\"sampler_seed\"]) == 0xfedcba9876543210, a[\"sampler_seed\"]\n"
             "assert (a[\"sampler_epoch\"], a[\"sampler_next_batch\"]) == (3, 17)\n"
             "text = f[\"cfg_text\"].asstr()[()]\n"
             "assert text.startswith(\"[net]\\nbatch=64\"), text\n"
             "assert \"\\u00e9t\\u00e9\" in text, text\n"
             "assert a[\"cfg_sha256\"] == hashlib.sha256(text.encode()).hexdigest()\n"
             "assert f[\"optimizer\"].attrs[\"name\"] == \"sgd\"\n"
             "' %s",
             path);
    cr_expect_eq(system(cmd), 0, "h5py check failed: %s", cmd);
}

Test(checkpoint, sha256_matches_known_vectors)
{
    char hex[DP_CKPT_SHA256_HEX];
    cr_assert_eq(dp_ckpt_sha256_hex(hex, "abc", 3), DP_OK);
    cr_expect_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cr_assert_eq(dp_ckpt_sha256_hex(hex, "", 0), DP_OK);
    cr_expect_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

// --- reader errors ---

Test(checkpoint, missing_file_is_an_io_error_naming_it)
{
    const char *path = scratch_path("nope.h5");
    dp_ckpt *r = (dp_ckpt *)1;
    expect_error(dp_ckpt_open(&r, path), DP_ERR_IO, path, "No such file");
    cr_expect_null(r);
}

Test(checkpoint, file_that_is_not_hdf5_is_a_data_error)
{
    const char *path = scratch_path("text.h5");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 200; i++) {
        fprintf(f, "this is not an HDF5 file, line %d\n", i);
    }
    cr_assert_eq(fclose(f), 0);
    dp_ckpt *r = NULL;
    expect_error(dp_ckpt_open(&r, path), DP_ERR_DATA, path, "not an HDF5 file");
    cr_expect_null(r);
}

Test(checkpoint, truncated_file_is_a_data_error_naming_it)
{
    const char *path = scratch_path("cut.h5");
    tensors t;
    fill(&t, 1.0f);
    write_ckpt(path, &t);
    long size = file_size(path);
    cr_assert_eq(truncate(path, size / 2), 0);
    dp_ckpt *r = NULL;
    expect_error(dp_ckpt_open(&r, path), DP_ERR_DATA, path, "truncated");
    cr_expect_null(r);
}

Test(checkpoint, hdf5_file_without_format_version_is_not_a_checkpoint)
{
    const char *path = scratch_path("plain.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    cr_assert_geq(H5Fclose(f), 0);
    dp_ckpt *r = NULL;
    expect_error(dp_ckpt_open(&r, path), DP_ERR_DATA, path, "not a dptrain checkpoint",
                 "format_version");
}

Test(checkpoint, newer_format_version_is_unsupported)
{
    const char *path = scratch_path("future.h5");
    dp_ckpt_writer *w = NULL;
    cr_assert_eq(dp_ckpt_writer_open(&w, path), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_write_attr_i64(w, "/", "format_version", DP_CKPT_FORMAT_VERSION + 1),
                 DP_OK);
    cr_assert_eq(dp_ckpt_writer_commit(w), DP_OK, "%s", dp_error_message());
    dp_ckpt *r = NULL;
    expect_error(dp_ckpt_open(&r, path), DP_ERR_UNSUPPORTED, path, "format_version 2");
}

Test(checkpoint, missing_dataset_is_a_data_error_naming_it)
{
    const char *path = scratch_path("ckpt.h5");
    tensors t;
    fill(&t, 1.0f);
    write_ckpt(path, &t);
    dp_ckpt *r = NULL;
    cr_assert_eq(dp_ckpt_open(&r, path), DP_OK, "%s", dp_error_message());
    expect_error(dp_ckpt_read_tensor(r, "/params/7_connected/weights", t.weights, w_dims, 4),
                 DP_ERR_DATA, path, "/params/7_connected/weights", "missing");
    expect_error(dp_ckpt_read_tensor(r, "/params/0_convolutional/scales", t.biases, c_dims, 1),
                 DP_ERR_DATA, path, "/params/0_convolutional/scales", "missing");
    expect_error(dp_ckpt_read_tensor(r, "/params/0_convolutional", t.biases, c_dims, 1),
                 DP_ERR_DATA, "/params/0_convolutional", "not a dataset");
    expect_error(dp_ckpt_read_tensor(r, "/cfg_text", t.biases, c_dims, 1), DP_ERR_DATA,
                 "/cfg_text", "not floating-point");
    char *text = NULL;
    expect_error(dp_ckpt_read_string(r, "/optimizer/momentum", &text), DP_ERR_DATA,
                 "/optimizer/momentum", "not a scalar string");
    int64_t v = 0;
    expect_error(dp_ckpt_read_attr_i64(r, "/", "no_such_attr", &v), DP_ERR_DATA, path,
                 "no_such_attr");
    expect_error(dp_ckpt_read_attr_i64(r, "/nowhere", "step", &v), DP_ERR_DATA, "/nowhere",
                 "missing");
    double d = 0;
    expect_error(dp_ckpt_read_attr_f64(r, "/", "step", &d), DP_ERR_DATA, "'step'",
                 "floating-point");
    dp_ckpt_close(r);
}

Test(checkpoint, shape_mismatch_names_the_dataset_and_both_shapes)
{
    const char *path = scratch_path("ckpt.h5");
    tensors t;
    fill(&t, 1.0f);
    write_ckpt(path, &t);
    dp_ckpt *r = NULL;
    cr_assert_eq(dp_ckpt_open(&r, path), DP_OK, "%s", dp_error_message());
    float out[NW];
    memset(out, 0x5a, sizeof out);
    float untouched[NW];
    memcpy(untouched, out, sizeof out);
    const int64_t wrong[4] = {CO, CI, KW, KH + 1};
    expect_error(dp_ckpt_read_tensor(r, "/params/0_convolutional/weights", out, wrong, 4),
                 DP_ERR_DATA, path, "/params/0_convolutional/weights", "[4, 1, 3, 3]",
                 "[4, 1, 3, 4]");
    const int64_t flat[1] = {NW};
    expect_error(dp_ckpt_read_tensor(r, "/params/0_convolutional/weights", out, flat, 1),
                 DP_ERR_DATA, "[4, 1, 3, 3]", "[36]");
    cr_expect_eq(memcmp(out, untouched, sizeof out), 0, "output written despite the mismatch");
    dp_ckpt_close(r);
}

Test(checkpoint, tampered_cfg_hash_is_a_data_error)
{
    const char *path = scratch_path("ckpt.h5");
    dp_ckpt_writer *w = NULL;
    cr_assert_eq(dp_ckpt_writer_open(&w, path), DP_OK, "%s", dp_error_message());
    dp_ckpt_meta m = test_meta();
    cr_assert_eq(dp_ckpt_write_meta(w, &m, cfg_text), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_write_attr_str(w, "/", "cfg_sha256", "0123"), DP_OK);
    cr_assert_eq(dp_ckpt_writer_commit(w), DP_OK, "%s", dp_error_message());
    dp_ckpt *r = NULL;
    cr_assert_eq(dp_ckpt_open(&r, path), DP_OK, "%s", dp_error_message());
    expect_error(dp_ckpt_read_meta(r, &m), DP_ERR_DATA, path, "cfg_sha256", "/cfg_text");
    dp_ckpt_close(r);
}

Test(checkpoint, writer_rejects_bad_arguments)
{
    const char *path = scratch_path("args.h5");
    dp_ckpt_writer *w = NULL;
    cr_assert_eq(dp_ckpt_writer_open(&w, path), DP_OK, "%s", dp_error_message());
    const float x[2] = {1, 2};
    const int64_t dims9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 2};
    const int64_t neg[1] = {-2};
    expect_error(dp_ckpt_write_tensor(w, "params/x", x, dims9, 1), DP_ERR_ARG, "params/x",
                 "absolute");
    expect_error(dp_ckpt_write_tensor(w, "/x", x, dims9, 9), DP_ERR_ARG, "/x", "rank 9");
    expect_error(dp_ckpt_write_tensor(w, "/x", x, neg, 1), DP_ERR_ARG, "/x", "[-2]");
    cr_assert_eq(dp_ckpt_write_tensor(w, "/x", x, dims9 + 8, 1), DP_OK, "%s", dp_error_message());
    expect_error(dp_ckpt_write_tensor(w, "/x", x, dims9 + 8, 1), DP_ERR_IO, "args.h5.tmp", "/x");
    expect_error(dp_ckpt_write_attr_i64(w, "/missing", "a", 1), DP_ERR_IO, "/missing", "'a'");
    dp_ckpt_writer_abort(w);
    cr_expect(!file_exists(path));
    cr_expect(!file_exists(scratch_path("args.h5.tmp")));
}

// --- atomicity ---

Test(checkpoint, abort_leaves_no_temp_file_and_the_previous_checkpoint_intact)
{
    const char *path = scratch_path("ckpt.h5");
    tensors old, t;
    fill(&old, 1.0f);
    write_ckpt(path, &old);
    fill(&t, 9.0f);
    dp_ckpt_writer *w = NULL;
    cr_assert_eq(dp_ckpt_writer_open(&w, path), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_write_tensor(w, "/params/0_convolutional/weights", t.weights, w_dims, 4),
                 DP_OK, "%s", dp_error_message());
    // As if the process died now: the temp file exists, the published one is the old one.
    cr_expect(file_exists(scratch_path("ckpt.h5.tmp")), "the writer should write a temp file");
    expect_ckpt(path, 1.0f);
    dp_ckpt_writer_abort(w);
    cr_expect(!file_exists(scratch_path("ckpt.h5.tmp")), "abort left the temp file");
    expect_ckpt(path, 1.0f);
    dp_ckpt_writer_abort(NULL);
}

Test(checkpoint, commit_replaces_the_previous_checkpoint)
{
    const char *path = scratch_path("ckpt.h5");
    tensors t;
    fill(&t, 1.0f);
    write_ckpt(path, &t);
    fill(&t, -3.0f);
    write_ckpt(path, &t);
    expect_ckpt(path, -3.0f);
}

Test(checkpoint, failed_commit_removes_the_temp_file_and_keeps_what_was_there)
{
    // final path is a non-empty directory: rename(file, dir) fails.
    const char *path = scratch_path("taken");
    cr_assert_eq(mkdir(path, 0755), 0);
    touch(scratch_path("taken/keep"));
    dp_ckpt_writer *w = NULL;
    cr_assert_eq(dp_ckpt_writer_open(&w, path), DP_OK, "%s", dp_error_message());
    expect_error(dp_ckpt_writer_commit(w), DP_ERR_IO, "taken.tmp", "cannot rename");
    cr_expect(!file_exists(scratch_path("taken.tmp")), "temp file left after a failed commit");
    cr_expect(file_exists(scratch_path("taken/keep")));
}

Test(checkpoint, writer_open_in_a_missing_directory_names_the_file)
{
    const char *path = scratch_path("no/such/dir/ckpt.h5");
    dp_ckpt_writer *w = (dp_ckpt_writer *)1;
    expect_error(dp_ckpt_writer_open(&w, path), DP_ERR_IO, "ckpt.h5.tmp", "No such file");
    cr_expect_null(w);
}

// --- files of a run ---

Test(checkpoint, retain_keeps_exactly_the_newest_k_step_files)
{
    char name[64];
    for (int s = 1; s <= 12; s++) {
        snprintf(name, sizeof name, "run-step%d.h5", s * 100);
        touch(scratch_path(name));
    }
    const char *others[] = {"run-best.h5", "run-step50.h5.tmp", "run-stepx.h5", "run-step.h5",
                            "other-step1.h5", "run-step7.h5.bak", "runx-step3.h5"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        touch(scratch_path(others[i]));
    }
    cr_assert_eq(dp_ckpt_retain(scratch_dir, "run", 3), DP_OK, "%s", dp_error_message());
    for (int s = 1; s <= 12; s++) {
        snprintf(name, sizeof name, "run-step%d.h5", s * 100);
        cr_expect_eq(file_exists(scratch_path(name)), s >= 10, "%s", name);
    }
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        cr_expect(file_exists(scratch_path(others[i])), "%s was removed", others[i]);
    }
    // Idempotent, and a larger K than there are files removes nothing.
    cr_assert_eq(dp_ckpt_retain(scratch_dir, "run", 3), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_ckpt_retain(scratch_dir, "run", 100), DP_OK, "%s", dp_error_message());
    cr_expect(file_exists(scratch_path("run-step1000.h5")));
    cr_assert_eq(dp_ckpt_retain(scratch_dir, "run", 1), DP_OK, "%s", dp_error_message());
    cr_expect(file_exists(scratch_path("run-step1200.h5")));
    cr_expect(!file_exists(scratch_path("run-step1100.h5")));
    cr_expect(file_exists(scratch_path("run-best.h5")));
}

Test(checkpoint, retain_rejects_bad_arguments)
{
    expect_error(dp_ckpt_retain(scratch_dir, "run", 0), DP_ERR_ARG, "keep_last");
    expect_error(dp_ckpt_retain(scratch_dir, "a/b", 2), DP_ERR_ARG, "a/b");
    expect_error(dp_ckpt_retain(scratch_path("missing"), "run", 2), DP_ERR_IO, "missing");
}

Test(checkpoint, step_path_is_the_name_retain_knows)
{
    char path[512];
    cr_assert_eq(dp_ckpt_step_path(path, sizeof path, scratch_dir, "run", 1200), DP_OK);
    cr_expect_str_eq(path, scratch_path("run-step1200.h5"));
    expect_error(dp_ckpt_step_path(path, 8, scratch_dir, "run", 1200), DP_ERR_ARG, "fit");
    expect_error(dp_ckpt_step_path(path, sizeof path, scratch_dir, "run", -1), DP_ERR_ARG,
                 "negative");
}

Test(checkpoint, save_best_copies_atomically_and_survives_retention)
{
    char step1[512], step2[512];
    cr_assert_eq(dp_ckpt_step_path(step1, sizeof step1, scratch_dir, "run", 100), DP_OK);
    cr_assert_eq(dp_ckpt_step_path(step2, sizeof step2, scratch_dir, "run", 200), DP_OK);
    tensors t;
    fill(&t, 1.0f);
    write_ckpt(step1, &t);
    fill(&t, 2.0f);
    write_ckpt(step2, &t);
    cr_assert_eq(dp_ckpt_save_best(step1, scratch_dir, "run"), DP_OK, "%s", dp_error_message());
    const char *best = scratch_path("run-best.h5");
    expect_ckpt(best, 1.0f);
    cr_assert_eq(dp_ckpt_save_best(step2, scratch_dir, "run"), DP_OK, "%s", dp_error_message());
    expect_ckpt(best, 2.0f);
    cr_expect(!file_exists(scratch_path("run-best.h5.tmp")));
    cr_assert_eq(dp_ckpt_retain(scratch_dir, "run", 1), DP_OK, "%s", dp_error_message());
    cr_expect(!file_exists(step1));
    expect_ckpt(best, 2.0f);
    expect_error(dp_ckpt_save_best(step1, scratch_dir, "run"), DP_ERR_IO, step1);
    cr_expect(!file_exists(scratch_path("run-best.h5.tmp")));
    expect_ckpt(best, 2.0f);
}
