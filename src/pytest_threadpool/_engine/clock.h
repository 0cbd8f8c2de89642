/* Clocks in seconds (double): the engine's monotonic clock for task timings, deadlines and timed
 * waits, and the module functions monotonic/perf_counter/wall_time/thread_time (clock.c). */
#ifndef PYTEST_THREADPOOL_CLOCK_H
#define PYTEST_THREADPOOL_CLOCK_H

#include "compat.h"

#include <math.h>
#include <time.h>

static inline double engine_timespec_seconds(const struct timespec *ts)
{
    return (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9;
}

static inline double engine_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return engine_timespec_seconds(&ts);
}

/* Longest single timed wait. Larger (finite) timeouts are cut to it: converting them to time_t
 * would overflow (undefined; on x86-64 a deadline in the past, so the wait returned at once and
 * its caller's loop spun). Every caller re-checks its own deadline after a wait returns. */
#define ENGINE_MAX_WAIT 1e9 /* seconds, ~31 years */

/* Absolute CLOCK_MONOTONIC timespec `seconds` from now (for pthread_cond_timedwait). */
static inline struct timespec engine_deadline_ts(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (!(seconds >= 0)) { /* negative or NaN */
        seconds = 0;
    }
    if (seconds > ENGINE_MAX_WAIT) {
        seconds = ENGINE_MAX_WAIT;
    }
    double whole = floor(seconds);
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int clock_exec(PyObject *module, engine_state *st);

#endif
