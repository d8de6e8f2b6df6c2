// Deterministic reduction (DESIGN.md "Deterministic mode"): one fixed binary tree T over the
// micro-batches of the global batch, whatever the number of ranks. Inside a rank,
// dp_comm_tree_sum_local (or the streamed dp_comm_tree_acc) evaluates T over local partial
// buffers; across ranks,
// dp_comm_allreduce_sum_deterministic continues the same tree with recursive halving by
// increasing distance (pairs (2k, 2k+1), then (4k, 4k+2), ...) and gathers the result back by
// recursive doubling. The contract is in comm.h. Not here: non-power-of-two world sizes (a
// fixed tree over P leaves that are not a power of two would need uneven exchanges).
#include "comm/comm_internal.h"

#include <stdlib.h>
#include <string.h>

// --- inside a rank ---

enum { TREE_CHUNK = 128, TREE_MAX_LEVELS = 31 };

// stack[l] holds the pending left subtree of 2^l leaves; leaf i completes one subtree per
// trailing 1 bit of i, always as the right operand.
static void tree_chunk(float *const *parts, int m, size_t lo, size_t n,
                       float stack[TREE_MAX_LEVELS + 1][TREE_CHUNK], float *out)
{
    int top = 0;
    for (int i = 0; i < m; i++) {
        const float *acc = parts[i] + lo;
        int level = 0;
        for (; ((unsigned)i >> level) & 1u; level++) {
            float *left = stack[level];
            for (size_t k = 0; k < n; k++) {
                left[k] = left[k] + acc[k];
            }
            acc = left;
        }
        if (acc != stack[level]) {
            memcpy(stack[level], acc, n * sizeof *acc);
        }
        top = level;
    }
    memcpy(out + lo, stack[top], n * sizeof *out);
}

dp_status dp_comm_tree_sum_local(float *const *parts, int m, size_t count, float *out)
{
    if (m < 1 || (m & (m - 1)) != 0) {
        return dp_error_set(DP_ERR_ARG,
                            "dp_comm_tree_sum_local: %d partial buffers; the tree needs a power "
                            "of two >= 1",
                            m);
    }
    if (count == 0) {
        return DP_OK;
    }
    if (parts == NULL || out == NULL) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_tree_sum_local: parts or out is NULL");
    }
    for (int i = 0; i < m; i++) {
        if (parts[i] == NULL) {
            return dp_error_set(DP_ERR_ARG, "dp_comm_tree_sum_local: parts[%d] is NULL", i);
        }
    }
    if (m == 1) {
        memmove(out, parts[0], count * sizeof *out);
        return DP_OK;
    }
    float stack[TREE_MAX_LEVELS + 1][TREE_CHUNK];
    for (size_t lo = 0; lo < count; lo += TREE_CHUNK) {
        size_t n = count - lo < TREE_CHUNK ? count - lo : TREE_CHUNK;
        tree_chunk(parts, m, lo, n, stack, out);
    }
    return DP_OK;
}

// --- inside a rank, streamed ---

dp_status dp_comm_tree_acc_init(dp_comm_tree_acc *acc, float *const *levels, int n_levels,
                                size_t count)
{
    if (acc == NULL || levels == NULL || n_levels < 1 || n_levels > TREE_MAX_LEVELS) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_tree_acc_init: %d levels; expected 1..%d",
                            n_levels, TREE_MAX_LEVELS);
    }
    for (int l = 0; l < n_levels; l++) {
        if (levels[l] == NULL && count > 0) {
            return dp_error_set(DP_ERR_ARG, "dp_comm_tree_acc_init: levels[%d] is NULL", l);
        }
    }
    *acc = (dp_comm_tree_acc){.levels = levels, .n_levels = n_levels, .count = count};
    return DP_OK;
}

dp_status dp_comm_tree_acc_push(dp_comm_tree_acc *acc, const float *part)
{
    long i = acc->pushed;
    if (i >= 1L << (acc->n_levels - 1)) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_tree_acc_push: part %ld of a tree of %ld", i + 1,
                            1L << (acc->n_levels - 1));
    }
    if (part == NULL && acc->count > 0) {
        return dp_error_set(DP_ERR_ARG, "dp_comm_tree_acc_push: part is NULL");
    }
    size_t n = acc->count;
    const float *right = part;
    int level = 0;
    // each trailing 1 bit of i: a pending left subtree at that level to close; the sum goes to
    // the next level's slot if that is free (its bit is 0), else stays here to be carried on
    for (; (i >> level) & 1; level++) {
        float *left = acc->levels[level];
        float *dst = ((i >> (level + 1)) & 1) ? left : acc->levels[level + 1];
        for (size_t k = 0; k < n; k++) {
            dst[k] = left[k] + right[k];
        }
        right = dst;
    }
    if (level == 0 && n > 0) {
        memcpy(acc->levels[0], part, n * sizeof *part);
    }
    acc->pushed = i + 1;
    return DP_OK;
}

dp_status dp_comm_tree_acc_result(const dp_comm_tree_acc *acc, float **out)
{
    long m = acc->pushed;
    if (m < 1 || (m & (m - 1)) != 0) {
        return dp_error_set(DP_ERR_ARG,
                            "dp_comm_tree_acc_result: %ld parts pushed; the tree needs a power "
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

// --- across ranks ---

// Sends send_n floats to partner and receives recv_n floats from it, under the watchdog.
static dp_status exchange(dp_comm *c, const float *send, size_t send_n, float *recv, size_t recv_n,
                          int partner, const dp__comm_wait_ctx *w)
{
    DP_MPI_TRY(MPI_Irecv(recv, (int)recv_n, MPI_FLOAT, partner, DP__COMM_TAG_DETERMINISTIC, c->comm,
                         &c->internal[0]));
    DP_MPI_TRY(MPI_Isend(send, (int)send_n, MPI_FLOAT, partner, DP__COMM_TAG_DETERMINISTIC, c->comm,
                         &c->internal[1]));
    return dp__comm_wait_watched(c, 2, c->internal, w);
}

static dp_status reserve_scratch(dp_comm *c, size_t count)
{
    if (count <= c->scratch_count) {
        return DP_OK;
    }
    float *s = malloc(count * sizeof *s);
    if (s == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "deterministic all-reduce scratch of %zu floats", count);
    }
    free(c->scratch);
    c->scratch = s;
    c->scratch_count = count;
    return DP_OK;
}

dp_status dp_comm_allreduce_sum_deterministic(dp_comm *c, float *buf, size_t count)
{
    DP_TRY(dp__comm_check_buffer(c, buf, count, "dp_comm_allreduce_sum_deterministic"));
    int p = c->size;
    if (p == 1) {
        return DP_OK;
    }
    if ((p & (p - 1)) != 0) {
        return dp_error_set(DP_ERR_UNSUPPORTED,
                            "deterministic all-reduce needs a power-of-two number of ranks; this "
                            "job has %d (run 1, 2, 4, 8, ... ranks, or set deterministic=0)",
                            p);
    }
    DP_TRY(reserve_scratch(c, (count + 1) / 2));
    dp__comm_wait_ctx w = {.op = DP__COMM_OP_DETERMINISTIC, .seq = ++c->seq, .count = count};
    size_t lo = 0, hi = count;
    size_t parent_lo[32], parent_hi[32];
    int steps = 0;
    // Reduce-scatter. Before the exchange at distance d, this rank and rank^d hold, for the same
    // segment [lo, hi), T over their aligned groups of d ranks; the group with bit d clear is the
    // left operand. Each keeps one half and adds the partner's copy of it.
    for (int d = 1; d < p; d <<= 1, steps++) {
        int lower = (c->rank & d) == 0;
        size_t mid = lo + (hi - lo) / 2;
        size_t keep_lo = lower ? lo : mid, keep_hi = lower ? mid : hi;
        size_t send_lo = lower ? mid : lo, send_hi = lower ? hi : mid;
        parent_lo[steps] = lo;
        parent_hi[steps] = hi;
        DP_TRY(exchange(c, buf + send_lo, send_hi - send_lo, c->scratch, keep_hi - keep_lo,
                        c->rank ^ d, &w));
        float *mine = buf + keep_lo;
        const float *theirs = c->scratch;
        size_t n = keep_hi - keep_lo;
        if (lower) {
            for (size_t k = 0; k < n; k++) {
                mine[k] = mine[k] + theirs[k];
            }
        } else {
            for (size_t k = 0; k < n; k++) {
                mine[k] = theirs[k] + mine[k];
            }
        }
        lo = keep_lo;
        hi = keep_hi;
    }
    // All-gather: undo the halvings in reverse, swapping finished halves (copies only).
    for (int s = steps - 1; s >= 0; s--) {
        int lower = (c->rank & (1 << s)) == 0;
        size_t mid = parent_lo[s] + (parent_hi[s] - parent_lo[s]) / 2;
        size_t other_lo = lower ? mid : parent_lo[s], other_hi = lower ? parent_hi[s] : mid;
        DP_TRY(exchange(c, buf + lo, hi - lo, buf + other_lo, other_hi - other_lo,
                        c->rank ^ (1 << s), &w));
        lo = parent_lo[s];
        hi = parent_hi[s];
    }
    return DP_OK;
}
