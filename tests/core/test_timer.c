// Monotonic timer: never goes backwards, measures a sleep within a generous bound.
#include <criterion/criterion.h>
#include <time.h>

#include "core/timer.h"

Test(timer, monotonic_and_measures_sleep)
{
    uint64_t a = dp_time_ns();
    dp_timer t;
    dp_timer_start(&t);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    double dt = dp_timer_elapsed_s(&t);
    uint64_t b = dp_time_ns();
    cr_expect_geq(b, a);
    cr_expect_geq(dt, 0.019, "elapsed %g s", dt);
    cr_expect_lt(dt, 5.0, "elapsed %g s", dt);
}
