// Error slot: message and origin, context added on the way up, thread-locality, macros.
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "core/error.h"

static dp_status fails(void)
{
    return dp_error_set(DP_ERR_CFG, "net.cfg:3: [net] batch: expected an integer, got 'x'");
}

static dp_status passes(void)
{
    return DP_OK;
}

static dp_status try_twice(int *reached)
{
    DP_TRY(passes());
    *reached = 1;
    DP_TRY(fails());
    *reached = 2;
    return DP_OK;
}

Test(error, set_returns_status_and_keeps_message_and_origin)
{
    dp_error_clear();
    cr_expect_eq(fails(), DP_ERR_CFG);
    cr_expect_str_eq(dp_error_message(), "net.cfg:3: [net] batch: expected an integer, got 'x'");
    cr_expect_not_null(strstr(dp_error_origin(), "test_error.c:"), "%s", dp_error_origin());
    cr_expect_eq(dp_error_status(), DP_ERR_CFG);
}

Test(error, context_is_prepended)
{
    dp_status st = fails();
    st = dp_error_context(st, "layer %d conv", 3);
    cr_expect_eq(st, DP_ERR_CFG);
    cr_expect_str_eq(dp_error_message(),
                     "layer 3 conv: net.cfg:3: [net] batch: expected an integer, got 'x'");
}

Test(error, try_returns_first_failure)
{
    int reached = 0;
    cr_expect_eq(try_twice(&reached), DP_ERR_CFG);
    cr_expect_eq(reached, 1);
}

Test(error, try_goto_jumps_to_cleanup)
{
    dp_status st = DP_OK;
    int cleaned = 0;
    DP_TRY_GOTO(fails(), st, out);
    cr_assert_fail("did not jump");
out:
    cleaned = 1;
    cr_expect_eq(st, DP_ERR_CFG);
    cr_expect_eq(cleaned, 1);
}

Test(error, status_strings_cover_every_code)
{
    cr_expect_str_eq(dp_status_str(DP_OK), "ok");
    cr_expect_str_eq(dp_status_name(DP_ERR_TIMEOUT), "ERR_TIMEOUT");
    for (int s = 0; s < DP_STATUS_COUNT_; s++) {
        cr_expect_neq(strcmp(dp_status_str((dp_status)s), "unknown status"), 0);
    }
    cr_expect_str_eq(dp_status_str((dp_status)999), "unknown status");
}

static void *other_thread(void *arg)
{
    (void)arg;
    dp_error_set(DP_ERR_IO, "from the other thread");
    return NULL;
}

Test(error, message_is_thread_local)
{
    dp_error_set(DP_ERR_ARG, "mine");
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, NULL);
    cr_expect_str_eq(dp_error_message(), "mine");
    cr_expect_eq(dp_error_status(), DP_ERR_ARG);
}

Test(error, long_messages_are_truncated_not_overflowed)
{
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    dp_error_set(DP_ERR_ARG, "%s", big);
    cr_expect_lt(strlen(dp_error_message()), sizeof big);
    dp_error_context(DP_ERR_ARG, "%s", big);
    cr_expect_lt(strlen(dp_error_message()), sizeof big);
}

Test(error, assert_aborts_with_location, .signal = SIGABRT)
{
    DP_ASSERT(1 + 1 == 3);
}
