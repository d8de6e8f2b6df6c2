// A bump allocator over one 64-byte-aligned host block: all step memory is planned at build
// time and carved from an arena, so nothing is allocated inside the step loop. An arena created
// with capacity 0 is a planner: it hands out no memory but counts the bytes a plan needs.
#ifndef DP_CORE_ARENA_H
#define DP_CORE_ARENA_H

#include <stddef.h>

#include "core/status.h"

enum { DP_ARENA_ALIGN = 64 };

typedef struct dp_arena dp_arena;

// Creates an arena of capacity_bytes (rounded up to DP_ARENA_ALIGN), zero-filled. name appears
// in error messages ("arena 'activations': ..."). capacity_bytes == 0 makes a planner.
// Returns DP_ERR_NOMEM if the block cannot be allocated.
DP_MUST_CHECK dp_status dp_arena_create(dp_arena **out, const char *name, size_t capacity_bytes);

// Accepts NULL.
void dp_arena_destroy(dp_arena *arena);

// Hands out bytes (rounded up to DP_ARENA_ALIGN) aligned to DP_ARENA_ALIGN. A planner stores
// NULL in *out and only counts. Returns DP_ERR_NOMEM naming the arena and the sizes when the
// request does not fit; the arena is unchanged then.
DP_MUST_CHECK dp_status dp_arena_alloc(dp_arena *arena, size_t bytes, void **out);

// Marks and rewinds: every block handed out after the mark becomes free again.
size_t dp_arena_mark(const dp_arena *arena);
void dp_arena_rewind(dp_arena *arena, size_t mark);

// Bytes handed out so far, the largest that ever was, and the capacity (0 for a planner).
size_t dp_arena_used_bytes(const dp_arena *arena);
size_t dp_arena_peak_bytes(const dp_arena *arena);
size_t dp_arena_capacity_bytes(const dp_arena *arena);

#endif
