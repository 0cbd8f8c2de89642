/* Pool: worker threads running a C loop, a priority/dependency scheduler and a result stream.
 *
 * The Python-visible Pool object owns a `pool_core` (raw memory, atomically refcounted). Each
 * worker thread, the watchdog thread and the atexit hook hold their own core reference, so a
 * forgotten Pool can be collected while its threads wind down, and the threads never keep the
 * Pool object alive.
 *
 * Locking: core->mu (PyMutex, detaches while contended) guards the scheduler structures and
 * worker bookkeeping; worker->mu (PyMutex) is the per-worker gate for asynchronous exceptions.
 * Order: core->mu may be held while taking worker->mu, never the reverse. Structures holding
 * Python references are mutated only while attached and without Python allocation or decref in
 * the middle, which is what lets tp_traverse read them without locking. */
#ifndef PYTEST_THREADPOOL_POOL_H
#define PYTEST_THREADPOOL_POOL_H

#include "compat.h"
#include "crash.h"
#include "scheduler.h"
#include "sync.h"

#include <sys/types.h>

typedef struct pool_core pool_core;
typedef struct worker worker_t;

struct worker {
    /* Gate for asynchronous exceptions: the watchdog and interrupt() deliver only while holding
     * mu with `busy` set, and the worker clears `busy` under mu when its task returns. */
    PyMutex mu;
    uint64_t gen; /* bumped when a task starts and when it ends (guarded by mu) */
    int busy;     /* running a task (guarded by mu) */
    double deadline;  /* monotonic; 0: no timeout (guarded by mu) */
    double timeout;   /* the running task's timeout (guarded by mu) */
    int delivered;    /* TaskTimeout delivered to the running task (guarded by mu) */
    int abandoned;    /* declared hung; its result was published for it (guarded by mu) */
    /* Interruptible waits (waits.c): while the task is blocked in one (in_wait), deliveries are
     * handed over in wake_exc (strong) instead of PyThreadState_SetAsyncExc, and `wake` is
     * notified; the wait raises them itself. Guarded by mu. */
    int in_wait;
    int async_sent; /* this task was sent an asynchronous exception (it may still be pending) */
    PyObject *wake_exc;
    engine_event wake; /* deliveries to a waiting task; releases of its WaiterLocks */
    unsigned long ident; /* thread ident, set by the worker before its first task */
    /* guarded by core->mu */
    task_t *task;     /* task being run */
    int exited;       /* the worker loop has returned */
    PyObject *thread; /* threading.Thread (strong) */
    worker_t *next_retired;
    /* immutable */
    int index;
    int crash_slot; /* written by the worker thread before its first task */
    pool_core *core;
    char name[CRASH_NAME_MAX];
};

struct pool_core {
    atomic_long refcnt;
    PyMutex mu;
    engine_event work_ev; /* ready tasks / stop (waited on by workers) */
    engine_event res_ev;  /* results (waited on by next_result) */
    engine_event wd_ev;   /* deadlines changed / stop (waited on by the watchdog) */
    engine_event exit_ev; /* a worker or the watchdog exited (waited on by shutdown) */
    /* guarded by mu */
    task_heap ready;       /* invariant: ready.cap >= ready.len + n_waiting */
    task_table table;      /* tasks not completed yet, by id */
    task_t *waiting_head, *waiting_tail;
    Py_ssize_t n_waiting;
    result_list results;
    int64_t last_id;
    Py_ssize_t running;
    worker_t **workers; /* nworkers slots; a replaced worker moves to `retired` */
    worker_t *retired;
    int started;
    int stopping;
    /* a shutdown's timeout expired: its caller gave up on the busy workers, so the atexit hook
     * does not wait for them again (guarded by mu) */
    int gave_up;
    int alive; /* started, not exited, not abandoned */
    Py_ssize_t replaced;
    int wd_state; /* 0: none, 1: starting/running, 2: exited */
    unsigned long wd_ident;
    PyObject *wd_thread;
    PyObject *atexit_cb; /* registered atexit hook (strong), NULL when not registered */
    /* immutable after creation */
    int nworkers;
    double grace;
    pid_t pid;              /* process that created the pool (fork detection) */
    PyObject *name;         /* thread name prefix (str) */
    PyObject *task_timeout; /* TaskTimeout class */
    PyObject *thread_start; /* threading.Thread.start as bound when the engine was imported */
};

void core_incref(pool_core *core);
void core_decref(pool_core *core); /* attached */

/* Called with core->mu held: the task has completed (finished, raised, hung). Removes it from the
 * id table, readies dependents and publishes its record. Returns how many tasks became ready. */
Py_ssize_t core_complete_locked(pool_core *core, task_t *t, double now);

/* Start the worker at `index`; `replacing`: it replaces an abandoned worker whose `alive`
 * count it inherits (so the count never dips). Attached, no locks held. */
int core_start_worker(pool_core *core, int index, int replacing);

/* The pool worker running on the calling thread (NULL on any other thread). */
worker_t *pool_current_worker(void);

/* With w->mu held: raise exc_type in w's running task. A task blocked in an interruptible wait
 * gets it through wake_exc (*wake set: notify w->wake after unlocking; *drop: a reference to
 * release after unlocking); otherwise it is set asynchronously. Returns 1 if delivered. */
int worker_deliver_locked(worker_t *w, PyObject *exc_type, int *wake, PyObject **drop);

/* Start a Thread made by engine_start_thread with the Thread.start bound at import (a run may
 * patch threading.Thread.start). Attached, no locks held. */
int core_start_thread(pool_core *core, PyObject *thread);

/* Create and start threading.Thread(target=<def bound to capsule>, name=name, daemon=True). */
PyObject *engine_start_thread(PyMethodDef *def, PyObject *capsule, PyObject *name);

int pool_exec(PyObject *module, engine_state *st);

#endif
