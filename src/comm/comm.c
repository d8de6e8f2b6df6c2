// dp_comm lifetime, facts and the blocking collectives. Each blocking collective is the
// non-blocking MPI call plus the watched wait of comm_watchdog.c, so none can hang forever. The
// none backend is a branch at the top of each function rather than a table of functions: it is
// "do nothing", and a table would be for the NCCL backend to introduce.
#include "comm/comm_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/timer.h"

// --- backends ---

static const char *const backend_names[] = {"auto", "none", "mpi"};

dp_status dp_comm_backend_parse(dp_comm_backend *out, const char *text)
{
    for (int i = 0; i < 3; i++) {
        if (text != NULL && strcasecmp(text, backend_names[i]) == 0) {
            *out = (dp_comm_backend)i;
            return DP_OK;
        }
    }
    return dp_error_set(DP_ERR_ARG, "communicator backend '%s': expected auto, none or mpi",
                        text != NULL ? text : "(null)");
}

const char *dp_comm_backend_str(dp_comm_backend backend)
{
    if ((unsigned)backend > DP_COMM_BACKEND_MPI) {
        return "unknown";
    }
    return backend_names[backend];
}

dp_comm_backend dp_comm_backend_detect(void)
{
    static const char *const launcher_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                                "SLURM_PROCID"};
    for (size_t i = 0; i < sizeof launcher_vars / sizeof launcher_vars[0]; i++) {
        const char *v = getenv(launcher_vars[i]);
        if (v != NULL && v[0] != '\0') {
            return DP_COMM_BACKEND_MPI;
        }
    }
    return DP_COMM_BACKEND_NONE;
}

// --- lifetime ---

static dp_status check_config(const dp_comm_config *cfg)
{
    if ((unsigned)cfg->backend > DP_COMM_BACKEND_MPI) {
        return dp_error_set(DP_ERR_ARG, "communicator backend %d: expected auto, none or mpi",
                            (int)cfg->backend);
    }
    if (!(cfg->collective_timeout_s > 0.0) || !isfinite(cfg->collective_timeout_s)) {
        return dp_error_set(DP_ERR_ARG, "collective_timeout %g s: must be a positive number",
                            cfg->collective_timeout_s);
    }
    if (cfg->max_requests < 1 || cfg->max_requests > 4096) {
        return dp_error_set(DP_ERR_ARG, "max_requests %d: must be in 1..4096", cfg->max_requests);
    }
    return DP_OK;
}

static dp_status alloc_pool(dp_comm *c)
{
    int n = c->max_requests;
    c->reqs = calloc((size_t)n, sizeof *c->reqs);
    c->req_mpi = malloc((size_t)n * sizeof *c->req_mpi);
    c->free_slots = malloc((size_t)n * sizeof *c->free_slots);
    c->testsome_idx = malloc((size_t)n * sizeof *c->testsome_idx);
    if (c->reqs == NULL || c->req_mpi == NULL || c->free_slots == NULL || c->testsome_idx == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "communicator request pool (%d requests)", n);
    }
    for (int i = 0; i < n; i++) {
        c->req_mpi[i] = MPI_REQUEST_NULL;
        c->free_slots[i] = n - 1 - i; // slot 0 is handed out first
    }
    c->n_free = n;
    return DP_OK;
}

#define LIBNBC_IALLREDUCE_VAR "OMPI_MCA_coll_libnbc_iallreduce_algorithm"

static dp_status init_mpi(dp_comm *c)
{
    int initialized = 0, finalized = 0, provided = MPI_THREAD_SINGLE, is_main = 0;
    DP_MPI_TRY(MPI_Finalized(&finalized));
    if (finalized) {
        return dp_error_set(DP_ERR_MPI, "MPI is already finalized: no communicator can be made");
    }
    DP_MPI_TRY(MPI_Initialized(&initialized));
    if (!initialized) {
        // Open MPI's libnbc runs every in-place MPI_Iallreduce, and any with fewer than 4 ranks,
        // as a binomial reduce then broadcast of the whole buffer: 1.3-1.5x the time of
        // MPI_Allreduce at 1-16 MiB (benchmarks/RESULTS.md). Its reduce-scatter + all-gather
        // (algorithm 3, Rabenseifner; ring when count < ranks) matches MPI_Allreduce. A value
        // set by the user wins; other MPI libraries ignore the variable.
        if (setenv(LIBNBC_IALLREDUCE_VAR, "3", 0) != 0) {
            DP_LOG_WARN("setenv %s failed; MPI_Iallreduce keeps Open MPI's default algorithm",
                        LIBNBC_IALLREDUCE_VAR);
        }
        DP_MPI_TRY(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
        c->owns_mpi = 1;
    } else {
        DP_MPI_TRY(MPI_Query_thread(&provided));
    }
    DP_MPI_TRY(MPI_Is_thread_main(&is_main));
    if (!is_main && provided < MPI_THREAD_MULTIPLE) {
        return dp_error_set(DP_ERR_ARG,
                            "dp_comm_create must run on the thread that initialized "
                            "MPI (MPI thread level %d is below MULTIPLE)",
                            provided);
    }
    if (provided < MPI_THREAD_FUNNELED) {
        DP_LOG_WARN("MPI provides thread level %d (SINGLE); dptrain has other threads, which never "
                    "call MPI",
                    provided);
    }
    return DP_OK;
}

// Agrees on a token that tags this communicator's announcements (see comm_watchdog.c).
static dp_status agree_token(dp_comm *c)
{
    if (c->rank == 0) {
        uint64_t seed[3] = {dp_time_ns(), (uint64_t)getpid(), (uint64_t)(uintptr_t)c};
        c->token = dp_comm_checksum(seed, sizeof seed) | 1u;
    }
    dp__comm_wait_ctx w = {.op = DP__COMM_OP_CREATE, .seq = ++c->seq, .count = 8};
    DP_MPI_TRY(MPI_Ibcast(&c->token, 1, MPI_UINT64_T, 0, c->comm, &c->internal[0]));
    return dp__comm_wait_watched(c, 1, c->internal, &w);
}

static dp_status setup_mpi(dp_comm *c)
{
    DP_TRY(init_mpi(c));
    DP_MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, &c->comm));
    DP_MPI_TRY(MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN));
    DP_MPI_TRY(MPI_Comm_rank(c->comm, &c->rank));
    DP_MPI_TRY(MPI_Comm_size(c->comm, &c->size));
    MPI_Comm node = MPI_COMM_NULL;
    DP_MPI_TRY(MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node));
    int rc_rank = MPI_Comm_rank(node, &c->local_rank);
    int rc_size = MPI_Comm_size(node, &c->local_size);
    DP_MPI_TRY(MPI_Comm_free(&node));
    DP_MPI_TRY(rc_rank);
    DP_MPI_TRY(rc_size);

    size_t p = (size_t)c->size;
    c->peers = calloc(p, sizeof *c->peers);
    c->announce_reqs = malloc(p * sizeof *c->announce_reqs);
    c->gather = calloc(2 * p, sizeof *c->gather);
    if (c->peers == NULL || c->announce_reqs == NULL || c->gather == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "communicator tables for %d ranks", c->size);
    }
    for (size_t q = 0; q < p; q++) {
        c->announce_reqs[q] = MPI_REQUEST_NULL;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->yield_early = cpus > 0 && c->local_size > cpus;
    return agree_token(c);
}

dp_status dp_comm_create(dp_comm **out, const dp_comm_config *cfg_in)
{
    if (out == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_create: out is NULL");
    }
    *out = NULL;
    dp_comm_config cfg = DP_COMM_CONFIG_INIT;
    if (cfg_in != NULL) {
        cfg = *cfg_in;
    }
    DP_TRY(check_config(&cfg));
    dp_comm *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "communicator");
    }
    c->backend = cfg.backend == DP_COMM_BACKEND_AUTO ? dp_comm_backend_detect() : cfg.backend;
    c->size = 1;
    c->local_size = 1;
    c->timeout_s = cfg.collective_timeout_s;
    c->announce_after_s = fmin(1.0, cfg.collective_timeout_s / 4);
    c->max_requests = cfg.max_requests;
    c->comm = MPI_COMM_NULL;
    c->internal[0] = c->internal[1] = MPI_REQUEST_NULL;
    dp_status st = alloc_pool(c);
    if (st == DP_OK && c->backend == DP_COMM_BACKEND_MPI) {
        st = setup_mpi(c);
    }
    if (st != DP_OK) {
        dp_comm_backend backend = c->backend;
        dp_comm_destroy(c);
        return dp_error_context(st, "creating the %s communicator", dp_comm_backend_str(backend));
    }
    dp_log_set_rank(c->rank);
    DP_LOG_DEBUG("communicator: %s, %d ranks, %d on this node, collective_timeout %.1f s",
                 dp_comm_backend_str(c->backend), c->size, c->local_size, c->timeout_s);
    *out = c;
    return DP_OK;
}

// Completes what MPI may still be writing (requests never waited, or abandoned by a timeout),
// within collective_timeout. Returns the number of requests still in flight.
static int finish_in_flight(dp_comm *c)
{
    uint64_t t0 = dp_time_ns();
    for (;;) {
        int pool_done = 0, internal_done = 0, failed = 0;
        if (MPI_Testall(c->max_requests, c->req_mpi, &pool_done, MPI_STATUSES_IGNORE) !=
                MPI_SUCCESS ||
            MPI_Testall(2, c->internal, &internal_done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
            DP_LOG_WARN("rank %d: MPI_Testall failed on requests in flight at destroy", c->rank);
            failed = 1;
        }
        if (pool_done && internal_done) {
            return 0;
        }
        double waited = (double)(dp_time_ns() - t0) * 1e-9;
        if (failed || waited >= c->timeout_s) {
            int n = 0;
            for (int i = 0; i < c->max_requests; i++) {
                n += c->req_mpi[i] != MPI_REQUEST_NULL;
            }
            return n + (c->internal[0] != MPI_REQUEST_NULL) + (c->internal[1] != MPI_REQUEST_NULL);
        }
        if (dp__comm_drain_announcements(c) != DP_OK) {
            DP_LOG_WARN("%s", dp_error_message());
        }
        dp__comm_backoff(c, waited);
    }
}

static void release_announcements(dp_comm *c)
{
    int flag = 1;
    if (c->announce_pending &&
        MPI_Testall(c->size, c->announce_reqs, &flag, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
        flag = 0;
    }
    for (int q = 0; !flag && q < c->size; q++) {
        // small point-to-point sends may be freed while in flight; they still complete
        if (c->announce_reqs[q] != MPI_REQUEST_NULL &&
            MPI_Request_free(&c->announce_reqs[q]) != MPI_SUCCESS) {
            DP_LOG_WARN("rank %d: MPI_Request_free of an arrival announcement failed", c->rank);
        }
    }
}

void dp_comm_destroy(dp_comm *c)
{
    if (c == NULL) {
        return;
    }
    int in_flight = 0;
    if (c->comm != MPI_COMM_NULL) {
        in_flight = finish_in_flight(c);
        release_announcements(c);
        if (in_flight > 0) {
            DP_LOG_WARN("rank %d: %d communication request(s) still in flight after %.1f s; "
                        "leaking the MPI communicator and its buffers",
                        c->rank, in_flight, c->timeout_s);
        } else if (MPI_Comm_free(&c->comm) != MPI_SUCCESS) {
            DP_LOG_WARN("rank %d: MPI_Comm_free failed", c->rank);
        }
    }
    if (c->owns_mpi) {
        int finalized = 1;
        if (MPI_Finalized(&finalized) != MPI_SUCCESS ||
            (!finalized && MPI_Finalize() != MPI_SUCCESS)) {
            DP_LOG_WARN("rank %d: MPI_Finalize failed", c->rank);
        }
    }
    if (in_flight > 0) {
        return; // MPI may still write the pool, the gather table and the scratch
    }
    free(c->reqs);
    free(c->req_mpi);
    free(c->free_slots);
    free(c->testsome_idx);
    free(c->peers);
    free(c->announce_reqs);
    free(c->gather);
    free(c->scratch);
    free(c);
}

void dp_comm_abort(dp_comm *c, int code)
{
    int initialized = 0, finalized = 1;
    if ((c != NULL && c->backend == DP_COMM_BACKEND_NONE) ||
        MPI_Initialized(&initialized) != MPI_SUCCESS || !initialized ||
        MPI_Finalized(&finalized) != MPI_SUCCESS || finalized) {
        return;
    }
    DP_LOG_ERROR("aborting every rank of the job (MPI_Abort, exit code %d)", code);
    if (MPI_Abort(MPI_COMM_WORLD, code) != MPI_SUCCESS) {
        DP_LOG_ERROR("MPI_Abort failed");
    }
}

// --- facts ---

dp_comm_backend dp_comm_backend_of(const dp_comm *c)
{
    return c->backend;
}

int dp_comm_rank(const dp_comm *c)
{
    return c->rank;
}

int dp_comm_size(const dp_comm *c)
{
    return c->size;
}

int dp_comm_local_rank(const dp_comm *c)
{
    return c->local_rank;
}

int dp_comm_local_size(const dp_comm *c)
{
    return c->local_size;
}

void dp_comm_set_step(dp_comm *c, long step)
{
    c->step = step;
}

dp_status dp__comm_check_buffer(const dp_comm *c, const void *buf, size_t count, const char *fn)
{
    if (c == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: communicator is NULL", fn);
    }
    DP_TRY(dp__comm_check_usable(c));
    if (buf == NULL && count > 0) {
        return dp_error_set(DP_ERR_ARG, "%s: buffer is NULL for %zu elements", fn, count);
    }
    if (count > INT_MAX) {
        return dp_error_set(DP_ERR_UNSUPPORTED, "%s: %zu elements exceed MPI's int count (%d)", fn,
                            count, INT_MAX);
    }
    return DP_OK;
}

// --- blocking collectives ---

dp_status dp_comm_barrier(dp_comm *c)
{
    DP_TRY(dp__comm_check_buffer(c, NULL, 0, "dp_comm_barrier"));
    if (c->backend == DP_COMM_BACKEND_NONE) {
        return DP_OK;
    }
    dp__comm_wait_ctx w = {.op = DP__COMM_OP_BARRIER, .seq = ++c->seq, .count = 0};
    DP_MPI_TRY(MPI_Ibarrier(c->comm, &c->internal[0]));
    return dp__comm_wait_watched(c, 1, c->internal, &w);
}

dp_status dp_comm_bcast(dp_comm *c, void *buf, size_t bytes, int root)
{
    DP_TRY(dp__comm_check_buffer(c, buf, bytes, "dp_comm_bcast"));
    if (root < 0 || root >= c->size) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_bcast: root %d is not a rank of 0..%d", root,
                            c->size - 1);
    }
    if (c->backend == DP_COMM_BACKEND_NONE) {
        return DP_OK;
    }
    dp__comm_wait_ctx w = {.op = DP__COMM_OP_BCAST, .seq = ++c->seq, .count = bytes};
    DP_MPI_TRY(MPI_Ibcast(buf, (int)bytes, MPI_BYTE, root, c->comm, &c->internal[0]));
    return dp__comm_wait_watched(c, 1, c->internal, &w);
}

static dp_status allreduce_blocking(dp_comm *c, void *buf, size_t count, MPI_Datatype type,
                                    MPI_Op mpi_op, int op)
{
    DP_TRY(dp__comm_check_buffer(c, buf, count, dp__comm_op_str(op)));
    if (c->backend == DP_COMM_BACKEND_NONE) {
        return DP_OK;
    }
    dp__comm_wait_ctx w = {.op = op, .seq = ++c->seq, .count = count};
    DP_MPI_TRY(
        MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, type, mpi_op, c->comm, &c->internal[0]));
    return dp__comm_wait_watched(c, 1, c->internal, &w);
}

dp_status dp_comm_allreduce_sum(dp_comm *c, float *buf, size_t count)
{
    return allreduce_blocking(c, buf, count, MPI_FLOAT, MPI_SUM, DP__COMM_OP_ALLREDUCE_SUM);
}

dp_status dp_comm_allreduce_sum_f64(dp_comm *c, double *buf, size_t count)
{
    return allreduce_blocking(c, buf, count, MPI_DOUBLE, MPI_SUM, DP__COMM_OP_ALLREDUCE_SUM_F64);
}

dp_status dp_comm_allreduce_max_i64(dp_comm *c, int64_t *buf, size_t count)
{
    return allreduce_blocking(c, buf, count, MPI_INT64_T, MPI_MAX, DP__COMM_OP_ALLREDUCE_MAX_I64);
}
