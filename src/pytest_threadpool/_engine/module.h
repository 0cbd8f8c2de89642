/* Module state shared by the engine's types. One instance per module object (multi-phase init). */
#ifndef PYTEST_THREADPOOL_MODULE_H
#define PYTEST_THREADPOOL_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject *pool_type;
    PyObject *task_result_type;
    PyObject *dispatcher_type;
    PyObject *binary_view_type;
    PyObject *capture_type;
    PyObject *task_timeout_error;   /* BaseException subclass delivered by the watchdog */
    PyObject *unsupported_operation; /* io.UnsupportedOperation */
    /* bound when the engine is imported (a run patches them; see waits.c) */
    PyObject *thread_start;  /* threading.Thread.start */
    PyObject *time_sleep;    /* time.sleep */
    PyObject *allocate_lock; /* _thread.allocate_lock */
    PyObject *wait_probe;    /* a no-op Python function (waits.c) */
    PyObject *waiter_lock_type;
    /* interned attribute names used on the dispatcher's hot paths */
    PyObject *str_write;
    PyObject *str_flush;
    PyObject *str_buffer;
} engine_state;

extern PyModuleDef engine_module_def;

engine_state *engine_state_from_module(PyObject *module);
engine_state *engine_state_from_type(PyTypeObject *type);

#endif
