// comm_nccl.h in builds without NCCL (a CUDA toolkit without it): no communicator can be
// created, so every other call receives NULL. The trainer asks dp_backend_have_nccl() first and
// sums gradients over MPI then; this file only keeps such builds linking.
#include "comm/comm_nccl.h"

#include "core/error.h"

static dp_status no_nccl(const char *what)
{
    return dp_error_set(DP_ERR_UNSUPPORTED, "%s: this dptrain was built without NCCL", what);
}

dp_status dp_comm_nccl_create(dp_comm *mpi, int device, void *stream, dp_comm_nccl **out)
{
    (void)mpi;
    (void)device;
    (void)stream;
    if (out != NULL) {
        *out = NULL;
    }
    return no_nccl("nccl communicator");
}

void dp_comm_nccl_destroy(dp_comm_nccl *c)
{
    (void)c;
}

void dp_comm_nccl_abort(dp_comm_nccl *c)
{
    (void)c;
}

int dp_comm_nccl_rank(const dp_comm_nccl *c)
{
    (void)c;
    return 0;
}

int dp_comm_nccl_size(const dp_comm_nccl *c)
{
    (void)c;
    return 1;
}

int dp_comm_nccl_device(const dp_comm_nccl *c)
{
    (void)c;
    return -1;
}

dp_status dp_comm_nccl_allreduce_start(dp_comm_nccl *c, float *buf, size_t count,
                                       void *wait_event, uint64_t *op)
{
    (void)c, (void)buf, (void)count, (void)wait_event, (void)op;
    return no_nccl("nccl allreduce");
}

dp_status dp_comm_nccl_allreduce_deterministic_start(dp_comm_nccl *c, float *buf, size_t count,
                                                     void *wait_event, uint64_t *op)
{
    (void)c, (void)buf, (void)count, (void)wait_event, (void)op;
    return no_nccl("nccl deterministic allreduce");
}

dp_status dp_comm_nccl_reserve(dp_comm_nccl *c, size_t count)
{
    (void)c, (void)count;
    return no_nccl("nccl reserve");
}

dp_status dp_comm_nccl_bcast(dp_comm_nccl *c, void *buf, size_t bytes, int root,
                             void *wait_event)
{
    (void)c, (void)buf, (void)bytes, (void)root, (void)wait_event;
    return no_nccl("nccl broadcast");
}

dp_status dp_comm_nccl_stream_wait(dp_comm_nccl *c, void *stream, uint64_t op)
{
    (void)c, (void)stream, (void)op;
    return no_nccl("nccl stream wait");
}

dp_status dp_comm_nccl_poll(dp_comm_nccl *c, int *n_in_flight)
{
    (void)c;
    if (n_in_flight != NULL) {
        *n_in_flight = 0;
    }
    return DP_OK;
}

dp_status dp_comm_nccl_wait(dp_comm_nccl *c, uint64_t op)
{
    (void)c, (void)op;
    return no_nccl("nccl wait");
}

dp_status dp_comm_nccl_sync_stream(dp_comm_nccl *c, void *stream)
{
    (void)c, (void)stream;
    return no_nccl("nccl stream sync");
}
