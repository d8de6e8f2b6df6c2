// A small fork-join thread pool for the CPU kernels: the caller and size - 1 worker threads run
// the tasks of one parallel loop, handed out dynamically in increasing order, and the call
// returns when all are done. Workers spin briefly between loops (loops follow each other
// within microseconds in a training step), then sleep. Not here: nested parallelism (a loop
// started from inside a task runs inline), futures, priorities.
#ifndef DP_CORE_THREADPOOL_H
#define DP_CORE_THREADPOOL_H

#include "core/status.h"

DP_EXTERN_C_BEGIN

typedef struct dp_threadpool dp_threadpool;

// One task of a parallel loop: task in [0, n_tasks); thread in [0, dp_threadpool_size(pool))
// names the thread that runs it (for per-thread scratch). Which thread runs which task varies
// from run to run, so a task's result must depend on the task alone: kernels that reduce
// across tasks keep one partial result per task and combine them in task order afterwards.
typedef void (*dp_threadpool_task_fn)(void *ctx, long task, int thread);

// Creates a pool of `threads` threads in all (the caller of dp_threadpool_for counts as one, so
// threads - 1 are started). threads = 1 starts none. Returns DP_ERR_ARG for threads < 1 or
// > 256, DP_ERR_NOMEM, DP_ERR_INTERNAL when a thread cannot be started (with the reason); on
// error *out is NULL and nothing is left running.
DP_MUST_CHECK dp_status dp_threadpool_create(dp_threadpool **out, int threads);

// Stops and joins the workers and frees the pool. Accepts NULL. Must not run concurrently with
// dp_threadpool_for on the same pool.
void dp_threadpool_destroy(dp_threadpool *pool);

// Threads of the pool, caller included; 1 for NULL.
int dp_threadpool_size(const dp_threadpool *pool);

// Runs fn(ctx, task, thread) for every task in [0, n_tasks) and returns when all have
// returned; writes made by the tasks are visible to the caller then. pool may be NULL (all
// tasks run on the caller, thread 0, in order). One loop at a time per pool: a call from
// inside a task, or from another thread while a loop runs, is a programmer error, except that
// a call from inside a task of this pool runs its tasks inline on that thread.
void dp_threadpool_for(dp_threadpool *pool, long n_tasks, dp_threadpool_task_fn fn, void *ctx);

DP_EXTERN_C_END

#endif
