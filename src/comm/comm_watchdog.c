// The watchdog: every blocking wait of src/comm is an MPI_Testall loop with a deadline, so a stuck
// collective becomes DP_ERR_TIMEOUT instead of a hung job, and the message names the ranks that
// did not arrive.
//
// How the missing ranks are found. Collectives are numbered in call order (c->seq, the same on
// every rank because every rank calls them in the same order). A rank whose wait has lasted
// announce_after_s (min(1 s, timeout/4)) sends one small "arrival" message to every other rank:
// (token, highest collective started, collective waited for, its op, step). Waiting ranks
// receive these while they poll. At the deadline, a rank names every peer whose last
// announcement shows it has not started the collective being waited for. Healthy runs, where
// waits end well under announce_after_s, send no messages at all. A peer that arrives less than
// timeout - announce_after_s before this rank's deadline may be named too: it was late by most
// of the timeout. If every peer has arrived, the message says so and lists peers waiting in a
// different operation under the same number (mismatched calls).
#include "comm/comm_internal.h"

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "core/timer.h"

enum { TAG_ARRIVE = DP__COMM_TAG_ARRIVE, MAX_NAMED = 16 };

// Spin (MPI_Testall back to back) for the first SPIN_S, then yield the core between tests until
// YIELD_S, then sleep a little: a long wait (a straggler, a checkpoint on another rank) must not
// burn the core that this rank's data pipeline threads need.
#define SPIN_S 1e-3
#define YIELD_S 0.1

static const char *const op_names[DP__COMM_OP_COUNT_] = {
    [DP__COMM_OP_NONE] = "nothing",
    [DP__COMM_OP_CREATE] = "create",
    [DP__COMM_OP_BARRIER] = "barrier",
    [DP__COMM_OP_BCAST] = "bcast",
    [DP__COMM_OP_ALLREDUCE_SUM] = "allreduce_sum",
    [DP__COMM_OP_ALLREDUCE_SUM_F64] = "allreduce_sum_f64",
    [DP__COMM_OP_ALLREDUCE_MAX_I64] = "allreduce_max_i64",
    [DP__COMM_OP_ALLREDUCE_ASYNC] = "allreduce_start/wait",
    [DP__COMM_OP_DETERMINISTIC] = "allreduce_sum_deterministic",
    [DP__COMM_OP_CHECK_EQUAL] = "check_equal",
};

const char *dp__comm_op_str(int op)
{
    if (op < 0 || op >= DP__COMM_OP_COUNT_) {
        return "unknown operation";
    }
    return op_names[op];
}

dp_status dp__comm_mpi_error(const char *file, int line, int rc, const char *call)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) {
        snprintf(text, sizeof text, "unknown MPI error");
    }
    int cls = rc;
    if (MPI_Error_class(rc, &cls) != MPI_SUCCESS) {
        cls = rc;
    }
    return dp__error_set(file, line, DP_ERR_MPI, "%s failed: %s (MPI error class %d)", call, text,
                         cls);
}

dp_status dp__comm_check_usable(const dp_comm *c)
{
    if (c->broken) {
        return dp_error_set(DP_ERR_TIMEOUT,
                            "rank %d: communicator unusable since collective #%llu timed out at "
                            "step %ld; only dp_comm_abort or dp_comm_destroy may follow",
                            c->rank, (unsigned long long)c->broken_seq, c->broken_step);
    }
    return DP_OK;
}

void dp__comm_backoff(const dp_comm *c, double waited_s)
{
    if (waited_s < SPIN_S && !c->yield_early) {
        return;
    }
    if (waited_s < YIELD_S) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, waited_s < 1.0 ? 50000 : 200000};
    nanosleep(&ts, NULL);
}

// --- announcements ---

dp_status dp__comm_drain_announcements(dp_comm *c)
{
    for (;;) {
        int flag = 0;
        MPI_Status status;
        DP_MPI_TRY(MPI_Iprobe(MPI_ANY_SOURCE, TAG_ARRIVE, c->comm, &flag, &status));
        if (!flag) {
            return DP_OK;
        }
        uint64_t msg[DP__COMM_ANNOUNCE_WORDS];
        int src = status.MPI_SOURCE;
        DP_MPI_TRY(MPI_Recv(msg, DP__COMM_ANNOUNCE_WORDS, MPI_UINT64_T, src, TAG_ARRIVE, c->comm,
                            MPI_STATUS_IGNORE));
        // A message of an earlier communicator that reused this context id carries another
        // token: drop it.
        if (msg[0] != c->token || src < 0 || src >= c->size || msg[1] < c->peers[src].started) {
            continue;
        }
        c->peers[src] = (dp__comm_peer){.started = msg[1],
                                        .wait_seq = msg[2],
                                        .wait_op = (int)msg[3],
                                        .step = (long)(int64_t)msg[4]};
    }
}

// Sends this rank's arrival to every other rank; *sent = 0 if the previous announcement's sends
// have not completed yet (the buffer is still MPI's), so the caller tries again later.
static dp_status announce(dp_comm *c, const dp__comm_wait_ctx *w, int *sent)
{
    *sent = 0;
    if (c->announce_pending) {
        int flag = 0;
        DP_MPI_TRY(MPI_Testall(c->size, c->announce_reqs, &flag, MPI_STATUSES_IGNORE));
        if (!flag) {
            return DP_OK;
        }
        c->announce_pending = 0;
    }
    c->announce_msg[0] = c->token;
    c->announce_msg[1] = c->seq;
    c->announce_msg[2] = w->seq;
    c->announce_msg[3] = (uint64_t)w->op;
    c->announce_msg[4] = (uint64_t)(int64_t)c->step;
    for (int q = 0; q < c->size; q++) {
        if (q == c->rank) {
            continue;
        }
        DP_MPI_TRY(MPI_Isend(c->announce_msg, DP__COMM_ANNOUNCE_WORDS, MPI_UINT64_T, q, TAG_ARRIVE,
                             c->comm, &c->announce_reqs[q]));
        c->announce_pending = 1;
    }
    *sent = 1;
    return DP_OK;
}

// --- the timeout message ---

typedef struct text_buf {
    char text[1536];
    size_t len;
} text_buf;

DP_PRINTF(2, 3) static void append(text_buf *b, const char *fmt, ...)
{
    if (b->len >= sizeof b->text - 1) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->text + b->len, sizeof b->text - b->len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        b->len += (size_t)n;
        if (b->len > sizeof b->text - 1) {
            b->len = sizeof b->text - 1;
        }
    }
}

static void append_missing(text_buf *b, const dp_comm *c, uint64_t seq)
{
    int named = 0, missing = 0;
    for (int q = 0; q < c->size; q++) {
        const dp__comm_peer *p = &c->peers[q];
        if (q == c->rank || p->started >= seq) {
            continue;
        }
        missing++;
        if (named == MAX_NAMED) {
            continue;
        }
        append(b, "%s%d", named > 0 ? ", " : "", q);
        if (p->started == 0) {
            append(b, " (no announcement)");
        } else {
            append(b, " (last announced: waiting in %s #%llu at step %ld)",
                   dp__comm_op_str(p->wait_op), (unsigned long long)p->wait_seq, p->step);
        }
        named++;
    }
    if (missing > named) {
        append(b, " and %d more", missing - named);
    }
}

static dp_status timeout_error(dp_comm *c, const dp__comm_wait_ctx *w, double waited_s)
{
    int missing = 0;
    for (int q = 0; q < c->size; q++) {
        missing += q != c->rank && c->peers[q].started < w->seq;
    }
    text_buf b = {.len = 0};
    append(&b,
           "rank %d of %d: %s #%llu (%zu %s) at step %ld did not complete within %.1f s "
           "(collective_timeout); ",
           c->rank, c->size, dp__comm_op_str(w->op), (unsigned long long)w->seq, w->count,
           w->op == DP__COMM_OP_BCAST ? "bytes" : "elements", c->step, waited_s);
    if (missing > 0) {
        append(&b, "ranks that did not arrive: ");
        append_missing(&b, c, w->seq);
        append(&b, " (%d of %d ranks arrived)", c->size - missing, c->size);
    } else {
        append(&b, "every rank arrived, yet it did not complete");
        int mismatched = 0;
        for (int q = 0; q < c->size; q++) {
            const dp__comm_peer *p = &c->peers[q];
            if (q != c->rank && p->wait_seq == w->seq && p->wait_op != w->op &&
                mismatched < MAX_NAMED) {
                append(&b, "%s rank %d waits in %s", mismatched == 0 ? ":" : ",", q,
                       dp__comm_op_str(p->wait_op));
                mismatched++;
            }
        }
        append(&b, mismatched > 0 ? " (ranks called different collectives)"
                                  : " (mismatched calls across ranks, or a failed link)");
    }
    c->broken = 1;
    c->broken_seq = w->seq;
    c->broken_step = c->step;
    return dp_error_set(DP_ERR_TIMEOUT, "%s", b.text);
}

// --- the watched wait ---

// MPI_Testall, reporting the failed request's own error rather than MPI_ERR_IN_STATUS.
static dp_status test_all(int n, MPI_Request *reqs, int *flag)
{
    MPI_Status statuses[2];
    int rc = MPI_Testall(n, reqs, flag, n <= 2 ? statuses : MPI_STATUSES_IGNORE);
    if (rc == MPI_ERR_IN_STATUS && n <= 2) {
        for (int i = 0; i < n; i++) {
            int e = statuses[i].MPI_ERROR;
            if (e != MPI_SUCCESS && e != MPI_ERR_PENDING) {
                return dp__comm_mpi_error(__FILE__, __LINE__, e, "MPI_Testall (a request)");
            }
        }
    }
    DP_MPI_TRY(rc);
    return DP_OK;
}

dp_status dp__comm_wait_watched(dp_comm *c, int n, MPI_Request *reqs, const dp__comm_wait_ctx *w)
{
    int flag = 0;
    DP_TRY(test_all(n, reqs, &flag));
    if (flag) {
        return DP_OK;
    }
    uint64_t t0 = dp_time_ns();
    int announced = c->size == 1;
    for (;;) {
        double waited = (double)(dp_time_ns() - t0) * 1e-9;
        if (waited >= c->announce_after_s && c->size > 1) {
            if (!announced) {
                DP_TRY(announce(c, w, &announced));
            }
            DP_TRY(dp__comm_drain_announcements(c));
        }
        if (waited >= c->timeout_s) {
            return timeout_error(c, w, waited);
        }
        dp__comm_backoff(c, waited);
        DP_TRY(test_all(n, reqs, &flag));
        if (flag) {
            return DP_OK;
        }
    }
}
