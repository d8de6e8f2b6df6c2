// The step's passes over the flat float32 gradient buffer on the device: the guard (finite
// checks, fp16 unscaling), the deterministic gradient norm, the element-wise sums of micro-batch
// accumulation with the device tree accumulator, and the host-side fp16 loss-scale state
// machine. Not here: the optimizers' updates (optim.cu), losses (xent.cu).
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/cuda/step/step_internal.cuh"
#include "nn/cuda/step/step_ops.h"

// 64-bit device atomics take unsigned long long; the guard's fields are uint64_t.
static_assert(sizeof(unsigned long long) == sizeof(uint64_t), "uint64_t is 64 bits");

// Elements per partial sum of the norm: fixed, so the tree depends only on n.
enum { NORM_CHUNK = 8192 };

// --- kernels ---

__global__ void guard_reset_kernel(dp_cuda_guard *g)
{
    g->first_bad = UINT64_MAX;
    g->last_bad = 0;
    g->n_bad = 0;
    g->norm = 0.0;
    g->clip_scale = 1.0f;
    g->norm_bad = 0;
}

// Non-finite elements of x (after x *= s when SCALE): each warp folds its lanes' lowest and
// highest index and count, then one lane adds them to the guard. Integer min/max/add: the result
// does not depend on which warp arrives first.
template <bool SCALE>
__global__ void finite_kernel(dp_cuda_guard *guard, float *x, const float *in, size_t n, float s,
                              uint64_t base)
{
    unsigned long long lo = ~0ull, hi = 0, count = 0;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = in[i];
        if (SCALE) {
            v = __fmul_rn(v, s);
            x[i] = v;
        }
        if (!isfinite(v)) {
            const unsigned long long at = (unsigned long long)(base + i);
            lo = at < lo ? at : lo;
            hi = at > hi ? at : hi;
            count++;
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        unsigned long long olo = __shfl_xor_sync(DP__FULL_MASK, lo, off);
        unsigned long long ohi = __shfl_xor_sync(DP__FULL_MASK, hi, off);
        lo = olo < lo ? olo : lo;
        hi = ohi > hi ? ohi : hi;
        count += __shfl_xor_sync(DP__FULL_MASK, count, off);
    }
    if ((threadIdx.x & 31u) == 0 && count != 0) {
        atomicMin((unsigned long long *)&guard->first_bad, lo);
        atomicMax((unsigned long long *)&guard->last_bad, hi);
        atomicAdd((unsigned long long *)&guard->n_bad, count);
    }
}

// Stage 1 of the norm: part[c] = sum of g[i]^2 over chunk c (NORM_CHUNK elements), thread t
// taking elements t, t + 256, ... in order, then the block's tree. Chunks are assigned by a
// grid-stride loop, but each chunk's sum is the same whatever block computes it.
__global__ void sumsq_chunks_kernel(double *part, const float *g, size_t n, size_t n_chunks)
{
    __shared__ double sh[DP__STEP_THREADS];
    for (size_t c = blockIdx.x; c < n_chunks; c += gridDim.x) {
        const size_t lo = c * NORM_CHUNK, hi = lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n;
        double s = 0.0;
        for (size_t i = lo + threadIdx.x; i < hi; i += DP__STEP_THREADS) {
            const double v = (double)g[i];
            s = __dadd_rn(s, __dmul_rn(v, v)); // the square of a float is exact in double
        }
        s = dp__block_sum(sh, s);
        if (threadIdx.x == 0) {
            part[c] = s;
        }
    }
}

// Stage 2, one block: the chunks' sums by the same scheme, the norm and the clip factor.
__global__ void norm_finish_kernel(dp_cuda_guard *guard, const double *part, size_t n_chunks,
                                   double clip)
{
    __shared__ double sh[DP__STEP_THREADS];
    double s = 0.0;
    for (size_t c = threadIdx.x; c < n_chunks; c += DP__STEP_THREADS) {
        s = __dadd_rn(s, part[c]);
    }
    s = dp__block_sum(sh, s);
    if (threadIdx.x != 0) {
        return;
    }
    const double norm = sqrt(s);
    guard->norm = norm;
    if (!isfinite(norm)) {
        guard->norm_bad = 1;
        return;
    }
    if (clip > 0.0) {
        const double coef = clip / (norm + 1e-6); // torch.nn.utils.clip_grad_norm_
        guard->clip_scale = coef < 1.0 ? (float)coef : 1.0f;
    }
}

template <typename T> __global__ void add_kernel(T *dst, const T *a, const T *b, size_t n)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        dp__st(dst, i, __fadd_rn(dp__ld(a, i), dp__ld(b, i)));
    }
}

__global__ void scale_kernel(float *x, size_t n, float s)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        x[i] = __fmul_rn(x[i], s);
    }
}

// --- launchers: guard ---

extern "C" dp_status dp_cuda_guard_reset(dp_cuda_ctx *ctx, dp_cuda_guard *guard)
{
    DP__STEP_NEED(ctx, "dp_cuda_guard_reset");
    DP__STEP_NEED(guard, "dp_cuda_guard_reset");
    guard_reset_kernel<<<1, 1, 0, dp__stream(ctx)>>>(guard);
    DP_CUDA_LAUNCHED("guard_reset_kernel");
    return DP_OK;
}

extern "C" dp_status dp_cuda_guard_read(dp_cuda_ctx *ctx, dp_cuda_guard *out,
                                        const dp_cuda_guard *guard)
{
    DP__STEP_NEED(ctx, "dp_cuda_guard_read");
    DP__STEP_NEED(out, "dp_cuda_guard_read");
    DP__STEP_NEED(guard, "dp_cuda_guard_read");
    return dp_cuda_d2h_sync(ctx, out, guard, sizeof *out);
}

extern "C" dp_status dp_cuda_guard_check(const dp_cuda_guard *g)
{
    DP__STEP_NEED(g, "dp_cuda_guard_check");
    if (g->n_bad != 0) {
        return dp_error_set(DP_ERR_DATA,
                            "gradients: %llu non-finite value(s) between elements %llu and %llu "
                            "of the flat buffer; step skipped",
                            (unsigned long long)g->n_bad, (unsigned long long)g->first_bad,
                            (unsigned long long)g->last_bad);
    }
    if (g->norm_bad) {
        return dp_error_set(DP_ERR_DATA, "optimizer: gradient norm is %g; step skipped", g->norm);
    }
    return DP_OK;
}

// --- launchers: finite checks, loss scaling ---

extern "C" dp_status dp_cuda_check_finite(dp_cuda_ctx *ctx, dp_cuda_guard *guard, const float *x,
                                          size_t n, uint64_t base)
{
    DP__STEP_NEED(ctx, "dp_cuda_check_finite");
    DP__STEP_NEED(guard, "dp_cuda_check_finite");
    DP__STEP_NEED(x, "dp_cuda_check_finite");
    if (n == 0) {
        return DP_OK;
    }
    finite_kernel<false>
        <<<dp__cuda_blocks(n, DP__STEP_THREADS), DP__STEP_THREADS, 0, dp__stream(ctx)>>>(
            guard, NULL, x, n, 1.0f, base);
    DP_CUDA_LAUNCHED("finite_kernel");
    return DP_OK;
}

extern "C" dp_status dp_cuda_unscale_check(dp_cuda_ctx *ctx, dp_cuda_guard *guard, float *g,
                                           size_t n, float inv_scale, uint64_t base)
{
    DP__STEP_NEED(ctx, "dp_cuda_unscale_check");
    DP__STEP_NEED(guard, "dp_cuda_unscale_check");
    DP__STEP_NEED(g, "dp_cuda_unscale_check");
    if (!(inv_scale > 0.0f) || !isfinite(inv_scale)) {
        return dp_error_set(DP_ERR_ARG, "dp_cuda_unscale_check: inverse loss scale %g",
                            (double)inv_scale);
    }
    if (n == 0) {
        return DP_OK;
    }
    finite_kernel<true>
        <<<dp__cuda_blocks(n, DP__STEP_THREADS), DP__STEP_THREADS, 0, dp__stream(ctx)>>>(
            guard, g, g, n, inv_scale, base);
    DP_CUDA_LAUNCHED("finite_kernel (unscale)");
    return DP_OK;
}

static dp_status scaler_check(const dp_cuda_loss_scaler *s)
{
    if (!(s->scale > 0.0f) || !isfinite(s->scale) || !(s->growth >= 1.0f) || !isfinite(s->growth) ||
        !(s->backoff > 0.0f && s->backoff < 1.0f) || s->growth_interval < 1 ||
        !(s->min_scale > 0.0f) || !(s->min_scale <= s->max_scale) || !isfinite(s->max_scale)) {
        return dp_error_set(DP_ERR_ARG,
                            "loss scaler: scale %g, growth %g, backoff %g, interval %d, "
                            "min %g, max %g: expected scale > 0, growth >= 1, backoff in (0, 1), "
                            "interval >= 1, 0 < min <= max, all finite",
                            (double)s->scale, (double)s->growth, (double)s->backoff,
                            s->growth_interval, (double)s->min_scale, (double)s->max_scale);
    }
    return DP_OK;
}

// The state machine: overflow -> skip, scale * backoff (not below min_scale), count restarts;
// growth_interval good steps in a row -> scale * growth (not above max_scale), count restarts.
extern "C" dp_status dp_cuda_loss_scaler_update(dp_cuda_loss_scaler *s, const dp_cuda_guard *g,
                                                int *skipped)
{
    if (skipped != NULL) {
        *skipped = 0;
    }
    DP__STEP_NEED(s, "dp_cuda_loss_scaler_update");
    DP__STEP_NEED(g, "dp_cuda_loss_scaler_update");
    DP_TRY(scaler_check(s));
    if (dp_cuda_guard_skips(g)) {
        if (skipped != NULL) {
            *skipped = 1;
        }
        s->skipped++;
        if (s->scale <= s->min_scale) {
            return dp_error_set(DP_ERR_DATA,
                                "fp16 loss scaling: gradients are not finite even at the minimum "
                                "loss scale %g (%llu non-finite values, norm %g): the run diverged",
                                (double)s->scale, (unsigned long long)g->n_bad, g->norm);
        }
        const float next = s->scale * s->backoff;
        s->scale = next < s->min_scale ? s->min_scale : next;
        s->good_steps = 0;
        return DP_OK;
    }
    if (++s->good_steps >= s->growth_interval) {
        const float next = s->scale * s->growth;
        s->scale = next > s->max_scale ? s->max_scale : next;
        s->good_steps = 0;
    }
    return DP_OK;
}

// --- launchers: norm ---

static size_t norm_chunks(size_t n)
{
    return (n + NORM_CHUNK - 1) / NORM_CHUNK;
}

extern "C" size_t dp_cuda_grad_norm_workspace_bytes(size_t n)
{
    const size_t c = norm_chunks(n);
    return (c ? c : 1) * sizeof(double);
}

extern "C" dp_status dp_cuda_grad_norm(dp_cuda_ctx *ctx, dp_cuda_guard *guard, const float *g,
                                       size_t n, double clip, void *workspace)
{
    DP__STEP_NEED(ctx, "dp_cuda_grad_norm");
    DP__STEP_NEED(guard, "dp_cuda_grad_norm");
    DP__STEP_NEED(g, "dp_cuda_grad_norm");
    DP__STEP_NEED(workspace, "dp_cuda_grad_norm");
    if (!(clip >= 0.0)) {
        return dp_error_set(DP_ERR_ARG, "dp_cuda_grad_norm: clip %g < 0", clip);
    }
    cudaStream_t st = dp__stream(ctx);
    double *part = (double *)workspace;
    const size_t chunks = norm_chunks(n);
    if (chunks > 0) {
        // Enough blocks to fill an H100 a few times over; the chunk -> sum mapping is fixed.
        const unsigned blocks = chunks < 4096 ? (unsigned)chunks : 4096u;
        sumsq_chunks_kernel<<<blocks, DP__STEP_THREADS, 0, st>>>(part, g, n, chunks);
        DP_CUDA_LAUNCHED("sumsq_chunks_kernel");
    }
    norm_finish_kernel<<<1, DP__STEP_THREADS, 0, st>>>(guard, part, chunks, clip);
    DP_CUDA_LAUNCHED("norm_finish_kernel");
    return DP_OK;
}

// --- launchers: element-wise ---

template <typename T>
static dp_status add_typed(dp_cuda_ctx *ctx, void *dst, const void *a, const void *b, size_t n)
{
    add_kernel<T><<<dp__cuda_blocks(n, DP__STEP_THREADS), DP__STEP_THREADS, 0, dp__stream(ctx)>>>(
        (T *)dst, (const T *)a, (const T *)b, n);
    DP_CUDA_LAUNCHED("add_kernel");
    return DP_OK;
}

extern "C" dp_status dp_cuda_add_dtype(dp_cuda_ctx *ctx, void *dst, const void *a, const void *b,
                                       size_t n, dp_cuda_dtype dtype)
{
    DP__STEP_NEED(ctx, "dp_cuda_add");
    if (n == 0) {
        return DP_OK;
    }
    DP__STEP_NEED(dst, "dp_cuda_add");
    DP__STEP_NEED(a, "dp_cuda_add");
    DP__STEP_NEED(b, "dp_cuda_add");
    switch (dtype) {
    case DP_CUDA_F32:
        return add_typed<float>(ctx, dst, a, b, n);
    case DP_CUDA_BF16:
        return add_typed<__nv_bfloat16>(ctx, dst, a, b, n);
    case DP_CUDA_F16:
        return add_typed<__half>(ctx, dst, a, b, n);
    }
    return dp_error_set(DP_ERR_ARG, "dp_cuda_add: unknown storage type %d", (int)dtype);
}

extern "C" dp_status dp_cuda_add(dp_cuda_ctx *ctx, float *dst, const float *a, const float *b,
                                 size_t n)
{
    return dp_cuda_add_dtype(ctx, dst, a, b, n, DP_CUDA_F32);
}

extern "C" dp_status dp_cuda_scale(dp_cuda_ctx *ctx, float *x, size_t n, float s)
{
    DP__STEP_NEED(ctx, "dp_cuda_scale");
    if (n == 0) {
        return DP_OK;
    }
    DP__STEP_NEED(x, "dp_cuda_scale");
    scale_kernel<<<dp__cuda_blocks(n, DP__STEP_THREADS), DP__STEP_THREADS, 0, dp__stream(ctx)>>>(
        x, n, s);
    DP_CUDA_LAUNCHED("scale_kernel");
    return DP_OK;
}

extern "C" dp_status dp_cuda_copy_dtype(dp_cuda_ctx *ctx, void *dst, const void *src, size_t n,
                                        dp_cuda_dtype dtype)
{
    DP__STEP_NEED(ctx, "dp_cuda_copy");
    if (dtype != DP_CUDA_F32 && dtype != DP_CUDA_BF16 && dtype != DP_CUDA_F16) {
        return dp_error_set(DP_ERR_ARG, "dp_cuda_copy: unknown storage type %d", (int)dtype);
    }
    if (n == 0 || dst == src) {
        return DP_OK;
    }
    DP__STEP_NEED(dst, "dp_cuda_copy");
    DP__STEP_NEED(src, "dp_cuda_copy");
    DP_CUDA_TRY(cudaMemcpyAsync(dst, src, n * dp_cuda_dtype_size(dtype), cudaMemcpyDeviceToDevice,
                                dp__stream(ctx)));
    return DP_OK;
}

extern "C" dp_status dp_cuda_copy(dp_cuda_ctx *ctx, float *dst, const float *src, size_t n)
{
    return dp_cuda_copy_dtype(ctx, dst, src, n, DP_CUDA_F32);
}

// --- launchers: device tree accumulator (comm_det.c's dp_comm_tree_acc, buffer for buffer) ---

enum { TREE_MAX_LEVELS = 31 };

extern "C" dp_status dp_cuda_tree_acc_init(dp_cuda_tree_acc *acc, float *const *levels,
                                           int n_levels, size_t count)
{
    if (acc == NULL || levels == NULL || n_levels < 1 || n_levels > TREE_MAX_LEVELS) {
        return dp_error_set(DP_ERR_ARG, "dp_cuda_tree_acc_init: %d levels; expected 1..%d",
                            n_levels, (int)TREE_MAX_LEVELS);
    }
    for (int l = 0; l < n_levels; l++) {
        if (levels[l] == NULL && count > 0) {
            return dp_error_set(DP_ERR_ARG, "dp_cuda_tree_acc_init: levels[%d] is NULL", l);
        }
    }
    acc->levels = levels;
    acc->n_levels = n_levels;
    acc->count = count;
    acc->pushed = 0;
    return DP_OK;
}

// Part i closes one pending left subtree per trailing 1 bit of i, always as the right operand;
// the sum goes to the next level's slot when that is free, else stays to be carried on.
extern "C" dp_status dp_cuda_tree_acc_push(dp_cuda_ctx *ctx, dp_cuda_tree_acc *acc,
                                           const float *part)
{
    DP__STEP_NEED(acc, "dp_cuda_tree_acc_push");
    const long i = acc->pushed;
    if (i >= 1L << (acc->n_levels - 1)) {
        return dp_error_set(DP_ERR_ARG, "dp_cuda_tree_acc_push: part %ld of a tree of %ld", i + 1,
                            1L << (acc->n_levels - 1));
    }
    if (part == NULL && acc->count > 0) {
        return dp_error_set(DP_ERR_ARG, "dp_cuda_tree_acc_push: part is NULL");
    }
    const float *right = part;
    int level = 0;
    for (; (i >> level) & 1; level++) {
        float *left = acc->levels[level];
        float *dst = ((i >> (level + 1)) & 1) ? left : acc->levels[level + 1];
        DP_TRY(dp_cuda_add(ctx, dst, left, right, acc->count));
        right = dst;
    }
    if (level == 0) {
        DP_TRY(dp_cuda_copy(ctx, acc->levels[0], part, acc->count));
    }
    acc->pushed = i + 1;
    return DP_OK;
}

extern "C" dp_status dp_cuda_tree_acc_result(const dp_cuda_tree_acc *acc, float **out)
{
    DP__STEP_NEED(acc, "dp_cuda_tree_acc_result");
    DP__STEP_NEED(out, "dp_cuda_tree_acc_result");
    const long m = acc->pushed;
    if (m < 1 || (m & (m - 1)) != 0) {
        return dp_error_set(DP_ERR_ARG,
                            "dp_cuda_tree_acc_result: %ld parts pushed; the tree needs a power "
                            "of two >= 1",
                            m);
    }
    int top = 0;
    while ((1L << top) < m) {
        top++;
    }
    *out = acc->levels[top];
    return DP_OK;
}
