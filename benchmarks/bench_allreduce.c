// All-reduce of 64 KiB - 16 MiB float buffers, in place: MPI_Allreduce (the reference) against the
// communicator's blocking path (MPI_Iallreduce + the watchdog's test loop), its async path
// (one request; and four buckets started back to back, then waited, as the trainer does) and
// the deterministic tree reduction (point-to-point). Run under mpirun:
//
//   mpirun --allow-run-as-root -np 2 build/benchmarks/bench_allreduce [trials]
//
// Method as in BASELINES.md section 5: 2 warm-up calls, then `trials` trials (default 5) of
// back-to-back calls lasting ~0.2 s between barriers, the methods interleaved trial by trial;
// time per call = the maximum over ranks of the trial average; reported: the median trial, and
// busbw = bytes / t * 2(p-1)/p. Rank 0 prints RESULT lines:
//   RESULT allreduce_<method>_<size>_us=...  RESULT allreduce_<method>_<size>_gbps=...
// with <size> 64kib, 1mib, 4mib, 16mib,
// and the ratio of each method's time to MPI_Allreduce's in the same run. MPI calls made here
// directly use MPI_COMM_WORLD, whose default error handler aborts the job.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "comm/comm.h"
#include "core/error.h"
#include "core/timer.h"

enum { N_METHODS = 5, N_SIZES = 4, MAX_TRIALS = 15, N_BUCKETS = 4 };
enum { METHOD_ASYNC = 2, METHOD_DET = 4 }; // indices in method_names

static const char *const method_names[N_METHODS] = {"mpi", "blocking", "async", "async4",
                                                    "deterministic"};

static int run_once(dp_comm *c, int method, float *buf, size_t count)
{
    dp_status st = DP_OK;
    switch (method) {
    case 0:
        return MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) ==
                       MPI_SUCCESS
                   ? 0
                   : -1;
    case 1:
        st = dp_comm_allreduce_sum(c, buf, count);
        break;
    case 2: {
        dp_comm_request *r = NULL;
        st = dp_comm_allreduce_start(c, buf, count, &r);
        if (st == DP_OK) {
            st = dp_comm_wait(&r);
        }
        break;
    }
    case 3: {
        dp_comm_request *r[N_BUCKETS] = {NULL};
        size_t per = count / N_BUCKETS;
        for (int b = 0; b < N_BUCKETS && st == DP_OK; b++) {
            st = dp_comm_allreduce_start(c, buf + (size_t)b * per, per, &r[b]);
        }
        for (int b = 0; b < N_BUCKETS && st == DP_OK; b++) {
            st = dp_comm_wait(&r[b]);
        }
        break;
    }
    default:
        st = dp_comm_allreduce_sum_deterministic(c, buf, count);
        break;
    }
    if (st != DP_OK) {
        fprintf(stderr, "bench_allreduce: %s: %s\n", method_names[method], dp_error_message());
        return -1;
    }
    return 0;
}

// Seconds per call over n calls, the maximum over ranks.
static double trial(dp_comm *c, int method, float *buf, size_t count, long n)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = dp_time_s();
    for (long i = 0; i < n; i++) {
        if (run_once(c, method, buf, count) != 0) {
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    double t = (dp_time_s() - t0) / (double)n, t_max = 0;
    MPI_Allreduce(&t, &t_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t_max;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int trials = argc > 1 ? atoi(argv[1]) : 5;
    if (trials < 1 || trials > MAX_TRIALS) {
        fprintf(stderr, "usage: bench_allreduce [trials 1..%d]\n", MAX_TRIALS);
        return 2;
    }
    dp_comm_config cfg = DP_COMM_CONFIG_INIT;
    cfg.backend = DP_COMM_BACKEND_MPI;
    dp_comm *c = NULL;
    if (dp_comm_create(&c, &cfg) != DP_OK) {
        fprintf(stderr, "bench_allreduce: %s\n", dp_error_message());
        return 1;
    }
    int rank = dp_comm_rank(c), p = dp_comm_size(c);
    static const struct {
        size_t bytes;
        const char *label;
    } sizes[N_SIZES] = {
        {64 << 10, "64kib"}, {1 << 20, "1mib"}, {4 << 20, "4mib"}, {16 << 20, "16mib"}};
    float *buf = calloc(sizes[N_SIZES - 1].bytes / sizeof(float), sizeof(float));
    if (buf == NULL) {
        dp_comm_abort(c, 1);
        return 1;
    }
    if (rank == 0) {
        printf("bench_allreduce: %d ranks, %d trials of ~0.2 s, in place, float sum\n", p, trials);
    }
    for (int s = 0; s < N_SIZES; s++) {
        size_t count = sizes[s].bytes / sizeof(float);
        long calls[N_METHODS];
        double t[N_METHODS][MAX_TRIALS];
        // the deterministic reduction needs a power-of-two world size
        int n_methods = (p & (p - 1)) == 0 ? N_METHODS : N_METHODS - 1;
        for (int m = 0; m < n_methods; m++) {
            double warm = trial(c, m, buf, count, 2);
            long n = (long)(0.2 / warm);
            n = n < 3 ? 3 : n;
            MPI_Bcast(&n, 1, MPI_LONG, 0, MPI_COMM_WORLD);
            calls[m] = n;
        }
        for (int k = 0; k < trials; k++) {
            for (int m = 0; m < n_methods; m++) {
                t[m][k] = trial(c, m, buf, count, calls[m]);
            }
        }
        double t_mpi = 0, med_of[N_METHODS] = {0};
        for (int m = 0; m < n_methods; m++) {
            qsort(t[m], (size_t)trials, sizeof(double), cmp_double);
            double med = t[m][trials / 2];
            double busbw = (double)sizes[s].bytes / med * 2.0 * (p - 1) / p * 1e-9;
            t_mpi = m == 0 ? med : t_mpi;
            med_of[m] = med;
            if (rank == 0) {
                printf("RESULT allreduce_%s_%s_us=%.1f\n", method_names[m], sizes[s].label,
                       med * 1e6);
                printf("RESULT allreduce_%s_%s_gbps=%.2f\n", method_names[m], sizes[s].label,
                       busbw);
                printf("  %-13s %5s: median %8.1f us (min %8.1f, max %8.1f), busbw %.2f "
                       "GB/s, %.2fx MPI_Allreduce\n",
                       method_names[m], sizes[s].label, med * 1e6, t[m][0] * 1e6,
                       t[m][trials - 1] * 1e6, busbw, med / t_mpi);
            }
        }
        // The contract line at 1, 4 and 16 MiB: bus bandwidth of the path the trainer uses
        // (async start + wait) and of the deterministic reduction, as fractions of MPI_Allreduce
        // in the same launch.
        if (rank == 0 && sizes[s].bytes >= (1u << 20) && n_methods == N_METHODS) {
            printf("RESULT busbw_frac_of_mpi=%.3f det_frac_of_mpi=%.3f size=%s\n",
                   t_mpi / med_of[METHOD_ASYNC], t_mpi / med_of[METHOD_DET], sizes[s].label);
        }
    }
    free(buf);
    dp_comm_destroy(c);
    return 0;
}
