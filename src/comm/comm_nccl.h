// The NCCL backend of the communicator: sum all-reduces and broadcasts of device buffers between
// the GPUs of a data-parallel run, one GPU per rank, on a communication stream that overlaps the
// rest of backward. It rides on an MPI dp_comm (comm.h): the ncclUniqueId goes out by
// dp_comm_bcast, and the collective timeout, the request budget and the step named by messages
// are that communicator's. No CUDA or NCCL types here: streams and events are `void *`
// (cudaStream_t, cudaEvent_t), buffers are device pointers.
//
// Ordering without host syncs. Every operation is enqueued on the communication stream given to
// dp_comm_nccl_create: it first waits for an event the caller recorded on the compute stream
// (backward has written the bucket), then runs, then records a completion event of its own. The
// compute stream waits for that event (dp_comm_nccl_stream_wait) before the optimizer reads the
// sums. The host never waits for the GPU on this path.
//
// The watchdog. A NCCL collective whose peer never comes spins on the GPU forever. So the
// communicator is non-blocking (NCCL's blocking=0) and dp_comm_nccl_poll, which the trainer calls
// once per step or more, checks the operations in flight: NCCL's asynchronous error state, and
// the completion event of the oldest unfinished operation against collective_timeout_s. On an
// error or a timeout it aborts the NCCL communicator (ncclCommAbort: the stuck kernels return)
// and returns DP_ERR_NCCL or DP_ERR_TIMEOUT naming the rank, the operation, its number and the
// step. Every host wait of this file (enqueue, dp_comm_nccl_wait, dp_comm_nccl_sync_stream,
// broadcast, create, destroy) runs the same checks, so none can hang. After an abort every call
// but destroy returns the abort's error at once; the caller then ends the job (dp_comm_abort).
//
// Threads: one thread, the one that uses the MPI dp_comm, with `device` as its current CUDA
// device. Collectives ("Collective" below) are called by every rank in the same order with the
// same counts, as in NCCL. Built when the build has NCCL (dp_backend_have_nccl()); a CUDA build
// without NCCL links comm_nccl_none.c, whose create returns DP_ERR_UNSUPPORTED.
#ifndef DP_COMM_COMM_NCCL_H
#define DP_COMM_COMM_NCCL_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef struct dp_comm_nccl dp_comm_nccl;

// --- lifetime ---

// Creates the NCCL communicator over the ranks of mpi (which must outlive it), rank for rank:
// makes `device` current (cudaSetDevice), allocates the completion events of the in-flight ring
// (max_requests of mpi's config), checks on every rank that every rank got that far (one
// allreduce_max on mpi, so a rank with a bad device fails every rank at once, naming it), takes a
// ncclUniqueId on rank 0 and broadcasts it over mpi, then ncclCommInitRankConfig with blocking=0,
// polling NCCL's state under mpi's collective timeout: a rank that never joins gives
// DP_ERR_TIMEOUT naming the operation, not a hang. stream: the communication stream (a
// cudaStream_t of `device`, borrowed; the caller keeps it alive until destroy). mpi may be a none
// communicator (one rank). Collective over mpi. Returns DP_ERR_ARG (NULL arguments, a negative
// device), DP_ERR_CUDA (the device or its events), DP_ERR_NCCL with NCCL's message,
// DP_ERR_TIMEOUT, or what mpi's collectives return; on error *out is NULL and nothing leaks.
DP_MUST_CHECK dp_status dp_comm_nccl_create(dp_comm *mpi, int device, void *stream,
                                            dp_comm_nccl **out);

// Flushes the operations in flight and releases the communicator: ncclCommFinalize polled under
// the collective timeout, then ncclCommDestroy; if that fails or times out (a peer is gone) it
// aborts instead (ncclCommAbort), with a warning. After an abort it only frees. Collective unless
// the communicator was aborted. Accepts NULL.
void dp_comm_nccl_destroy(dp_comm_nccl *c);

// Aborts the NCCL communicator now (ncclCommAbort): kernels of its operations stop, whatever
// their peers do. For a fatal error elsewhere (then dp_comm_abort ends the job). Later calls
// return DP_ERR_NCCL; destroy only frees. Local; accepts NULL.
void dp_comm_nccl_abort(dp_comm_nccl *c);

int dp_comm_nccl_rank(const dp_comm_nccl *c);
int dp_comm_nccl_size(const dp_comm_nccl *c);
int dp_comm_nccl_device(const dp_comm_nccl *c);

// --- operations (asynchronous: enqueued on the communication stream, host returns at once) ---
//
// Each takes wait_event: a cudaEvent_t that the caller has already recorded on the stream that
// writes the buffer (the compute stream, when backward finished the bucket), or NULL for no
// wait. Each hands out its operation number in *op (op may be NULL): numbers count up from 1 in
// call order, the same on every rank. buf must stay valid and untouched by other streams until
// the operation completes (dp_comm_nccl_stream_wait orders a stream after it). When max_requests
// operations are in flight, a start first waits on the host (under the watchdog) for the oldest
// to finish: back-pressure, not an error. count 0 enqueues only the waits and the completion
// event. Errors: DP_ERR_ARG (NULL buf with count > 0), DP_ERR_CUDA, DP_ERR_NCCL,
// DP_ERR_TIMEOUT (the communicator is then aborted).

// In place: buf[i] = sum over ranks of buf[i] (ncclAllReduce, float32, ncclSum). buf: count
// floats, device memory of `device`. The order of additions is NCCL's, which depends on the
// number of ranks and the topology. Collective.
DP_MUST_CHECK dp_status dp_comm_nccl_allreduce_start(dp_comm_nccl *c, float *buf, size_t count,
                                                     void *wait_event, uint64_t *op);

// In place: buf = T(buf of rank 0, ..., buf of rank P-1) on every rank, with the tree T of
// comm.h ("deterministic reduction") and exactly the exchanges of
// dp_comm_allreduce_sum_deterministic: recursive halving (distance 1, 2, 4, ...; the lower rank
// keeps the lower half; the received half is added as the right operand on the lower rank and
// the left on the upper) then recursive doubling (copies), over ncclSend/ncclRecv pairs in
// ncclGroupStart/End, with a device add kernel between. So the result is bitwise the MPI path's
// on the same inputs, and bitwise the same for every power-of-two P given the comm.h contract.
// Traffic ~2*count floats per rank. A scratch of ceil(count/2) floats of device memory is
// allocated on the first call with a larger count than before (dp_comm_nccl_reserve makes that
// happen before the step loop). DP_ERR_UNSUPPORTED if P is not a power of two. Collective.
DP_MUST_CHECK dp_status dp_comm_nccl_allreduce_deterministic_start(dp_comm_nccl *c, float *buf,
                                                                   size_t count, void *wait_event,
                                                                   uint64_t *op);

// Sets the deterministic scratch to fit count floats now (a host wait for the operations in
// flight if it grows). Local.
DP_MUST_CHECK dp_status dp_comm_nccl_reserve(dp_comm_nccl *c, size_t count);

// Copies `bytes` bytes of buf (device memory) on rank `root` to buf on every rank
// (ncclBroadcast), and waits on the host for completion under the watchdog: for the initial
// parameters, not the step loop. wait_event as above. DP_ERR_ARG for a root out of range.
// Collective.
DP_MUST_CHECK dp_status dp_comm_nccl_bcast(dp_comm_nccl *c, void *buf, size_t bytes, int root,
                                           void *wait_event);

// --- completion ---

// Makes `stream` (a cudaStream_t of the device) wait on the device for operation `op` and every
// operation before it (they complete in order on the one communication stream); op 0 means the
// last one started. No host wait. An op already known complete enqueues nothing.
DP_MUST_CHECK dp_status dp_comm_nccl_stream_wait(dp_comm_nccl *c, void *stream, uint64_t op);

// The watchdog (see the top of this file). Never waits: checks NCCL's asynchronous error,
// retires completed operations (cudaEventQuery, oldest first) and, if the oldest unfinished one
// has run longer than collective_timeout_s since it became the oldest, aborts and returns
// DP_ERR_TIMEOUT ("rank 1 of 2: nccl allreduce #12 (2359296 elements) started at step 7 did not
// complete within 300.0 s (collective_timeout); NCCL communicator aborted"). A CUDA error from an
// event query is DP_ERR_CUDA and aborts too. Cheap with nothing in flight. *n_in_flight (may be
// NULL) gets the number of operations not yet known complete.
DP_MUST_CHECK dp_status dp_comm_nccl_poll(dp_comm_nccl *c, int *n_in_flight);

// Waits on the host until operation `op` (0: every operation started) has completed, running
// the watchdog while it waits (spin, then yield, then short sleeps). For tests, and the end of a
// run; the step loop uses dp_comm_nccl_stream_wait.
DP_MUST_CHECK dp_status dp_comm_nccl_wait(dp_comm_nccl *c, uint64_t op);

// cudaStreamSynchronize(stream) that cannot hang on a stuck collective: polls the stream and
// runs the watchdog while it waits. Use it for any stream that waits on this communicator
// (the compute stream before reading a loss back, for example).
DP_MUST_CHECK dp_status dp_comm_nccl_sync_stream(dp_comm_nccl *c, void *stream);

DP_EXTERN_C_END

#endif
