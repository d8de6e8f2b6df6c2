// Stress test of the thread pool in plain C, so that it runs under ThreadSanitizer (Criterion's
// runner cannot start under TSan); it also runs in the normal 'core' suite. Exit 0 on success,
// 1 with a message otherwise. Many pools of 1-4 threads run loops of 0-300 tasks back to back
// and after pauses (workers asleep), each task writing its own slot and reading data the caller
// wrote before the loop; the caller checks every slot after the loop (visibility), and
// per-task partial sums combined in task order must repeat bitwise. Pools are destroyed while
// workers spin and while they sleep.
// Under TSan (a separate build directory):
//   meson setup /tmp/build-tsan -Db_sanitize=thread -Db_lundef=false -Dcuda=disabled
//   ninja -C /tmp/build-tsan tests/core/tsan_threadpool
//   TSAN_OPTIONS='halt_on_error=1' /tmp/build-tsan/tests/core/tsan_threadpool
// (If TSan stops with "unexpected memory mapping", run it under `setarch -R`.)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/threadpool.h"

enum { MAX_TASKS = 300 };

typedef struct job {
    long input[MAX_TASKS];  // written by the caller before the loop
    long output[MAX_TASKS]; // written by task i only
    double partial[MAX_TASKS];
} job;

static void task_fn(void *arg, long task, int thread)
{
    job *j = arg;
    (void)thread;
    j->output[task] = j->input[task] * 3 + 1;
    double s = 0;
    for (long i = 0; i < 200; i++) {
        s += 1.0 / (double)(task * 200 + i + 1);
    }
    j->partial[task] = s;
}

static void pause_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

int main(void)
{
    static job j;
    static double ref[MAX_TASKS + 1]; // in-order sum of n partials, computed serially
    for (long n = 0; n <= MAX_TASKS; n++) {
        dp_threadpool_for(NULL, n, task_fn, &j);
        ref[n] = 0;
        for (long t = 0; t < n; t++) {
            ref[n] += j.partial[t];
        }
    }
    for (int round = 0; round < 40; round++) {
        int threads = 1 + round % 4;
        dp_threadpool *pool;
        if (dp_threadpool_create(&pool, threads) != DP_OK) {
            fprintf(stderr, "tsan_threadpool: create(%d): %s\n", threads, dp_error_message());
            return 1;
        }
        for (int loop = 0; loop < 60; loop++) {
            long n = (loop * 37 + round * 11) % (MAX_TASKS + 1);
            for (long t = 0; t < n; t++) {
                j.input[t] = t + loop + round;
                j.output[t] = -1;
            }
            dp_threadpool_for(pool, n, task_fn, &j);
            double s = 0;
            for (long t = 0; t < n; t++) {
                if (j.output[t] != (t + loop + round) * 3 + 1) {
                    fprintf(stderr, "tsan_threadpool: %d threads, loop %d: task %ld of %ld wrong\n",
                            threads, loop, t, n);
                    return 1;
                }
                s += j.partial[t];
            }
            if (memcmp(&s, &ref[n], sizeof s) != 0) {
                fprintf(stderr, "tsan_threadpool: %d threads: sum of %ld partials not repeatable\n",
                        threads, n);
                return 1;
            }
            if (loop % 20 == 19) {
                pause_us(1000); // past the spin window: workers go to sleep
            }
        }
        if (round % 2 == 1) {
            pause_us(1000); // destroy with sleeping workers (else with spinning ones)
        }
        dp_threadpool_destroy(pool);
    }
    printf("tsan_threadpool: ok\n");
    return 0;
}
