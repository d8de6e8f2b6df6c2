// Fork-join pool (see threadpool.h). The current loop is one 64-bit atomic word: generation
// (16 bits), task count (24 bits) and next task to claim (24 bits). A thread claims a task with
// a compare-and-swap that succeeds only while the word still names that loop, so a worker that
// wakes late can never run a task of another loop, and having claimed one it knows the loop
// cannot end before that task does: fn and ctx, read after the claim, are that loop's. The
// caller counts finished tasks (not workers), so a worker that is not scheduled at all during
// a short loop costs nothing. Idle workers poll the word (pausing, then yielding the CPU so
// that they do not starve the threads with work when cores are oversubscribed) for SPIN_NS,
// then sleep on a condition variable; the caller signals it only when someone sleeps (gen and
// sleepers use sequentially consistent operations on both sides, so a sleeper either sees the
// new loop or is counted before the caller looks).
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

enum { MAX_THREADS = 256, PAUSES_BEFORE_YIELD = 2000 };
#define SPIN_NS 200000L // how long an idle worker polls before it sleeps (0.2 ms)
#define TASK_BITS 24
#define TASK_MASK (((uint64_t)1 << TASK_BITS) - 1)
#define MAX_TASKS ((long)TASK_MASK)

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

    // --- the current loop: fn and ctx are written by the caller before the word ---
    dp_threadpool_task_fn fn;
    void *ctx;
    _Atomic uint64_t word; // gen << 48 | n_tasks << 24 | next task
    atomic_long done;      // tasks finished in the current loop
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

static unsigned gen_of(uint64_t w)
{
    return (unsigned)(w >> 48);
}

// Runs tasks of the loop named by generation gen until none is left to claim.
static void run_tasks(dp_threadpool *pool, unsigned gen, int thread)
{
    const dp_threadpool *outer = tls_inside;
    tls_inside = pool;
    uint64_t w = atomic_load(&pool->word);
    for (;;) {
        uint64_t next = w & TASK_MASK, n = (w >> TASK_BITS) & TASK_MASK;
        if (gen_of(w) != gen || next >= n) {
            break;
        }
        if (!atomic_compare_exchange_weak(&pool->word, &w, w + 1)) {
            continue; // w holds the current word again
        }
        pool->fn(pool->ctx, (long)next, thread);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
        w = atomic_load(&pool->word);
    }
    tls_inside = outer;
}

// Waits until the generation differs from seen (or stop is set); returns the new generation.
static unsigned wait_for_loop(dp_threadpool *pool, unsigned seen)
{
    long deadline = now_ns() + SPIN_NS;
    for (int i = 1;; i++) {
        unsigned g = gen_of(atomic_load(&pool->word));
        if (g != seen || atomic_load(&pool->stop)) {
            return g;
        }
        if (i < PAUSES_BEFORE_YIELD) {
            cpu_relax();
        } else {
            sched_yield();
        }
        if ((i & 63) == 0 && now_ns() > deadline) {
            break;
        }
    }
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add(&pool->sleepers, 1);
    unsigned g;
    while ((g = gen_of(atomic_load(&pool->word))) == seen && !atomic_load(&pool->stop)) {
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
        run_tasks(pool, seen, w->index);
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
    atomic_init(&pool->word, 0);
    atomic_init(&pool->done, 0);
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
    DP_ASSERT(n_tasks <= MAX_TASKS);
    int concurrent_loops = atomic_exchange(&pool->busy, 1);
    DP_ASSERT(!concurrent_loops);
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    unsigned gen = (gen_of(atomic_load(&pool->word)) + 1) & 0xffffu;
    atomic_store(&pool->word, (uint64_t)gen << 48 | (uint64_t)n_tasks << TASK_BITS);
    wake_all(pool);
    run_tasks(pool, gen, 0);
    for (int i = 1; atomic_load_explicit(&pool->done, memory_order_acquire) != n_tasks; i++) {
        if (i < PAUSES_BEFORE_YIELD) {
            cpu_relax();
        } else {
            sched_yield(); // a worker with a task may be waiting for this CPU
        }
    }
    atomic_store(&pool->busy, 0);
}
