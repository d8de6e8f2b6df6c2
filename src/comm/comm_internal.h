// Internals shared by the files of src/comm: the dp_comm struct, the MPI error translation and
// the watched wait (comm_watchdog.c). Not for use outside src/comm.
#ifndef DP_COMM_COMM_INTERNAL_H
#define DP_COMM_COMM_INTERNAL_H

#include <mpi.h>
#include <stdint.h>

#include "comm/comm.h"
#include "core/error.h"

// Operations named by timeout messages and arrival announcements (sent as numbers).
typedef enum dp__comm_op {
    DP__COMM_OP_NONE = 0,
    DP__COMM_OP_CREATE,
    DP__COMM_OP_BARRIER,
    DP__COMM_OP_BCAST,
    DP__COMM_OP_ALLREDUCE_SUM,
    DP__COMM_OP_ALLREDUCE_SUM_F64,
    DP__COMM_OP_ALLREDUCE_MAX_I64,
    DP__COMM_OP_ALLREDUCE_ASYNC,
    DP__COMM_OP_DETERMINISTIC,
    DP__COMM_OP_CHECK_EQUAL,
    DP__COMM_OP_COUNT_
} dp__comm_op;

const char *dp__comm_op_str(int op);

// What one peer last announced (comm_watchdog.c). started: the highest collective number it had
// started; wait_seq/wait_op: the collective it was waiting in; step: its step then.
typedef struct dp__comm_peer {
    uint64_t started;
    uint64_t wait_seq;
    int wait_op;
    long step;
} dp__comm_peer;

enum { DP__COMM_ANNOUNCE_WORDS = 5 }; // token, started, wait_seq, wait_op, step

// Point-to-point tags on dp_comm.comm (collectives there do not match user tags).
enum { DP__COMM_TAG_ARRIVE = 0x7a11, DP__COMM_TAG_DETERMINISTIC = 0x7a12 };

struct dp_comm_request {
    dp_comm *comm;
    int index;    // slot in the pool; its MPI_Request is comm->req_mpi[index]
    int active;   // handed out and not yet returned by test/wait
    int done;     // the MPI operation has completed
    uint64_t seq; // collective number
    size_t count; // floats
};

struct dp_comm {
    dp_comm_backend backend; // NONE or MPI
    int rank, size, local_rank, local_size;
    double timeout_s;
    double announce_after_s; // a wait announces its arrival after this long (watchdog)
    long step;
    uint64_t seq; // collectives started here; the same count on every rank
    int broken;   // a wait timed out: collectives refuse to run
    uint64_t broken_seq;
    long broken_step;
    int owns_mpi;    // dp_comm_create called MPI_Init_thread
    int yield_early; // more ranks on this node than cores: never spin without yielding

    MPI_Comm comm;  // a duplicate of MPI_COMM_WORLD; MPI_COMM_NULL for NONE
    uint64_t token; // same on every rank, tags this communicator's announcements

    // async pool: max_requests slots; a free-slot stack
    int max_requests;
    dp_comm_request *reqs;
    MPI_Request *req_mpi;
    int *free_slots;
    int n_free;
    int *testsome_idx;

    // blocking operations keep their requests here, so that a timed-out one outlives the call
    MPI_Request internal[2];

    // watchdog (size entries each)
    dp__comm_peer *peers;
    MPI_Request *announce_reqs;
    int announce_pending; // announce_reqs hold sends not yet known complete
    uint64_t announce_msg[DP__COMM_ANNOUNCE_WORDS];

    uint64_t *gather;        // check_equal: 2 * size words received
    uint64_t gather_mine[2]; // check_equal: this rank's (hash, bytes), sent
    float *scratch;          // deterministic reduction: scratch_count floats
    size_t scratch_count;
};

// What a watched wait is waiting for, for its messages.
typedef struct dp__comm_wait_ctx {
    int op;
    uint64_t seq;
    size_t count; // elements (bytes for bcast); only printed
} dp__comm_wait_ctx;

// Sets a DP_ERR_MPI error with MPI's message for rc ("MPI_Iallreduce(...) failed: MPI_ERR_COUNT:
// invalid count argument") and returns DP_ERR_MPI.
dp_status dp__comm_mpi_error(const char *file, int line, int rc, const char *call);

#define DP_MPI_TRY(call)                                                                           \
    do {                                                                                           \
        int dp_mpi_rc_ = (call);                                                                   \
        if (dp_mpi_rc_ != MPI_SUCCESS) {                                                           \
            return dp__comm_mpi_error(__FILE__, __LINE__, dp_mpi_rc_, #call);                      \
        }                                                                                          \
    } while (0)

#define DP_MPI_TRY_GOTO(call, st, label)                                                           \
    do {                                                                                           \
        int dp_mpi_rc_ = (call);                                                                   \
        if (dp_mpi_rc_ != MPI_SUCCESS) {                                                           \
            (st) = dp__comm_mpi_error(__FILE__, __LINE__, dp_mpi_rc_, #call);                      \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

// Waits until the n requests in reqs complete: an MPI_Testall loop that spins, then yields, then
// sleeps; after announce_after_s it announces this rank's arrival to the other ranks; after
// timeout_s it names the missing ranks, marks c broken and returns DP_ERR_TIMEOUT. The requests
// stay in reqs (MPI_REQUEST_NULL once complete).
DP_MUST_CHECK dp_status dp__comm_wait_watched(dp_comm *c, int n, MPI_Request *reqs,
                                              const dp__comm_wait_ctx *w);

// Receives pending announcements from the other ranks into c->peers. Never waits.
DP_MUST_CHECK dp_status dp__comm_drain_announcements(dp_comm *c);

// Sleep/yield policy of the watched wait, for the other loops of src/comm.
void dp__comm_backoff(const dp_comm *c, double waited_s);

// Returns DP_ERR_TIMEOUT naming the earlier timeout if c is broken, else DP_OK.
DP_MUST_CHECK dp_status dp__comm_check_usable(const dp_comm *c);

// The argument checks of a collective over count elements of buf: c not NULL and usable, buf
// not NULL unless count is 0, count <= INT_MAX. fn names the caller in the message.
DP_MUST_CHECK dp_status dp__comm_check_buffer(const dp_comm *c, const void *buf, size_t count,
                                              const char *fn);

#endif
