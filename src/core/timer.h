// Monotonic time for step timing and timeouts (CLOCK_MONOTONIC; never the wall clock).
#ifndef DP_CORE_TIMER_H
#define DP_CORE_TIMER_H

#include <stdint.h>

// Nanoseconds from an arbitrary fixed point; never decreases.
uint64_t dp_time_ns(void);

// Seconds from an arbitrary fixed point, as a double.
double dp_time_s(void);

typedef struct dp_timer {
    uint64_t start_ns;
} dp_timer;

static inline void dp_timer_start(dp_timer *t)
{
    t->start_ns = dp_time_ns();
}

// Seconds since dp_timer_start.
double dp_timer_elapsed_s(const dp_timer *t);

#endif
