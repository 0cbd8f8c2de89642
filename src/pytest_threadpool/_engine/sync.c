/* engine_event implementation (see sync.h for the protocol). */
#include "sync.h"

#include "clock.h"

#include <errno.h>

int engine_event_init(engine_event *ev)
{
    pthread_condattr_t attr;
    if (pthread_mutex_init(&ev->mu, NULL) != 0) {
        return -1;
    }
    if (pthread_condattr_init(&attr) != 0) {
        pthread_mutex_destroy(&ev->mu);
        return -1;
    }
    /* Deadlines are computed on the monotonic clock so wall-clock jumps do not matter. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&ev->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_destroy(&ev->mu);
        return -1;
    }
    atomic_init(&ev->seq, 0);
    atomic_init(&ev->waiters, 0);
    return 0;
}

void engine_event_destroy(engine_event *ev)
{
    pthread_cond_destroy(&ev->cv);
    pthread_mutex_destroy(&ev->mu);
}

int engine_event_wait(engine_event *ev, unsigned long seen, double timeout)
{
    int changed = 1;
    struct timespec deadline;
    if (timeout >= 0) {
        deadline = engine_deadline_ts(timeout);
    }
    pthread_mutex_lock(&ev->mu);
    atomic_fetch_add(&ev->waiters, 1);
    while (atomic_load(&ev->seq) == seen) {
        if (timeout < 0) {
            pthread_cond_wait(&ev->cv, &ev->mu);
        }
        else if (pthread_cond_timedwait(&ev->cv, &ev->mu, &deadline) == ETIMEDOUT) {
            changed = atomic_load(&ev->seq) != seen;
            break;
        }
    }
    atomic_fetch_sub(&ev->waiters, 1);
    pthread_mutex_unlock(&ev->mu);
    return changed;
}

static void signal_locked(engine_event *ev, int all)
{
    if (all) {
        pthread_cond_broadcast(&ev->cv);
    }
    else {
        pthread_cond_signal(&ev->cv);
    }
}

void engine_event_notify(engine_event *ev, int all)
{
    /* seq_cst on both sides (waiters++ then seq load vs seq++ then waiters load): either the
     * waiter sees the new sequence or we see the waiter. */
    atomic_fetch_add(&ev->seq, 1);
    if (atomic_load(&ev->waiters) == 0) {
        return;
    }
    if (pthread_mutex_trylock(&ev->mu) == 0) {
        signal_locked(ev, all);
        pthread_mutex_unlock(&ev->mu);
        return;
    }
    if (engine_attached()) {
        /* Contended: never block on a native mutex while attached. */
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&ev->mu);
        signal_locked(ev, all);
        pthread_mutex_unlock(&ev->mu);
        Py_END_ALLOW_THREADS
    }
    else {
        pthread_mutex_lock(&ev->mu);
        signal_locked(ev, all);
        pthread_mutex_unlock(&ev->mu);
    }
}
