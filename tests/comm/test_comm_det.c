// dp_comm_tree_sum_local: bitwise equal (memcmp) to a recursive evaluation of the tree
// T(x) = T(left half) + T(right half); not the left-to-right sum; out may alias a part; bad m.
// The cross-rank half of the contract is tested by test_comm_mpi.c.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "core/error.h"

// Floats of mixed sign and magnitudes 2^-10 .. 2^10, so the order of additions shows in the bits.
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

static float reference(float *const *parts, int lo, int n, size_t i)
{
    if (n == 1) {
        return parts[lo][i];
    }
    return reference(parts, lo, n / 2, i) + reference(parts, lo + n / 2, n / 2, i);
}

static float **make_parts(int m, size_t count, uint64_t seed)
{
    float **parts = malloc((size_t)m * sizeof *parts);
    cr_assert_not_null(parts);
    for (int j = 0; j < m; j++) {
        parts[j] = malloc(count * sizeof **parts);
        cr_assert_not_null(parts[j]);
        for (size_t i = 0; i < count; i++) {
            parts[j][i] = value(seed + (uint64_t)j * count + i);
        }
    }
    return parts;
}

static void free_parts(float **parts, int m)
{
    for (int j = 0; j < m; j++) {
        free(parts[j]);
    }
    free(parts);
}

Test(tree, equals_recursive_reference_bitwise)
{
    const int ms[] = {1, 2, 4, 8, 16, 64};
    const size_t counts[] = {1, 127, 128, 129, 1000};
    for (int a = 0; a < 6; a++) {
        for (int b = 0; b < 5; b++) {
            int m = ms[a];
            size_t count = counts[b];
            float **parts = make_parts(m, count, (uint64_t)(a * 10 + b) << 32);
            float *out = malloc(count * sizeof *out);
            float *ref = malloc(count * sizeof *ref);
            cr_assert(out != NULL && ref != NULL);
            cr_assert_eq(dp_comm_tree_sum_local(parts, m, count, out), DP_OK, "%s",
                         dp_error_message());
            for (size_t i = 0; i < count; i++) {
                ref[i] = reference(parts, 0, m, i);
            }
            size_t first = count;
            for (size_t i = 0; i < count && first == count; i++) {
                if (memcmp(&out[i], &ref[i], sizeof(float)) != 0) {
                    first = i;
                }
            }
            cr_expect_eq(first, count, "m=%d count=%zu: first difference at %zu: %a vs %a", m,
                         count, first, first < count ? (double)out[first] : 0.0,
                         first < count ? (double)ref[first] : 0.0);
            free(out);
            free(ref);
            free_parts(parts, m);
        }
    }
}

Test(tree, is_not_the_left_to_right_sum)
{
    // float spacing at 1e8 is 8. Tree: (1e8 + 1) + (-1e8 + 1) = 1e8 - 1e8 = 0.
    // Left to right: ((1e8 + 1) - 1e8) + 1 = 0 + 1 = 1.
    float x[4][1] = {{1e8f}, {1.0f}, {-1e8f}, {1.0f}};
    float *parts[4] = {x[0], x[1], x[2], x[3]};
    float out = -1.0f;
    cr_assert_eq(dp_comm_tree_sum_local(parts, 4, 1, &out), DP_OK);
    float seq = ((x[0][0] + x[1][0]) + x[2][0]) + x[3][0];
    cr_expect_eq(out, 0.0f, "tree sum %g", (double)out);
    cr_expect_eq(seq, 1.0f, "sequential sum %g", (double)seq);

    // and on random data, most elements of an 8-way sum differ in the last bits
    size_t count = 1000, n_diff = 0;
    float **p = make_parts(8, count, 77);
    float *t = malloc(count * sizeof *t);
    cr_assert_eq(dp_comm_tree_sum_local(p, 8, count, t), DP_OK);
    for (size_t i = 0; i < count; i++) {
        float s = p[0][i];
        for (int j = 1; j < 8; j++) {
            s += p[j][i];
        }
        n_diff += memcmp(&s, &t[i], sizeof s) != 0;
    }
    cr_expect_gt(n_diff, count / 10, "only %zu of %zu differ", n_diff, count);
    free(t);
    free_parts(p, 8);
}

Test(tree, out_may_be_the_first_part)
{
    size_t count = 300;
    float **p = make_parts(8, count, 5);
    float *sep = malloc(count * sizeof *sep);
    cr_assert_eq(dp_comm_tree_sum_local(p, 8, count, sep), DP_OK);
    cr_assert_eq(dp_comm_tree_sum_local(p, 8, count, p[0]), DP_OK);
    cr_expect_eq(memcmp(sep, p[0], count * sizeof *sep), 0);
    float **q = make_parts(1, count, 9);
    cr_assert_eq(dp_comm_tree_sum_local(q, 1, count, sep), DP_OK);
    cr_expect_eq(memcmp(sep, q[0], count * sizeof *sep), 0, "m = 1 copies");
    free(sep);
    free_parts(p, 8);
    free_parts(q, 1);
}

Test(tree, rejects_counts_that_are_not_powers_of_two)
{
    float a[2] = {1, 2}, b[2] = {3, 4}, c[2] = {5, 6}, out[2];
    float *parts[3] = {a, b, c};
    const int bad[] = {3, 0, -2, 6};
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(dp_comm_tree_sum_local(parts, bad[i], 2, out), DP_ERR_ARG, "m=%d", bad[i]);
        cr_expect_not_null(strstr(dp_error_message(), "power of two"), "%s", dp_error_message());
    }
    float *with_null[2] = {a, NULL};
    cr_expect_eq(dp_comm_tree_sum_local(with_null, 2, 2, out), DP_ERR_ARG);
    cr_expect_not_null(strstr(dp_error_message(), "parts[1]"), "%s", dp_error_message());
    cr_expect_eq(dp_comm_tree_sum_local(parts, 2, 2, NULL), DP_ERR_ARG);
}

Test(tree, streamed_equals_all_at_once_bitwise)
{
    size_t count = 1000;
    for (int log_m = 0; log_m <= 6; log_m++) {
        int m = 1 << log_m;
        float **p = make_parts(m, count, 1000 + (uint64_t)m);
        float *want = malloc(count * sizeof *want);
        cr_assert_eq(dp_comm_tree_sum_local(p, m, count, want), DP_OK);
        // one level more than needed: the tree must not depend on the capacity
        int n_levels = log_m + 2;
        float **levels = make_parts(n_levels, count, 0);
        dp_comm_tree_acc acc;
        cr_assert_eq(dp_comm_tree_acc_init(&acc, levels, n_levels, count), DP_OK);
        float *scratch = malloc(count * sizeof *scratch);
        for (int j = 0; j < m; j++) {
            memcpy(scratch, p[j], count * sizeof *scratch); // the caller reuses one buffer
            cr_assert_eq(dp_comm_tree_acc_push(&acc, scratch), DP_OK, "%s", dp_error_message());
            memset(scratch, 0xff, count * sizeof *scratch);
        }
        float *got = NULL;
        cr_assert_eq(dp_comm_tree_acc_result(&acc, &got), DP_OK, "%s", dp_error_message());
        cr_expect_eq(memcmp(got, want, count * sizeof *got), 0, "m = %d", m);
        free(scratch);
        free(want);
        free_parts(levels, n_levels);
        free_parts(p, m);
    }
}

Test(tree, streamed_refuses_incomplete_trees_and_overflow)
{
    float a[2] = {1, 2}, b[2] = {3, 4}, l0[2], l1[2];
    float *levels[2] = {l0, l1};
    dp_comm_tree_acc acc;
    float *out = NULL;
    cr_assert_eq(dp_comm_tree_acc_init(&acc, levels, 2, 2), DP_OK);
    cr_expect_eq(dp_comm_tree_acc_result(&acc, &out), DP_ERR_ARG, "nothing pushed");
    cr_assert_eq(dp_comm_tree_acc_push(&acc, a), DP_OK);
    cr_assert_eq(dp_comm_tree_acc_result(&acc, &out), DP_OK);
    cr_expect(out[0] == 1 && out[1] == 2);
    cr_assert_eq(dp_comm_tree_acc_push(&acc, b), DP_OK);
    cr_assert_eq(dp_comm_tree_acc_result(&acc, &out), DP_OK);
    cr_expect(out[0] == 4 && out[1] == 6);
    cr_expect_eq(dp_comm_tree_acc_push(&acc, a), DP_ERR_ARG, "two levels hold two parts");
    cr_expect_not_null(strstr(dp_error_message(), "part 3 of a tree of 2"), "%s",
                       dp_error_message());
    cr_expect_eq(dp_comm_tree_acc_init(&acc, levels, 0, 2), DP_ERR_ARG);
    cr_expect_eq(dp_comm_tree_acc_init(&acc, levels, 32, 2), DP_ERR_ARG);

    float l2[2], c3[2] = {5, 6};
    float *three[3] = {l0, l1, l2};
    cr_assert_eq(dp_comm_tree_acc_init(&acc, three, 3, 2), DP_OK);
    cr_assert_eq(dp_comm_tree_acc_push(&acc, a), DP_OK);
    cr_assert_eq(dp_comm_tree_acc_push(&acc, b), DP_OK);
    cr_assert_eq(dp_comm_tree_acc_push(&acc, c3), DP_OK);
    cr_expect_eq(dp_comm_tree_acc_result(&acc, &out), DP_ERR_ARG, "3 parts: incomplete tree");
    cr_expect_not_null(strstr(dp_error_message(), "power of two"), "%s", dp_error_message());
}
