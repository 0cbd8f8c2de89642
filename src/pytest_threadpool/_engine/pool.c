/* Pool type, worker loop and scheduler glue (see pool.h for the locking rules). */
#include "pool.h"

#include "clock.h"
#include "task_result.h"
#include "watchdog.h"

#include <math.h>
#include <stddef.h>
#include <unistd.h>

typedef struct {
    PyObject_HEAD
    pool_core *core;
} pool_object;

#define POOL(op) ((pool_object *)(op))

#define WORKER_CAPSULE "pytest_threadpool._engine.worker"
#define ATEXIT_CAPSULE "pytest_threadpool._engine.pool_core"

/* ------------------------------------------------------------------------------------------ */
/* core lifetime                                                                               */

void core_incref(pool_core *core)
{
    atomic_fetch_add(&core->refcnt, 1);
}

static void worker_free(worker_t *w)
{
    Py_XDECREF(w->thread);
    Py_XDECREF(w->wake_exc);
    engine_event_destroy(&w->wake);
    PyMem_RawFree(w);
}

static void core_free(pool_core *core)
{
    /* Last reference: no other thread can see the core any more. */
    task_t *t;
    while ((t = heap_pop(&core->ready)) != NULL) {
        task_free(t);
    }
    heap_free(&core->ready);
    while ((t = core->waiting_head) != NULL) {
        core->waiting_head = t->wnext;
        task_free(t);
    }
    result_node *n;
    while ((n = results_pop(&core->results)) != NULL) {
        if (n->task != NULL) {
            task_free(n->task);
        }
        else {
            Py_XDECREF(n->obj);
            PyMem_RawFree(n);
        }
    }
    table_free(&core->table);
    for (int i = 0; i < core->nworkers; i++) {
        worker_t *w = core->workers ? core->workers[i] : NULL;
        if (w != NULL) {
            worker_free(w);
        }
    }
    PyMem_RawFree(core->workers);
    while (core->retired != NULL) {
        worker_t *w = core->retired;
        core->retired = w->next_retired;
        worker_free(w);
    }
    Py_XDECREF(core->wd_thread);
    Py_XDECREF(core->atexit_cb);
    Py_XDECREF(core->name);
    Py_XDECREF(core->task_timeout);
    Py_XDECREF(core->thread_start);
    engine_event_destroy(&core->work_ev);
    engine_event_destroy(&core->res_ev);
    engine_event_destroy(&core->wd_ev);
    engine_event_destroy(&core->exit_ev);
    PyMem_RawFree(core);
}

void core_decref(pool_core *core)
{
    if (atomic_fetch_sub(&core->refcnt, 1) == 1) {
        core_free(core);
    }
}

static pool_core *core_new(int nworkers, PyObject *name, double grace, PyObject *task_timeout,
                           PyObject *thread_start)
{
    pool_core *core = PyMem_RawCalloc(1, sizeof(pool_core));
    if (core == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    core->workers = PyMem_RawCalloc((size_t)nworkers, sizeof(worker_t *));
    int ev = 0;
    if (core->workers != NULL) {
        ev += engine_event_init(&core->work_ev) == 0;
        ev += ev == 1 && engine_event_init(&core->res_ev) == 0;
        ev += ev == 2 && engine_event_init(&core->wd_ev) == 0;
        ev += ev == 3 && engine_event_init(&core->exit_ev) == 0;
    }
    if (core->workers == NULL || ev != 4) {
        engine_event *evs[] = {&core->work_ev, &core->res_ev, &core->wd_ev};
        for (int i = 0; i < ev && i < 3; i++) {
            engine_event_destroy(evs[i]);
        }
        PyMem_RawFree(core->workers);
        PyMem_RawFree(core);
        PyErr_NoMemory();
        return NULL;
    }
    atomic_init(&core->refcnt, 1);
    core->nworkers = nworkers;
    core->grace = grace;
    core->pid = getpid();
    core->name = Py_NewRef(name);
    core->task_timeout = Py_NewRef(task_timeout);
    core->thread_start = Py_NewRef(thread_start);
    return core;
}

/* ------------------------------------------------------------------------------------------ */
/* scheduling (all *_locked functions: core->mu held, attached, no Python allocation/decref)   */

static void waiting_unlink(pool_core *core, task_t *t)
{
    if (t->wprev != NULL) {
        t->wprev->wnext = t->wnext;
    }
    else {
        core->waiting_head = t->wnext;
    }
    if (t->wnext != NULL) {
        t->wnext->wprev = t->wprev;
    }
    else {
        core->waiting_tail = t->wprev;
    }
    t->wprev = t->wnext = NULL;
    core->n_waiting--;
}

static void waiting_append(pool_core *core, task_t *t)
{
    t->wnext = NULL;
    t->wprev = core->waiting_tail;
    if (core->waiting_tail != NULL) {
        core->waiting_tail->wnext = t;
    }
    else {
        core->waiting_head = t;
    }
    core->waiting_tail = t;
    core->n_waiting++;
}

Py_ssize_t core_complete_locked(pool_core *core, task_t *t, double now)
{
    Py_ssize_t readied = 0;
    t->state = TASK_DONE;
    table_remove(&core->table, t->id);
    for (Py_ssize_t i = 0; i < t->ndependents; i++) {
        task_t *d = table_get(&core->table, t->dependents[i]);
        /* unknown: cancelled or never inserted (submit failed); nothing to do */
        if (d == NULL || d->state != TASK_WAITING) {
            continue;
        }
        if (--d->ndeps == 0) {
            waiting_unlink(core, d);
            d->state = TASK_READY;
            d->ready_time = now;
            heap_push(&core->ready, d); /* capacity guaranteed by the heap invariant */
            readied++;
        }
    }
    t->ndependents = 0;
    results_push(&core->results, &t->node);
    return readied;
}

static void cancel_one_locked(pool_core *core, task_t *t)
{
    t->state = TASK_DONE;
    t->cancelled = 1;
    t->worker = -1;
    table_remove(&core->table, t->id);
    results_push(&core->results, &t->node);
}

/* Cancel every task that has not started; their records go to the result stream. */
static Py_ssize_t cancel_locked(pool_core *core)
{
    Py_ssize_t n = 0;
    task_t *t;
    while ((t = heap_pop(&core->ready)) != NULL) {
        cancel_one_locked(core, t);
        n++;
    }
    while ((t = core->waiting_head) != NULL) {
        waiting_unlink(core, t);
        cancel_one_locked(core, t);
        n++;
    }
    return n;
}

static Py_ssize_t core_cancel(pool_core *core)
{
    PyMutex_Lock(&core->mu);
    Py_ssize_t n = cancel_locked(core);
    PyMutex_Unlock(&core->mu);
    if (n > 0) {
        engine_event_notify(&core->res_ev, 1);
    }
    return n;
}

/* Snapshot of the current worker structs (they are freed only with the core). */
static worker_t **workers_snapshot(pool_core *core, int *count)
{
    PyMutex_Lock(&core->mu);
    int n = core->nworkers;
    worker_t **snap = PyMem_RawMalloc(sizeof(worker_t *) * (size_t)(n > 0 ? n : 1));
    if (snap != NULL) {
        for (int i = 0; i < n; i++) {
            snap[i] = core->workers[i];
        }
    }
    PyMutex_Unlock(&core->mu);
    *count = snap ? n : 0;
    return snap;
}

/* Deliver exc_type asynchronously to every running task, gated per worker. */
static Py_ssize_t core_interrupt(pool_core *core, PyObject *exc_type)
{
    int n;
    worker_t **snap = workers_snapshot(core, &n);
    if (snap == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t count = 0;
    for (int i = 0; i < n; i++) {
        worker_t *w = snap[i];
        if (w == NULL) {
            continue;
        }
        int wake = 0;
        PyObject *drop = NULL;
        PyMutex_Lock(&w->mu);
        /* under the gate: the task cannot finish (and the next one cannot start) meanwhile */
        if (w->busy && !w->abandoned) {
            count += worker_deliver_locked(w, exc_type, &wake, &drop);
        }
        PyMutex_Unlock(&w->mu);
        Py_XDECREF(drop);
        if (wake) {
            engine_event_notify(&w->wake, 1);
        }
    }
    PyMem_RawFree(snap);
    return count;
}

/* ------------------------------------------------------------------------------------------ */
/* worker loop                                                                                 */

/* The worker whose loop runs on this thread (a plain pointer: TLS holds no Python objects). */
static ENGINE_TLS worker_t *current_worker;

worker_t *pool_current_worker(void)
{
    return current_worker;
}

int worker_deliver_locked(worker_t *w, PyObject *exc_type, int *wake, PyObject **drop)
{
    if (w->in_wait) {
        /* The waiting task raises it itself when woken: exactly once, and promptly. A later
         * delivery (KeyboardInterrupt after a TaskTimeout) replaces one not raised yet. */
        *drop = w->wake_exc;
        w->wake_exc = Py_NewRef(exc_type);
        *wake = 1;
        return 1;
    }
    w->async_sent = 1;
    return PyThreadState_SetAsyncExc(w->ident, exc_type) > 0;
}

/* Pop a ready task for worker w, waiting (detached) while there is none. NULL: exit. On
 * success *fn and *arg receive the task's callable and argument (strong references). */
static task_t *claim(pool_core *core, worker_t *w, PyObject **fn, PyObject **arg)
{
    for (;;) {
        unsigned long seen = engine_event_seq(&core->work_ev);
        PyMutex_Lock(&core->mu);
        task_t *t = core->stopping ? NULL : heap_pop(&core->ready);
        int stop = core->stopping;
        if (t != NULL) {
            t->state = TASK_RUNNING;
            core->running++;
            w->task = t;
            *fn = t->fn;
            *arg = t->arg;
            t->fn = t->arg = NULL;
        }
        PyMutex_Unlock(&core->mu);
        if (t != NULL || stop) {
            return t;
        }
        Py_BEGIN_ALLOW_THREADS
        engine_event_wait(&core->work_ev, seen, -1.0);
        Py_END_ALLOW_THREADS
    }
}

static void set_timeout_message(PyObject *exc, double timeout)
{
    PyObject *args = PyObject_GetAttrString(exc, "args");
    if (args != NULL && PyTuple_Check(args) && PyTuple_GET_SIZE(args) == 0) {
        PyObject *t = PyFloat_FromDouble(timeout);
        PyObject *msg = t ? PyUnicode_FromFormat("task exceeded its %Ss timeout", t) : NULL;
        PyObject *tuple = msg ? PyTuple_Pack(1, msg) : NULL;
        if (tuple != NULL) {
            (void)PyObject_SetAttrString(exc, "args", tuple);
        }
        Py_XDECREF(tuple);
        Py_XDECREF(msg);
        Py_XDECREF(t);
    }
    Py_XDECREF(args);
    PyErr_Clear();
}

/* Swallow an asynchronous TaskTimeout/KeyboardInterrupt that surfaced outside a task. */
static void drop_stray_error(pool_core *core)
{
    if (!PyErr_Occurred()) {
        return;
    }
    if (PyErr_ExceptionMatches(core->task_timeout) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        PyErr_Clear();
    }
    else {
        PyErr_WriteUnraisable(NULL);
    }
}

/* Run one claimed task and publish its result. Returns the next task to run (claimed in the same
 * critical section when one is ready), NULL when there is none, or (task_t *)-1 when this
 * worker was abandoned as hung and must exit. */
#define ABANDONED ((task_t *)-1)

static task_t *run_task(pool_core *core, worker_t *w, task_t *t, PyObject *fn, PyObject *arg,
                        PyObject **next_fn, PyObject **next_arg)
{
    double timeout = t->timeout;
    double start = engine_monotonic();
    t->start_time = start;
    PyMutex_Lock(&w->mu);
    w->gen++;
    w->busy = 1;
    w->delivered = 0;
    w->async_sent = 0;
    w->timeout = timeout;
    w->deadline = timeout > 0 ? start + timeout : 0.0;
    PyMutex_Unlock(&w->mu);
    if (timeout > 0) {
        engine_event_notify(&core->wd_ev, 0);
    }
    crash_slot_begin(w->crash_slot, t->label_utf8, t->label_len);

    PyObject *value = PyObject_CallOneArg(fn, arg);
    PyObject *exc = value == NULL ? PyErr_GetRaisedException() : NULL;
    double end = engine_monotonic();

    PyMutex_Lock(&w->mu);
    int abandoned = w->abandoned;
    int delivered = w->delivered;
    w->busy = 0;
    w->deadline = 0.0;
    w->gen++;
    w->in_wait = 0;
    PyObject *stale = w->wake_exc; /* every wait consumes its own: normally NULL */
    w->wake_exc = NULL;
    PyMutex_Unlock(&w->mu);
    Py_XDECREF(stale);
    /* Nothing can be delivered to us any more; drop one that arrived too late to be raised. */
    PyThreadState_SetAsyncExc(w->ident, NULL);
    crash_slot_end(w->crash_slot);

    Py_DECREF(fn);
    Py_XDECREF(arg);
    drop_stray_error(core);
    if (abandoned) {
        /* The watchdog already published this task as hung; `t` is no longer ours. */
        Py_XDECREF(value);
        Py_XDECREF(exc);
        return ABANDONED;
    }
    t->timed_out = (char)(delivered && exc != NULL);
    if (t->timed_out && PyObject_TypeCheck(exc, (PyTypeObject *)core->task_timeout)) {
        set_timeout_message(exc, timeout);
    }
    t->value = value;
    t->exception = exc;
    t->worker = w->index;
    t->end_time = end;

    PyMutex_Lock(&core->mu);
    w->task = NULL;
    core->running--;
    Py_ssize_t readied = core_complete_locked(core, t, end);
    int stopping = core->stopping;
    task_t *next = stopping ? NULL : heap_pop(&core->ready);
    if (next != NULL) {
        next->state = TASK_RUNNING;
        core->running++;
        w->task = next;
        *next_fn = next->fn;
        *next_arg = next->arg;
        next->fn = next->arg = NULL;
        readied--;
    }
    PyMutex_Unlock(&core->mu);
    engine_event_notify(&core->res_ev, 0);
    if (stopping) {
        engine_event_notify(&core->wd_ev, 0); /* it exits once nothing runs */
    }
    for (Py_ssize_t i = 0; i < readied; i++) {
        engine_event_notify(&core->work_ev, 0);
    }
    return next;
}

static PyObject *worker_main(PyObject *capsule, PyObject *Py_UNUSED(ignored))
{
    worker_t *w = PyCapsule_GetPointer(capsule, WORKER_CAPSULE);
    if (w == NULL) {
        return NULL;
    }
    pool_core *core = w->core;
    PyMutex_Lock(&w->mu);
    w->ident = PyThread_get_thread_ident();
    PyMutex_Unlock(&w->mu);
    current_worker = w;
    w->crash_slot = crash_slot_acquire(w->name);

    PyObject *fn = NULL, *arg = NULL;
    task_t *t = claim(core, w, &fn, &arg);
    while (t != NULL) {
        PyObject *nfn = NULL, *narg = NULL;
        task_t *next = run_task(core, w, t, fn, arg, &nfn, &narg);
        if (next == ABANDONED) {
            break;
        }
        if (next == NULL) {
            next = claim(core, w, &nfn, &narg);
        }
        t = next;
        fn = nfn;
        arg = narg;
    }
    crash_slot_release(w->crash_slot);
    current_worker = NULL;

    PyMutex_Lock(&core->mu);
    w->exited = 1;
    PyMutex_Lock(&w->mu);
    int abandoned = w->abandoned;
    PyMutex_Unlock(&w->mu);
    if (!abandoned) {
        core->alive--;
    }
    PyMutex_Unlock(&core->mu);
    engine_event_notify(&core->exit_ev, 1);
    drop_stray_error(core);
    Py_RETURN_NONE;
}

static PyMethodDef worker_main_def = {
    "_worker_main", worker_main, METH_NOARGS, "Worker loop of a pytest_threadpool Pool (C).",
};

static void worker_capsule_destructor(PyObject *capsule)
{
    worker_t *w = PyCapsule_GetPointer(capsule, WORKER_CAPSULE);
    if (w != NULL) {
        core_decref(w->core);
    }
}

PyObject *engine_start_thread(PyMethodDef *def, PyObject *capsule, PyObject *name)
{
    PyObject *threading = PyImport_ImportModule("threading");
    if (threading == NULL) {
        return NULL;
    }
    PyObject *thread_type = PyObject_GetAttrString(threading, "Thread");
    Py_DECREF(threading);
    if (thread_type == NULL) {
        return NULL;
    }
    PyObject *target = PyCFunction_New(def, capsule);
    PyObject *kwargs = target ? Py_BuildValue("{s:O,s:O,s:O}", "target", target, "name", name,
                                              "daemon", Py_True)
                              : NULL;
    Py_XDECREF(target);
    PyObject *empty = kwargs ? PyTuple_New(0) : NULL;
    PyObject *thread = empty ? PyObject_Call(thread_type, empty, kwargs) : NULL;
    Py_XDECREF(empty);
    Py_XDECREF(kwargs);
    Py_DECREF(thread_type);
    return thread; /* not started yet: the caller registers it first */
}

int core_start_worker(pool_core *core, int index, int replacing)
{
    worker_t *w = PyMem_RawCalloc(1, sizeof(worker_t));
    if (w == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->core = core;
    w->index = index;
    w->crash_slot = -1;
    if (engine_event_init(&w->wake) != 0) {
        PyMem_RawFree(w);
        PyErr_NoMemory();
        return -1;
    }
    PyObject *name = PyUnicode_FromFormat("%U-%d", core->name, index);
    if (name == NULL) {
        engine_event_destroy(&w->wake);
        PyMem_RawFree(w);
        return -1;
    }
    size_t len;
    char *raw = engine_raw_utf8(name, &len);
    if (raw == NULL) {
        Py_DECREF(name);
        engine_event_destroy(&w->wake);
        PyMem_RawFree(w);
        return -1;
    }
    snprintf(w->name, sizeof(w->name), "%s", raw);
    PyMem_RawFree(raw);

    core_incref(core); /* owned by the capsule from here on */
    PyObject *capsule = PyCapsule_New(w, WORKER_CAPSULE, worker_capsule_destructor);
    if (capsule == NULL) {
        core_decref(core);
        Py_DECREF(name);
        engine_event_destroy(&w->wake);
        PyMem_RawFree(w);
        return -1;
    }
    PyObject *thread = engine_start_thread(&worker_main_def, capsule, name);
    Py_DECREF(name);
    Py_DECREF(capsule);
    if (thread == NULL) {
        /* the capsule (and its core reference) went away with the failed Thread */
        engine_event_destroy(&w->wake);
        PyMem_RawFree(w);
        return -1;
    }
    PyMutex_Lock(&core->mu);
    worker_t *old = core->workers[index];
    if (old != NULL) {
        old->next_retired = core->retired;
        core->retired = old;
    }
    core->workers[index] = w;
    w->thread = thread;
    if (!replacing) {
        core->alive++;
    }
    PyMutex_Unlock(&core->mu);

    if (core_start_thread(core, thread) < 0) {
        PyMutex_Lock(&core->mu);
        if (!replacing) {
            core->alive--;
        }
        w->exited = 1;
        thread = w->thread;
        w->thread = NULL;
        PyMutex_Unlock(&core->mu);
        PyObject *exc = PyErr_GetRaisedException();
        Py_XDECREF(thread);
        PyErr_SetRaisedException(exc);
        return -1;
    }
    return 0;
}

int core_start_thread(pool_core *core, PyObject *thread)
{
    PyObject *r = PyObject_CallOneArg(core->thread_start, thread);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* shutdown and the atexit safety net                                                          */

static void notify_all_events(pool_core *core)
{
    engine_event_notify(&core->work_ev, 1);
    engine_event_notify(&core->wd_ev, 1);
    engine_event_notify(&core->res_ev, 1);
}

static PyObject *clear_atexit_locked(pool_core *core)
{
    PyObject *cb = core->atexit_cb;
    core->atexit_cb = NULL;
    return cb;
}

static void unregister_atexit(pool_core *core)
{
    PyMutex_Lock(&core->mu);
    PyObject *cb = clear_atexit_locked(core);
    PyMutex_Unlock(&core->mu);
    if (cb == NULL) {
        return;
    }
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *r = atexit ? PyObject_CallMethod(atexit, "unregister", "O", cb) : NULL;
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
    Py_XDECREF(atexit);
    Py_DECREF(cb);
    PyErr_SetRaisedException(exc);
}

/* Stop accepting tasks, cancel queued ones and wake every thread. With wait, wait (detached,
 * interruptible) up to `timeout` seconds (< 0: no limit) for the live workers and the watchdog,
 * then join their Thread objects. Returns -1 with an exception set, 0 when everything was joined,
 * 1 when the timeout expired first. */
static int core_shutdown(pool_core *core, int wait, double timeout)
{
    PyMutex_Lock(&core->mu);
    core->stopping = 1;
    (void)cancel_locked(core);
    PyMutex_Unlock(&core->mu);
    notify_all_events(core);
    if (!wait) {
        return 0;
    }
    unsigned long me = PyThread_get_thread_ident();
    double deadline = timeout < 0 ? INFINITY : engine_monotonic() + timeout;
    int from_task = 0;
    for (;;) {
        unsigned long seen = engine_event_seq(&core->exit_ev);
        int remaining = 0;
        PyMutex_Lock(&core->mu);
        for (int i = 0; i < core->nworkers; i++) {
            worker_t *w = core->workers[i];
            if (w == NULL || w->thread == NULL) {
                continue;
            }
            PyMutex_Lock(&w->mu);
            int mine = w->ident == me, abandoned = w->abandoned;
            PyMutex_Unlock(&w->mu);
            if (mine) {
                /* a task calling shutdown() cannot wait for its own worker, nor for the
                 * watchdog, which stays up while that task runs */
                from_task = 1;
                continue;
            }
            remaining += !w->exited && !abandoned;
        }
        remaining += !from_task && core->wd_state == 1 && core->wd_ident != me;
        PyMutex_Unlock(&core->mu);
        if (remaining == 0) {
            break;
        }
        double left = deadline - engine_monotonic();
        if (left <= 0) {
            PyMutex_Lock(&core->mu);
            core->gave_up = 1;
            PyMutex_Unlock(&core->mu);
            return 1;
        }
        Py_BEGIN_ALLOW_THREADS
        engine_event_wait(&core->exit_ev, seen, left < 0.05 ? left : 0.05);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
    /* The C loops have returned; join the Thread objects so threading forgets them. */
    PyMutex_Lock(&core->mu);
    int cap = core->nworkers + 1, n = 0;
    PyObject **threads = PyMem_RawMalloc(sizeof(PyObject *) * (size_t)cap);
    if (threads != NULL) {
        for (int i = 0; i < core->nworkers; i++) {
            worker_t *w = core->workers[i];
            if (w != NULL && w->thread != NULL && w->exited) {
                threads[n++] = Py_NewRef(w->thread);
            }
        }
        if (!from_task && core->wd_thread != NULL && core->wd_state == 2) {
            threads[n++] = Py_NewRef(core->wd_thread);
        }
    }
    PyMutex_Unlock(&core->mu);
    if (threads == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc == 0) {
            double left = deadline - engine_monotonic();
            PyObject *r = isinf(left) ? PyObject_CallMethod(threads[i], "join", NULL)
                                      : PyObject_CallMethod(threads[i], "join", "d",
                                                            left > 0 ? left : 0.0);
            if (r == NULL) {
                rc = -1;
            }
            Py_XDECREF(r);
        }
        Py_DECREF(threads[i]);
    }
    PyMem_RawFree(threads);
    return rc;
}

static int core_live_workers(pool_core *core)
{
    PyMutex_Lock(&core->mu);
    int alive = core->alive;
    PyMutex_Unlock(&core->mu);
    return alive;
}

/* atexit hook: bound to a capsule holding a core reference, so it works even if the Pool object
 * is gone. Waits `grace` for running tasks, then interrupts them and waits `grace` again (not at
 * all after a shutdown whose timeout expired: its caller gave up on them already); threads
 * still busy after that are daemon threads and are left to the interpreter. */
static PyObject *atexit_hook(PyObject *capsule, PyObject *Py_UNUSED(ignored))
{
    pool_core *core = PyCapsule_GetPointer(capsule, ATEXIT_CAPSULE);
    if (core == NULL) {
        return NULL;
    }
    if (core->pid != getpid()) {
        /* forked child: the workers (and whoever held a lock at fork time) are not here */
        Py_RETURN_NONE;
    }
    PyMutex_Lock(&core->mu);
    int gave_up = core->gave_up;
    PyMutex_Unlock(&core->mu);
    /* After a shutdown that timed out (Ctrl-C with tests still blocked) do not make the exit
     * wait twice: running tasks are interrupted and left to the interpreter's finalization. */
    int rc = core_shutdown(core, 1, gave_up ? 0.0 : core->grace);
    if (rc == 1 && gave_up) {
        if (core_interrupt(core, PyExc_KeyboardInterrupt) < 0) {
            PyErr_Clear();
        }
        rc = 0;
    }
    else if (rc == 1 && core_live_workers(core) > 0) {
        if (core_interrupt(core, PyExc_KeyboardInterrupt) < 0) {
            PyErr_Clear();
        }
        rc = core_shutdown(core, 1, core->grace);
    }
    /* break the core -> hook -> capsule -> core cycle */
    PyMutex_Lock(&core->mu);
    PyObject *cb = clear_atexit_locked(core);
    PyMutex_Unlock(&core->mu);
    Py_XDECREF(cb);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef atexit_hook_def = {
    "_pool_atexit", atexit_hook, METH_NOARGS, "Shut a pytest_threadpool Pool down at exit.",
};

static void atexit_capsule_destructor(PyObject *capsule)
{
    pool_core *core = PyCapsule_GetPointer(capsule, ATEXIT_CAPSULE);
    if (core != NULL) {
        core_decref(core);
    }
}

static int register_atexit(pool_core *core)
{
    core_incref(core);
    PyObject *capsule = PyCapsule_New(core, ATEXIT_CAPSULE, atexit_capsule_destructor);
    if (capsule == NULL) {
        core_decref(core);
        return -1;
    }
    PyObject *cb = PyCFunction_New(&atexit_hook_def, capsule);
    Py_DECREF(capsule);
    if (cb == NULL) {
        return -1;
    }
    PyObject *atexit = PyImport_ImportModule("atexit");
    PyObject *r = atexit ? PyObject_CallMethod(atexit, "register", "O", cb) : NULL;
    Py_XDECREF(atexit);
    if (r == NULL) {
        Py_DECREF(cb);
        return -1;
    }
    Py_DECREF(r);
    PyMutex_Lock(&core->mu);
    PyObject *old = core->atexit_cb;
    core->atexit_cb = cb;
    PyMutex_Unlock(&core->mu);
    Py_XDECREF(old);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* argument helpers                                                                            */

/* Match vectorcall keywords against `names`; values land in `out` (borrowed). */
static int parse_keywords(const char *fname, PyObject *kwnames, PyObject *const *kwvalues,
                          const char *const *names, PyObject **out)
{
    if (kwnames == NULL) {
        return 0;
    }
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        int j = 0;
        for (; names[j] != NULL; j++) {
            if (PyUnicode_EqualToUTF8(key, names[j])) {
                break;
            }
        }
        if (names[j] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         key);
            return -1;
        }
        if (out[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[j]);
            return -1;
        }
        out[j] = kwvalues[i];
    }
    return 0;
}

/* None -> -1 (no limit); number >= 0 -> seconds. */
static int parse_timeout(PyObject *obj, double *out, const char *what)
{
    if (obj == NULL || obj == Py_None) {
        *out = -1.0;
        return 0;
    }
    double v = PyFloat_AsDouble(obj);
    if (v == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(v) || v < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a non-negative number or None", what);
        return -1;
    }
    *out = v;
    return 0;
}

static engine_state *pool_state(PyObject *self)
{
    return engine_state_from_type(Py_TYPE(self));
}

/* ------------------------------------------------------------------------------------------ */
/* Pool methods                                                                                */

static PyObject *pool_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"workers", "name", "grace", NULL};
    int workers;
    PyObject *name = NULL;
    double grace = 2.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i|$Ud:Pool", kwlist, &workers, &name,
                                     &grace)) {
        return NULL;
    }
    if (workers < 1 || workers > 4096) {
        PyErr_SetString(PyExc_ValueError, "workers must be between 1 and 4096");
        return NULL;
    }
    if (isnan(grace) || grace < 0) {
        PyErr_SetString(PyExc_ValueError, "grace must be a non-negative number");
        return NULL;
    }
    engine_state *st = engine_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    PyObject *default_name = NULL;
    if (name == NULL) {
        name = default_name = PyUnicode_FromString("threadpool-worker");
        if (name == NULL) {
            return NULL;
        }
    }
    pool_object *self = (pool_object *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->core = core_new(workers, name, grace, st->task_timeout_error, st->thread_start);
        if (self->core == NULL) {
            Py_CLEAR(self);
        }
    }
    Py_XDECREF(default_name);
    return (PyObject *)self;
}

static PyObject *pool_start(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    pool_core *core = POOL(op)->core;
    PyMutex_Lock(&core->mu);
    int stopping = core->stopping, started = core->started;
    core->started = 1;
    PyMutex_Unlock(&core->mu);
    if (stopping) {
        PyErr_SetString(PyExc_RuntimeError, "cannot start a Pool after shutdown");
        return NULL;
    }
    if (started) {
        Py_RETURN_NONE;
    }
    if (register_atexit(core) < 0) {
        return NULL;
    }
    for (int i = 0; i < core->nworkers; i++) {
        if (core_start_worker(core, i, 0) < 0) {
            /* do not leave a half-started pool behind */
            PyObject *exc = PyErr_GetRaisedException();
            (void)core_shutdown(core, 1, -1.0);
            PyErr_Clear();
            unregister_atexit(core);
            PyErr_SetRaisedException(exc);
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *pool_submit(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    pool_core *core = POOL(op)->core;
    static const char *const names[] = {"fn", "arg", "priority", "label", "timeout", "deps",
                                        NULL};
    PyObject *v[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    if (nargs > 2) {
        return PyErr_Format(PyExc_TypeError, "submit() takes at most 2 positional arguments (%zd "
                                             "given)", nargs);
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        v[i] = args[i];
    }
    if (parse_keywords("submit", kwnames, args + nargs, names, v) < 0) {
        return NULL;
    }
    PyObject *fn = v[0], *arg = v[1] ? v[1] : Py_None, *label = v[3], *deps = v[5];
    if (fn == NULL) {
        PyErr_SetString(PyExc_TypeError, "submit() missing required argument 'fn'");
        return NULL;
    }
    if (!PyCallable_Check(fn)) {
        return PyErr_Format(PyExc_TypeError, "fn must be callable, not %.100s",
                            Py_TYPE(fn)->tp_name);
    }
    double priority = 0.0, timeout = 0.0;
    if (v[2] != NULL) {
        priority = PyFloat_AsDouble(v[2]);
        if (priority == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (isnan(priority)) {
            PyErr_SetString(PyExc_ValueError, "priority must not be NaN");
            return NULL;
        }
    }
    if (v[4] != NULL) {
        timeout = PyFloat_AsDouble(v[4]);
        if (timeout == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (isnan(timeout) || timeout < 0) {
            PyErr_SetString(PyExc_ValueError, "timeout must be a non-negative number");
            return NULL;
        }
        if (isinf(timeout)) {
            timeout = 0.0; /* no deadline */
        }
    }
    if (label != NULL && !PyUnicode_Check(label)) {
        return PyErr_Format(PyExc_TypeError, "label must be str, not %.100s",
                            Py_TYPE(label)->tp_name);
    }
    /* dependencies: converted before taking the lock */
    int64_t dep_buf[8];
    int64_t *dep_ids = dep_buf;
    Py_ssize_t ndeps = 0;
    if (deps != NULL && deps != Py_None) {
        PyObject *seq = PySequence_Fast(deps, "deps must be a sequence of task ids");
        if (seq == NULL) {
            return NULL;
        }
        ndeps = PySequence_Fast_GET_SIZE(seq);
        if (ndeps > (Py_ssize_t)(sizeof(dep_buf) / sizeof(dep_buf[0]))) {
            dep_ids = PyMem_RawMalloc(sizeof(int64_t) * (size_t)ndeps);
            if (dep_ids == NULL) {
                Py_DECREF(seq);
                return PyErr_NoMemory();
            }
        }
        for (Py_ssize_t i = 0; i < ndeps; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
            long long id = PyLong_Check(item) ? PyLong_AsLongLong(item) : -1;
            if (!PyLong_Check(item) || (id == -1 && PyErr_Occurred())) {
                if (!PyErr_Occurred()) {
                    PyErr_Format(PyExc_TypeError, "deps must contain ints, not %.100s",
                                 Py_TYPE(item)->tp_name);
                }
                Py_DECREF(seq);
                if (dep_ids != dep_buf) {
                    PyMem_RawFree(dep_ids);
                }
                return NULL;
            }
            dep_ids[i] = (int64_t)id;
        }
        Py_DECREF(seq);
    }
    if (timeout > 0 && watchdog_ensure(core) < 0) {
        goto fail_deps;
    }
    task_t *t = task_alloc();
    if (t == NULL) {
        PyErr_NoMemory();
        goto fail_deps;
    }
    t->priority = priority;
    t->timeout = timeout;
    t->fn = Py_NewRef(fn);
    t->arg = Py_NewRef(arg);
    if (label != NULL) {
        t->label = Py_NewRef(label);
        t->label_utf8 = engine_raw_utf8(label, &t->label_len);
        if (t->label_utf8 == NULL) {
            goto fail_task;
        }
    }
    else {
        t->label = PyUnicode_FromString("");
        if (t->label == NULL) {
            goto fail_task;
        }
    }

    PyMutex_Lock(&core->mu);
    if (core->stopping) {
        PyMutex_Unlock(&core->mu);
        PyErr_SetString(PyExc_RuntimeError, "cannot submit to a Pool after shutdown");
        goto fail_task;
    }
    if (table_reserve(&core->table, core->table.len + 1) < 0 ||
        heap_reserve(&core->ready, core->ready.len + core->n_waiting + 1) < 0) {
        PyMutex_Unlock(&core->mu);
        PyErr_NoMemory();
        goto fail_task;
    }
    int64_t id = ++core->last_id;
    t->id = id;
    for (Py_ssize_t i = 0; i < ndeps; i++) {
        task_t *d = table_get(&core->table, dep_ids[i]);
        if (d == NULL) {
            continue; /* unknown or already completed */
        }
        if (d->ndependents == d->cap_dependents) {
            Py_ssize_t cap = d->cap_dependents ? d->cap_dependents * 2 : 4;
            int64_t *grown = PyMem_RawRealloc(d->dependents, sizeof(int64_t) * (size_t)cap);
            if (grown == NULL) {
                /* ids already registered elsewhere refer to a task that never exists: harmless */
                PyMutex_Unlock(&core->mu);
                PyErr_NoMemory();
                goto fail_task;
            }
            d->dependents = grown;
            d->cap_dependents = cap;
        }
        d->dependents[d->ndependents++] = id;
        t->ndeps++;
    }
    table_insert(&core->table, t);
    t->ready_time = engine_monotonic();
    int ready = t->ndeps == 0;
    if (ready) {
        t->state = TASK_READY;
        heap_push(&core->ready, t);
    }
    else {
        t->state = TASK_WAITING;
        waiting_append(core, t);
    }
    PyMutex_Unlock(&core->mu);
    if (dep_ids != dep_buf) {
        PyMem_RawFree(dep_ids);
    }
    if (ready) {
        engine_event_notify(&core->work_ev, 0);
    }
    return PyLong_FromLongLong((long long)id);

fail_task:
    task_free(t);
fail_deps:
    if (dep_ids != dep_buf) {
        PyMem_RawFree(dep_ids);
    }
    return NULL;
}

static PyObject *pool_post(PyObject *op, PyObject *obj)
{
    pool_core *core = POOL(op)->core;
    result_node *n = PyMem_RawCalloc(1, sizeof(result_node));
    if (n == NULL) {
        return PyErr_NoMemory();
    }
    n->obj = Py_NewRef(obj);
    PyMutex_Lock(&core->mu);
    results_push(&core->results, n);
    PyMutex_Unlock(&core->mu);
    engine_event_notify(&core->res_ev, 1);
    Py_RETURN_NONE;
}

/* Turn a popped result node into the object next_result returns. */
static PyObject *materialize(engine_state *st, result_node *n)
{
    if (n->task == NULL) {
        PyObject *obj = n->obj;
        PyMem_RawFree(n);
        return obj;
    }
    task_t *t = n->task;
    PyObject *r = task_result_from_task(st, t);
    task_free(t); /* drops fn/arg of cancelled tasks too */
    return r;
}

/* Ctrl-C (or any raising signal handler) while waiting: stop the pool's work, keep the error. */
static void on_signal_error(pool_core *core)
{
    PyObject *exc = PyErr_GetRaisedException();
    (void)core_cancel(core);
    if (core_interrupt(core, PyExc_KeyboardInterrupt) < 0) {
        PyErr_Clear();
    }
    PyErr_SetRaisedException(exc);
}

static PyObject *pool_next_result(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    pool_core *core = POOL(op)->core;
    static const char *const names[] = {"timeout", NULL};
    PyObject *v[1] = {NULL};
    if (nargs > 1) {
        return PyErr_Format(PyExc_TypeError, "next_result() takes at most 1 positional argument "
                                             "(%zd given)", nargs);
    }
    if (nargs == 1) {
        v[0] = args[0];
    }
    if (parse_keywords("next_result", kwnames, args + nargs, names, v) < 0) {
        return NULL;
    }
    double timeout;
    if (parse_timeout(v[0], &timeout, "timeout") < 0) {
        return NULL;
    }
    engine_state *st = pool_state(op);
    if (st == NULL) {
        return NULL;
    }
    double deadline = timeout < 0 ? INFINITY : engine_monotonic() + timeout;
    for (;;) {
        unsigned long seen = engine_event_seq(&core->res_ev);
        PyMutex_Lock(&core->mu);
        result_node *n = results_pop(&core->results);
        /* nothing can produce a result: no queued or running task (or no workers to run them) */
        int idle = core->running == 0 &&
                   ((core->ready.len == 0 && core->n_waiting == 0) || !core->started);
        PyMutex_Unlock(&core->mu);
        if (n != NULL) {
            return materialize(st, n);
        }
        if (timeout < 0 && idle) {
            Py_RETURN_NONE;
        }
        double left = deadline - engine_monotonic();
        if (left <= 0) {
            Py_RETURN_NONE;
        }
        Py_BEGIN_ALLOW_THREADS
        engine_event_wait(&core->res_ev, seen, left < 0.05 ? left : 0.05);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0) {
            on_signal_error(core);
            return NULL;
        }
    }
}

static PyObject *pool_cancel(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(core_cancel(POOL(op)->core));
}

static PyObject *pool_interrupt(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    static const char *const names[] = {"exc_type", NULL};
    PyObject *v[1] = {NULL};
    if (nargs > 1) {
        return PyErr_Format(PyExc_TypeError, "interrupt() takes at most 1 argument (%zd given)",
                            nargs);
    }
    if (nargs == 1) {
        v[0] = args[0];
    }
    if (parse_keywords("interrupt", kwnames, args + nargs, names, v) < 0) {
        return NULL;
    }
    PyObject *exc_type = v[0] ? v[0] : PyExc_KeyboardInterrupt;
    if (!PyExceptionClass_Check(exc_type)) {
        PyErr_SetString(PyExc_TypeError, "interrupt() needs an exception class");
        return NULL;
    }
    Py_ssize_t n = core_interrupt(POOL(op)->core, exc_type);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *pool_shutdown(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"wait", "timeout", NULL};
    int wait = 1;
    PyObject *timeout_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pO:shutdown", kwlist, &wait, &timeout_obj)) {
        return NULL;
    }
    double timeout;
    if (parse_timeout(timeout_obj, &timeout, "timeout") < 0) {
        return NULL;
    }
    pool_core *core = POOL(op)->core;
    if (core_shutdown(core, wait, timeout) < 0) {
        return NULL;
    }
    unregister_atexit(core);
    Py_RETURN_NONE;
}

static PyObject *pool_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    PyObject *r = pool_start(op, NULL);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    return Py_NewRef(op);
}

static PyObject *pool_exit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    pool_core *core = POOL(op)->core;
    if (core_shutdown(core, 1, -1.0) < 0) {
        return NULL;
    }
    unregister_atexit(core);
    Py_RETURN_FALSE;
}

/* ---- attributes ---- */

static PyObject *pool_get_workers(PyObject *op, void *closure)
{
    (void)closure;
    return PyLong_FromLong(POOL(op)->core->nworkers);
}

static PyObject *pool_get_alive(PyObject *op, void *closure)
{
    (void)closure;
    return PyLong_FromLong(core_live_workers(POOL(op)->core));
}

static PyObject *pool_get_pending(PyObject *op, void *closure)
{
    (void)closure;
    pool_core *core = POOL(op)->core;
    PyMutex_Lock(&core->mu);
    Py_ssize_t n = core->ready.len + core->n_waiting + core->running + core->results.len;
    PyMutex_Unlock(&core->mu);
    return PyLong_FromSsize_t(n);
}

static PyObject *pool_get_replaced(PyObject *op, void *closure)
{
    (void)closure;
    pool_core *core = POOL(op)->core;
    PyMutex_Lock(&core->mu);
    Py_ssize_t n = core->replaced;
    PyMutex_Unlock(&core->mu);
    return PyLong_FromSsize_t(n);
}

static PyObject *pool_get_running(PyObject *op, void *closure)
{
    (void)closure;
    pool_core *core = POOL(op)->core;
    typedef struct {
        int index;
        int64_t id;
        PyObject *label;
    } entry;
    entry *snap = PyMem_RawMalloc(sizeof(entry) * (size_t)core->nworkers);
    if (snap == NULL) {
        return PyErr_NoMemory();
    }
    int n = 0;
    PyMutex_Lock(&core->mu);
    for (int i = 0; i < core->nworkers; i++) {
        worker_t *w = core->workers[i];
        if (w != NULL && w->task != NULL) {
            snap[n].index = w->index;
            snap[n].id = w->task->id;
            snap[n].label = Py_NewRef(w->task->label);
            n++;
        }
    }
    PyMutex_Unlock(&core->mu);
    PyObject *list = PyList_New(n);
    for (int i = 0; i < n; i++) {
        if (list != NULL) {
            PyObject *item = Py_BuildValue("(iLO)", snap[i].index, (long long)snap[i].id,
                                           snap[i].label);
            if (item == NULL) {
                Py_CLEAR(list);
            }
            else {
                PyList_SET_ITEM(list, i, item);
            }
        }
        Py_DECREF(snap[i].label);
    }
    PyMem_RawFree(snap);
    return list;
}

static PyObject *pool_get_name(PyObject *op, void *closure)
{
    (void)closure;
    return Py_NewRef(POOL(op)->core->name);
}

static PyObject *pool_get_grace(PyObject *op, void *closure)
{
    (void)closure;
    return PyFloat_FromDouble(POOL(op)->core->grace);
}

static PyObject *pool_repr(PyObject *op)
{
    pool_core *core = POOL(op)->core;
    PyMutex_Lock(&core->mu);
    const char *state = core->stopping ? "shut down" : core->started ? "running" : "not started";
    Py_ssize_t queued = core->ready.len + core->n_waiting, running = core->running;
    PyMutex_Unlock(&core->mu);
    return PyUnicode_FromFormat("<Pool workers=%d %s queued=%zd running=%zd>", core->nworkers,
                                state, queued, running);
}

/* ---- GC and finalization ---- */

static int pool_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    pool_core *core = POOL(op)->core;
    if (core == NULL) {
        return 0;
    }
    /* No lock: mutations happen only while attached with no allocation inside (see pool.h), so
     * the GC (GIL held or world stopped) never observes a half-updated structure. */
    for (Py_ssize_t i = 0; i < core->ready.len; i++) {
        int r = task_traverse(core->ready.items[i], visit, arg);
        if (r) {
            return r;
        }
    }
    for (task_t *t = core->waiting_head; t != NULL; t = t->wnext) {
        int r = task_traverse(t, visit, arg);
        if (r) {
            return r;
        }
    }
    for (result_node *n = core->results.head; n != NULL; n = n->next) {
        if (n->task != NULL) {
            int r = task_traverse(n->task, visit, arg);
            if (r) {
                return r;
            }
        }
        else {
            Py_VISIT(n->obj);
        }
    }
    return 0;
}

static int pool_clear(PyObject *op)
{
    pool_core *core = POOL(op)->core;
    if (core == NULL || core->pid != getpid() || Py_IsFinalizing()) {
        /* forked child, or daemon threads terminated by finalization: a lock may be held by
         * a thread that is gone. The memory is reclaimed (or not) with the process. */
        return 0;
    }
    PyMutex_Lock(&core->mu);
    (void)cancel_locked(core);
    result_list drained = core->results;
    core->results.head = core->results.tail = NULL;
    core->results.len = 0;
    PyMutex_Unlock(&core->mu);
    result_node *n;
    while ((n = results_pop(&drained)) != NULL) {
        if (n->task != NULL) {
            task_free(n->task);
        }
        else {
            Py_XDECREF(n->obj);
            PyMem_RawFree(n);
        }
    }
    return 0;
}

static void pool_finalize(PyObject *op)
{
    pool_core *core = POOL(op)->core;
    if (core == NULL || core->pid != getpid() || Py_IsFinalizing()) {
        return; /* inherited by a forked child, or too late (see pool_clear): nothing to stop */
    }
    /* A forgotten pool: stop it without blocking whichever thread drops the last reference.
     * The atexit hook (which holds its own core reference) still joins the threads at exit. */
    PyObject *exc = PyErr_GetRaisedException();
    (void)core_shutdown(core, 0, 0.0);
    PyErr_SetRaisedException(exc);
}

static void pool_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    if (PyObject_CallFinalizerFromDealloc(op) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(op);
    PyObject_ClearWeakRefs(op);
    (void)pool_clear(op);
    pool_core *core = POOL(op)->core;
    POOL(op)->core = NULL;
    if (core != NULL) {
        core_decref(core);
    }
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef pool_methods[] = {
    {"start", pool_start, METH_NOARGS,
     "start() -> None\n\nStart the worker threads (idempotent)."},
    {"submit", (PyCFunction)(void (*)(void))pool_submit, METH_FASTCALL | METH_KEYWORDS,
     "submit(fn, arg=None, *, priority=0.0, label='', timeout=0.0, deps=()) -> int\n\n"
     "Queue fn(arg); returns the task id."},
    {"post", pool_post, METH_O,
     "post(obj) -> None\n\nPut obj into the result stream (returned as-is by next_result)."},
    {"next_result", (PyCFunction)(void (*)(void))pool_next_result, METH_FASTCALL | METH_KEYWORDS,
     "next_result(timeout=None) -> TaskResult | object | None\n\n"
     "Next completed task or posted object; None on timeout or when nothing is pending."},
    {"cancel", pool_cancel, METH_NOARGS,
     "cancel() -> int\n\nCancel every task that has not started; returns how many."},
    {"interrupt", (PyCFunction)(void (*)(void))pool_interrupt, METH_FASTCALL | METH_KEYWORDS,
     "interrupt(exc_type=KeyboardInterrupt) -> int\n\n"
     "Raise exc_type asynchronously in every running task; returns how many."},
    {"shutdown", (PyCFunction)(void (*)(void))pool_shutdown, METH_VARARGS | METH_KEYWORDS,
     "shutdown(wait=True, timeout=None) -> None\n\n"
     "Stop accepting tasks, cancel queued ones and join the workers (idempotent)."},
    {"__enter__", pool_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))pool_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pool_getset[] = {
    {"workers", pool_get_workers, NULL, "Number of worker threads the pool keeps.", NULL},
    {"alive", pool_get_alive, NULL, "Worker threads currently live (not abandoned).", NULL},
    {"pending", pool_get_pending, NULL, "Queued + running tasks + results not yet fetched.",
     NULL},
    {"running", pool_get_running, NULL, "[(worker_index, task_id, label)] of running tasks.",
     NULL},
    {"replaced", pool_get_replaced, NULL, "Workers abandoned as hung and replaced.", NULL},
    {"name", pool_get_name, NULL, "Thread name prefix.", NULL},
    {"grace", pool_get_grace, NULL, "Seconds after a deadline before a task counts as hung.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot pool_slots[] = {
    {Py_tp_doc, "Pool(workers, *, name='threadpool-worker', grace=2.0)\n\n"
                "Fixed set of worker threads running submitted calls (C engine)."},
    {Py_tp_new, pool_new},
    {Py_tp_methods, pool_methods},
    {Py_tp_getset, pool_getset},
    {Py_tp_repr, pool_repr},
    {Py_tp_traverse, pool_traverse},
    {Py_tp_clear, pool_clear},
    {Py_tp_finalize, pool_finalize},
    {Py_tp_dealloc, pool_dealloc},
    {0, NULL},
};

static PyType_Spec pool_spec = {
    .name = "pytest_threadpool._engine.Pool",
    .basicsize = sizeof(pool_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_MANAGED_WEAKREF,
    .slots = pool_slots,
};

int pool_exec(PyObject *module, engine_state *st)
{
    st->pool_type = PyType_FromModuleAndSpec(module, &pool_spec, NULL);
    if (st->pool_type == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "Pool", st->pool_type);
}
