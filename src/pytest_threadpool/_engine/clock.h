/* Monotonic clock in seconds (double), used for task timings, deadlines and timed waits. */
#ifndef PYTEST_THREADPOOL_CLOCK_H
#define PYTEST_THREADPOOL_CLOCK_H

#include <math.h>
#include <time.h>

static inline double engine_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Absolute CLOCK_MONOTONIC timespec `seconds` from now (for pthread_cond_timedwait). */
static inline struct timespec engine_deadline_ts(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (seconds < 0) {
        seconds = 0;
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

#endif
