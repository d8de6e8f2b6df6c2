// Fork-join pool (see threadpool.h). A loop is published by bumping a generation counter; the
// caller and the workers then claim task indices from one atomic counter, and the caller waits
// until every worker has reported the loop done. Workers poll the generation for SPIN_NS after
// their last loop, then sleep on a condition variable; the caller signals it only when someone
// sleeps (both sides use sequentially consistent operations on gen and sleepers, so a sleeper
// either sees the new generation or is counted before the caller looks).
#include "core/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

enum { MAX_THREADS = 256 };
#define SPIN_NS 200000L // how long an idle worker polls before it sleeps (0.2 ms)

typedef struct worker {
    dp_threadpool *pool;
    int index; // 1 .. threads - 1 (the caller is 0)
} worker;

struct dp_threadpool {
    int threads;
    int started; // workers running (threads - 1 after a successful create)
    pthread_t *tids;
    worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake;

    // --- the current loop: written by the caller before gen is bumped ---
    dp_threadpool_task_fn fn;
    void *ctx;
    long n_tasks;
    atomic_long next;   // next task index to claim
    atomic_int pending; // workers that have not finished the current loop
    atomic_uint gen;    // loop generation
    atomic_int sleepers;
    atomic_int stop;
    atomic_int busy; // a loop is running (guards against concurrent callers)
};

static _Thread_local const dp_threadpool *tls_inside; // the pool whose task this thread runs

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void run_tasks(dp_threadpool *pool, int thread)
{
    const dp_threadpool *outer = tls_inside;
    tls_inside = pool;
    for (;;) {
        long task = atomic_fetch_add_explicit(&pool->next, 1, memory_order_relaxed);
        if (task >= pool->n_tasks) {
            break;
        }
        pool->fn(pool->ctx, task, thread);
    }
    tls_inside = outer;
}

// Waits until gen differs from seen (or stop is set); returns the new generation.
static unsigned wait_for_loop(dp_threadpool *pool, unsigned seen)
{
    long deadline = now_ns() + SPIN_NS;
    for (int i = 1;; i++) {
        unsigned g = atomic_load(&pool->gen);
        if (g != seen || atomic_load(&pool->stop)) {
            return g;
        }
        cpu_relax();
        if ((i & 255) == 0 && now_ns() > deadline) {
            break;
        }
    }
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add(&pool->sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&pool->gen)) == seen && !atomic_load(&pool->stop)) {
        pthread_cond_wait(&pool->wake, &pool->mu);
    }
    atomic_fetch_sub(&pool->sleepers, 1);
    pthread_mutex_unlock(&pool->mu);
    return g;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    dp_threadpool *pool = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_loop(pool, seen);
        if (atomic_load(&pool->stop)) {
            return NULL;
        }
        run_tasks(pool, w->index);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

static void wake_all(dp_threadpool *pool)
{
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mu);
    }
}

dp_status dp_threadpool_create(dp_threadpool **out, int threads)
{
    if (out == NULL) {
        return dp_error_set(DP_ERR_ARG, "threadpool: out is NULL");
    }
    *out = NULL;
    if (threads < 1 || threads > MAX_THREADS) {
        return dp_error_set(DP_ERR_ARG, "threadpool: %d threads, expected 1..%d", threads,
                            MAX_THREADS);
    }
    dp_threadpool *pool = calloc(1, sizeof *pool);
    if (pool == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "threadpool: out of memory");
    }
    pool->threads = threads;
    atomic_init(&pool->next, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->stop, 0);
    atomic_init(&pool->busy, 0);
    if (pthread_mutex_init(&pool->mu, NULL) != 0) {
        free(pool);
        return dp_error_set(DP_ERR_INTERNAL, "threadpool: pthread_mutex_init failed");
    }
    if (pthread_cond_init(&pool->wake, NULL) != 0) {
        pthread_mutex_destroy(&pool->mu);
        free(pool);
        return dp_error_set(DP_ERR_INTERNAL, "threadpool: pthread_cond_init failed");
    }
    if (threads > 1) {
        pool->tids = calloc((size_t)threads - 1, sizeof *pool->tids);
        pool->workers = calloc((size_t)threads - 1, sizeof *pool->workers);
        if (pool->tids == NULL || pool->workers == NULL) {
            dp_threadpool_destroy(pool);
            return dp_error_set(DP_ERR_NOMEM, "threadpool: out of memory");
        }
    }
    for (int i = 0; i < threads - 1; i++) {
        pool->workers[i].pool = pool;
        pool->workers[i].index = i + 1;
        int rc = pthread_create(&pool->tids[i], NULL, worker_main, &pool->workers[i]);
        if (rc != 0) {
            dp_threadpool_destroy(pool);
            return dp_error_set(DP_ERR_INTERNAL, "threadpool: cannot start thread %d of %d: %s",
                                i + 1, threads, strerror(rc));
        }
        pool->started++;
    }
    *out = pool;
    return DP_OK;
}

void dp_threadpool_destroy(dp_threadpool *pool)
{
    if (pool == NULL) {
        return;
    }
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->started; i++) {
        pthread_join(pool->tids[i], NULL);
    }
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mu);
    free(pool->tids);
    free(pool->workers);
    free(pool);
}

int dp_threadpool_size(const dp_threadpool *pool)
{
    return pool != NULL ? pool->threads : 1;
}

void dp_threadpool_for(dp_threadpool *pool, long n_tasks, dp_threadpool_task_fn fn, void *ctx)
{
    if (n_tasks <= 0) {
        return;
    }
    if (pool == NULL || pool->started == 0 || n_tasks == 1 || tls_inside == pool) {
        // Serial: no pool, a single task, or a loop nested in a task of this pool.
        for (long t = 0; t < n_tasks; t++) {
            fn(ctx, t, 0);
        }
        return;
    }
    int concurrent_loops = atomic_exchange(&pool->busy, 1);
    DP_ASSERT(!concurrent_loops);
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n_tasks = n_tasks;
    atomic_store_explicit(&pool->next, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->pending, pool->started, memory_order_relaxed);
    atomic_fetch_add(&pool->gen, 1); // publishes the loop (sequentially consistent)
    wake_all(pool);
    run_tasks(pool, 0);
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0) {
        cpu_relax();
    }
    atomic_store(&pool->busy, 0);
}
