// The NCCL backend of the communicator (comm_nccl.h) on GPUs, run by meson under mpirun -np 1|2
// (tests/comm/meson.build), one GPU per rank. Oracles: the MPI communicator on the same inputs:
// dp_comm_allreduce_sum within a stated tolerance (NCCL's order of additions is its own), and
// dp_comm_allreduce_sum_deterministic bitwise (memcmp) for the deterministic tree. A plain C
// program like test_comm_mpi.c: rank 0 prints "ok - name" / "FAIL - name" per test and
// "N passed, N failed". Where the build has no NCCL, or a rank has no GPU of its own, every rank
// prints "SKIP: ..." and exits 77 (the ranks agree first, so none waits in NCCL for another).
#include <cuda_runtime.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "comm/comm_nccl.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/timer.h"

enum { EXIT_SKIP = 77 };

static int g_rank, g_size, g_device, n_failed_checks;
static const char *g_skip;     // set by a test that does not apply to this world size
static cudaStream_t g_compute; // the "compute" stream of the tests: writes and reads buffers

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
#define CHECK_CUDA(expr) CHECK((expr) == cudaSuccess, "%s", cudaGetErrorString(cudaGetLastError()))

// Floats of mixed sign and magnitudes 2^-10 .. 2^10 keyed by (rank, element): every rank can
// make every rank's input, so each can bound the error of the sum.
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

static uint64_t key(int rank, size_t i, int salt)
{
    return ((uint64_t)salt << 56) ^ ((uint64_t)rank << 40) ^ (uint64_t)i;
}

// Sizes: empty, one element, odd (halves of unequal size in the deterministic tree), and large
// (4 Mi + 3 floats, 16 MiB: NCCL's pipelined protocols rather than its small-message path).
enum { N_SIZES = 4 };
static const size_t sizes[N_SIZES] = {0, 1, 1001, ((size_t)1 << 22) + 3};

static float *host_input(size_t n, int salt)
{
    float *h = malloc((n > 0 ? n : 1) * sizeof *h);
    CHECK(h != NULL, "malloc of %zu floats", n);
    for (size_t i = 0; h != NULL && i < n; i++) {
        h[i] = value(key(g_rank, i, salt));
    }
    return h;
}

static float *device_copy(const float *h, size_t n)
{
    void *d = NULL;
    CHECK_CUDA(cudaMalloc(&d, (n > 0 ? n : 1) * sizeof(float)));
    if (d != NULL && n > 0) {
        CHECK_CUDA(cudaMemcpyAsync(d, h, n * sizeof(float), cudaMemcpyHostToDevice, g_compute));
    }
    return d;
}

// --- tests ---

// Several buckets in flight at once, each waiting for the event that marks its input written on
// the compute stream; the compute stream waits for the last before reading the sums back.
// Tolerance: |nccl - mpi| <= 2 * P * FLT_EPSILON * sum_r |x_r[i]| (two sums of P terms in
// different orders, each within (P-1) * eps * sum |x| of the exact sum).
static void test_allreduce_matches_mpi(dp_comm *c, dp_comm_nccl *nc)
{
    float *host[N_SIZES], *ref[N_SIZES], *dev[N_SIZES];
    cudaEvent_t written[N_SIZES];
    uint64_t ops[N_SIZES];
    for (int k = 0; k < N_SIZES; k++) {
        size_t n = sizes[k];
        host[k] = host_input(n, k);
        ref[k] = host_input(n, k);
        dev[k] = device_copy(host[k], n);
        CHECK_CUDA(cudaEventCreateWithFlags(&written[k], cudaEventDisableTiming));
        CHECK_CUDA(cudaEventRecord(written[k], g_compute));
        CHECK_OK(dp_comm_nccl_allreduce_start(nc, dev[k], n, written[k], &ops[k]));
        CHECK(k == 0 || ops[k] == ops[k - 1] + 1, "operation numbers %llu then %llu",
              (unsigned long long)(k ? ops[k - 1] : 0), (unsigned long long)ops[k]);
    }
    CHECK_OK(dp_comm_nccl_stream_wait(nc, g_compute, 0));
    for (int k = 0; k < N_SIZES; k++) {
        if (sizes[k] > 0) {
            CHECK_CUDA(cudaMemcpyAsync(host[k], dev[k], sizes[k] * sizeof(float),
                                       cudaMemcpyDeviceToHost, g_compute));
        }
    }
    CHECK_OK(dp_comm_nccl_sync_stream(nc, g_compute));
    int in_flight = -1;
    CHECK_OK(dp_comm_nccl_poll(nc, &in_flight));
    CHECK(in_flight == 0, "%d operations still in flight after the sync", in_flight);
    for (int k = 0; k < N_SIZES; k++) {
        size_t n = sizes[k];
        CHECK_OK(dp_comm_allreduce_sum(c, ref[k], n));
        size_t worst = 0;
        double worst_ratio = 0.0;
        for (size_t i = 0; i < n; i++) {
            double sum_abs = 0.0;
            for (int r = 0; r < g_size; r++) {
                sum_abs += fabs((double)value(key(r, i, k)));
            }
            double tol = 2.0 * g_size * FLT_EPSILON * sum_abs;
            double err = fabs((double)host[k][i] - (double)ref[k][i]);
            double ratio = err / tol;
            if (!(ratio <= worst_ratio)) { // NaN counts as worst
                worst_ratio = ratio;
                worst = i;
            }
        }
        CHECK(worst_ratio <= 1.0, "count %zu: element %zu: nccl %.9g, mpi %.9g (%.2f x tolerance)",
              n, worst, n ? (double)host[k][worst] : 0.0, n ? (double)ref[k][worst] : 0.0,
              worst_ratio);
        free(host[k]);
        free(ref[k]);
        CHECK_CUDA(cudaFree(dev[k]));
        CHECK_CUDA(cudaEventDestroy(written[k]));
    }
}

// The deterministic sum is bitwise the MPI deterministic tree's (memcmp), and bitwise the same
// when run again.
static void test_deterministic_bitwise_equals_mpi_tree(dp_comm *c, dp_comm_nccl *nc)
{
    if ((g_size & (g_size - 1)) != 0) {
        g_skip = "needs a power-of-two number of ranks";
        return;
    }
    for (int k = 0; k < N_SIZES; k++) {
        size_t n = sizes[k];
        float *in = host_input(n, 10 + k);
        float *want = host_input(n, 10 + k);
        float *got = host_input(n, 10 + k);
        float *again = host_input(n, 10 + k);
        float *d1 = device_copy(in, n);
        float *d2 = device_copy(in, n);
        CHECK_CUDA(cudaStreamSynchronize(g_compute)); // inputs written: no wait event needed
        uint64_t op1 = 0, op2 = 0;
        CHECK_OK(dp_comm_nccl_allreduce_deterministic_start(nc, d1, n, NULL, &op1));
        CHECK_OK(dp_comm_nccl_allreduce_deterministic_start(nc, d2, n, NULL, &op2));
        CHECK_OK(dp_comm_nccl_wait(nc, op2));
        if (n > 0) {
            CHECK_CUDA(cudaMemcpy(got, d1, n * sizeof(float), cudaMemcpyDeviceToHost));
            CHECK_CUDA(cudaMemcpy(again, d2, n * sizeof(float), cudaMemcpyDeviceToHost));
        }
        CHECK_OK(dp_comm_allreduce_sum_deterministic(c, want, n));
        size_t first_diff = n;
        for (size_t i = 0; i < n && first_diff == n; i++) {
            if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
                first_diff = i;
            }
        }
        CHECK(first_diff == n, "count %zu: element %zu differs in bits: nccl %a, mpi tree %a", n,
              first_diff, first_diff < n ? (double)got[first_diff] : 0.0,
              first_diff < n ? (double)want[first_diff] : 0.0);
        CHECK(n == 0 || memcmp(got, again, n * sizeof(float)) == 0,
              "count %zu: a second run differs in bits", n);
        free(in);
        free(want);
        free(got);
        free(again);
        CHECK_CUDA(cudaFree(d1));
        CHECK_CUDA(cudaFree(d2));
    }
}

// More operations than the ring holds (the MPI communicator's max_requests is 4 here): starts
// wait for the oldest instead of failing, and every sum is right.
static void test_more_operations_than_the_ring(dp_comm *c, dp_comm_nccl *nc)
{
    (void)c;
    enum { NOPS = 11, N = 257 };
    float *dev = NULL;
    CHECK_CUDA(cudaMalloc((void **)&dev, NOPS * N * sizeof(float)));
    if (dev == NULL) {
        return;
    }
    float h[NOPS * N];
    for (int i = 0; i < NOPS * N; i++) {
        h[i] = (float)(g_rank + 1) * (float)(i % 31); // integers: every order gives the same sum
    }
    // on the compute stream, then a host sync: a plain cudaMemcpy from pageable memory may
    // return before its DMA lands, and nothing orders the legacy stream before NCCL's
    CHECK_CUDA(cudaMemcpyAsync(dev, h, sizeof h, cudaMemcpyHostToDevice, g_compute));
    CHECK_CUDA(cudaStreamSynchronize(g_compute));
    for (int b = 0; b < NOPS; b++) {
        CHECK_OK(dp_comm_nccl_allreduce_start(nc, dev + b * N, N, NULL, NULL));
    }
    CHECK_OK(dp_comm_nccl_stream_wait(nc, g_compute, 0));
    CHECK_CUDA(cudaMemcpyAsync(h, dev, sizeof h, cudaMemcpyDeviceToHost, g_compute));
    CHECK_OK(dp_comm_nccl_sync_stream(nc, g_compute));
    float scale = (float)(g_size * (g_size + 1) / 2);
    int bad = -1;
    for (int i = 0; i < NOPS * N && bad < 0; i++) {
        if (h[i] != scale * (float)(i % 31)) {
            bad = i;
        }
    }
    CHECK(bad < 0, "element %d: %g", bad, bad >= 0 ? (double)h[bad] : 0.0);
    CHECK_CUDA(cudaFree(dev));
}

static void test_bcast_from_the_last_rank(dp_comm *c, dp_comm_nccl *nc)
{
    (void)c;
    enum { BYTES = 1003 };
    unsigned char h[BYTES];
    int root = g_size - 1;
    for (int i = 0; i < BYTES; i++) {
        h[i] = g_rank == root ? (unsigned char)(i * 7 + 3) : 0;
    }
    void *d = NULL;
    CHECK_CUDA(cudaMalloc(&d, BYTES));
    if (d == NULL) {
        return;
    }
    CHECK_CUDA(cudaMemcpyAsync(d, h, BYTES, cudaMemcpyHostToDevice, g_compute));
    CHECK_CUDA(cudaStreamSynchronize(g_compute));
    CHECK_OK(dp_comm_nccl_bcast(nc, d, BYTES, root, NULL));
    memset(h, 0xee, sizeof h);
    CHECK_CUDA(cudaMemcpy(h, d, BYTES, cudaMemcpyDeviceToHost));
    int bad = -1;
    for (int i = 0; i < BYTES && bad < 0; i++) {
        if (h[i] != (unsigned char)(i * 7 + 3)) {
            bad = i;
        }
    }
    CHECK(bad < 0, "byte %d is %d", bad, bad >= 0 ? h[bad] : 0);
    CHECK_CUDA(cudaFree(d));
}

// Argument errors are DP_ERR_ARG and leave the communicator usable.
static void test_argument_errors(dp_comm *c, dp_comm_nccl *nc)
{
    (void)c;
    CHECK(dp_comm_nccl_allreduce_start(nc, NULL, 5, NULL, NULL) == DP_ERR_ARG, "NULL buffer");
    CHECK(strstr(dp_error_message(), "dp_comm_nccl_allreduce_start: buffer is NULL") != NULL, "%s",
          dp_error_message());
    char byte = 0;
    CHECK(dp_comm_nccl_bcast(nc, &byte, 1, g_size, NULL) == DP_ERR_ARG, "root out of range");
    CHECK(strstr(dp_error_message(), "root") != NULL, "%s", dp_error_message());
    CHECK(dp_comm_nccl_stream_wait(nc, g_compute, (uint64_t)1 << 40) == DP_ERR_ARG,
          "an operation never started");
    CHECK(dp_comm_nccl_wait(nc, (uint64_t)1 << 40) == DP_ERR_ARG, "an operation never started");
    dp_comm_nccl *none = NULL;
    CHECK(dp_comm_nccl_create(NULL, g_device, g_compute, &none) == DP_ERR_ARG && none == NULL,
          "NULL MPI communicator");
    int in_flight = -1;
    CHECK_OK(dp_comm_nccl_poll(nc, &in_flight));
    CHECK(in_flight == 0, "%d in flight", in_flight);
    CHECK(dp_comm_nccl_rank(nc) == g_rank && dp_comm_nccl_size(nc) == g_size &&
              dp_comm_nccl_device(nc) == g_device,
          "facts %d %d %d", dp_comm_nccl_rank(nc), dp_comm_nccl_size(nc), dp_comm_nccl_device(nc));
}

// The watchdog (np 2): rank 0 all-reduces on a communicator with a 2 s timeout while rank 1 never
// does. Rank 0 gets DP_ERR_TIMEOUT naming the operation and the step, within the timeout plus a
// margin, and the NCCL communicator is aborted (its kernel returns); later calls repeat the
// abort's error. Destroy ends both sides within the timeout.
static void test_timeout_aborts_and_names_the_step(dp_comm *c, dp_comm_nccl *nc)
{
    (void)nc;
    if (g_size != 2) {
        g_skip = "runs at np 2";
        return;
    }
    dp_comm_config cfg = DP_COMM_CONFIG_INIT;
    cfg.backend = DP_COMM_BACKEND_MPI;
    cfg.collective_timeout_s = 2.0;
    dp_comm *t = NULL;
    CHECK_OK(dp_comm_create(&t, &cfg));
    if (t == NULL) {
        return;
    }
    cudaStream_t s = NULL;
    CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    dp_comm_nccl *tn = NULL;
    CHECK_OK(dp_comm_nccl_create(t, g_device, s, &tn));
    float *d = NULL;
    CHECK_CUDA(cudaMalloc((void **)&d, 1000 * sizeof(float)));
    CHECK_CUDA(cudaMemset(d, 0, 1000 * sizeof(float)));
    dp_comm_set_step(t, 5);
    if (tn != NULL && d != NULL && g_rank == 0) {
        double t0 = dp_time_s();
        dp_status st = dp_comm_nccl_allreduce_start(tn, d, 1000, NULL, NULL);
        if (st == DP_OK) {
            st = dp_comm_nccl_wait(tn, 0);
        }
        double dt = dp_time_s() - t0;
        const char *msg = dp_error_message();
        CHECK(st == DP_ERR_TIMEOUT, "status %s: %s", dp_status_name(st), msg);
        CHECK(dt >= 1.9 && dt < 6.0, "timed out after %.2f s", dt);
        CHECK(strstr(msg, "rank 0 of 2: nccl allreduce #1 (1000 elements) started at step 5") !=
                  NULL,
              "%s", msg);
        CHECK(strstr(msg, "collective_timeout") != NULL, "%s", msg);
        CHECK(strstr(msg, "NCCL communicator aborted") != NULL, "%s", msg);
        dp_status again = dp_comm_nccl_allreduce_start(tn, d, 1000, NULL, NULL);
        CHECK(again == DP_ERR_TIMEOUT &&
                  strstr(dp_error_message(), "only dp_comm_nccl_destroy may follow") != NULL,
              "after the abort: %s", dp_error_message());
    }
    CHECK_OK(dp_comm_barrier(c)); // rank 1 waits here, outside NCCL
    double t0 = dp_time_s();
    dp_comm_nccl_destroy(tn); // rank 1: finalize cannot complete with its peer aborted: it aborts
    CHECK(dp_time_s() - t0 < 6.0, "destroy took %.2f s", dp_time_s() - t0);
    CHECK_CUDA(cudaFree(d));
    CHECK_CUDA(cudaStreamDestroy(s));
    dp_comm_destroy(t);
}

// --- runner ---

static int n_passed, n_failed, n_skipped;

static void run(dp_comm *c, dp_comm_nccl *nc, const char *name,
                void (*fn)(dp_comm *, dp_comm_nccl *))
{
    int before = n_failed_checks;
    g_skip = NULL;
    fn(c, nc);
    int64_t failed = n_failed_checks != before;
    if (dp_comm_allreduce_max_i64(c, &failed, 1) != DP_OK) {
        fprintf(stderr, "FAIL [rank %d] tallying %s: %s\n", g_rank, name, dp_error_message());
        failed = 1;
    }
    if (g_skip != NULL && !failed) {
        n_skipped++;
        if (g_rank == 0) {
            printf("skip - %s (np %d): %s\n", name, g_size, g_skip);
        }
        return;
    }
    n_failed += failed != 0;
    n_passed += failed == 0;
    if (g_rank == 0) {
        printf("%s - %s (np %d)\n", failed ? "FAIL" : "ok", name, g_size);
        fflush(stdout);
    }
}

// Why this rank cannot run the tests (0: it can). Codes rise with how local the reason is; the
// ranks take the largest, and each prints its own reason or names the code's.
static int skip_code(dp_comm *c, char *why, size_t size)
{
    if (!dp_backend_have_nccl()) {
        snprintf(why, size, "this build has no NCCL backend");
        return 1;
    }
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(why, size, "no CUDA device: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found 0");
        (void)cudaGetLastError();
        return 2;
    }
    if (dp_comm_local_rank(c) >= count) {
        snprintf(why, size,
                 "one GPU per rank needed: %d device(s) for %d ranks on this node (NCCL "
                 "cannot put two ranks on one device)",
                 count, dp_comm_local_size(c));
        return 3;
    }
    return 0;
}

int main(void)
{
    dp_comm_config cfg = DP_COMM_CONFIG_INIT;
    cfg.backend = DP_COMM_BACKEND_MPI;
    cfg.collective_timeout_s = 60.0;
    cfg.max_requests = 4; // small, so that test_more_operations_than_the_ring fills it
    dp_comm *c = NULL;
    if (dp_comm_create(&c, &cfg) != DP_OK) {
        fprintf(stderr, "FAIL: dp_comm_create: %s\n", dp_error_message());
        return 1;
    }
    g_rank = dp_comm_rank(c);
    g_size = dp_comm_size(c);
    char why[256] = "";
    int64_t code = skip_code(c, why, sizeof why);
    int64_t agreed = code;
    if (dp_comm_allreduce_max_i64(c, &agreed, 1) != DP_OK) {
        fprintf(stderr, "FAIL [rank %d]: agreeing on a skip: %s\n", g_rank, dp_error_message());
        return 1;
    }
    if (agreed != 0) {
        if (code == agreed) {
            printf("SKIP: rank %d: %s\n", g_rank, why);
        } else {
            printf("SKIP: rank %d: another rank cannot run the NCCL tests (reason %lld)\n", g_rank,
                   (long long)agreed);
        }
        dp_comm_destroy(c);
        return EXIT_SKIP;
    }
    g_device = dp_comm_local_rank(c);
    if (cudaSetDevice(g_device) != cudaSuccess ||
        cudaStreamCreateWithFlags(&g_compute, cudaStreamNonBlocking) != cudaSuccess) {
        fprintf(stderr, "FAIL [rank %d]: device %d: %s\n", g_rank, g_device,
                cudaGetErrorString(cudaGetLastError()));
        dp_comm_abort(c, 1);
        return 1;
    }
    cudaStream_t comm_stream = NULL;
    dp_comm_nccl *nc = NULL;
    if (cudaStreamCreateWithFlags(&comm_stream, cudaStreamNonBlocking) != cudaSuccess ||
        dp_comm_nccl_create(c, g_device, comm_stream, &nc) != DP_OK) {
        fprintf(stderr, "FAIL [rank %d]: dp_comm_nccl_create: %s\n", g_rank, dp_error_message());
        dp_comm_abort(c, 1);
        return 1;
    }
    run(c, nc, "allreduce_matches_mpi", test_allreduce_matches_mpi);
    run(c, nc, "deterministic_bitwise_equals_mpi_tree", test_deterministic_bitwise_equals_mpi_tree);
    run(c, nc, "more_operations_than_the_ring", test_more_operations_than_the_ring);
    run(c, nc, "bcast_from_the_last_rank", test_bcast_from_the_last_rank);
    run(c, nc, "argument_errors", test_argument_errors);
    run(c, nc, "timeout_aborts_and_names_the_step", test_timeout_aborts_and_names_the_step);
    dp_comm_nccl_destroy(nc);
    if (cudaStreamDestroy(comm_stream) != cudaSuccess ||
        cudaStreamDestroy(g_compute) != cudaSuccess) {
        fprintf(stderr, "FAIL [rank %d]: cudaStreamDestroy\n", g_rank);
        n_failed++;
    }
    dp_comm_destroy(c);
    if (g_rank == 0) {
        printf("%d skipped\n%d passed, %d failed\n", n_skipped, n_passed, n_failed);
    }
    return n_failed > 0 || n_failed_checks > 0;
}
