// The MPI backend of the communicator, run by meson under mpirun -np 1|2|3|4 (tests/comm/
// meson.build). A plain C program rather than Criterion: Criterion forks a process per test,
// and a forked child is not an MPI process. Every rank runs every test; a test passes when its
// checks pass on every rank. Rank 0 prints "ok - name" / "FAIL - name" per test and a last line
// "N passed, N failed"; each failed check prints "FAIL [rank r] file:line: ..." on stderr. The
// exit status is 1 if anything failed on any rank.
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "core/error.h"
#include "core/timer.h"

static int g_rank, g_size, n_failed_checks;
static int g_nbc_algorithm_was_set; // OMPI_MCA_coll_libnbc_iallreduce_algorithm before create
static const char *g_skip;          // set by a test that does not apply to this world size

#define CHECK(cond, ...) check_((cond) ? 1 : 0, #cond, __FILE__, __LINE__, __VA_ARGS__)

DP_PRINTF(5, 6)
static void check_(int ok, const char *expr, const char *file, int line, const char *fmt, ...)
{
    if (ok) {
        return;
    }
    n_failed_checks++;
    fprintf(stderr, "FAIL [rank %d] %s:%d: %s: ", g_rank, file, line, expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

#define CHECK_OK(expr) CHECK((expr) == DP_OK, "%s", dp_error_message())

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

// Floats of mixed sign and magnitudes 2^-10 .. 2^10 keyed by (micro-batch, element): every rank
// can make every micro-batch's partial, so each can compute the single-process answer.
static float value(uint64_t key)
{
    uint64_t z = key * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float mant = (float)(z & 0xffffff) / 16777216.0f + 0.5f;
    int e = (int)((z >> 24) % 21) - 10;
    return ((z >> 63) ? -1.0f : 1.0f) * ldexpf(mant, e);
}

// --- tests ---

static void test_facts(dp_comm *c)
{
    CHECK(dp_comm_backend_of(c) == DP_COMM_BACKEND_MPI, "backend %d", dp_comm_backend_of(c));
    const char *env_size = getenv("OMPI_COMM_WORLD_SIZE");
    const char *env_rank = getenv("OMPI_COMM_WORLD_RANK");
    const char *env_local = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    CHECK(env_size != NULL && atoi(env_size) == g_size, "size %d, env %s", g_size, env_size);
    CHECK(env_rank != NULL && atoi(env_rank) == g_rank, "rank %d, env %s", g_rank, env_rank);
    // one node: the node-local rank is the rank
    CHECK(dp_comm_local_rank(c) == g_rank, "local rank %d", dp_comm_local_rank(c));
    CHECK(env_local != NULL && atoi(env_local) == dp_comm_local_rank(c), "env %s", env_local);
    CHECK(dp_comm_local_size(c) == g_size, "local size %d", dp_comm_local_size(c));
    // dp_comm_create picked libnbc's reduce-scatter + all-gather for MPI_Iallreduce
    const char *alg = getenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm");
    CHECK(g_nbc_algorithm_was_set || (alg != NULL && strcmp(alg, "3") == 0), "algorithm %s",
          alg != NULL ? alg : "unset");
}

static void test_allreduce_blocking(dp_comm *c)
{
    const size_t counts[] = {1, 1037, (size_t)1 << 20};
    float p = (float)g_size;
    for (int k = 0; k < 3; k++) {
        size_t n = counts[k];
        float *buf = malloc(n * sizeof *buf);
        CHECK(buf != NULL, "malloc");
        for (size_t i = 0; i < n; i++) {
            buf[i] = (float)((g_rank + 1) * (int)(i % 997)); // integers: the sum is exact
        }
        CHECK_OK(dp_comm_allreduce_sum(c, buf, n));
        size_t bad = n;
        for (size_t i = 0; i < n && bad == n; i++) {
            if (buf[i] != (float)(i % 997) * p * (p + 1) / 2) {
                bad = i;
            }
        }
        CHECK(bad == n, "count %zu: element %zu is %g", n, bad, bad < n ? (double)buf[bad] : 0.0);
        free(buf);
    }
    CHECK_OK(dp_comm_allreduce_sum(c, NULL, 0));
}

static void test_allreduce_async_with_progress(dp_comm *c)
{
    enum { NB = 3 };
    const size_t counts[NB] = {1, 4099, (size_t)1 << 18};
    float *bufs[NB];
    dp_comm_request *reqs[NB];
    for (int b = 0; b < NB; b++) {
        bufs[b] = malloc(counts[b] * sizeof(float));
        for (size_t i = 0; i < counts[b]; i++) {
            bufs[b][i] = (float)(g_rank * 1000 + (int)(i % 1000) + b);
        }
        CHECK_OK(dp_comm_allreduce_start(c, bufs[b], counts[b], &reqs[b]));
    }
    // "backward": compute, with progress calls in between, until the first two are done
    volatile double sink = 0;
    int done0 = 0, done1 = 0, rounds = 0;
    while ((!done0 || !done1) && rounds < 1000000) {
        for (int i = 0; i < 1000; i++) {
            sink += sqrt((double)i);
        }
        CHECK_OK(dp_comm_progress(c));
        if (!done0) {
            CHECK_OK(dp_comm_test(&reqs[0], &done0));
        }
        if (!done1) {
            CHECK_OK(dp_comm_test(&reqs[1], &done1));
        }
        rounds++;
    }
    CHECK(done0 && done1 && reqs[0] == NULL && reqs[1] == NULL, "after %d rounds", rounds);
    CHECK_OK(dp_comm_wait(&reqs[2]));
    CHECK(reqs[2] == NULL, "wait clears the request");
    float p = (float)g_size;
    for (int b = 0; b < NB; b++) {
        size_t bad = counts[b];
        for (size_t i = 0; i < counts[b] && bad == counts[b]; i++) {
            float want = 1000.0f * p * (p - 1) / 2 + p * (float)((int)(i % 1000) + b);
            if (bufs[b][i] != want) {
                bad = i;
            }
        }
        CHECK(bad == counts[b], "buffer %d element %zu", b, bad);
        free(bufs[b]);
    }
    // the pool takes requests back: many more round trips than it has slots
    float x = 1.0f;
    for (int i = 0; i < 3 * DP_COMM_MAX_REQUESTS_DEFAULT; i++) {
        dp_comm_request *r = NULL;
        x = 1.0f;
        CHECK_OK(dp_comm_allreduce_start(c, &x, 1, &r));
        CHECK_OK(dp_comm_wait(&r));
    }
    CHECK(x == p, "x = %g", (double)x);
}

static void test_pool_exhaustion(dp_comm *c)
{
    (void)c;
    dp_comm_config cfg = DP_COMM_CONFIG_INIT;
    cfg.backend = DP_COMM_BACKEND_MPI;
    cfg.max_requests = 2;
    dp_comm *small = NULL;
    CHECK_OK(dp_comm_create(&small, &cfg));
    if (small == NULL) {
        return;
    }
    float a = 1, b = 2, d = 3;
    dp_comm_request *ra = NULL, *rb = NULL, *rd = NULL;
    CHECK_OK(dp_comm_allreduce_start(small, &a, 1, &ra));
    CHECK_OK(dp_comm_allreduce_start(small, &b, 1, &rb));
    CHECK(dp_comm_allreduce_start(small, &d, 1, &rd) == DP_ERR_ARG && rd == NULL, "third start");
    CHECK(strstr(dp_error_message(), "max_requests") != NULL, "%s", dp_error_message());
    CHECK_OK(dp_comm_wait(&rb));
    CHECK_OK(dp_comm_wait(&ra));
    CHECK(a == (float)g_size && b == 2.0f * (float)g_size, "a %g b %g", (double)a, (double)b);
    dp_comm_destroy(small);
}

static void test_f64_and_max_i64(dp_comm *c)
{
    double d[2] = {g_rank + 0.5, -1.0};
    CHECK_OK(dp_comm_allreduce_sum_f64(c, d, 2));
    double p = g_size;
    CHECK(d[0] == p * (p - 1) / 2 + 0.5 * p && d[1] == -p, "d = %g %g", d[0], d[1]);
    int64_t v[3] = {7 * (int64_t)g_rank, -(int64_t)g_rank, INT64_MIN + g_rank};
    CHECK_OK(dp_comm_allreduce_max_i64(c, v, 3));
    CHECK(v[0] == 7 * (int64_t)(g_size - 1) && v[1] == 0 && v[2] == INT64_MIN + g_size - 1,
          "v = %lld %lld", (long long)v[0], (long long)v[1]);
}

static void test_bcast(dp_comm *c)
{
    int root = g_size - 1;
    unsigned char blob[1001];
    for (int i = 0; i < 1001; i++) {
        blob[i] = g_rank == root ? (unsigned char)(i * 7 + 3) : 0;
    }
    CHECK_OK(dp_comm_bcast(c, blob, sizeof blob, root));
    int bad = -1;
    for (int i = 0; i < 1001 && bad < 0; i++) {
        if (blob[i] != (unsigned char)(i * 7 + 3)) {
            bad = i;
        }
    }
    CHECK(bad < 0, "byte %d", bad);
    CHECK(dp_comm_bcast(c, blob, 1, g_size) == DP_ERR_ARG, "root out of range");
}

static void test_barrier_waits_for_the_last_rank(dp_comm *c)
{
    if (g_rank == 0) {
        sleep_s(0.2);
    }
    double t0 = dp_time_s();
    CHECK_OK(dp_comm_barrier(c));
    double dt = dp_time_s() - t0;
    CHECK(g_rank == 0 || dt > 0.15, "rank %d left the barrier after %.3f s", g_rank, dt);
}

static void test_check_equal(dp_comm *c)
{
    float w[257];
    for (int i = 0; i < 257; i++) {
        w[i] = (float)i * 0.5f;
    }
    dp_comm_set_step(c, 9);
    CHECK_OK(dp_comm_check_equal(c, w, sizeof w, "replica parameters"));
    if (g_size == 1) {
        return;
    }
    // the last rank flips a bit; with 3+ ranks rank 1 passes one byte less
    int flips = g_rank == g_size - 1, shorter = g_size > 2 && g_rank == 1;
    if (flips) {
        ((unsigned char *)w)[100] ^= 1;
    }
    dp_status st = dp_comm_check_equal(c, w, sizeof w - (shorter ? 1 : 0), "replica parameters");
    const char *msg = dp_error_message();
    CHECK(st == DP_ERR_DATA, "status %s", dp_status_name(st));
    CHECK(strstr(msg, "replica parameters differ across ranks at step 9") != NULL, "%s", msg);
    for (int q = 1; q < g_size; q++) {
        char name[32];
        snprintf(name, sizeof name, "rank %d (fnv1a64", q);
        int differs = q == g_size - 1 || (g_size > 2 && q == 1);
        CHECK((strstr(msg, name) != NULL) == differs, "rank %d named %d times: %s", q, differs,
              msg);
    }
    char len_text[32];
    snprintf(len_text, sizeof len_text, "%zu bytes", sizeof w - 1);
    CHECK(g_size < 3 || strstr(msg, len_text) != NULL, "size difference shown: %s", msg);
}

// Micro-batch m of a global batch of M, element i.
static float partial(int mb, size_t i, size_t count)
{
    return value(((uint64_t)mb << 32) + i + count * 1315423911u);
}

static void deterministic_case(dp_comm *c, int big_m, size_t count)
{
    int m = big_m / g_size;
    float **all = malloc((size_t)big_m * sizeof *all);
    float *ref = malloc((count + 1) * sizeof *ref);
    float *naive = malloc((count + 1) * sizeof *naive);
    float *mine = malloc((count + 1) * sizeof *mine);
    for (int j = 0; j < big_m; j++) {
        all[j] = malloc((count + 1) * sizeof **all);
        for (size_t i = 0; i < count; i++) {
            all[j][i] = partial(j, i, count);
        }
    }
    // the single-process answer: one tree over all M micro-batches
    CHECK_OK(dp_comm_tree_sum_local(all, big_m, count, ref));
    // this rank: the tree over its own micro-batches, then the cross-rank continuation
    CHECK_OK(dp_comm_tree_sum_local(all + g_rank * m, m, count, mine));
    CHECK_OK(dp_comm_allreduce_sum_deterministic(c, mine, count));
    CHECK(memcmp(mine, ref, count * sizeof *ref) == 0, "M=%d P=%d count=%zu: not bitwise equal",
          big_m, g_size, count);
    // and the test can tell: the left-to-right sum differs from the tree somewhere
    size_t n_diff = 0;
    for (size_t i = 0; i < count; i++) {
        naive[i] = all[0][i];
        for (int j = 1; j < big_m; j++) {
            naive[i] += all[j][i];
        }
        n_diff += memcmp(&naive[i], &ref[i], sizeof(float)) != 0;
    }
    CHECK(big_m < 8 || count < 1000 || n_diff > 0, "naive sum equals the tree: vacuous test");
    for (int j = 0; j < big_m; j++) {
        free(all[j]);
    }
    free(all);
    free(ref);
    free(naive);
    free(mine);
}

static void test_deterministic(dp_comm *c)
{
    float x[3] = {1, 2, 3};
    if ((g_size & (g_size - 1)) != 0) {
        dp_status st = dp_comm_allreduce_sum_deterministic(c, x, 3);
        CHECK(st == DP_ERR_UNSUPPORTED, "status %s", dp_status_name(st));
        char want[64];
        snprintf(want, sizeof want, "power-of-two number of ranks; this job has %d", g_size);
        CHECK(strstr(dp_error_message(), want) != NULL, "%s", dp_error_message());
        return;
    }
    const size_t counts[] = {0, 1, 3, 1037, 100003};
    for (int k = 0; k < 5; k++) {
        deterministic_case(c, 8, counts[k]);
    }
    deterministic_case(c, g_size, 1037); // one micro-batch per rank
    deterministic_case(c, 32, 4099);
}

// One rank sleeps past a 1 s timeout; the others must get DP_ERR_TIMEOUT naming it, within 2 s.
static void test_timeout_names_the_late_rank(dp_comm *c)
{
    if (g_size != 2 && g_size != 3) {
        g_skip = "runs at np 2 (late rank 1) and np 3 (late rank 0)";
        return;
    }
    int late = g_size == 2 ? 1 : 0;
    dp_comm_config cfg = DP_COMM_CONFIG_INIT;
    cfg.backend = DP_COMM_BACKEND_MPI;
    cfg.collective_timeout_s = 1.0;
    dp_comm *t = NULL;
    CHECK_OK(dp_comm_create(&t, &cfg));
    if (t == NULL) {
        return;
    }
    dp_comm_set_step(t, 42);
    float buf[64];
    for (int i = 0; i < 64; i++) {
        buf[i] = (float)(g_rank + 1);
    }
    float want = (float)(g_size * (g_size + 1) / 2);
    CHECK_OK(dp_comm_barrier(t));
    if (g_rank == late) {
        sleep_s(3.0);
        CHECK_OK(dp_comm_allreduce_sum(t, buf, 64));
        CHECK(buf[0] == want && buf[63] == want, "late rank's sum %g", (double)buf[0]);
    } else {
        double t0 = dp_time_s();
        dp_status st = dp_comm_allreduce_sum(t, buf, 64);
        double dt = dp_time_s() - t0;
        const char *msg = dp_error_message();
        CHECK(st == DP_ERR_TIMEOUT, "status %s", dp_status_name(st));
        CHECK(dt >= 0.95 && dt < 2.0, "timed out after %.2f s", dt);
        char want_text[128];
        snprintf(want_text, sizeof want_text, "rank %d of %d: allreduce_sum #", g_rank, g_size);
        CHECK(strstr(msg, want_text) != NULL, "%s", msg);
        CHECK(strstr(msg, "at step 42") != NULL, "%s", msg);
        snprintf(want_text, sizeof want_text,
                 "ranks that did not arrive: %d (no announcement) (%d "
                 "of %d ranks arrived)",
                 late, g_size - 1, g_size);
        CHECK(strstr(msg, want_text) != NULL, "want '%s' in: %s", want_text, msg);
        dp_status again = dp_comm_barrier(t);
        CHECK(again == DP_ERR_TIMEOUT && strstr(dp_error_message(), "unusable") != NULL,
              "after a timeout: %s", dp_error_message());
    }
    // the late rank's collective completes while the others wait here (MPI progress is global)
    CHECK_OK(dp_comm_barrier(c));
    dp_comm_destroy(t); // waits for the abandoned all-reduce, which has completed by now
    CHECK(buf[0] == want && buf[63] == want, "sum after destroy %g", (double)buf[0]);
}

// The same for an async all-reduce: dp_comm_wait times out naming the late rank 0 (np 2 only).
static void test_wait_timeout_names_the_late_rank(dp_comm *c)
{
    if (g_size != 2) {
        g_skip = "runs at np 2";
        return;
    }
    dp_comm_config cfg = DP_COMM_CONFIG_INIT;
    cfg.backend = DP_COMM_BACKEND_MPI;
    cfg.collective_timeout_s = 0.5;
    dp_comm *t = NULL;
    CHECK_OK(dp_comm_create(&t, &cfg));
    if (t == NULL) {
        return;
    }
    dp_comm_set_step(t, 7);
    float x = 1.0f;
    dp_comm_request *r = NULL;
    CHECK_OK(dp_comm_barrier(t));
    if (g_rank == 0) {
        sleep_s(1.5);
        CHECK_OK(dp_comm_allreduce_start(t, &x, 1, &r));
        CHECK_OK(dp_comm_wait(&r));
    } else {
        CHECK_OK(dp_comm_allreduce_start(t, &x, 1, &r));
        double t0 = dp_time_s();
        dp_status st = dp_comm_wait(&r);
        double dt = dp_time_s() - t0;
        const char *msg = dp_error_message();
        CHECK(st == DP_ERR_TIMEOUT && r == NULL, "status %s", dp_status_name(st));
        CHECK(dt >= 0.45 && dt < 1.4, "timed out after %.2f s", dt);
        CHECK(strstr(msg, "rank 1 of 2: allreduce_start/wait #") != NULL, "%s", msg);
        CHECK(strstr(msg, "at step 7") != NULL, "%s", msg);
        CHECK(strstr(msg, "did not arrive: 0 (no announcement)") != NULL, "%s", msg);
    }
    CHECK_OK(dp_comm_barrier(c));
    dp_comm_destroy(t);
    CHECK(x == 2.0f, "x after destroy %g", (double)x);
}

// --- runner ---

static int n_passed, n_failed, n_skipped;

static void run(dp_comm *c, const char *name, void (*fn)(dp_comm *))
{
    int before = n_failed_checks;
    g_skip = NULL;
    fn(c);
    int64_t failed = n_failed_checks != before;
    if (dp_comm_allreduce_max_i64(c, &failed, 1) != DP_OK) {
        fprintf(stderr, "FAIL [rank %d] tallying %s: %s\n", g_rank, name, dp_error_message());
        failed = 1;
    }
    if (g_skip != NULL && !failed) { // the same on every rank: it depends on the size only
        n_skipped++;
        if (g_rank == 0) {
            printf("skip - %s (np %d): %s\n", name, g_size, g_skip);
        }
        return;
    }
    if (failed) {
        n_failed++;
    } else {
        n_passed++;
    }
    if (g_rank == 0) {
        printf("%s - %s (np %d)\n", failed ? "FAIL" : "ok", name, g_size);
        fflush(stdout);
    }
}

int main(void)
{
    int was_initialized = 1;
    if (MPI_Initialized(&was_initialized) != MPI_SUCCESS || was_initialized) {
        fprintf(stderr, "FAIL: MPI initialized before dp_comm_create\n");
        return 1;
    }
    g_nbc_algorithm_was_set = getenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm") != NULL;
    dp_comm *c = NULL;
    if (dp_comm_create(&c, NULL) != DP_OK) { // backend auto: mpirun's environment says mpi
        fprintf(stderr, "FAIL: dp_comm_create: %s\n", dp_error_message());
        return 1;
    }
    g_rank = dp_comm_rank(c);
    g_size = dp_comm_size(c);
    run(c, "facts", test_facts);
    run(c, "allreduce_blocking", test_allreduce_blocking);
    run(c, "allreduce_async_with_progress", test_allreduce_async_with_progress);
    run(c, "pool_exhaustion", test_pool_exhaustion);
    run(c, "f64_and_max_i64", test_f64_and_max_i64);
    run(c, "bcast", test_bcast);
    run(c, "barrier_waits_for_the_last_rank", test_barrier_waits_for_the_last_rank);
    run(c, "check_equal_names_differing_ranks", test_check_equal);
    run(c, "deterministic_equals_single_process_tree", test_deterministic);
    run(c, "timeout_names_the_late_rank", test_timeout_names_the_late_rank);
    run(c, "wait_timeout_names_the_late_rank", test_wait_timeout_names_the_late_rank);
    dp_comm_destroy(c); // it initialized MPI, so it finalizes it
    int finalized = 0;
    if (MPI_Finalized(&finalized) != MPI_SUCCESS || !finalized) {
        fprintf(stderr, "FAIL [rank %d]: MPI not finalized by dp_comm_destroy\n", g_rank);
        n_failed++;
    }
    if (g_rank == 0) {
        printf("%d skipped\n%d passed, %d failed\n", n_skipped, n_passed, n_failed);
    }
    return n_failed > 0 || n_failed_checks > 0;
}
