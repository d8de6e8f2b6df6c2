// Logging: levels, rank prefix on WARN and above, INFO muted off rank 0, replaceable sink,
// DP_LOG_LEVEL parsing.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"

static char captured[8][512];
static int n_captured;

static void capture(dp_log_level level, const char *line, void *ctx)
{
    (void)level;
    (void)ctx;
    if (n_captured < 8) {
        snprintf(captured[n_captured++], sizeof captured[0], "%s", line);
    }
}

static void setup(void)
{
    n_captured = 0;
    dp_log_set_sink(capture, NULL);
    dp_log_set_rank(0);
    dp_log_set_level(DP_LOG_LEVEL_INFO);
}

static void teardown(void)
{
    dp_log_set_sink(NULL, NULL);
}

TestSuite(log, .init = setup, .fini = teardown);

Test(log, warn_carries_rank_and_source_location)
{
    dp_log_set_rank(3);
    DP_LOG_WARN("slow rank %d", 1);
    cr_assert_eq(n_captured, 1);
    cr_expect_not_null(strstr(captured[0], "[rank 3]"), "%s", captured[0]);
    cr_expect_not_null(strstr(captured[0], "test_log.c:"), "%s", captured[0]);
    cr_expect_not_null(strstr(captured[0], "slow rank 1"), "%s", captured[0]);
}

Test(log, info_only_on_rank_zero)
{
    DP_LOG_INFO("hello");
    dp_log_set_rank(1);
    DP_LOG_INFO("hidden");
    DP_LOG_ERROR("shown");
    cr_assert_eq(n_captured, 2);
    cr_expect_str_eq(captured[0], "hello");
    cr_expect_not_null(strstr(captured[1], "shown"));
}

Test(log, level_filters_messages)
{
    dp_log_set_level(DP_LOG_LEVEL_WARN);
    DP_LOG_INFO("no");
    DP_LOG_DEBUG("no");
    DP_LOG_WARN("yes");
    cr_expect_eq(n_captured, 1);
    dp_log_set_level(DP_LOG_LEVEL_DEBUG);
    DP_LOG_DEBUG("now");
    cr_expect_eq(n_captured, 2);
}

Test(log, level_names_parse_and_bad_names_fail)
{
    dp_log_level lv;
    cr_expect_eq(dp_log_level_parse(&lv, "DEBUG"), DP_OK);
    cr_expect_eq(lv, DP_LOG_LEVEL_DEBUG);
    cr_expect_eq(dp_log_level_parse(&lv, "1"), DP_OK);
    cr_expect_eq(lv, DP_LOG_LEVEL_WARN);
    cr_expect_eq(dp_log_level_parse(&lv, "loud"), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "loud"));
}
