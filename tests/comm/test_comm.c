// The communicator with the none backend (one process, no MPI): facts, config checks, backend
// detection, collectives as no-ops, the async request pool, argument errors. The MPI backend is
// tested by test_comm_mpi.c under mpirun.
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "core/error.h"

static dp_comm *make_none(int max_requests)
{
    dp_comm_config cfg = DP_COMM_CONFIG_INIT;
    cfg.backend = DP_COMM_BACKEND_NONE;
    cfg.max_requests = max_requests;
    dp_comm *c = NULL;
    dp_status st = dp_comm_create(&c, &cfg);
    cr_assert_eq(st, DP_OK, "%s", dp_error_message());
    cr_assert_not_null(c);
    return c;
}

static void clear_launcher_env(void)
{
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMIX_RANK");
    unsetenv("PMI_RANK");
    unsetenv("SLURM_PROCID");
}

Test(comm, none_backend_is_rank_zero_of_one)
{
    dp_comm *c = make_none(4);
    cr_expect_eq(dp_comm_backend_of(c), DP_COMM_BACKEND_NONE);
    cr_expect_eq(dp_comm_rank(c), 0);
    cr_expect_eq(dp_comm_size(c), 1);
    cr_expect_eq(dp_comm_local_rank(c), 0);
    cr_expect_eq(dp_comm_local_size(c), 1);
    dp_comm_destroy(c);
}

Test(comm, auto_is_none_without_a_launcher_and_mpi_with_one)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                       "SLURM_PROCID"};
    clear_launcher_env();
    cr_expect_eq(dp_comm_backend_detect(), DP_COMM_BACKEND_NONE);
    for (int i = 0; i < 4; i++) {
        setenv(vars[i], "0", 1);
        cr_expect_eq(dp_comm_backend_detect(), DP_COMM_BACKEND_MPI, "%s set", vars[i]);
        unsetenv(vars[i]);
    }
    setenv("SLURM_PROCID", "", 1);
    cr_expect_eq(dp_comm_backend_detect(), DP_COMM_BACKEND_NONE, "empty value counts as unset");
    clear_launcher_env();

    dp_comm *c = NULL;
    cr_assert_eq(dp_comm_create(&c, NULL), DP_OK, "%s", dp_error_message());
    cr_expect_eq(dp_comm_backend_of(c), DP_COMM_BACKEND_NONE);
    dp_comm_destroy(c);
}

Test(comm, backend_names_parse_and_print)
{
    dp_comm_backend b = DP_COMM_BACKEND_AUTO;
    cr_expect_eq(dp_comm_backend_parse(&b, "mpi"), DP_OK);
    cr_expect_eq(b, DP_COMM_BACKEND_MPI);
    cr_expect_eq(dp_comm_backend_parse(&b, "NONE"), DP_OK);
    cr_expect_eq(b, DP_COMM_BACKEND_NONE);
    cr_expect_eq(dp_comm_backend_parse(&b, "auto"), DP_OK);
    cr_expect_eq(b, DP_COMM_BACKEND_AUTO);
    cr_expect_eq(dp_comm_backend_parse(&b, "nccl"), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "'nccl'"), "%s", dp_error_message());
    cr_expect_str_eq(dp_comm_backend_str(DP_COMM_BACKEND_MPI), "mpi");
    cr_expect_str_eq(dp_comm_backend_str((dp_comm_backend)9), "unknown");
}

Test(comm, create_rejects_bad_config)
{
    const double bad_timeouts[] = {0.0, -1.0, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        dp_comm_config cfg = DP_COMM_CONFIG_INIT;
        cfg.backend = DP_COMM_BACKEND_NONE;
        cfg.collective_timeout_s = bad_timeouts[i];
        dp_comm *c = (dp_comm *)&cfg; // must be reset to NULL
        cr_expect_eq(dp_comm_create(&c, &cfg), DP_ERR_ARG, "timeout %g", bad_timeouts[i]);
        cr_expect_null(c);
        cr_expect_not_null(strstr(dp_error_message(), "collective_timeout"), "%s",
                           dp_error_message());
    }
    const int bad_pools[] = {0, -3, 4097};
    for (int i = 0; i < 3; i++) {
        dp_comm_config cfg = DP_COMM_CONFIG_INIT;
        cfg.max_requests = bad_pools[i];
        dp_comm *c = NULL;
        cr_expect_eq(dp_comm_create(&c, &cfg), DP_ERR_ARG, "max_requests %d", bad_pools[i]);
        cr_expect_not_null(strstr(dp_error_message(), "max_requests"), "%s", dp_error_message());
    }
    dp_comm_config cfg = DP_COMM_CONFIG_INIT;
    cfg.backend = (dp_comm_backend)7;
    dp_comm *c = NULL;
    cr_expect_eq(dp_comm_create(&c, &cfg), DP_ERR_ARG);
    cr_expect_eq(dp_comm_create(NULL, NULL), DP_ERR_ARG);
}

Test(comm, none_collectives_leave_data_unchanged)
{
    dp_comm *c = make_none(4);
    float f[5] = {1.5f, -2.0f, NAN, 3e38f, 0.0f};
    float f0[5];
    memcpy(f0, f, sizeof f);
    double d[2] = {0.25, -7.0};
    int64_t i64[2] = {INT64_MIN, 5};
    char blob[16] = "cfg text";
    cr_expect_eq(dp_comm_barrier(c), DP_OK);
    cr_expect_eq(dp_comm_allreduce_sum(c, f, 5), DP_OK);
    cr_expect_eq(dp_comm_allreduce_sum_deterministic(c, f, 5), DP_OK);
    cr_expect_eq(memcmp(f, f0, sizeof f), 0, "bitwise unchanged");
    cr_expect_eq(dp_comm_allreduce_sum_f64(c, d, 2), DP_OK);
    cr_expect(d[0] == 0.25 && d[1] == -7.0);
    cr_expect_eq(dp_comm_allreduce_max_i64(c, i64, 2), DP_OK);
    cr_expect(i64[0] == INT64_MIN && i64[1] == 5);
    cr_expect_eq(dp_comm_bcast(c, blob, sizeof blob, 0), DP_OK);
    cr_expect_str_eq(blob, "cfg text");
    cr_expect_eq(dp_comm_check_equal(c, blob, sizeof blob, "cfg text"), DP_OK);
    cr_expect_eq(dp_comm_allreduce_sum(c, NULL, 0), DP_OK, "empty buffer");
    dp_comm_destroy(c);
}

Test(comm, argument_errors_name_the_call)
{
    dp_comm *c = make_none(4);
    char blob[4] = {0};
    cr_expect_eq(dp_comm_bcast(c, blob, sizeof blob, 1), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "root 1"), "%s", dp_error_message());
    cr_expect_eq(dp_comm_bcast(c, blob, sizeof blob, -1), DP_ERR_ARG);
    cr_expect_eq(dp_comm_allreduce_sum(c, NULL, 3), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "allreduce_sum"), "%s", dp_error_message());
    float x = 1.0f;
    cr_expect_eq(dp_comm_allreduce_sum(c, &x, (size_t)INT_MAX + 1), DP_ERR_UNSUPPORTED);
    cr_expect_not_null(strstr(dp_error_message(), "int count"), "%s", dp_error_message());
    cr_expect_eq(dp_comm_allreduce_sum_deterministic(c, NULL, 2), DP_ERR_ARG);
    cr_expect_eq(dp_comm_check_equal(c, NULL, 2, "x"), DP_ERR_ARG);
    cr_expect_eq(dp_comm_allreduce_sum(NULL, &x, 1), DP_ERR_ARG);
    cr_expect_eq(dp_comm_progress(NULL), DP_ERR_ARG);
    dp_comm_destroy(c);
}

Test(comm, async_pool_hands_out_and_takes_back_requests)
{
    dp_comm *c = make_none(2);
    float a[3] = {1, 2, 3}, b[1] = {4};
    dp_comm_request *ra = NULL, *rb = NULL, *rc = NULL;
    cr_assert_eq(dp_comm_allreduce_start(c, a, 3, &ra), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_comm_allreduce_start(c, b, 1, &rb), DP_OK, "%s", dp_error_message());
    cr_expect_neq(ra, rb);
    cr_expect_eq(dp_comm_allreduce_start(c, b, 1, &rc), DP_ERR_ARG, "pool of 2 is exhausted");
    cr_expect_null(rc);
    cr_expect_not_null(strstr(dp_error_message(), "max_requests"), "%s", dp_error_message());
    cr_expect_eq(dp_comm_progress(c), DP_OK);
    int done = 0;
    cr_expect_eq(dp_comm_test(&ra, &done), DP_OK);
    cr_expect_eq(done, 1);
    cr_expect_null(ra, "test of a completed request releases it");
    cr_expect_eq(dp_comm_wait(&rb), DP_OK);
    cr_expect_null(rb);
    cr_expect_eq(dp_comm_wait(&rb), DP_OK, "NULL request: nothing to wait for");
    cr_expect_eq(dp_comm_test(&rb, &done), DP_OK);
    cr_expect_eq(done, 1);
    for (int i = 0; i < 100; i++) { // slots come back: 100 round trips through a pool of 2
        cr_assert_eq(dp_comm_allreduce_start(c, a, 3, &ra), DP_OK, "round %d", i);
        cr_assert_eq(dp_comm_wait(&ra), DP_OK);
    }
    cr_expect(a[0] == 1 && a[1] == 2 && a[2] == 3);
    cr_expect_eq(dp_comm_allreduce_start(c, a, 3, NULL), DP_ERR_ARG);
    cr_expect_eq(dp_comm_test(NULL, &done), DP_ERR_ARG);
    cr_expect_eq(dp_comm_wait(NULL), DP_ERR_ARG);
    dp_comm_destroy(c);
}

Test(comm, destroy_and_abort_accept_null_without_mpi)
{
    dp_comm_destroy(NULL);
    dp_comm *c = make_none(1);
    dp_comm_abort(c, 3);    // none backend: nothing to abort, returns
    dp_comm_abort(NULL, 3); // MPI not initialized: returns
    dp_comm_set_step(c, 12);
    dp_comm_destroy(c);
    cr_expect(1, "still running");
}
