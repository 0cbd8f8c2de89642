/* Watchdog thread (see watchdog.h). It is a threading.Thread running a C loop that waits with its
 * thread state detached until the earliest deadline, and is attached only while acting. */
#include "watchdog.h"

#include "clock.h"

#define WATCHDOG_CAPSULE "pytest_threadpool._engine.watchdog"
#define MAX_ACTIONS 32

typedef struct {
    worker_t *w;
    uint64_t gen;
    int hang; /* 0: deliver TaskTimeout; 1: grace expired too */
    double timeout;
} wd_action;

/* Stack of a hung worker, for TaskResult.stack. */
static PyObject *hung_stack(unsigned long ident)
{
#ifdef Py_GIL_DISABLED
    (void)ident;
    /* sys._current_frames() hands out frames other threads may be popping: unsafe on 3.13t. */
    return PyUnicode_FromString(
        "<stack unavailable: reading another thread's frames is not safe on the free-threaded "
        "build>");
#else
    PyObject *result = NULL, *frames = NULL, *key = NULL, *frame = NULL, *tb = NULL,
             *lines = NULL, *sep = NULL;
    PyObject *sys = PyImport_ImportModule("sys");
    if (sys == NULL) {
        goto done;
    }
    frames = PyObject_CallMethod(sys, "_current_frames", NULL);
    key = PyLong_FromUnsignedLong(ident);
    if (frames == NULL || key == NULL || !PyDict_Check(frames) ||
        PyDict_GetItemRef(frames, key, &frame) <= 0) {
        goto done;
    }
    tb = PyImport_ImportModule("traceback");
    lines = tb ? PyObject_CallMethod(tb, "format_stack", "O", frame) : NULL;
    sep = lines ? PyUnicode_FromString("") : NULL;
    result = sep ? PyUnicode_Join(sep, lines) : NULL;
done:
    if (result == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(sys);
    Py_XDECREF(frames);
    Py_XDECREF(key);
    Py_XDECREF(frame);
    Py_XDECREF(tb);
    Py_XDECREF(lines);
    Py_XDECREF(sep);
    return result;
#endif
}

static void deliver_timeout(pool_core *core, const wd_action *a)
{
    worker_t *w = a->w;
    int wake = 0;
    PyObject *drop = NULL;
    PyMutex_Lock(&w->mu);
    /* Gate: only into the very task whose deadline passed, never into the next one (a deadline
     * the task re-armed or cleared meanwhile bumped nothing, so check it is still due). */
    if (w->busy && w->gen == a->gen && !w->delivered && w->deadline > 0 &&
        engine_monotonic() >= w->deadline) {
        (void)worker_deliver_locked(w, core->task_timeout, &wake, &drop);
        w->delivered = 1;
    }
    PyMutex_Unlock(&w->mu);
    Py_XDECREF(drop);
    if (wake) {
        engine_event_notify(&w->wake, 1);
    }
}

static void declare_hung(pool_core *core, const wd_action *a)
{
    worker_t *w = a->w;
    PyObject *stack = hung_stack(w->ident);
    PyObject *grace = PyFloat_FromDouble(core->grace);
    PyObject *timeout = PyFloat_FromDouble(a->timeout);
    PyObject *msg = grace && timeout ? PyUnicode_FromFormat(
                                           "task hung: no response %Ss after its %Ss timeout",
                                           grace, timeout)
                                     : NULL;
    PyObject *exc = msg ? PyObject_CallOneArg(core->task_timeout, msg) : NULL;
    Py_XDECREF(grace);
    Py_XDECREF(timeout);
    Py_XDECREF(msg);
    if (exc == NULL) {
        PyErr_Clear(); /* still declare it hung, just without the exception object */
    }
    int replace = 0;
    task_t *t = NULL;

    PyMutex_Lock(&core->mu);
    PyMutex_Lock(&w->mu);
    /* still the same task, still past deadline + grace (the task may have re-armed or cleared
     * its deadline since the scan: see set_task_deadline) */
    int hit = w->busy && w->gen == a->gen && !w->abandoned && w->delivered && w->deadline > 0 &&
              engine_monotonic() >= w->deadline + core->grace;
    if (hit) {
        /* From here the worker will discard whatever its call returns. */
        w->abandoned = 1;
        w->busy = 0;
        w->deadline = 0.0;
        w->gen++;
    }
    PyMutex_Unlock(&w->mu);
    if (hit) {
        /* The task stays counted in `running` until it is published below, so next_result
         * never sees an idle pool in between. Its `alive` count passes to the replacement. */
        t = w->task;
        w->task = NULL;
        replace = !core->stopping;
        if (!replace) {
            core->alive--;
        }
    }
    PyMutex_Unlock(&core->mu);
    if (!hit) {
        Py_XDECREF(exc);
        Py_XDECREF(stack);
        return;
    }
    crash_slot_abandon(w->crash_slot);
    /* Replace first, so whoever sees the hung result also sees a full pool again. */
    int replaced = 0;
    if (replace) {
        replaced = core_start_worker(core, w->index, 1) == 0;
        if (!replaced) {
            PyErr_WriteUnraisable(NULL);
        }
    }
    double now = engine_monotonic();
    PyMutex_Lock(&core->mu);
    core->running--;
    core->replaced += replaced;
    if (replace && !replaced) {
        core->alive--;
    }
    t->hung = 1;
    t->timed_out = 1;
    t->exception = exc;
    t->stack = stack;
    t->worker = w->index;
    t->end_time = now;
    Py_ssize_t readied = core_complete_locked(core, t, now);
    PyMutex_Unlock(&core->mu);
    engine_event_notify(&core->res_ev, 0);
    engine_event_notify(&core->exit_ev, 1);
    engine_event_notify(&core->wd_ev, 0);
    for (Py_ssize_t i = 0; i < readied; i++) {
        engine_event_notify(&core->work_ev, 0);
    }
}

static PyObject *watchdog_main(PyObject *capsule, PyObject *Py_UNUSED(ignored))
{
    pool_core *core = PyCapsule_GetPointer(capsule, WATCHDOG_CAPSULE);
    if (core == NULL) {
        return NULL;
    }
    PyMutex_Lock(&core->mu);
    core->wd_ident = PyThread_get_thread_ident();
    PyMutex_Unlock(&core->mu);
    for (;;) {
        unsigned long seen = engine_event_seq(&core->wd_ev);
        double now = engine_monotonic(), next = INFINITY;
        wd_action acts[MAX_ACTIONS];
        int nacts = 0, more = 0;
        PyMutex_Lock(&core->mu);
        int stop = core->stopping && core->running == 0;
        for (int i = 0; !stop && i < core->nworkers; i++) {
            worker_t *w = core->workers[i];
            if (w == NULL) {
                continue;
            }
            PyMutex_Lock(&w->mu);
            if (w->busy && w->deadline > 0) {
                double due = w->delivered ? w->deadline + core->grace : w->deadline;
                if (now >= due) {
                    if (nacts < MAX_ACTIONS) {
                        acts[nacts++] = (wd_action){w, w->gen, w->delivered, w->timeout};
                    }
                    else {
                        more = 1;
                    }
                }
                else if (due < next) {
                    next = due;
                }
            }
            PyMutex_Unlock(&w->mu);
        }
        PyMutex_Unlock(&core->mu);
        if (stop) {
            break;
        }
        for (int i = 0; i < nacts; i++) {
            if (acts[i].hang) {
                declare_hung(core, &acts[i]);
            }
            else {
                deliver_timeout(core, &acts[i]);
            }
        }
        if (PyErr_Occurred()) {
            PyErr_WriteUnraisable(NULL);
        }
        if (nacts > 0 || more) {
            continue; /* rescan: new deadlines (grace) follow from what we just did */
        }
        Py_BEGIN_ALLOW_THREADS
        engine_event_wait(&core->wd_ev, seen, isinf(next) ? -1.0 : next - now);
        Py_END_ALLOW_THREADS
    }
    PyMutex_Lock(&core->mu);
    core->wd_state = 2;
    PyMutex_Unlock(&core->mu);
    engine_event_notify(&core->exit_ev, 1);
    Py_RETURN_NONE;
}

static PyMethodDef watchdog_main_def = {
    "_watchdog_main", watchdog_main, METH_NOARGS, "Watchdog loop of a pytest_threadpool Pool (C).",
};

static void watchdog_capsule_destructor(PyObject *capsule)
{
    pool_core *core = PyCapsule_GetPointer(capsule, WATCHDOG_CAPSULE);
    if (core != NULL) {
        core_decref(core);
    }
}

int watchdog_ensure(pool_core *core)
{
    PyMutex_Lock(&core->mu);
    int state = core->wd_state;
    if (state == 0 && !core->stopping) {
        core->wd_state = 1; /* claimed by us: concurrent submits skip the start */
    }
    int stopping = core->stopping;
    PyMutex_Unlock(&core->mu);
    if (state != 0 || stopping) {
        return 0;
    }
    core_incref(core);
    PyObject *capsule = PyCapsule_New(core, WATCHDOG_CAPSULE, watchdog_capsule_destructor);
    if (capsule == NULL) {
        core_decref(core);
        goto fail;
    }
    PyObject *name = PyUnicode_FromString("threadpool-watchdog");
    PyObject *thread = name ? engine_start_thread(&watchdog_main_def, capsule, name) : NULL;
    Py_XDECREF(name);
    Py_DECREF(capsule);
    if (thread == NULL) {
        goto fail;
    }
    PyMutex_Lock(&core->mu);
    core->wd_thread = Py_NewRef(thread);
    PyMutex_Unlock(&core->mu);
    int started = core_start_thread(core, thread);
    Py_DECREF(thread);
    if (started < 0) {
        PyMutex_Lock(&core->mu);
        PyObject *t = core->wd_thread;
        core->wd_thread = NULL;
        core->wd_state = 0;
        PyMutex_Unlock(&core->mu);
        PyObject *exc = PyErr_GetRaisedException();
        Py_XDECREF(t);
        PyErr_SetRaisedException(exc);
        return -1;
    }
    return 0;

fail:
    PyMutex_Lock(&core->mu);
    core->wd_state = 0;
    PyMutex_Unlock(&core->mu);
    return -1;
}
