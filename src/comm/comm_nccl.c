// The NCCL backend of the communicator (contract in comm_nccl.h): bootstrap over the MPI dp_comm,
// sum all-reduce, the deterministic tree over ncclSend/ncclRecv, broadcast, and the watchdog
// that turns a stuck or failed collective into an error and an ncclCommAbort. Operations run in
// order on one communication stream, so completion is tracked by a ring of events, oldest first.
// Not here: the CUDA context (src/nn/cuda), bucketing (the trainer), non-power-of-two
// deterministic sums.
#include "comm/comm_nccl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// nccl.h declares ncclGroupStart(), ncclGroupEnd() and ncclResetDebugInit() with empty
// parentheses, which C does not take as prototypes.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <cuda_runtime.h>
#include <nccl.h>
#pragma GCC diagnostic pop

#include "comm/comm_internal.h"
#include "comm/comm_nccl_add.h"
#include "core/log.h"
#include "core/timer.h"

typedef enum op_kind { OP_INIT = 0, OP_ALLREDUCE, OP_DETERMINISTIC, OP_BCAST } op_kind;

static const char *const op_names[] = {
    [OP_INIT] = "ncclCommInitRankConfig",
    [OP_ALLREDUCE] = "nccl allreduce",
    [OP_DETERMINISTIC] = "nccl deterministic allreduce",
    [OP_BCAST] = "nccl bcast",
};

// One operation started and not yet known complete.
typedef struct flight {
    cudaEvent_t done; // recorded on the stream after the operation; owned, reused by the slot
    uint64_t seq;
    op_kind kind;
    size_t count; // elements (bytes for a broadcast)
    long step;
    uint64_t since_ns; // enqueued, or became the oldest unfinished operation: the later
} flight;

struct dp_comm_nccl {
    dp_comm *mpi; // borrowed: bootstrap, collective timeout, step, backoff policy
    int rank, size, device;
    cudaStream_t stream; // borrowed communication stream
    ncclComm_t comm;     // NULL before init and after an abort
    int aborted;
    dp_status abort_status;
    char abort_msg[768]; // repeated by every call after the abort
    uint64_t seq;        // operations started; numbered from 1
    uint64_t retired;    // every operation <= retired is known complete
    int ring_size;
    flight *ring;   // operation s lives in ring[(s - 1) % ring_size]
    float *scratch; // deterministic reduction: scratch_count floats, device
    size_t scratch_count;
};

// --- errors and the abort ---

static double since_s(uint64_t t0_ns)
{
    return (double)(dp_time_ns() - t0_ns) * 1e-9;
}

// Aborts the NCCL communicator (its kernels return, whatever the peers do), remembers why for
// later calls, and returns st with the message. Every error after create goes through here: a
// rank that failed part way through a collective cannot rejoin its peers.
DP_PRINTF(5, 6)
static dp_status fail_(dp_comm_nccl *c, const char *file, int line, dp_status st, const char *fmt,
                       ...)
{
    char text[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (c->comm != NULL) {
        ncclResult_t r = ncclCommAbort(c->comm);
        if (r != ncclSuccess) {
            DP_LOG_WARN("rank %d: ncclCommAbort: %s", c->rank, ncclGetErrorString(r));
        }
        c->comm = NULL;
    }
    if (!c->aborted) {
        c->aborted = 1;
        c->abort_status = st;
        snprintf(c->abort_msg, sizeof c->abort_msg,
                 "NCCL communicator aborted after: %s; only dp_comm_nccl_destroy may follow", text);
    }
    return dp__error_set(file, line, st, "%s; NCCL communicator aborted", text);
}

#define FAIL(c, st, ...) fail_((c), __FILE__, __LINE__, (st), __VA_ARGS__)

#define CUDA_OR_FAIL(c, call)                                                                      \
    do {                                                                                           \
        cudaError_t dp_cuda_e_ = (call);                                                           \
        if (dp_cuda_e_ != cudaSuccess) {                                                           \
            return FAIL((c), DP_ERR_CUDA, "rank %d of %d: %s: %s (%s)", (c)->rank, (c)->size,      \
                        #call, cudaGetErrorString(dp_cuda_e_), cudaGetErrorName(dp_cuda_e_));      \
        }                                                                                          \
    } while (0)

// "nccl allreduce #12 (1000 elements) started at step 7"
static const char *describe(const dp_comm_nccl *c, const flight *f, char *buf, size_t size)
{
    if (f->kind == OP_INIT) {
        snprintf(buf, size, "%s (%d ranks, device %d)", op_names[OP_INIT], c->size, c->device);
    } else {
        snprintf(buf, size, "%s #%llu (%zu %s) started at step %ld", op_names[f->kind],
                 (unsigned long long)f->seq, f->count, f->kind == OP_BCAST ? "bytes" : "elements",
                 f->step);
    }
    return buf;
}

static dp_status check_op(const dp_comm_nccl *c, const void *buf, size_t count, const char *fn)
{
    if (c == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: communicator is NULL", fn);
    }
    if (c->aborted) {
        return dp_error_set(c->abort_status, "%s: rank %d: %s", fn, c->rank, c->abort_msg);
    }
    if (buf == NULL && count > 0) {
        return dp_error_set(DP_ERR_ARG, "%s: buffer is NULL for %zu elements", fn, count);
    }
    return DP_OK;
}

// After a NCCL call on the non-blocking communicator: an error aborts; ncclInProgress means NCCL
// is still enqueueing (connecting to peers, launching) in the background, and no CUDA work may
// be added to the stream before it is done, so it is polled under the collective timeout.
static dp_status settle(dp_comm_nccl *c, ncclResult_t r, const char *call, const flight *f)
{
    uint64_t t0 = dp_time_ns();
    char what[256];
    while (r == ncclInProgress) {
        double waited = since_s(t0);
        if (waited >= c->mpi->timeout_s) {
            return FAIL(c, DP_ERR_TIMEOUT,
                        "rank %d of %d: %s: %s was still in progress after %.1f s "
                        "(collective_timeout): a rank did not join, or the ranks cannot reach "
                        "each other (NCCL_DEBUG=WARN tells more)",
                        c->rank, c->size, describe(c, f, what, sizeof what), call, waited);
        }
        dp__comm_backoff(c->mpi, waited);
        ncclResult_t q = ncclCommGetAsyncError(c->comm, &r);
        if (q != ncclSuccess) {
            r = q;
        }
    }
    if (r != ncclSuccess) {
        return FAIL(c, DP_ERR_NCCL, "rank %d of %d: %s: %s failed: %s (%s)", c->rank, c->size,
                    describe(c, f, what, sizeof what), call, ncclGetErrorString(r),
                    ncclGetLastError(c->comm));
    }
    return DP_OK;
}

// --- the ring of operations in flight ---

static flight *slot(const dp_comm_nccl *c, uint64_t seq)
{
    return &c->ring[(seq - 1) % (uint64_t)c->ring_size];
}

// Retires completed operations, oldest first (they complete in stream order).
static dp_status retire(dp_comm_nccl *c)
{
    char what[256];
    while (c->retired < c->seq) {
        flight *f = slot(c, c->retired + 1);
        cudaError_t e = cudaEventQuery(f->done);
        if (e == cudaErrorNotReady) {
            // the runtime may keep "not ready" as the last error; launch checks elsewhere must
            // not see it (PyTorch clears it the same way)
            (void)cudaGetLastError();
            return DP_OK;
        }
        if (e != cudaSuccess) {
            return FAIL(c, DP_ERR_CUDA, "rank %d of %d: %s: cudaEventQuery: %s (%s)", c->rank,
                        c->size, describe(c, f, what, sizeof what), cudaGetErrorString(e),
                        cudaGetErrorName(e));
        }
        c->retired++;
        if (c->retired < c->seq) {
            // the timeout of the next one counts from now: until now it waited behind this one
            flight *next = slot(c, c->retired + 1);
            uint64_t now = dp_time_ns();
            if (next->since_ns < now) {
                next->since_ns = now;
            }
        }
    }
    return DP_OK;
}

dp_status dp_comm_nccl_poll(dp_comm_nccl *c, int *n_in_flight)
{
    DP_TRY(check_op(c, NULL, 0, "dp_comm_nccl_poll"));
    char what[256];
    ncclResult_t state = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(c->comm, &state);
    if (r != ncclSuccess) {
        state = r;
    }
    if (state != ncclSuccess && state != ncclInProgress) {
        if (c->retired < c->seq) {
            describe(c, slot(c, c->retired + 1), what, sizeof what);
        } else {
            snprintf(what, sizeof what, "no operation in flight, step %ld", c->mpi->step);
        }
        return FAIL(c, DP_ERR_NCCL, "rank %d of %d: NCCL asynchronous error (%s): %s (%s)", c->rank,
                    c->size, what, ncclGetErrorString(state), ncclGetLastError(c->comm));
    }
    DP_TRY(retire(c));
    if (c->retired < c->seq) {
        const flight *f = slot(c, c->retired + 1);
        double waited = since_s(f->since_ns);
        if (waited >= c->mpi->timeout_s) {
            return FAIL(c, DP_ERR_TIMEOUT,
                        "rank %d of %d: %s did not complete within %.1f s (collective_timeout): "
                        "a rank did not call it, or a peer or link failed",
                        c->rank, c->size, describe(c, f, what, sizeof what), waited);
        }
    }
    if (n_in_flight != NULL) {
        *n_in_flight = (int)(c->seq - c->retired);
    }
    return DP_OK;
}

// Host wait until every operation <= target has completed, under the watchdog.
static dp_status wait_retired(dp_comm_nccl *c, uint64_t target)
{
    uint64_t t0 = dp_time_ns();
    for (;;) {
        DP_TRY(dp_comm_nccl_poll(c, NULL));
        if (c->retired >= target) {
            return DP_OK;
        }
        dp__comm_backoff(c->mpi, since_s(t0));
    }
}

// Claims the ring slot of the next operation (waiting for the oldest when the ring is full) and
// makes the stream wait for wait_event.
static dp_status begin(dp_comm_nccl *c, op_kind kind, size_t count, void *wait_event, flight **out)
{
    if (c->seq - c->retired >= (uint64_t)c->ring_size) {
        DP_TRY(wait_retired(c, c->seq + 1 - (uint64_t)c->ring_size));
    }
    if (wait_event != NULL) {
        CUDA_OR_FAIL(c, cudaStreamWaitEvent(c->stream, (cudaEvent_t)wait_event, 0));
    }
    flight *f = slot(c, c->seq + 1);
    f->seq = c->seq + 1;
    f->kind = kind;
    f->count = count;
    f->step = c->mpi->step;
    f->since_ns = dp_time_ns();
    *out = f;
    return DP_OK;
}

// Records the completion event after the operation's work and makes the operation count.
static dp_status finish(dp_comm_nccl *c, flight *f, uint64_t *op)
{
    CUDA_OR_FAIL(c, cudaEventRecord(f->done, c->stream));
    c->seq = f->seq;
    if (c->retired + 1 == c->seq) {
        f->since_ns = dp_time_ns(); // the oldest now; earlier ones were waited for
    }
    if (op != NULL) {
        *op = f->seq;
    }
    return DP_OK;
}

// --- lifetime ---

// Device, events: the local part of create, which can fail without any peer knowing.
static dp_status prepare(dp_comm_nccl *c)
{
    cudaError_t e = cudaSetDevice(c->device);
    if (e != cudaSuccess) {
        return dp_error_set(DP_ERR_CUDA, "rank %d: cudaSetDevice(%d): %s (%s)", c->rank, c->device,
                            cudaGetErrorString(e), cudaGetErrorName(e));
    }
    c->ring = calloc((size_t)c->ring_size, sizeof *c->ring);
    if (c->ring == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "NCCL operation ring (%d slots)", c->ring_size);
    }
    for (int i = 0; i < c->ring_size; i++) {
        e = cudaEventCreateWithFlags(&c->ring[i].done, cudaEventDisableTiming);
        if (e != cudaSuccess) {
            c->ring[i].done = NULL;
            return dp_error_set(DP_ERR_CUDA,
                                "rank %d: cudaEventCreateWithFlags (%d of %d): %s (%s)", c->rank,
                                i + 1, c->ring_size, cudaGetErrorString(e), cudaGetErrorName(e));
        }
    }
    return DP_OK;
}

// The id from rank 0 (with whether it could make one, so that no rank waits for an id that will
// never come), then the non-blocking init polled under the collective timeout.
static dp_status bootstrap(dp_comm_nccl *c)
{
    struct {
        int64_t ok;
        ncclUniqueId id;
    } msg;
    memset(&msg, 0, sizeof msg);
    ncclResult_t r = ncclSuccess;
    if (c->rank == 0) {
        r = ncclGetUniqueId(&msg.id);
        msg.ok = r == ncclSuccess;
    }
    DP_TRY(dp_comm_bcast(c->mpi, &msg, sizeof msg, 0));
    if (!msg.ok) {
        if (c->rank == 0) {
            return dp_error_set(DP_ERR_NCCL, "rank 0: ncclGetUniqueId: %s (%s)",
                                ncclGetErrorString(r), ncclGetLastError(NULL));
        }
        return dp_error_set(DP_ERR_NCCL,
                            "rank %d: rank 0 could not make the NCCL id "
                            "(ncclGetUniqueId failed there)",
                            c->rank);
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; // every call returns at once, so the watchdog can abort anything
    config.commName = "dptrain";
    r = ncclCommInitRankConfig(&c->comm, c->size, msg.id, c->rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
        return FAIL(c, DP_ERR_NCCL, "rank %d of %d: ncclCommInitRankConfig (device %d): %s (%s)",
                    c->rank, c->size, c->device, ncclGetErrorString(r), ncclGetLastError(c->comm));
    }
    flight init = {.kind = OP_INIT, .step = c->mpi->step};
    return settle(c, r, "ncclCommInitRankConfig", &init);
}

// Frees what create made; the NCCL communicator must be destroyed or aborted already.
static void release(dp_comm_nccl *c)
{
    for (int i = 0; c->ring != NULL && i < c->ring_size; i++) {
        if (c->ring[i].done != NULL && cudaEventDestroy(c->ring[i].done) != cudaSuccess) {
            DP_LOG_WARN("rank %d: cudaEventDestroy failed", c->rank);
        }
    }
    if (c->scratch != NULL && cudaFree(c->scratch) != cudaSuccess) {
        DP_LOG_WARN("rank %d: cudaFree of the deterministic all-reduce scratch failed", c->rank);
    }
    free(c->ring);
    free(c);
}

dp_status dp_comm_nccl_create(dp_comm *mpi, int device, void *stream, dp_comm_nccl **out)
{
    if (out == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_nccl_create: out is NULL");
    }
    *out = NULL;
    if (mpi == NULL || stream == NULL || device < 0) {
        return dp_error_set(DP_ERR_ARG,
                            "dp_comm_nccl_create: MPI communicator %s, stream %s, "
                            "device %d",
                            mpi ? "set" : "NULL", stream ? "set" : "NULL", device);
    }
    DP_TRY(dp__comm_check_usable(mpi));
    dp_comm_nccl *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "NCCL communicator");
    }
    *c = (dp_comm_nccl){.mpi = mpi,
                        .rank = dp_comm_rank(mpi),
                        .size = dp_comm_size(mpi),
                        .device = device,
                        .stream = (cudaStream_t)stream,
                        .ring_size = mpi->max_requests};
    dp_status st = prepare(c);
    // Every rank learns whether every rank is ready: NCCL's init would otherwise wait for a rank
    // that gave up, until the timeout.
    int64_t failed_rank = st == DP_OK ? 0 : c->rank + 1;
    char mine[512] = "";
    if (st != DP_OK) {
        snprintf(mine, sizeof mine, "%s", dp_error_message());
    }
    dp_status agreed = dp_comm_allreduce_max_i64(mpi, &failed_rank, 1);
    if (agreed == DP_OK && st == DP_OK && failed_rank != 0) {
        st = dp_error_set(DP_ERR_CUDA,
                          "rank %d could not set up its CUDA device (its own error "
                          "says why)",
                          (int)(failed_rank - 1));
    } else if (st != DP_OK) {
        st = dp_error_set(st, "%s", mine);
    } else {
        st = agreed;
    }
    if (st == DP_OK) {
        st = bootstrap(c);
    }
    if (st != DP_OK) {
        release(c); // a failed bootstrap has aborted the NCCL communicator already
        return dp_error_context(st, "creating the NCCL communicator (rank %d of %d, device %d)",
                                dp_comm_rank(mpi), dp_comm_size(mpi), device);
    }
    DP_LOG_DEBUG("NCCL communicator: %d ranks, device %d, %d operations in flight at most", c->size,
                 c->device, c->ring_size);
    *out = c;
    return DP_OK;
}

// ncclCommFinalize polled under the timeout, then ncclCommDestroy; ncclCommAbort when either
// fails. Logs instead of setting the thread's error: a destroy on an error path must not
// replace the message being reported.
static void finalize_quietly(dp_comm_nccl *c)
{
    uint64_t t0 = dp_time_ns();
    ncclResult_t r = ncclCommFinalize(c->comm);
    while (r == ncclInProgress && since_s(t0) < c->mpi->timeout_s) {
        dp__comm_backoff(c->mpi, since_s(t0));
        ncclResult_t q = ncclCommGetAsyncError(c->comm, &r);
        if (q != ncclSuccess) {
            r = q;
        }
    }
    if (r == ncclSuccess) {
        r = ncclCommDestroy(c->comm);
        if (r != ncclSuccess) {
            DP_LOG_WARN("rank %d: ncclCommDestroy: %s", c->rank, ncclGetErrorString(r));
        }
    } else {
        DP_LOG_WARN("rank %d: ncclCommFinalize: %s after %.1f s; aborting the NCCL communicator",
                    c->rank, r == ncclInProgress ? "still in progress" : ncclGetErrorString(r),
                    since_s(t0));
        if (ncclCommAbort(c->comm) != ncclSuccess) {
            DP_LOG_WARN("rank %d: ncclCommAbort failed", c->rank);
        }
    }
    c->comm = NULL;
}

void dp_comm_nccl_destroy(dp_comm_nccl *c)
{
    if (c == NULL) {
        return;
    }
    if (cudaSetDevice(c->device) != cudaSuccess) {
        DP_LOG_WARN("rank %d: cudaSetDevice(%d) failed in dp_comm_nccl_destroy", c->rank,
                    c->device);
    }
    if (c->comm != NULL) {
        finalize_quietly(c);
    }
    release(c);
}

void dp_comm_nccl_abort(dp_comm_nccl *c)
{
    if (c == NULL) {
        return;
    }
    if (c->comm != NULL && ncclCommAbort(c->comm) != ncclSuccess) {
        DP_LOG_WARN("rank %d: ncclCommAbort failed", c->rank);
    }
    c->comm = NULL;
    if (!c->aborted) {
        c->aborted = 1;
        c->abort_status = DP_ERR_NCCL;
        snprintf(c->abort_msg, sizeof c->abort_msg,
                 "NCCL communicator aborted by dp_comm_nccl_abort at step %ld", c->mpi->step);
    }
}

int dp_comm_nccl_rank(const dp_comm_nccl *c)
{
    return c->rank;
}

int dp_comm_nccl_size(const dp_comm_nccl *c)
{
    return c->size;
}

int dp_comm_nccl_device(const dp_comm_nccl *c)
{
    return c->device;
}

// --- operations ---

dp_status dp_comm_nccl_allreduce_start(dp_comm_nccl *c, float *buf, size_t count, void *wait_event,
                                       uint64_t *op)
{
    if (op != NULL) {
        *op = 0;
    }
    DP_TRY(check_op(c, buf, count, "dp_comm_nccl_allreduce_start"));
    flight *f = NULL;
    DP_TRY(begin(c, OP_ALLREDUCE, count, wait_event, &f));
    if (count > 0) {
        ncclResult_t r = ncclAllReduce(buf, buf, count, ncclFloat32, ncclSum, c->comm, c->stream);
        DP_TRY(settle(c, r, "ncclAllReduce", f));
    }
    return finish(c, f, op);
}

dp_status dp_comm_nccl_reserve(dp_comm_nccl *c, size_t count)
{
    DP_TRY(check_op(c, NULL, 0, "dp_comm_nccl_reserve"));
    size_t need = count / 2 + count % 2; // the larger half of a bucket of count floats
    if (need <= c->scratch_count) {
        return DP_OK;
    }
    // deterministic reductions in flight may still read the old scratch
    DP_TRY(wait_retired(c, c->seq));
    float *s = NULL;
    cudaError_t e = cudaMalloc((void **)&s, need * sizeof *s);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); // not sticky: keep it from later launch checks
        return dp_error_set(e == cudaErrorMemoryAllocation ? DP_ERR_NOMEM : DP_ERR_CUDA,
                            "rank %d: cudaMalloc of the deterministic all-reduce scratch (%zu "
                            "floats): %s",
                            c->rank, need, cudaGetErrorString(e));
    }
    if (c->scratch != NULL && cudaFree(c->scratch) != cudaSuccess) {
        DP_LOG_WARN("rank %d: cudaFree of the old deterministic all-reduce scratch failed",
                    c->rank);
    }
    c->scratch = s;
    c->scratch_count = need;
    return DP_OK;
}

// One exchange with peer: send_n floats out, recv_n floats in, as one group so neither side
// waits for the other. The two sides' sizes match by construction (same segment, swapped
// halves), so a zero-size half is skipped on both.
static dp_status exchange(dp_comm_nccl *c, const float *send, size_t send_n, float *recv,
                          size_t recv_n, int peer, const flight *f)
{
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess) {
        return settle(c, r, "ncclGroupStart", f);
    }
    ncclResult_t rs = ncclSuccess, rr = ncclSuccess;
    if (send_n > 0) {
        rs = ncclSend(send, send_n, ncclFloat32, peer, c->comm, c->stream);
    }
    if (recv_n > 0) {
        rr = ncclRecv(recv, recv_n, ncclFloat32, peer, c->comm, c->stream);
    }
    r = ncclGroupEnd(); // always closes the group, even after a failed call in it
    if (rs != ncclSuccess && rs != ncclInProgress) {
        return settle(c, rs, "ncclSend", f);
    }
    if (rr != ncclSuccess && rr != ncclInProgress) {
        return settle(c, rr, "ncclRecv", f);
    }
    return settle(c, r, "ncclGroupEnd (ncclSend/ncclRecv)", f);
}

// dp_comm_allreduce_sum_deterministic's exchanges (comm_det.c), segment for segment, with the
// device add in place of the host loop.
static dp_status halving_doubling(dp_comm_nccl *c, float *buf, size_t count, const flight *f)
{
    int p = c->size;
    size_t lo = 0, hi = count;
    size_t parent_lo[32], parent_hi[32];
    int steps = 0;
    for (int d = 1; d < p; d <<= 1, steps++) {
        int lower = (c->rank & d) == 0;
        size_t mid = lo + (hi - lo) / 2;
        size_t keep_lo = lower ? lo : mid, keep_hi = lower ? mid : hi;
        size_t send_lo = lower ? mid : lo, send_hi = lower ? hi : mid;
        parent_lo[steps] = lo;
        parent_hi[steps] = hi;
        DP_TRY(exchange(c, buf + send_lo, send_hi - send_lo, c->scratch, keep_hi - keep_lo,
                        c->rank ^ d, f));
        dp_status st =
            dp__comm_nccl_add(buf + keep_lo, c->scratch, keep_hi - keep_lo, lower, c->stream);
        if (st != DP_OK) {
            char text[512];
            snprintf(text, sizeof text, "%s", dp_error_message());
            return FAIL(c, st, "rank %d of %d: %s", c->rank, c->size, text);
        }
        lo = keep_lo;
        hi = keep_hi;
    }
    for (int s = steps - 1; s >= 0; s--) {
        int lower = (c->rank & (1 << s)) == 0;
        size_t mid = parent_lo[s] + (parent_hi[s] - parent_lo[s]) / 2;
        size_t other_lo = lower ? mid : parent_lo[s], other_hi = lower ? parent_hi[s] : mid;
        DP_TRY(exchange(c, buf + lo, hi - lo, buf + other_lo, other_hi - other_lo,
                        c->rank ^ (1 << s), f));
        lo = parent_lo[s];
        hi = parent_hi[s];
    }
    return DP_OK;
}

dp_status dp_comm_nccl_allreduce_deterministic_start(dp_comm_nccl *c, float *buf, size_t count,
                                                     void *wait_event, uint64_t *op)
{
    if (op != NULL) {
        *op = 0;
    }
    DP_TRY(check_op(c, buf, count, "dp_comm_nccl_allreduce_deterministic_start"));
    if ((c->size & (c->size - 1)) != 0) {
        return dp_error_set(DP_ERR_UNSUPPORTED,
                            "deterministic all-reduce needs a power-of-two number of ranks; this "
                            "job has %d (run 1, 2, 4, 8, ... ranks, or set deterministic=0)",
                            c->size);
    }
    if (c->size > 1) {
        DP_TRY(dp_comm_nccl_reserve(c, count));
    }
    flight *f = NULL;
    DP_TRY(begin(c, OP_DETERMINISTIC, count, wait_event, &f));
    if (c->size > 1 && count > 0) {
        DP_TRY(halving_doubling(c, buf, count, f));
    }
    return finish(c, f, op);
}

dp_status dp_comm_nccl_bcast(dp_comm_nccl *c, void *buf, size_t bytes, int root, void *wait_event)
{
    DP_TRY(check_op(c, buf, bytes, "dp_comm_nccl_bcast"));
    if (root < 0 || root >= c->size) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_nccl_bcast: root %d is not a rank of 0..%d", root,
                            c->size - 1);
    }
    flight *f = NULL;
    DP_TRY(begin(c, OP_BCAST, bytes, wait_event, &f));
    if (bytes > 0) {
        ncclResult_t r = ncclBroadcast(buf, buf, bytes, ncclUint8, root, c->comm, c->stream);
        DP_TRY(settle(c, r, "ncclBroadcast", f));
    }
    uint64_t op = 0;
    DP_TRY(finish(c, f, &op));
    return wait_retired(c, op);
}

// --- completion ---

dp_status dp_comm_nccl_stream_wait(dp_comm_nccl *c, void *stream, uint64_t op)
{
    DP_TRY(check_op(c, NULL, 0, "dp_comm_nccl_stream_wait"));
    if (stream == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_nccl_stream_wait: stream is NULL");
    }
    if (op == 0) {
        op = c->seq;
    }
    if (op > c->seq) {
        return dp_error_set(DP_ERR_ARG,
                            "dp_comm_nccl_stream_wait: operation #%llu was not started "
                            "(last: #%llu)",
                            (unsigned long long)op, (unsigned long long)c->seq);
    }
    if (op <= c->retired) {
        return DP_OK;
    }
    // op is not retired, so its slot still holds its event (a slot is reused only after that)
    CUDA_OR_FAIL(c, cudaStreamWaitEvent((cudaStream_t)stream, slot(c, op)->done, 0));
    return DP_OK;
}

dp_status dp_comm_nccl_wait(dp_comm_nccl *c, uint64_t op)
{
    DP_TRY(check_op(c, NULL, 0, "dp_comm_nccl_wait"));
    if (op > c->seq) {
        return dp_error_set(DP_ERR_ARG,
                            "dp_comm_nccl_wait: operation #%llu was not started "
                            "(last: #%llu)",
                            (unsigned long long)op, (unsigned long long)c->seq);
    }
    return wait_retired(c, op == 0 ? c->seq : op);
}

dp_status dp_comm_nccl_sync_stream(dp_comm_nccl *c, void *stream)
{
    DP_TRY(check_op(c, NULL, 0, "dp_comm_nccl_sync_stream"));
    if (stream == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_nccl_sync_stream: stream is NULL");
    }
    uint64_t t0 = dp_time_ns();
    for (;;) {
        cudaError_t e = cudaStreamQuery((cudaStream_t)stream);
        if (e == cudaSuccess) {
            break;
        }
        if (e != cudaErrorNotReady) {
            return FAIL(c, DP_ERR_CUDA, "rank %d of %d: cudaStreamQuery at step %ld: %s (%s)",
                        c->rank, c->size, c->mpi->step, cudaGetErrorString(e), cudaGetErrorName(e));
        }
        (void)cudaGetLastError(); // "not ready" is no error for later launch checks
        DP_TRY(dp_comm_nccl_poll(c, NULL));
        dp__comm_backoff(c->mpi, since_s(t0));
    }
    return dp_comm_nccl_poll(c, NULL);
}
