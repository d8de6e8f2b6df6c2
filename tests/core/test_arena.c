// Arena: alignment of every block, overflow reported without corrupting state, marks, planner.
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"

Test(arena, blocks_are_64_byte_aligned_and_disjoint)
{
    dp_arena *a;
    cr_assert_eq(dp_arena_create(&a, "test", 4096), DP_OK);
    unsigned char *prev = NULL;
    size_t prev_bytes = 0;
    const size_t sizes[] = {1, 63, 64, 65, 200, 7};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p;
        cr_assert_eq(dp_arena_alloc(a, sizes[i], &p), DP_OK);
        cr_expect_eq((uintptr_t)p % DP_ARENA_ALIGN, 0, "block %zu at %p", i, p);
        if (prev != NULL) {
            cr_expect((unsigned char *)p >= prev + prev_bytes, "block %zu overlaps", i);
        }
        memset(p, 0xab, sizes[i]);
        prev = p;
        prev_bytes = sizes[i];
    }
    dp_arena_destroy(a);
}

Test(arena, overflow_is_nomem_naming_the_arena_and_leaves_it_usable)
{
    dp_arena *a;
    cr_assert_eq(dp_arena_create(&a, "activations", 256), DP_OK);
    void *p;
    cr_assert_eq(dp_arena_alloc(a, 200, &p), DP_OK);
    size_t used = dp_arena_used_bytes(a);
    void *q = (void *)1;
    cr_expect_eq(dp_arena_alloc(a, 100, &q), DP_ERR_NOMEM);
    cr_expect_null(q);
    cr_expect_not_null(strstr(dp_error_message(), "activations"), "%s", dp_error_message());
    cr_expect_eq(dp_arena_used_bytes(a), used);
    cr_expect_eq(dp_arena_alloc(a, 0, &q), DP_OK);
    dp_arena_destroy(a);
}

Test(arena, huge_request_does_not_wrap_around)
{
    dp_arena *a;
    cr_assert_eq(dp_arena_create(&a, "wrap", 128), DP_OK);
    void *p;
    cr_expect_eq(dp_arena_alloc(a, SIZE_MAX - 8, &p), DP_ERR_NOMEM);
    cr_expect_eq(dp_arena_used_bytes(a), 0);
    dp_arena_destroy(a);
}

Test(arena, rewind_to_mark_reuses_memory_and_peak_is_kept)
{
    dp_arena *a;
    cr_assert_eq(dp_arena_create(&a, "m", 1024), DP_OK);
    void *p, *q, *r;
    cr_assert_eq(dp_arena_alloc(a, 100, &p), DP_OK);
    size_t mark = dp_arena_mark(a);
    cr_assert_eq(dp_arena_alloc(a, 500, &q), DP_OK);
    dp_arena_rewind(a, mark);
    cr_assert_eq(dp_arena_alloc(a, 10, &r), DP_OK);
    cr_expect_eq(q, r);
    cr_expect_eq(dp_arena_peak_bytes(a), 128 + 512);
    dp_arena_destroy(a);
}

Test(arena, planner_counts_without_memory)
{
    dp_arena *a;
    cr_assert_eq(dp_arena_create(&a, "plan", 0), DP_OK);
    void *p = (void *)1;
    cr_assert_eq(dp_arena_alloc(a, 1000, &p), DP_OK);
    cr_expect_null(p);
    cr_assert_eq(dp_arena_alloc(a, 1, &p), DP_OK);
    cr_expect_eq(dp_arena_used_bytes(a), 1024 + 64);
    cr_expect_eq(dp_arena_capacity_bytes(a), 0);
    dp_arena_destroy(a);
}

Test(arena, destroy_accepts_null)
{
    dp_arena_destroy(NULL);
}
