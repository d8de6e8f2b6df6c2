// The communicator: rank and world size, broadcast, barrier and sum all-reduce (blocking and
// async) between the processes of a data-parallel run, with a watchdog that turns a stuck
// collective into DP_ERR_TIMEOUT naming this rank, the operation, the step and the ranks that did
// not arrive. Backends: none (one process, no MPI calls at all) and mpi. It knows nothing of
// layers or datasets; the trainer feeds it flat float buffers.
//
// Threads: one dp_comm is used by one thread, the thread that created it (MPI is initialized
// with MPI_THREAD_FUNNELED: see dp_comm_create). Other threads of the process (data pipeline
// workers) must not call MPI.
//
// Collectives (marked "Collective" below) must be called by every rank of the communicator in
// the same order with matching arguments, as in MPI. Buffers are host memory.
#ifndef DP_COMM_COMM_H
#define DP_COMM_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef struct dp_comm dp_comm;
typedef struct dp_comm_request dp_comm_request;

typedef enum dp_comm_backend {
    DP_COMM_BACKEND_AUTO = 0, // mpi when launched by mpirun/srun (see dp_comm_backend_detect)
    DP_COMM_BACKEND_NONE,     // one process; every collective is a local no-op
    DP_COMM_BACKEND_MPI,
} dp_comm_backend;

typedef struct dp_comm_config {
    dp_comm_backend backend;
    // Seconds one blocking wait (a blocking collective, dp_comm_wait, one exchange of the
    // deterministic reduction) may last before it returns DP_ERR_TIMEOUT. > 0.
    double collective_timeout_s;
    // Async all-reduces that may be in flight at once (the request pool, allocated by
    // dp_comm_create; dp_comm_allreduce_start never allocates). 1..4096.
    int max_requests;
} dp_comm_config;

#define DP_COMM_TIMEOUT_DEFAULT_S 300.0
#define DP_COMM_MAX_REQUESTS_DEFAULT 64

#define DP_COMM_CONFIG_INIT                                                                        \
    {                                                                                              \
        .backend = DP_COMM_BACKEND_AUTO, .collective_timeout_s = DP_COMM_TIMEOUT_DEFAULT_S,        \
        .max_requests = DP_COMM_MAX_REQUESTS_DEFAULT                                               \
    }

// --- backends ---

// Parses "auto", "none" or "mpi". DP_ERR_ARG naming the text otherwise.
DP_MUST_CHECK dp_status dp_comm_backend_parse(dp_comm_backend *out, const char *text);

// "auto", "none" or "mpi".
const char *dp_comm_backend_str(dp_comm_backend backend);

// What AUTO resolves to: MPI when the environment shows a parallel launcher (OMPI_COMM_WORLD_SIZE
// from Open MPI's mpirun, PMIX_RANK from PMIx launchers, PMI_RANK from MPICH/Hydra, SLURM_PROCID
// from srun or an sbatch script), NONE otherwise. Reads the environment; no MPI calls.
dp_comm_backend dp_comm_backend_detect(void);

// --- lifetime ---

// Creates a communicator over all processes of the job. cfg NULL means DP_COMM_CONFIG_INIT.
// mpi backend: calls MPI_Init_thread(MPI_THREAD_FUNNELED) if MPI is not initialized yet (only
// the creating thread calls MPI; MULTIPLE would add locking to every call for nothing), then
// duplicates MPI_COMM_WORLD (errors return, they do not abort) and finds the node-local rank
// with MPI_Comm_split_type(MPI_COMM_TYPE_SHARED). Before initializing MPI it sets
// OMPI_MCA_coll_libnbc_iallreduce_algorithm=3 unless already set (setenv, so call it before
// starting threads): Open MPI's default for in-place MPI_Iallreduce is 1.3-3.5x slower than
// MPI_Allreduce (benchmarks/RESULTS.md). Collective over the job for mpi. Sets the log rank
// (dp_log_set_rank). Returns DP_ERR_ARG for a bad config or a call from a thread other than
// MPI's main thread, DP_ERR_MPI if MPI fails or was already finalized, DP_ERR_NOMEM.
DP_MUST_CHECK dp_status dp_comm_create(dp_comm **out, const dp_comm_config *cfg);

// Releases the communicator; calls MPI_Finalize if dp_comm_create initialized MPI. Collective
// for mpi. Async requests still in flight (never waited, or abandoned by a timeout) are waited
// for up to collective_timeout_s, because MPI may still write their buffers; if they do not
// finish, the MPI communicator is leaked and a warning is logged. Accepts NULL.
void dp_comm_destroy(dp_comm *c);

// Aborts every process of the job with exit code `code` (MPI_Abort): the way out of a fatal error
// or a DP_ERR_TIMEOUT in a distributed run. c may be NULL: then MPI_COMM_WORLD is aborted if MPI
// is running. Returns only where there is nothing to abort (none backend, MPI not running) or if
// MPI_Abort itself failed; the caller then exits with its own status.
void dp_comm_abort(dp_comm *c, int code);

// --- facts (local; never fail) ---

dp_comm_backend dp_comm_backend_of(const dp_comm *c); // NONE or MPI, never AUTO
int dp_comm_rank(const dp_comm *c);
int dp_comm_size(const dp_comm *c);
int dp_comm_local_rank(const dp_comm *c); // rank among the processes of this node
int dp_comm_local_size(const dp_comm *c);

// Sets the training step named by timeout messages (and sent with arrival announcements).
void dp_comm_set_step(dp_comm *c, long step);

// --- blocking collectives ---
// Each returns DP_ERR_TIMEOUT after collective_timeout_s without completion, with a message like
// "rank 0 of 3: allreduce_sum #12 (1000 elements) at step 7 did not complete within 1.0 s
// (collective_timeout); ranks that did not arrive: 2 (no announcement)". After a timeout the
// communicator is unusable: every later collective returns DP_ERR_TIMEOUT at once, and the
// buffer of the timed-out operation belongs to MPI until dp_comm_destroy or dp_comm_abort.
// DP_ERR_MPI carries MPI's own error string; DP_ERR_ARG a NULL buffer with a count or a root out
// of range; DP_ERR_UNSUPPORTED a count above INT_MAX (MPI counts are int).

DP_MUST_CHECK dp_status dp_comm_barrier(dp_comm *c);

// Copies `bytes` bytes of buf on rank `root` to buf on every rank. Takes bytes (not elements):
// it carries opaque blobs (cfg text, a checkpoint header), never typed tensors.
DP_MUST_CHECK dp_status dp_comm_bcast(dp_comm *c, void *buf, size_t bytes, int root);

// In place: buf[i] = sum over ranks of buf[i]. buf: count floats. The order of additions is
// MPI's (not reproducible across world sizes; see dp_comm_allreduce_sum_deterministic).
DP_MUST_CHECK dp_status dp_comm_allreduce_sum(dp_comm *c, float *buf, size_t count);

// In place sum of count doubles (metrics: loss sums, correct counts).
DP_MUST_CHECK dp_status dp_comm_allreduce_sum_f64(dp_comm *c, double *buf, size_t count);

// In place maximum of count int64 values (steps, record counts, error flags).
DP_MUST_CHECK dp_status dp_comm_allreduce_max_i64(dp_comm *c, int64_t *buf, size_t count);

// --- async all-reduce ---

// Starts an in-place sum all-reduce of count floats (MPI_Iallreduce) and hands out a request
// from the pool made by dp_comm_create (no allocation). buf must stay valid and untouched until
// the request completes. Returns DP_ERR_ARG when all max_requests requests are in flight. The
// none backend completes at once. Collective (the start; completion is local).
DP_MUST_CHECK dp_status dp_comm_allreduce_start(dp_comm *c, float *buf, size_t count,
                                                dp_comm_request **req);

// Sets *done to 1 if the operation of *req has completed, else 0; never waits. On completion the
// request goes back to the pool and *req becomes NULL (a NULL *req counts as done).
DP_MUST_CHECK dp_status dp_comm_test(dp_comm_request **req, int *done);

// Waits for *req (an MPI_Test loop under the watchdog: DP_ERR_TIMEOUT as for blocking
// collectives), returns it to the pool and sets *req to NULL. *req NULL returns DP_OK. On error
// *req is also set to NULL: the communicator keeps the request until dp_comm_destroy.
DP_MUST_CHECK dp_status dp_comm_wait(dp_comm_request **req);

// Lets the requests in flight advance (MPI_Testsome over the pool). MPI's non-blocking
// collectives progress only inside MPI calls, so the trainer calls this between layers of
// backward. Never waits; cheap when nothing is in flight.
DP_MUST_CHECK dp_status dp_comm_progress(dp_comm *c);

// --- deterministic reduction (DESIGN.md "Deterministic mode") ---
//
// The tree. For a power-of-two list x[0..n), T(x) = x[0] if n == 1, else
// T(x[0..n/2)) + T(x[n/2..n)), the left operand always the lower half. Element by element.
//
// The contract. A global batch has M micro-batches (M a power of two), world size P a power of
// two with P <= M, m = M/P. Rank r owns micro-batches [r*m, (r+1)*m) and has combined their
// gradients g[r*m .. (r+1)*m) into G_r = T(g[r*m .. (r+1)*m)) with dp_comm_tree_sum_local.
// dp_comm_allreduce_sum_deterministic then leaves T(G_0, ..., G_{P-1}) on every rank, which is
// exactly T(g_0, ..., g_{M-1}) (the aligned subtrees of size m are the G_r): so the result is
// bitwise equal to dp_comm_tree_sum_local over all M micro-batch gradients on one process, for
// every power-of-two P <= M. Same operands in the same order (left + right) for every element,
// so even NaN payloads agree.

// out[i] = T(parts[0][i], ..., parts[m-1][i]) for i < count. m: a power of two >= 1; parts: m
// buffers of count floats, read only; out may be one of them (it is written after the parts are
// read, 128 elements at a time). No allocation. DP_ERR_ARG for a bad m or NULL pointers.
DP_MUST_CHECK dp_status dp_comm_tree_sum_local(float *const *parts, int m, size_t count,
                                               float *out);

// The same tree, streamed: for micro-batches whose gradients come one after another, holding
// log2(m) + 1 buffers instead of m. Pushing parts 0..m-1 (m a power of two) and taking the result
// gives bitwise what dp_comm_tree_sum_local gives over the same parts. Plain value; the caller
// owns the level buffers (e.g. from its arena) and keeps them alive while it uses acc.
typedef struct dp_comm_tree_acc {
    float *const *levels; // n_levels buffers of count floats; levels[l] holds a pending subtree
    int n_levels;         // up to 2^(n_levels - 1) parts
    size_t count;
    long pushed; // parts pushed since init
} dp_comm_tree_acc;

// Starts an empty tree over buffers of count floats. n_levels in 1..31 (m = 2^(n_levels-1) parts
// at most). DP_ERR_ARG for a bad n_levels or a NULL buffer.
DP_MUST_CHECK dp_status dp_comm_tree_acc_init(dp_comm_tree_acc *acc, float *const *levels,
                                              int n_levels, size_t count);

// Adds the next part (count floats, read only, not one of the levels; it may be reused once this
// returns). Copies it
// (even index) or adds it as the right operand of every subtree it completes. DP_ERR_ARG once
// 2^(n_levels-1) parts have been pushed.
DP_MUST_CHECK dp_status dp_comm_tree_acc_push(dp_comm_tree_acc *acc, const float *part);

// Points *out at the tree sum (one of the level buffers). DP_ERR_ARG unless a power of two of
// parts (>= 1) has been pushed: otherwise the tree is incomplete.
DP_MUST_CHECK dp_status dp_comm_tree_acc_result(const dp_comm_tree_acc *acc, float **out);

// In place, buf = T(buf of rank 0, ..., buf of rank P-1) on every rank, by recursive-halving
// reduce-scatter (exchange distance 1, 2, 4, ...: rank r adds with r^1 first, so the pairs are
// the tree's, lower rank on the left) and recursive-doubling all-gather (copies only), on MPI
// point-to-point. Traffic per rank ~2*count floats, as a ring. DP_ERR_UNSUPPORTED if P is not a
// power of two. Allocates a scratch of ceil(count/2) floats on the first call with a larger
// count than before, never in steady state. Collective; each exchange is under the watchdog.
DP_MUST_CHECK dp_status dp_comm_allreduce_sum_deterministic(dp_comm *c, float *buf, size_t count);

// --- replica checks ---

// FNV-1a 64 of `bytes` bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
uint64_t dp_comm_checksum(const void *data, size_t bytes);

// Checks that data (bytes bytes) is the same on every rank: each rank hashes it
// (dp_comm_checksum), the (hash, bytes) pairs are all-gathered, and every rank returns the same
// status: DP_OK, or DP_ERR_DATA with a message naming `what` and every rank whose hash or size
// differs from rank 0's ("replica parameters differ across ranks: rank 2 (fnv1a64 0x..., 4096
// bytes) differs from rank 0 (...)"). Collective.
DP_MUST_CHECK dp_status dp_comm_check_equal(dp_comm *c, const void *data, size_t bytes,
                                            const char *what);

DP_EXTERN_C_END

#endif
