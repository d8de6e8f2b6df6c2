// Bump allocation with marks; one aligned_alloc per arena, freed by destroy.
#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

struct dp_arena {
    unsigned char *base; // NULL for a planner
    size_t capacity_bytes;
    size_t used_bytes;
    size_t peak_bytes;
    char name[48];
};

static size_t round_up(size_t bytes)
{
    return (bytes + DP_ARENA_ALIGN - 1) / DP_ARENA_ALIGN * DP_ARENA_ALIGN;
}

dp_status dp_arena_create(dp_arena **out, const char *name, size_t capacity_bytes)
{
    *out = NULL;
    dp_arena *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return dp_error_set(DP_ERR_NOMEM, "arena '%s': out of memory", name);
    }
    strncpy(a->name, name, sizeof a->name - 1);
    if (capacity_bytes > SIZE_MAX - DP_ARENA_ALIGN) {
        free(a);
        return dp_error_set(DP_ERR_NOMEM, "arena '%s': capacity %zu bytes is too large", name,
                            capacity_bytes);
    }
    a->capacity_bytes = round_up(capacity_bytes);
    if (a->capacity_bytes > 0) {
        a->base = aligned_alloc(DP_ARENA_ALIGN, a->capacity_bytes);
        if (a->base == NULL) {
            free(a);
            return dp_error_set(DP_ERR_NOMEM, "arena '%s': cannot allocate %zu bytes", name,
                                capacity_bytes);
        }
        memset(a->base, 0, a->capacity_bytes);
    }
    *out = a;
    return DP_OK;
}

void dp_arena_destroy(dp_arena *arena)
{
    if (arena == NULL) {
        return;
    }
    free(arena->base);
    free(arena);
}

dp_status dp_arena_alloc(dp_arena *arena, size_t bytes, void **out)
{
    *out = NULL;
    if (bytes > SIZE_MAX - DP_ARENA_ALIGN) {
        return dp_error_set(DP_ERR_NOMEM, "arena '%s': request of %zu bytes is too large",
                            arena->name, bytes);
    }
    size_t need = round_up(bytes);
    if (arena->base != NULL && need > arena->capacity_bytes - arena->used_bytes) {
        return dp_error_set(DP_ERR_NOMEM,
                            "arena '%s': request of %zu bytes does not fit (%zu of %zu used)",
                            arena->name, bytes, arena->used_bytes, arena->capacity_bytes);
    }
    if (arena->base != NULL) {
        *out = arena->base + arena->used_bytes;
    }
    arena->used_bytes += need;
    if (arena->used_bytes > arena->peak_bytes) {
        arena->peak_bytes = arena->used_bytes;
    }
    return DP_OK;
}

size_t dp_arena_mark(const dp_arena *arena)
{
    return arena->used_bytes;
}

void dp_arena_rewind(dp_arena *arena, size_t mark)
{
    DP_ASSERT(mark <= arena->used_bytes);
    arena->used_bytes = mark;
}

size_t dp_arena_used_bytes(const dp_arena *arena)
{
    return arena->used_bytes;
}

size_t dp_arena_peak_bytes(const dp_arena *arena)
{
    return arena->peak_bytes;
}

size_t dp_arena_capacity_bytes(const dp_arena *arena)
{
    return arena->capacity_bytes;
}
