/* engine_event: a sequence-numbered wake-up primitive (pthread mutex + monotonic condvar).
 *
 * Waiters snapshot the sequence number *before* checking their condition, then wait until it
 * changes, so a notification between the check and the wait is never lost. Waiting blocks on
 * native primitives, so callers must detach their thread state around engine_event_wait.
 * Notifying never blocks while attached: the condvar mutex is only try-locked while attached
 * and, if contended, taken with the thread state detached. The mutex protects no Python data. */
#ifndef PYTEST_THREADPOOL_SYNC_H
#define PYTEST_THREADPOOL_SYNC_H

#include "compat.h"

#include <pthread.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_ulong seq;
    atomic_int waiters; /* lets notify skip the mutex and the syscall when nobody waits */
} engine_event;

int engine_event_init(engine_event *ev);
void engine_event_destroy(engine_event *ev);

static inline unsigned long engine_event_seq(engine_event *ev)
{
    return atomic_load(&ev->seq);
}

/* Wait (thread state detached!) until the sequence differs from `seen` or `timeout` seconds
 * pass (timeout < 0: no limit). Returns 1 when the sequence changed, 0 on timeout. */
int engine_event_wait(engine_event *ev, unsigned long seen, double timeout);

/* Bump the sequence and wake one waiter (all = 0) or every waiter (all = 1). Safe attached or
 * detached, from any thread; never call it while holding a lock a waiter might need. */
void engine_event_notify(engine_event *ev, int all);

#endif
