// Optimizers over the flat float32 buffers on the device (see step_ops.h): one kernel per update
// and kind, transcribing src/nn/optim.c's loops operation by operation with round-to-nearest
// intrinsics (no contraction into fused multiply-adds, which optim.c, built as ISO C, does not
// do either), from scalars the host computes with optim.c's own double arithmetic. The kernels
// skip the update when the step's guard reports a non-finite gradient or norm.
// Not here: the norm (reduce.c), the schedule (the caller passes each step's lr).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cuda/step/step_internal.cuh"
#include "nn/cuda/step/step_ops.h"

enum { STATE_MAX = 4 };

struct dp_cuda_optim {
    dp_cuda_ctx *ctx;
    dp_optim_config cfg; // resolved by dp_optim_create's own code
    size_t n;
    long t; // updates taken
    int n_state;
    const char *state_name[STATE_MAX];
    float *state[STATE_MAX]; // each (state_n[i]), device, owned
    size_t state_n[STATE_MAX];
    void *norm_ws;    // dp_cuda_grad_norm's workspace, device, when clipping
    float mu_product; // NAdam: host copy of the "mu_product" state after the last step
    long prev_t;      // before the last step, for dp_cuda_optim_unstep
    float prev_mu_product;
    int can_unstep;
    dp_optim_rows *rows; // (n_rows) blocks renormed when max_norm > 0, host
    int n_rows;
};

// One update's operands and scalars, by value. Which fields a kind reads is in its kernel.
typedef struct upd_args {
    float *p;
    const float *g;
    const uint8_t *mask;
    float *s0, *s1, *s2; // the kind's state buffers in optim.c's order
    size_t n;
    const dp_cuda_guard *guard;
    int clip;           // multiply the gradients by guard->clip_scale
    int l2_on, keep_on; // weight decay: g += l2 p, or p *= keep
    float l2, keep;
    float neg_lr;        // -lr (sgd, adadelta, rmsprop), -clr (adagrad), -step_size (adam)
    float m, damp1;      // sgd, rmsprop momentum; sgd 1 - dampening
    int first, nesterov; // sgd
    float rho, one_rho;  // adadelta; rmsprop alpha, 1 - alpha
    float eps;
    int use_buf, centered; // rmsprop
    float b1, one_b1, b2, one_b2, bc2;
    float c_grad, c_avg, mu_product; // nadam
} upd_args;

// --- kernels ---

__device__ __forceinline__ float fmul(float a, float b)
{
    return __fmul_rn(a, b);
}
__device__ __forceinline__ float fadd(float a, float b)
{
    return __fadd_rn(a, b);
}
__device__ __forceinline__ float fdiv(float a, float b)
{
    return __fdiv_rn(a, b);
}
__device__ __forceinline__ float fsqrt(float a)
{
    return __fsqrt_rn(a);
}

__device__ __forceinline__ bool guard_skips(const dp_cuda_guard *g)
{
    return g != NULL && (g->n_bad != 0 || g->norm_bad != 0);
}

// optim.c's clip_grads (g * c) then apply_decay: may scale *p, returns the gradient to use.
__device__ __forceinline__ float grad_in(const upd_args &a, size_t i, float *p)
{
    float g = a.g[i];
    if (a.clip) {
        g = fmul(g, a.guard->clip_scale);
    }
    if (a.mask != NULL && a.mask[i] == 0) {
        return g;
    }
    if (a.keep_on) {
        *p = fmul(*p, a.keep);
    }
    return a.l2_on ? fadd(g, fmul(a.l2, *p)) : g;
}

#define FOR_EACH_PARAM(i, a)                                                                       \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (a).n;                      \
         i += (size_t)gridDim.x * blockDim.x)

__global__ void sgd_kernel(upd_args a)
{
    if (guard_skips(a.guard)) {
        return;
    }
    FOR_EACH_PARAM(i, a)
    {
        float pi = a.p[i];
        float dp = grad_in(a, i, &pi);
        if (a.s0 != NULL) {
            const float b = a.first ? dp : fadd(fmul(a.s0[i], a.m), fmul(a.damp1, dp));
            a.s0[i] = b;
            dp = a.nesterov ? fadd(dp, fmul(a.m, b)) : b;
        }
        a.p[i] = fadd(pi, fmul(a.neg_lr, dp));
    }
}

__global__ void adagrad_kernel(upd_args a)
{
    if (guard_skips(a.guard)) {
        return;
    }
    FOR_EACH_PARAM(i, a)
    {
        float pi = a.p[i];
        const float gi = grad_in(a, i, &pi);
        const float sum = fadd(a.s0[i], fmul(gi, gi));
        a.s0[i] = sum;
        const float std = fadd(fsqrt(sum), a.eps);
        a.p[i] = fadd(pi, fdiv(fmul(a.neg_lr, gi), std));
    }
}

__global__ void adadelta_kernel(upd_args a)
{
    if (guard_skips(a.guard)) {
        return;
    }
    FOR_EACH_PARAM(i, a)
    {
        float pi = a.p[i];
        const float gi = grad_in(a, i, &pi);
        const float sq = fadd(fmul(a.s0[i], a.rho), fmul(fmul(a.one_rho, gi), gi));
        a.s0[i] = sq;
        const float std = fsqrt(fadd(sq, a.eps));
        const float delta = fmul(fdiv(fsqrt(fadd(a.s1[i], a.eps)), std), gi);
        a.s1[i] = fadd(fmul(a.s1[i], a.rho), fmul(fmul(a.one_rho, delta), delta));
        a.p[i] = fadd(pi, fmul(a.neg_lr, delta));
    }
}

// RMSprop: rho/one_rho carry alpha/1 - alpha; s1 the momentum buffer, s2 grad_avg.
__global__ void rmsprop_kernel(upd_args a)
{
    if (guard_skips(a.guard)) {
        return;
    }
    FOR_EACH_PARAM(i, a)
    {
        float pi = a.p[i];
        const float gi = grad_in(a, i, &pi);
        const float sq = fadd(fmul(a.s0[i], a.rho), fmul(fmul(a.one_rho, gi), gi));
        a.s0[i] = sq;
        float avg;
        if (a.centered) {
            const float ga = fadd(fmul(a.s2[i], a.rho), fmul(a.one_rho, gi));
            a.s2[i] = ga;
            avg = fsqrt(fadd(sq, fmul(-ga, ga)));
        } else {
            avg = fsqrt(sq);
        }
        avg = fadd(avg, a.eps);
        if (a.use_buf) {
            const float b = fadd(fmul(a.s1[i], a.m), fdiv(gi, avg));
            a.s1[i] = b;
            a.p[i] = fadd(pi, fmul(a.neg_lr, b));
        } else {
            a.p[i] = fadd(pi, fdiv(fmul(a.neg_lr, gi), avg));
        }
    }
}

// Adam and AdamW; bc2 carries sqrt(bias correction 2), s2 max_exp_avg_sq (AMSGrad) or NULL.
__global__ void adam_kernel(upd_args a)
{
    if (guard_skips(a.guard)) {
        return;
    }
    FOR_EACH_PARAM(i, a)
    {
        float pi = a.p[i];
        const float gi = grad_in(a, i, &pi);
        const float m = fadd(fmul(a.s0[i], a.b1), fmul(a.one_b1, gi));
        const float v = fadd(fmul(a.s1[i], a.b2), fmul(fmul(a.one_b2, gi), gi));
        a.s0[i] = m;
        a.s1[i] = v;
        float vi = v;
        if (a.s2 != NULL) {
            const float vmax = a.s2[i] > vi ? a.s2[i] : vi;
            a.s2[i] = vmax;
            vi = vmax;
        }
        const float denom = fadd(fdiv(fsqrt(vi), a.bc2), a.eps);
        a.p[i] = fadd(pi, fdiv(fmul(a.neg_lr, m), denom));
    }
}

// NAdam; bc2 the bias correction 2; s2 the one-float mu_product, written by one thread.
__global__ void nadam_kernel(upd_args a)
{
    if (guard_skips(a.guard)) {
        return;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        *a.s2 = a.mu_product;
    }
    FOR_EACH_PARAM(i, a)
    {
        float pi = a.p[i];
        const float gi = grad_in(a, i, &pi);
        const float m = fadd(fmul(a.s0[i], a.b1), fmul(a.one_b1, gi));
        const float v = fadd(fmul(a.s1[i], a.b2), fmul(fmul(a.one_b2, gi), gi));
        a.s0[i] = m;
        a.s1[i] = v;
        const float denom = fadd(fsqrt(fdiv(v, a.bc2)), a.eps);
        pi = fadd(pi, fdiv(fmul(a.c_grad, gi), denom));
        a.p[i] = fadd(pi, fdiv(fmul(a.c_avg, m), denom));
    }
}

// One block per row (grid-stride): the row's squares summed in double by the fixed tree, then
// torch.renorm's scaling when the norm exceeds max_norm.
__global__ void max_norm_kernel(float *w, size_t rows, size_t cols, double max_norm,
                                const dp_cuda_guard *guard)
{
    __shared__ double sh[DP__STEP_THREADS];
    if (guard_skips(guard)) {
        return; // the whole block leaves: no thread waits at a barrier
    }
    for (size_t r = blockIdx.x; r < rows; r += gridDim.x) {
        float *row = w + r * cols;
        double s = 0.0;
        for (size_t c = threadIdx.x; c < cols; c += DP__STEP_THREADS) {
            const double v = (double)row[c];
            s = __dadd_rn(s, __dmul_rn(v, v));
        }
        const double norm = sqrt(dp__block_sum(sh, s));
        if (norm > max_norm) {
            const float scale = (float)(max_norm / (norm + 1e-7));
            for (size_t c = threadIdx.x; c < cols; c += DP__STEP_THREADS) {
                row[c] = fmul(row[c], scale);
            }
        }
    }
}

__global__ void fill_kernel(float *x, size_t n, float v)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        x[i] = v;
    }
}

// --- host: scalars of one step (optim.c's step_* prologues) ---

static void decay_args(const dp_cuda_optim *o, float lr, upd_args *a)
{
    const double wd = o->cfg.weight_decay;
    a->l2_on = a->keep_on = 0;
    a->l2 = 0.0f;
    a->keep = 1.0f;
    if (wd != 0 && o->cfg.decay_mode == DP_OPTIM_DECAY_L2) {
        a->l2_on = 1;
        a->l2 = (float)wd;
    } else if (wd != 0) {
        a->keep_on = 1;
        a->keep = (float)(1.0 - (double)lr * wd);
    }
}

static void sgd_args(const dp_cuda_optim *o, float lr, upd_args *a)
{
    a->s0 = o->cfg.momentum != 0 ? o->state[0] : NULL;
    a->first = o->t == 0;
    a->nesterov = o->cfg.nesterov;
    a->m = (float)o->cfg.momentum;
    a->damp1 = (float)(1.0 - o->cfg.dampening);
    a->neg_lr = -lr;
}

static void adagrad_args(const dp_cuda_optim *o, float lr, upd_args *a)
{
    const double step = (double)(o->t + 1);
    const double clr = (double)lr / (1.0 + (step - 1.0) * o->cfg.lr_decay);
    a->neg_lr = (float)-clr;
    a->eps = (float)o->cfg.eps;
    a->s0 = o->state[0];
}

static void adadelta_args(const dp_cuda_optim *o, float lr, upd_args *a)
{
    a->rho = (float)o->cfg.rho;
    a->one_rho = (float)(1.0 - o->cfg.rho);
    a->eps = (float)o->cfg.eps;
    a->neg_lr = -lr;
    a->s0 = o->state[0];
    a->s1 = o->state[1];
}

static void rmsprop_args(const dp_cuda_optim *o, float lr, upd_args *a)
{
    a->rho = (float)o->cfg.alpha;
    a->one_rho = (float)(1.0 - o->cfg.alpha);
    a->eps = (float)o->cfg.eps;
    a->m = (float)o->cfg.momentum;
    a->neg_lr = -lr;
    a->use_buf = o->cfg.momentum > 0;
    a->centered = o->cfg.centered;
    a->s0 = o->state[0];
    a->s1 = a->use_buf ? o->state[1] : NULL;
    a->s2 = a->centered ? o->state[a->use_buf ? 2 : 1] : NULL;
}

static void adam_args(const dp_cuda_optim *o, float lr, upd_args *a)
{
    const double step = (double)(o->t + 1), b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    const double step_size = (double)lr / (1.0 - pow(b1, step));
    a->bc2 = (float)sqrt(1.0 - pow(b2, step));
    a->b1 = (float)b1;
    a->one_b1 = (float)(1.0 - b1);
    a->b2 = (float)b2;
    a->one_b2 = (float)(1.0 - b2);
    a->eps = (float)o->cfg.eps;
    a->neg_lr = (float)-step_size;
    a->s0 = o->state[0];
    a->s1 = o->state[1];
    a->s2 = o->cfg.amsgrad ? o->state[2] : NULL;
}

// Advances the host's mu_product as optim.c does its float state (mu_product *= (float)mu).
static void nadam_args(dp_cuda_optim *o, float lr, upd_args *a)
{
    const double step = (double)(o->t + 1), b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    const double md = o->cfg.momentum_decay;
    a->bc2 = (float)(1.0 - pow(b2, step));
    const double mu = b1 * (1.0 - 0.5 * pow(0.96, step * md));
    const double mu_next = b1 * (1.0 - 0.5 * pow(0.96, (step + 1.0) * md));
    o->mu_product = o->mu_product * (float)mu;
    const double mu_product_next = (double)o->mu_product * mu_next;
    a->c_grad = (float)(-(double)lr * (1.0 - mu) / (1.0 - (double)o->mu_product));
    a->c_avg = (float)(-(double)lr * mu_next / (1.0 - mu_product_next));
    a->mu_product = o->mu_product;
    a->b1 = (float)b1;
    a->one_b1 = (float)(1.0 - b1);
    a->b2 = (float)b2;
    a->one_b2 = (float)(1.0 - b2);
    a->eps = (float)o->cfg.eps;
    a->s0 = o->state[0];
    a->s1 = o->state[1];
    a->s2 = o->state[2];
}

// --- launchers ---

static dp_status fill(dp_cuda_ctx *ctx, float *x, size_t n, float v)
{
    fill_kernel<<<dp__cuda_blocks(n, DP__STEP_THREADS), DP__STEP_THREADS, 0, dp__stream(ctx)>>>(
        x, n, v);
    DP_CUDA_LAUNCHED("fill_kernel");
    return DP_OK;
}

static dp_status add_state(dp_cuda_optim *o, const char *name, size_t count)
{
    DP_ASSERT(o->n_state < STATE_MAX);
    void *p = NULL;
    DP_TRY(dp_cuda_malloc(o->ctx, &p, count * sizeof(float)));
    o->state_name[o->n_state] = name;
    o->state[o->n_state] = (float *)p;
    o->state_n[o->n_state] = count;
    o->n_state++;
    return DP_OK;
}

// optim.c's add_kind_state: the same buffers in the same order.
static dp_status add_kind_state(dp_cuda_optim *o)
{
    const dp_optim_config *c = &o->cfg;
    switch (c->kind) {
    case DP_OPTIM_SGD:
        return c->momentum != 0 ? add_state(o, "momentum_buffer", o->n) : DP_OK;
    case DP_OPTIM_ADAGRAD:
        return add_state(o, "sum", o->n);
    case DP_OPTIM_ADADELTA:
        DP_TRY(add_state(o, "square_avg", o->n));
        return add_state(o, "acc_delta", o->n);
    case DP_OPTIM_RMSPROP:
        DP_TRY(add_state(o, "square_avg", o->n));
        if (c->momentum > 0) {
            DP_TRY(add_state(o, "momentum_buffer", o->n));
        }
        return c->centered ? add_state(o, "grad_avg", o->n) : DP_OK;
    case DP_OPTIM_ADAM:
    case DP_OPTIM_ADAMW:
        DP_TRY(add_state(o, "exp_avg", o->n));
        DP_TRY(add_state(o, "exp_avg_sq", o->n));
        return c->amsgrad ? add_state(o, "max_exp_avg_sq", o->n) : DP_OK;
    case DP_OPTIM_NADAM:
        DP_TRY(add_state(o, "exp_avg", o->n));
        DP_TRY(add_state(o, "exp_avg_sq", o->n));
        return add_state(o, "mu_product", 1);
    case DP_OPTIM_KIND_COUNT_:
        break;
    }
    return dp_error_set(DP_ERR_INTERNAL, "cuda optimizer: kind %d has no state layout",
                        (int)c->kind);
}

extern "C" dp_status dp_cuda_optim_create(dp_cuda_optim **out, dp_cuda_ctx *ctx,
                                          const dp_optim_config *cfg, size_t n)
{
    DP__STEP_NEED(out, "dp_cuda_optim_create");
    *out = NULL;
    DP__STEP_NEED(ctx, "dp_cuda_optim_create");
    // The CPU optimizer's own validation and defaults, on one parameter: the same config, the
    // same messages.
    dp_optim *cpu = NULL;
    DP_TRY(dp_optim_create(&cpu, cfg, 1));
    dp_optim_config resolved = *dp_optim_config_get(cpu);
    dp_optim_destroy(cpu);
    if (n == 0) {
        return dp_error_set(DP_ERR_ARG, "cuda optimizer: n == 0");
    }
    dp_cuda_optim *o = (dp_cuda_optim *)calloc(1, sizeof *o);
    if (o == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "cuda optimizer: cannot allocate");
    }
    o->ctx = ctx;
    o->cfg = resolved;
    o->n = n;
    dp_status st;
    DP_TRY_GOTO(add_kind_state(o), st, fail);
    if (resolved.clip_global_norm > 0) {
        DP_TRY_GOTO(dp_cuda_malloc(ctx, &o->norm_ws, dp_cuda_grad_norm_workspace_bytes(n)), st,
                    fail);
    }
    DP_TRY_GOTO(dp_cuda_optim_reset(o), st, fail);
    *out = o;
    return DP_OK;
fail:
    dp_cuda_optim_destroy(o);
    return st;
}

extern "C" void dp_cuda_optim_destroy(dp_cuda_optim *opt)
{
    if (opt == NULL) {
        return;
    }
    for (int i = 0; i < opt->n_state; i++) {
        dp_cuda_free(opt->ctx, opt->state[i]);
    }
    if (opt->norm_ws != NULL) {
        dp_cuda_free(opt->ctx, opt->norm_ws);
    }
    free(opt->rows);
    free(opt);
}

extern "C" dp_status dp_cuda_optim_reset(dp_cuda_optim *opt)
{
    DP__STEP_NEED(opt, "dp_cuda_optim_reset");
    for (int i = 0; i < opt->n_state; i++) {
        float v = 0.0f;
        if (strcmp(opt->state_name[i], "sum") == 0) {
            v = (float)opt->cfg.initial_accumulator_value;
        } else if (strcmp(opt->state_name[i], "mu_product") == 0) {
            v = 1.0f;
        }
        DP_TRY(fill(opt->ctx, opt->state[i], opt->state_n[i], v));
    }
    opt->t = 0;
    opt->mu_product = 1.0f;
    opt->can_unstep = 0;
    return dp_cuda_stream_sync(opt->ctx, DP_CUDA_COMPUTE);
}

static dp_status max_norm_rows(dp_cuda_optim *o, float *params, const dp_cuda_guard *guard)
{
    for (int b = 0; b < o->n_rows; b++) {
        const dp_optim_rows *r = &o->rows[b];
        DP_TRY(dp_cuda_max_norm_apply(o->ctx, params + r->offset, r->rows, r->cols, o->cfg.max_norm,
                                      guard));
    }
    return DP_OK;
}

static dp_status launch_update(dp_cuda_optim *o, const upd_args &a)
{
    const unsigned blocks = dp__cuda_blocks(o->n, DP__STEP_THREADS);
    cudaStream_t st = dp__stream(o->ctx);
    switch (o->cfg.kind) {
    case DP_OPTIM_SGD:
        sgd_kernel<<<blocks, DP__STEP_THREADS, 0, st>>>(a);
        break;
    case DP_OPTIM_ADAGRAD:
        adagrad_kernel<<<blocks, DP__STEP_THREADS, 0, st>>>(a);
        break;
    case DP_OPTIM_ADADELTA:
        adadelta_kernel<<<blocks, DP__STEP_THREADS, 0, st>>>(a);
        break;
    case DP_OPTIM_RMSPROP:
        rmsprop_kernel<<<blocks, DP__STEP_THREADS, 0, st>>>(a);
        break;
    case DP_OPTIM_ADAM:
    case DP_OPTIM_ADAMW:
        adam_kernel<<<blocks, DP__STEP_THREADS, 0, st>>>(a);
        break;
    case DP_OPTIM_NADAM:
        nadam_kernel<<<blocks, DP__STEP_THREADS, 0, st>>>(a);
        break;
    case DP_OPTIM_KIND_COUNT_:
        return dp_error_set(DP_ERR_INTERNAL, "cuda optimizer: invalid kind");
    }
    DP_CUDA_LAUNCHED(dp_optim_kind_name(o->cfg.kind));
    return DP_OK;
}

extern "C" dp_status dp_cuda_optim_step(dp_cuda_optim *opt, float *params, const float *grads,
                                        const uint8_t *decay_mask, float lr, dp_cuda_guard *guard)
{
    const char *what = "cuda optimizer step";
    DP__STEP_NEED(opt, what);
    DP__STEP_NEED(params, what);
    DP__STEP_NEED(grads, what);
    if (!(lr >= 0.0f) || !isfinite(lr)) {
        return dp_error_set(DP_ERR_ARG, "%s: learning rate %g is not finite and >= 0", what,
                            (double)lr);
    }
    const int clip = opt->cfg.clip_global_norm > 0;
    if (clip && guard == NULL) {
        return dp_error_set(DP_ERR_ARG, "%s: clipping (clip_global_norm %g) needs a guard", what,
                            opt->cfg.clip_global_norm);
    }
    if (clip) {
        DP_TRY(dp_cuda_grad_norm(opt->ctx, guard, grads, opt->n, opt->cfg.clip_global_norm,
                                 opt->norm_ws));
    }
    upd_args a;
    memset(&a, 0, sizeof a);
    a.p = params;
    a.g = grads;
    a.mask = decay_mask;
    a.n = opt->n;
    a.guard = guard;
    a.clip = clip;
    decay_args(opt, lr, &a);
    const long t0 = opt->t;
    const float mu0 = opt->mu_product;
    switch (opt->cfg.kind) {
    case DP_OPTIM_SGD:
        sgd_args(opt, lr, &a);
        break;
    case DP_OPTIM_ADAGRAD:
        adagrad_args(opt, lr, &a);
        break;
    case DP_OPTIM_ADADELTA:
        adadelta_args(opt, lr, &a);
        break;
    case DP_OPTIM_RMSPROP:
        rmsprop_args(opt, lr, &a);
        break;
    case DP_OPTIM_ADAM:
    case DP_OPTIM_ADAMW:
        adam_args(opt, lr, &a);
        break;
    case DP_OPTIM_NADAM:
        nadam_args(opt, lr, &a);
        break;
    case DP_OPTIM_KIND_COUNT_:
        return dp_error_set(DP_ERR_INTERNAL, "cuda optimizer: invalid kind");
    }
    dp_status st = launch_update(opt, a);
    if (st == DP_OK && opt->cfg.max_norm > 0) {
        st = max_norm_rows(opt, params, guard);
    }
    if (st != DP_OK) {
        opt->mu_product = mu0; // the host side stays as it was; the device may be half updated
        return st;
    }
    opt->prev_t = t0;
    opt->prev_mu_product = mu0;
    opt->can_unstep = 1;
    opt->t = t0 + 1;
    return DP_OK;
}

extern "C" dp_status dp_cuda_optim_unstep(dp_cuda_optim *opt)
{
    DP__STEP_NEED(opt, "dp_cuda_optim_unstep");
    if (!opt->can_unstep) {
        return dp_error_set(DP_ERR_ARG, "cuda optimizer: no step to take back");
    }
    opt->t = opt->prev_t;
    opt->mu_product = opt->prev_mu_product;
    opt->can_unstep = 0;
    return DP_OK;
}

extern "C" dp_status dp_cuda_max_norm_apply(dp_cuda_ctx *ctx, float *w, size_t rows, size_t cols,
                                            double max_norm, const dp_cuda_guard *guard)
{
    DP__STEP_NEED(ctx, "cuda max-norm");
    if (w == NULL || !(max_norm > 0)) {
        return dp_error_set(DP_ERR_ARG, "cuda max-norm: %s",
                            w == NULL ? "NULL weights" : "max_norm must be > 0");
    }
    if (rows == 0 || cols == 0) {
        return DP_OK;
    }
    const unsigned blocks = rows < 65535u * 8u ? (unsigned)rows : 65535u * 8u;
    max_norm_kernel<<<blocks, DP__STEP_THREADS, 0, dp__stream(ctx)>>>(w, rows, cols, max_norm,
                                                                      guard);
    DP_CUDA_LAUNCHED("max_norm_kernel");
    return DP_OK;
}

extern "C" dp_status dp_cuda_optim_set_max_norm_rows(dp_cuda_optim *opt,
                                                     const dp_optim_rows *blocks, int count)
{
    DP__STEP_NEED(opt, "dp_cuda_optim_set_max_norm_rows");
    if (count < 0 || (count > 0 && blocks == NULL)) {
        return dp_error_set(DP_ERR_ARG, "max-norm rows: bad block list (count %d)", count);
    }
    for (int b = 0; b < count; b++) {
        const dp_optim_rows *r = &blocks[b];
        if (r->rows == 0 || r->cols == 0 || r->offset > opt->n ||
            r->rows > (opt->n - r->offset) / r->cols) {
            return dp_error_set(DP_ERR_ARG,
                                "max-norm rows: block %d (offset %zu, %zu x %zu) is empty or "
                                "outside the %zu parameters",
                                b, r->offset, r->rows, r->cols, opt->n);
        }
    }
    dp_optim_rows *copy = NULL;
    if (count > 0) {
        copy = (dp_optim_rows *)malloc((size_t)count * sizeof *copy);
        if (copy == NULL) {
            return dp_error_set(DP_ERR_NOMEM, "max-norm rows: cannot allocate %d blocks", count);
        }
        memcpy(copy, blocks, (size_t)count * sizeof *copy);
    }
    free(opt->rows);
    opt->rows = copy;
    opt->n_rows = count;
    return DP_OK;
}

// --- accessors and state ---

extern "C" const dp_optim_config *dp_cuda_optim_config_get(const dp_cuda_optim *opt)
{
    return &opt->cfg;
}

extern "C" size_t dp_cuda_optim_param_count(const dp_cuda_optim *opt)
{
    return opt->n;
}

extern "C" int dp_cuda_optim_state_count(const dp_cuda_optim *opt)
{
    return opt->n_state;
}

extern "C" dp_status dp_cuda_optim_state_at(dp_cuda_optim *opt, int i, const char **name,
                                            float **data, size_t *n)
{
    if (i < 0 || i >= opt->n_state) {
        return dp_error_set(DP_ERR_ARG, "cuda optimizer %s: state %d out of range [0, %d)",
                            dp_optim_kind_name(opt->cfg.kind), i, opt->n_state);
    }
    *name = opt->state_name[i];
    *data = opt->state[i];
    *n = opt->state_n[i];
    return DP_OK;
}

extern "C" long dp_cuda_optim_step_count(const dp_cuda_optim *opt)
{
    return opt->t;
}

extern "C" dp_status dp_cuda_optim_step_count_set(dp_cuda_optim *opt, long count)
{
    DP__STEP_NEED(opt, "dp_cuda_optim_step_count_set");
    if (count < 0) {
        return dp_error_set(DP_ERR_ARG, "cuda optimizer: step count %ld < 0", count);
    }
    if (opt->cfg.kind == DP_OPTIM_NADAM) {
        DP_TRY(dp_cuda_d2h_sync(opt->ctx, &opt->mu_product, opt->state[2], sizeof(float)));
    }
    opt->t = count;
    opt->can_unstep = 0;
    return DP_OK;
}
