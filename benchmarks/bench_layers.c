// Convolution layers of a network (default configs/fmnist-resnet20.cfg, batch 128) forward and
// backward as the trainer runs them (convolution + batch norm + activation), against
// cblas_sgemm 4096^3 in the same run and with the same threads. Prints a table per layer and
//   RESULT conv_gflops=X sgemm_gflops=Y conv_frac_of_sgemm=Z
// where conv FLOPs are 3x the forward FLOPs (forward, backward-data, backward-filter), conv is
// the sum of the per-layer best times and sgemm the best sgemm of the same rounds (each round
// times every conv layer, then one sgemm); also the per-round ratios (min, median, max).
// usage: bench_layers [CFG] [threads (default 2)] [rounds (default 5)]
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/timer.h"
#include "nn/cpu/blas.h"
#include "nn/net.h"

static int die(void)
{
    fprintf(stderr, "bench_layers: error: %s\n", dp_error_message());
    return 1;
}

// One cblas_sgemm n^3 on `threads` OpenBLAS threads (the network's pool keeps OpenBLAS at 1
// thread otherwise); GFLOP/s, or 0 when out of memory.
static double sgemm_gflops(int n, int threads)
{
    size_t count = (size_t)n * n;
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b);
    float *c = malloc(count * sizeof *c);
    double g = 0;
    if (a != NULL && b != NULL && c != NULL) {
        dp_rng_fill_uniform(a, count, -1, 1, 1, 0, 0, 0);
        dp_rng_fill_uniform(b, count, -1, 1, 2, 0, 0, 0);
        openblas_set_num_threads(threads);
        dp_timer t;
        dp_timer_start(&t);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        g = 2.0 * n * (double)n * n / dp_timer_elapsed_s(&t) * 1e-9;
        openblas_set_num_threads(1);
    }
    free(a);
    free(b);
    free(c);
    return g;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "configs/fmnist-resnet20.cfg";
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    dp_blas_set_threads(threads);
    dp_log_set_level(DP_LOG_LEVEL_ERROR);

    dp_cfg *cfg = NULL;
    dp_net *net = NULL;
    if (dp_cfg_load(&cfg, path) != DP_OK || dp_cfg_validate(cfg) != DP_OK ||
        dp_net_create(&net, cfg, NULL) != DP_OK || dp_net_alloc(net, 1) != DP_OK) {
        return die();
    }
    int batch = dp_net_batch(net);
    dp_shape in = dp_net_input_shape(net);
    size_t in_count = (size_t)batch * (size_t)dp_shape_count(&in);
    float *input = malloc(in_count * sizeof *input);
    if (input == NULL) {
        return 1;
    }
    dp_rng_fill_normal(input, in_count, 0, 1, 7, 0, 0, 0);
    dp_rng_fill_uniform(dp_net_params(net), dp_net_param_count(net), -0.05f, 0.05f, 3, 0, 0, 0);
    dp_net_run run = DP_NET_RUN_INIT;
    run.train = 1;

    printf("bench_layers: %s batch %d, OpenBLAS core %s, %d thread(s), best of %d rounds\n", path,
           batch, dp_blas_corename(), dp_blas_threads(), reps);
    // Rounds alternate all conv layers (forward + backward each) with one sgemm 4096, so that
    // both sides of the ratio are measured over the same stretch of time (the machine is
    // shared and its speed drifts); round 0 warms up.
    enum { MAX_LAYERS = 256, MAX_REPS = 64 };
    reps = reps < 1 ? 1 : (reps > MAX_REPS ? MAX_REPS : reps);
    static double best_f[MAX_LAYERS], best_b[MAX_LAYERS];
    double frac[MAX_REPS], best_sgemm = 0;
    int n_layers = dp_net_layer_count(net) < MAX_LAYERS ? dp_net_layer_count(net) : MAX_LAYERS;
    double total_flop = 0;
    for (int i = 0; i < n_layers; i++) {
        best_f[i] = best_b[i] = 1e30;
        const dp_layer *l = dp_net_layer(net, i);
        if (strcmp(l->ops->name, "convolutional") == 0) {
            total_flop += 3.0 * l->flops * batch;
        }
    }
    for (int r = 0; r <= reps; r++) {
        double round_s = 0;
        for (int i = 0; i < n_layers; i++) {
            if (strcmp(dp_net_layer(net, i)->ops->name, "convolutional") != 0) {
                continue;
            }
            dp_timer t;
            dp_timer_start(&t);
            if (dp_net_forward_layer(net, i, input, &run) != DP_OK) {
                return die();
            }
            double f = dp_timer_elapsed_s(&t);
            dp_timer_start(&t);
            if (dp_net_backward_layer(net, i, &run) != DP_OK) {
                return die();
            }
            double b = dp_timer_elapsed_s(&t);
            round_s += f + b;
            if (r > 0) {
                best_f[i] = f < best_f[i] ? f : best_f[i];
                best_b[i] = b < best_b[i] ? b : best_b[i];
            }
        }
        double sg = sgemm_gflops(4096, threads);
        if (r > 0) {
            frac[r - 1] = total_flop / round_s * 1e-9 / sg;
            best_sgemm = sg > best_sgemm ? sg : best_sgemm;
        }
    }
    printf("%5s %-14s %12s %10s %10s %10s\n", "layer", "output", "GFLOP", "fwd ms", "bwd ms",
           "GFLOP/s");
    double total_s = 0;
    for (int i = 0; i < n_layers; i++) {
        const dp_layer *l = dp_net_layer(net, i);
        if (strcmp(l->ops->name, "convolutional") != 0) {
            continue;
        }
        double flop = 3.0 * l->flops * batch;
        total_s += best_f[i] + best_b[i];
        char shape[64];
        printf("%5d %-14s %12.3f %10.3f %10.3f %10.1f\n", i,
               dp_layer_shape_str(&l->out_shape, shape, sizeof shape), flop * 1e-9, best_f[i] * 1e3,
               best_b[i] * 1e3, flop / (best_f[i] + best_b[i]) * 1e-9);
    }
    double conv = total_flop / total_s * 1e-9;
    qsort(frac, (size_t)reps, sizeof frac[0], cmp_double);
    printf("conv layers: %.3f GFLOP in %.1f ms per step (sum of per-layer bests)\n",
           total_flop * 1e-9, total_s * 1e3);
    printf("per round (conv layers / sgemm of the same round): conv_frac min %.3f median %.3f "
           "max %.3f\n",
           frac[0], frac[reps / 2], frac[reps - 1]);
    printf("RESULT conv_gflops=%.1f sgemm_gflops=%.1f conv_frac_of_sgemm=%.3f\n", conv, best_sgemm,
           conv / best_sgemm);
    free(input);
    dp_net_destroy(net);
    dp_cfg_destroy(cfg);
    return 0;
}
