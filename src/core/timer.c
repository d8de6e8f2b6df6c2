// clock_gettime(CLOCK_MONOTONIC) wrappers.
#include "core/timer.h"

#include <time.h>

uint64_t dp_time_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double dp_time_s(void)
{
    return (double)dp_time_ns() * 1e-9;
}

double dp_timer_elapsed_s(const dp_timer *t)
{
    return (double)(dp_time_ns() - t->start_ns) * 1e-9;
}
