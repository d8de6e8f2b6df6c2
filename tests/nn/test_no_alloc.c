// No allocation inside the step loop: this binary is linked with --wrap for malloc, calloc,
// realloc and aligned_alloc, so every call from the library (linked statically into it) is
// counted. After one warm-up step, forward + backward + optimizer steps of fmnist-resnet20 (and
// a net with every wired layer kind) must not allocate at all.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/cfg.h"
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "nn/net.h"
#include "nn/optim.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);

static long allocations;

void *__wrap_malloc(size_t n)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_realloc(p, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
    return __real_aligned_alloc(align, n);
}

static void check_steps(const char *rel, int batch)
{
    dp_log_set_level(DP_LOG_LEVEL_ERROR);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", getenv("DP_SOURCE_ROOT"), rel);
    dp_cfg *cfg = NULL;
    cr_assert_eq(dp_cfg_load(&cfg, path), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_cfg_validate(cfg), DP_OK, "%s", dp_error_message());
    dp_net_config nc = DP_NET_CONFIG_INIT;
    nc.batch = batch;
    dp_net *net = NULL;
    cr_assert_eq(dp_net_create(&net, cfg, &nc), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_net_alloc(net, 1), DP_OK, "%s", dp_error_message());
    cr_assert_eq(dp_net_init_params(net, 1, "default"), DP_OK);
    dp_optim_config oc = DP_OPTIM_CONFIG_INIT;
    oc.kind = DP_OPTIM_SGD;
    oc.momentum = 0.9;
    oc.nesterov = 1;
    oc.weight_decay = 5e-4;
    dp_optim *opt = NULL;
    cr_assert_eq(dp_optim_create(&opt, &oc, dp_net_param_count(net)), DP_OK);
    dp_shape in = dp_net_input_shape(net);
    size_t count = (size_t)batch * (size_t)dp_shape_count(&in);
    float *x = malloc(count * sizeof *x);
    int32_t *labels = malloc((size_t)batch * sizeof *labels);
    cr_assert(x != NULL && labels != NULL);
    dp_rng_fill_normal(x, count, 0, 1, 2, 0, 0, 0);
    for (int i = 0; i < batch; i++) {
        labels[i] = i % 10;
    }
    dp_net_run run = DP_NET_RUN_INIT;
    run.train = 1;
    run.labels = labels;
    run.loss_scale = 1.0f / (float)batch;
    long before = 0;
    for (int step = 0; step < 4; step++) {
        if (step == 1) {
            before = __atomic_load_n(&allocations, __ATOMIC_RELAXED);
        }
        run.step = step;
        cr_assert_eq(dp_net_forward(net, x, &run), DP_OK, "%s", dp_error_message());
        cr_assert_eq(dp_net_backward(net, &run), DP_OK, "%s", dp_error_message());
        cr_assert_eq(dp_optim_step(opt, dp_net_params(net), dp_net_grads(net),
                                   dp_net_decay_mask(net), 0.1f),
                     DP_OK);
        run.train = step % 2 == 0; // evaluation forwards must not allocate either
    }
    long during = __atomic_load_n(&allocations, __ATOMIC_RELAXED) - before;
    cr_expect_eq(during, 0, "%s: %ld allocations in 3 steps after the first", rel, during);
    free(x);
    free(labels);
    dp_optim_destroy(opt);
    dp_net_destroy(net);
    dp_cfg_destroy(cfg);
}

Test(no_alloc, fmnist_resnet20_steps_do_not_allocate, .timeout = 120)
{
    check_steps("configs/fmnist-resnet20.cfg", 16);
}

Test(no_alloc, fmnist_cnn_steps_do_not_allocate, .timeout = 120)
{
    check_steps("configs/fmnist-cnn.cfg", 16);
}

// The wrapping reaches the library: creating an arena allocates its struct and its block.
Test(no_alloc, the_counter_sees_library_allocations)
{
    long before = __atomic_load_n(&allocations, __ATOMIC_RELAXED);
    dp_arena *a = NULL;
    cr_assert_eq(dp_arena_create(&a, "counted", 4096), DP_OK);
    cr_expect_eq(__atomic_load_n(&allocations, __ATOMIC_RELAXED) - before, 2);
    dp_arena_destroy(a);
}
