// Thread pool: every task runs exactly once for any pool size and task count, thread ids are in
// range, writes are visible after the loop, nested loops run inline, bad sizes are rejected.
// The stress test under ThreadSanitizer is tsan_threadpool.c (plain C).
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/threadpool.h"

typedef struct count_ctx {
    int *hits;      // (n_tasks) times each task ran
    int *thread_of; // (n_tasks) thread that ran it
    int threads;
    atomic_int bad_thread;
} count_ctx;

static void count_task(void *arg, long task, int thread)
{
    count_ctx *c = arg;
    c->hits[task]++;
    c->thread_of[task] = thread;
    if (thread < 0 || thread >= c->threads) {
        atomic_store(&c->bad_thread, 1);
    }
}

Test(threadpool, every_task_runs_once_for_any_size_and_count, .timeout = 60)
{
    const long counts[] = {0, 1, 2, 3, 7, 64, 1000};
    for (int threads = 1; threads <= 4; threads++) {
        dp_threadpool *pool;
        cr_assert_eq(dp_threadpool_create(&pool, threads), DP_OK);
        cr_expect_eq(dp_threadpool_size(pool), threads);
        for (int rep = 0; rep < 50; rep++) {
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
                long n = counts[k];
                count_ctx c = {calloc((size_t)n + 1, sizeof(int)),
                               calloc((size_t)n + 1, sizeof(int)), threads, 0};
                dp_threadpool_for(pool, n, count_task, &c);
                for (long t = 0; t < n; t++) {
                    cr_assert_eq(c.hits[t], 1, "threads %d, %ld tasks: task %ld ran %d times",
                                 threads, n, t, c.hits[t]);
                }
                cr_assert_eq(atomic_load(&c.bad_thread), 0);
                free(c.hits);
                free(c.thread_of);
            }
        }
        dp_threadpool_destroy(pool);
    }
}

Test(threadpool, null_pool_runs_tasks_in_order_on_the_caller)
{
    cr_expect_eq(dp_threadpool_size(NULL), 1);
    int hits[5] = {0}, thread_of[5] = {-1, -1, -1, -1, -1};
    count_ctx c = {hits, thread_of, 1, 0};
    dp_threadpool_for(NULL, 5, count_task, &c);
    for (int t = 0; t < 5; t++) {
        cr_expect_eq(hits[t], 1);
        cr_expect_eq(thread_of[t], 0);
    }
}

typedef struct nested_ctx {
    dp_threadpool *pool;
    long inner[8][16]; // inner task hits per outer task
} nested_ctx;

static void inner_task(void *arg, long task, int thread)
{
    (void)thread;
    ((long *)arg)[task]++;
}

static void outer_task(void *arg, long task, int thread)
{
    (void)thread;
    nested_ctx *c = arg;
    dp_threadpool_for(c->pool, 16, inner_task, c->inner[task]);
}

Test(threadpool, a_loop_inside_a_task_runs_inline, .timeout = 30)
{
    nested_ctx c;
    memset(&c, 0, sizeof c);
    cr_assert_eq(dp_threadpool_create(&c.pool, 3), DP_OK);
    dp_threadpool_for(c.pool, 8, outer_task, &c);
    for (int o = 0; o < 8; o++) {
        for (int i = 0; i < 16; i++) {
            cr_expect_eq(c.inner[o][i], 1, "outer %d inner %d", o, i);
        }
    }
    dp_threadpool_destroy(c.pool);
}

typedef struct sum_ctx {
    const double *x;
    double *partial; // one per task
    long block;
} sum_ctx;

static void sum_task(void *arg, long task, int thread)
{
    (void)thread;
    sum_ctx *c = arg;
    double s = 0;
    for (long i = task * c->block; i < (task + 1) * c->block; i++) {
        s += c->x[i] * 1.000001;
    }
    c->partial[task] = s;
}

Test(threadpool, per_task_partials_combined_in_order_are_bitwise_repeatable, .timeout = 60)
{
    enum { TASKS = 37, BLOCK = 997 };
    double *x = malloc(TASKS * BLOCK * sizeof *x), partial[TASKS], ref = 0;
    for (long i = 0; i < TASKS * BLOCK; i++) {
        x[i] = 1.0 / (double)(i + 1);
    }
    for (int threads = 1; threads <= 3; threads++) {
        dp_threadpool *pool;
        cr_assert_eq(dp_threadpool_create(&pool, threads), DP_OK);
        for (int rep = 0; rep < 20; rep++) {
            sum_ctx c = {x, partial, BLOCK};
            dp_threadpool_for(pool, TASKS, sum_task, &c);
            double s = 0;
            for (int t = 0; t < TASKS; t++) {
                s += partial[t];
            }
            if (threads == 1 && rep == 0) {
                ref = s;
            }
            cr_assert(memcmp(&s, &ref, sizeof s) == 0, "bitwise: threads %d rep %d", threads, rep);
        }
        dp_threadpool_destroy(pool);
    }
    free(x);
}

Test(threadpool, bad_sizes_are_arg_errors)
{
    dp_threadpool *pool = (dp_threadpool *)1;
    cr_expect_eq(dp_threadpool_create(&pool, 0), DP_ERR_ARG);
    cr_expect_null(pool);
    cr_expect_eq(dp_threadpool_create(&pool, 100000), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "100000"), "%s", dp_error_message());
    cr_expect_eq(dp_threadpool_create(NULL, 2), DP_ERR_ARG);
    dp_threadpool_destroy(NULL);
}

Test(threadpool, idle_workers_fall_asleep_and_wake_for_the_next_loop, .timeout = 30)
{
    dp_threadpool *pool;
    cr_assert_eq(dp_threadpool_create(&pool, 2), DP_OK);
    for (int rep = 0; rep < 3; rep++) {
        struct timespec ts = {0, 5 * 1000 * 1000}; // 5 ms: past the spin window
        nanosleep(&ts, NULL);
        int hits[100] = {0}, thread_of[100];
        count_ctx c = {hits, thread_of, 2, 0};
        dp_threadpool_for(pool, 100, count_task, &c);
        for (int t = 0; t < 100; t++) {
            cr_assert_eq(hits[t], 1);
        }
    }
    dp_threadpool_destroy(pool);
}
