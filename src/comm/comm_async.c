// Async all-reduce: requests come from the fixed pool made by dp_comm_create (a stack of free
// slots; their MPI_Requests sit in one array so that dp_comm_progress is one MPI_Testsome).
#include "comm/comm_internal.h"

static void release(dp_comm_request *r)
{
    dp_comm *c = r->comm;
    r->active = 0;
    c->req_mpi[r->index] = MPI_REQUEST_NULL;
    c->free_slots[c->n_free++] = r->index;
}

static dp_status check_request(const dp_comm_request *r, const char *fn)
{
    if (!r->active) {
        return dp_error_set(DP_ERR_ARG, "%s: request is not in flight (already completed?)", fn);
    }
    return DP_OK;
}

dp_status dp_comm_allreduce_start(dp_comm *c, float *buf, size_t count, dp_comm_request **req)
{
    if (req == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_allreduce_start: req is NULL");
    }
    *req = NULL;
    DP_TRY(dp__comm_check_buffer(c, buf, count, "dp_comm_allreduce_start"));
    if (c->n_free == 0) {
        return dp_error_set(DP_ERR_ARG,
                            "dp_comm_allreduce_start: all %d requests of the pool are in flight "
                            "(dp_comm_config.max_requests); wait for some first",
                            c->max_requests);
    }
    int slot = c->free_slots[--c->n_free];
    dp_comm_request *r = &c->reqs[slot];
    *r = (dp_comm_request){
        .comm = c, .index = slot, .active = 1, .done = 0, .seq = ++c->seq, .count = count};
    if (c->backend == DP_COMM_BACKEND_NONE) {
        r->done = 1;
    } else {
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, c->comm,
                                &c->req_mpi[slot]);
        if (rc != MPI_SUCCESS) {
            release(r);
            return dp__comm_mpi_error(__FILE__, __LINE__, rc, "MPI_Iallreduce");
        }
    }
    *req = r;
    return DP_OK;
}

dp_status dp_comm_test(dp_comm_request **req, int *done)
{
    if (req == NULL || done == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_test: req or done is NULL");
    }
    dp_comm_request *r = *req;
    *done = 1;
    if (r == NULL) {
        return DP_OK;
    }
    DP_TRY(check_request(r, "dp_comm_test"));
    if (!r->done) {
        int flag = 0;
        int rc = MPI_Test(&r->comm->req_mpi[r->index], &flag, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            *req = NULL; // the communicator keeps it until destroy
            return dp__comm_mpi_error(__FILE__, __LINE__, rc, "MPI_Test");
        }
        r->done = flag;
    }
    *done = r->done;
    if (r->done) {
        release(r);
        *req = NULL;
    }
    return DP_OK;
}

dp_status dp_comm_wait(dp_comm_request **req)
{
    if (req == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_wait: req is NULL");
    }
    dp_comm_request *r = *req;
    if (r == NULL) {
        return DP_OK;
    }
    DP_TRY(check_request(r, "dp_comm_wait"));
    *req = NULL;
    dp_comm *c = r->comm;
    if (!r->done) {
        // on error the request stays in the pool: MPI may still write its buffer
        DP_TRY(dp__comm_check_usable(c));
        dp__comm_wait_ctx w = {.op = DP__COMM_OP_ALLREDUCE_ASYNC, .seq = r->seq, .count = r->count};
        DP_TRY(dp__comm_wait_watched(c, 1, &c->req_mpi[r->index], &w));
        r->done = 1;
    }
    release(r);
    return DP_OK;
}

dp_status dp_comm_progress(dp_comm *c)
{
    if (c == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_progress: communicator is NULL");
    }
    if (c->backend == DP_COMM_BACKEND_NONE || c->n_free == c->max_requests) {
        return DP_OK;
    }
    int n_done = 0;
    DP_MPI_TRY(
        MPI_Testsome(c->max_requests, c->req_mpi, &n_done, c->testsome_idx, MPI_STATUSES_IGNORE));
    for (int i = 0; n_done != MPI_UNDEFINED && i < n_done; i++) {
        c->reqs[c->testsome_idx[i]].done = 1;
    }
    return DP_OK;
}
