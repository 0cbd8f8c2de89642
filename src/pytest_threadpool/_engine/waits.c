/* Interruptible waits for pool tasks (see waits.h), and set_task_deadline.
 *
 * Protocol (all flags under the worker's gate w->mu): a wait increments w->in_wait; from then on
 * deliveries (watchdog, interrupt()) store the exception class in w->wake_exc and notify w->wake
 * instead of calling PyThreadState_SetAsyncExc. The wait takes wake_exc under the gate and
 * raises it, so it is raised once. A delivery made asynchronously *before* the wait began may
 * still be pending; the wait then first runs a no-op Python function (bytecode checks pending
 * asynchronous exceptions when a function starts), which raises it right there. */
#include "waits.h"

#include "clock.h"
#include "pool.h"
#include "watchdog.h"

#include <math.h>

/* Bound on one slice of wait_until (Thread.join): the delivery latency of a join. */
#define WAIT_SLICE 0.05

/* Longest timeout time.sleep and lock.acquire accept (threading.TIMEOUT_MAX): beyond it they raise
 * OverflowError, and so do the stand-ins here. */
#define WAIT_TIMEOUT_MAX ((double)PyTime_MAX / 1e9)

typedef int (*ready_fn)(void *ctx); /* attached, no locks held: 1 when the wait is over */
typedef void (*undo_fn)(void *ctx); /* undo a ready() that succeeded when the wait must raise */

/* The calling thread's worker if it runs a task (not abandoned), else NULL. On success the
 * worker is marked as waiting (*probe: an asynchronous exception may be pending). */
static worker_t *begin_wait(int *probe)
{
    worker_t *w = pool_current_worker();
    if (w == NULL) {
        return NULL;
    }
    PyMutex_Lock(&w->mu);
    int ok = w->busy && !w->abandoned;
    if (ok) {
        w->in_wait++;
        *probe = w->async_sent;
    }
    PyMutex_Unlock(&w->mu);
    return ok ? w : NULL;
}

/* Take the exception delivered to the waiting task, if any (a new reference). */
static PyObject *take_wake_exc(worker_t *w, int end)
{
    PyMutex_Lock(&w->mu);
    PyObject *exc = w->wake_exc;
    w->wake_exc = NULL;
    if (end) {
        w->in_wait--;
    }
    PyMutex_Unlock(&w->mu);
    return exc;
}

static int raise_delivered(PyObject *exc_type)
{
    PyErr_SetNone(exc_type);
    Py_DECREF(exc_type);
    return -1;
}

/* Run bytecode once, so that an asynchronous exception delivered before the wait began is
 * raised now rather than after the wait. */
static int probe_pending(engine_state *st, worker_t *w)
{
    PyObject *r = PyObject_CallNoArgs(st->wait_probe);
    if (r == NULL) {
        PyObject *exc = take_wake_exc(w, 1);
        Py_XDECREF(exc); /* the pending one came first; a second delivery is dropped */
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Wait on the worker's wake event until ready(ctx) (NULL: never), `timeout` seconds (< 0: no
 * limit) or a delivery. Called after a successful begin_wait. Returns 1 ready, 0 timed out,
 * -1 with the delivered exception raised. Ends the waiting state in every case. */
static int task_wait(engine_state *st, worker_t *w, int probe, double timeout, ready_fn ready,
                     undo_fn undo, void *ctx)
{
    if (probe && probe_pending(st, w) < 0) {
        return -1;
    }
    double deadline = timeout < 0 ? INFINITY : engine_monotonic() + timeout;
    int result;
    for (;;) {
        unsigned long seen = engine_event_seq(&w->wake);
        PyObject *exc = take_wake_exc(w, 0);
        if (exc != NULL) {
            PyObject *more = take_wake_exc(w, 1);
            Py_XDECREF(more);
            return raise_delivered(exc);
        }
        if (ready != NULL && ready(ctx)) {
            result = 1;
            break;
        }
        double left = deadline - engine_monotonic();
        if (left <= 0) {
            result = 0;
            break;
        }
        Py_BEGIN_ALLOW_THREADS
        engine_event_wait(&w->wake, seen, isinf(left) ? -1.0 : left);
        Py_END_ALLOW_THREADS
    }
    /* A delivery that raced the end of the wait was handed to us: raise it, not lose it. */
    PyObject *exc = take_wake_exc(w, 1);
    if (exc != NULL) {
        if (result == 1 && undo != NULL) {
            undo(ctx);
        }
        return raise_delivered(exc);
    }
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* sleep                                                                                       */

static PyObject *engine_sleep(PyObject *module, PyObject *arg)
{
    engine_state *st = engine_state_from_module(module);
    /* Only plain positive finite numbers take the interruptible path; time.sleep itself
     * handles (and rejects) everything else, and sleep(0) keeps its meaning (a yield). */
    double secs = -1.0;
    if (PyFloat_CheckExact(arg) || PyLong_CheckExact(arg)) {
        secs = PyFloat_AsDouble(arg);
        if (secs == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
        }
    }
    int probe = 0;
    /* beyond WAIT_TIMEOUT_MAX time.sleep raises its OverflowError */
    worker_t *w = secs > 0 && secs < WAIT_TIMEOUT_MAX ? begin_wait(&probe) : NULL;
    if (w == NULL) {
        return PyObject_CallOneArg(st->time_sleep, arg);
    }
    if (PySys_Audit("time.sleep", "O", arg) < 0) {
        PyObject *exc = take_wake_exc(w, 1);
        Py_XDECREF(exc);
        return NULL;
    }
    if (task_wait(st, w, probe, secs, NULL, NULL, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* wait_until: bounded slices (Thread.join has no wake-up to hook)                             */

static PyObject *wait_until(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    engine_state *st = engine_state_from_module(module);
    if (nargs < 1 || nargs > 2) {
        return PyErr_Format(PyExc_TypeError, "wait_until() takes 1 or 2 arguments (%zd given)",
                            nargs);
    }
    PyObject *step = args[0];
    double timeout = -1.0;
    if (nargs == 2 && args[1] != Py_None) {
        timeout = PyFloat_AsDouble(args[1]);
        if (timeout == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (isnan(timeout) || timeout < 0) {
            PyErr_SetString(PyExc_ValueError, "timeout must be a non-negative number or None");
            return NULL;
        }
    }
    int probe = 0;
    worker_t *w = begin_wait(&probe);
    if (w != NULL && probe && probe_pending(st, w) < 0) {
        return NULL;
    }
    double deadline = timeout < 0 ? INFINITY : engine_monotonic() + timeout;
    int done = 0;
    for (;;) {
        PyObject *exc = w != NULL ? take_wake_exc(w, 0) : NULL;
        if (exc != NULL) {
            PyObject *more = take_wake_exc(w, 1);
            Py_XDECREF(more);
            raise_delivered(exc);
            return NULL;
        }
        double left = deadline - engine_monotonic();
        if (left <= 0 && !isinf(deadline)) {
            break;
        }
        PyObject *slice = PyFloat_FromDouble(left < WAIT_SLICE ? left : WAIT_SLICE);
        PyObject *r = slice ? PyObject_CallOneArg(step, slice) : NULL;
        Py_XDECREF(slice);
        done = r == NULL ? -1 : PyObject_IsTrue(r);
        Py_XDECREF(r);
        if (done != 0) {
            break;
        }
    }
    if (w != NULL) {
        PyObject *exc = take_wake_exc(w, 1);
        if (exc != NULL) {
            /* delivered while the last step ran: it wins over that step's own error */
            PyObject *error = done < 0 ? PyErr_GetRaisedException() : NULL;
            raise_delivered(exc);
            if (error != NULL) {
                PyObject *raised = PyErr_GetRaisedException();
                PyException_SetContext(raised, error);
                PyErr_SetRaisedException(raised);
            }
            return NULL;
        }
    }
    if (done < 0) {
        return NULL;
    }
    return PyBool_FromLong(done);
}

/* ------------------------------------------------------------------------------------------ */
/* WaiterLock: the lock threading.Condition.wait blocks on, wakeable by deliveries             */

typedef struct {
    PyObject_HEAD
    atomic_int locked;
    worker_t *w; /* its releases notify w->wake; a core reference keeps w valid */
} waiter_lock;

#define WAITER(op) ((waiter_lock *)(op))

static int waiter_try_lock(void *ctx)
{
    int expected = 0;
    return atomic_compare_exchange_strong(&WAITER(ctx)->locked, &expected, 1);
}

static void waiter_unlock(void *ctx)
{
    atomic_store(&WAITER(ctx)->locked, 0);
    engine_event_notify(&WAITER(ctx)->w->wake, 1);
}

static PyObject *waiter_acquire(PyObject *op, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    double timeout = -1.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pd:acquire", kwlist, &blocking, &timeout)) {
        return NULL;
    }
    if (!blocking && timeout != -1.0) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return NULL;
    }
    if (isnan(timeout) || (timeout < 0 && timeout != -1.0)) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return NULL;
    }
    if (timeout > WAIT_TIMEOUT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
        return NULL;
    }
    if (waiter_try_lock(op)) {
        Py_RETURN_TRUE;
    }
    if (!blocking) {
        Py_RETURN_FALSE;
    }
    worker_t *lw = WAITER(op)->w;
    int probe = 0;
    worker_t *w = pool_current_worker() == lw ? begin_wait(&probe) : NULL;
    if (w != NULL) {
        engine_state *st = engine_state_from_type(Py_TYPE(op));
        if (st == NULL) {
            PyObject *exc = take_wake_exc(w, 1);
            Py_XDECREF(exc);
            return NULL;
        }
        int rc = task_wait(st, w, probe, timeout, waiter_try_lock, waiter_unlock, op);
        return rc < 0 ? NULL : PyBool_FromLong(rc);
    }
    /* Another thread (or the task is over): a plain wait, released by release(). */
    double deadline = timeout < 0 ? INFINITY : engine_monotonic() + timeout;
    for (;;) {
        unsigned long seen = engine_event_seq(&lw->wake);
        if (waiter_try_lock(op)) {
            Py_RETURN_TRUE;
        }
        double left = deadline - engine_monotonic();
        if (left <= 0) {
            Py_RETURN_FALSE;
        }
        Py_BEGIN_ALLOW_THREADS
        engine_event_wait(&lw->wake, seen, isinf(left) ? -1.0 : left);
        Py_END_ALLOW_THREADS
    }
}

static PyObject *waiter_release(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    int expected = 1;
    if (!atomic_compare_exchange_strong(&WAITER(op)->locked, &expected, 0)) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    engine_event_notify(&WAITER(op)->w->wake, 1);
    Py_RETURN_NONE;
}

static PyObject *waiter_locked(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(atomic_load(&WAITER(op)->locked));
}

static PyObject *waiter_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    PyObject *empty = PyTuple_New(0);
    PyObject *r = empty ? waiter_acquire(op, empty, NULL) : NULL;
    Py_XDECREF(empty);
    return r;
}

static PyObject *waiter_exit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    return waiter_release(op, NULL);
}

static PyObject *waiter_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<%s pytest_threadpool._engine.WaiterLock object at %p>",
                                atomic_load(&WAITER(op)->locked) ? "locked" : "unlocked", op);
}

static void waiter_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    worker_t *w = WAITER(op)->w;
    tp->tp_free(op);
    if (w != NULL) {
        core_decref(w->core);
    }
    Py_DECREF(tp);
}

static PyMethodDef waiter_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))waiter_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool"},
    {"acquire_lock", (PyCFunction)(void (*)(void))waiter_acquire, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"release", waiter_release, METH_NOARGS, "release() -> None"},
    {"release_lock", waiter_release, METH_NOARGS, NULL},
    {"locked", waiter_locked, METH_NOARGS, "locked() -> bool"},
    {"locked_lock", waiter_locked, METH_NOARGS, NULL},
    {"__enter__", waiter_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))waiter_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot waiter_slots[] = {
    {Py_tp_doc, "The lock a threading.Condition waiter blocks on when it waits on a pool worker\n"
                "running a task: a timeout or interrupt delivered to that task wakes it."},
    {Py_tp_methods, waiter_methods},
    {Py_tp_repr, waiter_repr},
    {Py_tp_dealloc, waiter_dealloc},
    {0, NULL},
};

static PyType_Spec waiter_spec = {
    .name = "pytest_threadpool._engine.WaiterLock",
    .basicsize = sizeof(waiter_lock),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = waiter_slots,
};

static PyObject *allocate_waiter_lock(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    engine_state *st = engine_state_from_module(module);
    worker_t *w = pool_current_worker();
    if (w != NULL) {
        PyMutex_Lock(&w->mu);
        int busy = w->busy && !w->abandoned;
        PyMutex_Unlock(&w->mu);
        if (!busy) {
            w = NULL;
        }
    }
    if (w == NULL) {
        return PyObject_CallNoArgs(st->allocate_lock);
    }
    PyTypeObject *tp = (PyTypeObject *)st->waiter_lock_type;
    PyObject *op = tp->tp_alloc(tp, 0);
    if (op == NULL) {
        return NULL;
    }
    atomic_init(&WAITER(op)->locked, 0);
    core_incref(w->core);
    WAITER(op)->w = w;
    return op;
}

/* ------------------------------------------------------------------------------------------ */
/* the task's own deadline                                                                     */

static PyObject *in_task(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    worker_t *w = pool_current_worker();
    int busy = 0;
    if (w != NULL) {
        PyMutex_Lock(&w->mu);
        busy = w->busy && !w->abandoned;
        PyMutex_Unlock(&w->mu);
    }
    return PyBool_FromLong(busy);
}

static PyObject *set_task_deadline(PyObject *module, PyObject *arg)
{
    (void)module;
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (isnan(seconds) || seconds < 0) {
        PyErr_SetString(PyExc_ValueError, "seconds must be a non-negative number");
        return NULL;
    }
    if (isinf(seconds)) {
        seconds = 0.0;
    }
    worker_t *w = pool_current_worker();
    if (w == NULL) {
        Py_RETURN_FALSE;
    }
    pool_core *core = w->core;
    if (seconds > 0 && watchdog_ensure(core) < 0) {
        return NULL;
    }
    double now = engine_monotonic();
    PyMutex_Lock(&w->mu);
    int ok = w->busy && !w->abandoned;
    if (ok) {
        if (w->delivered && w->in_wait == 0) {
            /* A TaskTimeout delivered for the previous deadline that has not been raised yet
             * (the guarded code ended right at it) must not surface after this point. */
            PyThreadState_SetAsyncExc(w->ident, NULL);
        }
        w->delivered = 0;
        w->timeout = seconds;
        w->deadline = seconds > 0 ? now + seconds : 0.0;
    }
    PyMutex_Unlock(&w->mu);
    if (ok) {
        engine_event_notify(&core->wd_ev, 0);
    }
    return PyBool_FromLong(ok);
}

/* ------------------------------------------------------------------------------------------ */

static PyMethodDef waits_methods[] = {
    {"sleep", engine_sleep, METH_O,
     "sleep(seconds) -> None\n\ntime.sleep that a timeout or interrupt of the calling pool "
     "task ends early (raising it); time.sleep on every other thread."},
    {"allocate_waiter_lock", allocate_waiter_lock, METH_NOARGS,
     "allocate_waiter_lock() -> lock\n\n_thread.allocate_lock, except on a pool worker running "
     "a task: a WaiterLock whose blocking acquire a delivery to that task interrupts."},
    {"wait_until", (PyCFunction)(void (*)(void))wait_until, METH_FASTCALL,
     "wait_until(step, timeout=None) -> bool\n\nCall step(slice) (slice <= 50 ms) until it "
     "returns true (True) or timeout passes (False); on a pool task, a delivery in between is "
     "raised."},
    {"in_task", in_task, METH_NOARGS,
     "in_task() -> bool\n\nThe calling thread is a pool worker running a task."},
    {"set_task_deadline", set_task_deadline, METH_O,
     "set_task_deadline(seconds) -> bool\n\nFrom a pool task: its deadline becomes now + seconds "
     "(0: none). False on any other thread."},
    {NULL, NULL, 0, NULL},
};

static int bind(PyObject **slot, const char *module_name, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(module_name);
    if (mod == NULL) {
        return -1;
    }
    *slot = PyObject_GetAttrString(mod, attr);
    Py_DECREF(mod);
    return *slot == NULL ? -1 : 0;
}

int waits_exec(PyObject *module, engine_state *st)
{
    if (bind(&st->time_sleep, "time", "sleep") < 0 ||
        bind(&st->allocate_lock, "_thread", "allocate_lock") < 0) {
        return -1;
    }
    PyObject *thread_type = NULL;
    if (bind(&thread_type, "threading", "Thread") < 0) {
        return -1;
    }
    st->thread_start = PyObject_GetAttrString(thread_type, "start");
    Py_DECREF(thread_type);
    if (st->thread_start == NULL) {
        return -1;
    }
    PyObject *code = Py_CompileString("lambda: None", "<pytest_threadpool._engine>",
                                      Py_eval_input);
    PyObject *globals = code ? PyDict_New() : NULL;
    st->wait_probe = globals ? PyEval_EvalCode(code, globals, globals) : NULL;
    Py_XDECREF(globals);
    Py_XDECREF(code);
    if (st->wait_probe == NULL) {
        return -1;
    }
    st->waiter_lock_type = PyType_FromModuleAndSpec(module, &waiter_spec, NULL);
    if (st->waiter_lock_type == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "WaiterLock", st->waiter_lock_type) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, waits_methods);
}
