/* pytest_threadpool._engine: module definition (multi-phase init, module state, GIL not used). */
#include "module.h"

#include "capture.h"
#include "clock.h"
#include "crash.h"
#include "dispatcher.h"
#include "numbered_dirs.h"
#include "pool.h"
#include "task_result.h"
#include "waits.h"

engine_state *engine_state_from_module(PyObject *module)
{
    return (engine_state *)PyModule_GetState(module);
}

engine_state *engine_state_from_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &engine_module_def);
    return module ? engine_state_from_module(module) : NULL;
}

/* The engine is compiled for the interpreter that loads it, so its ABI is that build's fact:
 * the Python layer asks here instead of importing sysconfig (and its data module) to learn it. */
#ifdef Py_GIL_DISABLED
#define ENGINE_FREE_THREADED Py_True
#else
#define ENGINE_FREE_THREADED Py_False
#endif

static PyObject *build_info(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return Py_BuildValue("{s:O,s:s,s:i}", "free_threaded", ENGINE_FREE_THREADED, "compiler",
                         __VERSION__, "c_standard", (int)__STDC_VERSION__);
}

static PyMethodDef engine_methods[] = {
    {"build_info", build_info, METH_NOARGS,
     "build_info() -> dict\n\nHow this engine was compiled (free-threaded ABI, compiler, C standard)."},
    {NULL, NULL, 0, NULL},
};

static int add_task_timeout(PyObject *module, engine_state *st)
{
    st->task_timeout_error = PyErr_NewExceptionWithDoc(
        "pytest_threadpool._engine.TaskTimeout",
        "Raised asynchronously in a task that ran past its timeout (BaseException, so a plain\n"
        "`except Exception` in the test does not swallow it).",
        PyExc_BaseException, NULL);
    if (st->task_timeout_error == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "TaskTimeout", st->task_timeout_error);
}

static int engine_exec(PyObject *module)
{
    engine_state *st = engine_state_from_module(module);
    PyObject *io = PyImport_ImportModule("io");
    if (io == NULL) {
        return -1;
    }
    st->unsupported_operation = PyObject_GetAttrString(io, "UnsupportedOperation");
    Py_DECREF(io);
    if (st->unsupported_operation == NULL) {
        return -1;
    }
    st->str_write = PyUnicode_InternFromString("write");
    st->str_flush = PyUnicode_InternFromString("flush");
    st->str_buffer = PyUnicode_InternFromString("buffer");
    if (st->str_write == NULL || st->str_flush == NULL || st->str_buffer == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "FREE_THREADED", ENGINE_FREE_THREADED) < 0) {
        return -1;
    }
    if (add_task_timeout(module, st) < 0 || waits_exec(module, st) < 0 ||
        task_result_exec(module, st) < 0 ||
        pool_exec(module, st) < 0 || crash_exec(module, st) < 0 ||
        capture_exec(module, st) < 0 || dispatcher_exec(module, st) < 0 ||
        numbered_dirs_exec(module, st) < 0 || clock_exec(module, st) < 0) {
        return -1;
    }
    return 0;
}

static int engine_traverse(PyObject *module, visitproc visit, void *arg)
{
    engine_state *st = engine_state_from_module(module);
    Py_VISIT(st->pool_type);
    Py_VISIT(st->task_result_type);
    Py_VISIT(st->dispatcher_type);
    Py_VISIT(st->binary_view_type);
    Py_VISIT(st->capture_type);
    Py_VISIT(st->task_timeout_error);
    Py_VISIT(st->unsupported_operation);
    Py_VISIT(st->thread_start);
    Py_VISIT(st->time_sleep);
    Py_VISIT(st->allocate_lock);
    Py_VISIT(st->wait_probe);
    Py_VISIT(st->waiter_lock_type);
    Py_VISIT(st->str_write);
    Py_VISIT(st->str_flush);
    Py_VISIT(st->str_buffer);
    return 0;
}

static int engine_clear(PyObject *module)
{
    engine_state *st = engine_state_from_module(module);
    Py_CLEAR(st->pool_type);
    Py_CLEAR(st->task_result_type);
    Py_CLEAR(st->dispatcher_type);
    Py_CLEAR(st->binary_view_type);
    Py_CLEAR(st->capture_type);
    Py_CLEAR(st->task_timeout_error);
    Py_CLEAR(st->unsupported_operation);
    Py_CLEAR(st->thread_start);
    Py_CLEAR(st->time_sleep);
    Py_CLEAR(st->allocate_lock);
    Py_CLEAR(st->wait_probe);
    Py_CLEAR(st->waiter_lock_type);
    Py_CLEAR(st->str_write);
    Py_CLEAR(st->str_flush);
    Py_CLEAR(st->str_buffer);
    return 0;
}

static void engine_free(void *module)
{
    (void)engine_clear((PyObject *)module);
}

static PyModuleDef_Slot engine_slots[] = {
    {Py_mod_exec, engine_exec},
    /* Worker-thread TLS and the crash handler are process-wide: one interpreter only. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL},
};

PyModuleDef engine_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pytest_threadpool._engine",
    .m_doc = "C execution engine of pytest-threadpool: worker pool, output dispatcher, watchdog.",
    .m_size = sizeof(engine_state),
    .m_methods = engine_methods,
    .m_slots = engine_slots,
    .m_traverse = engine_traverse,
    .m_clear = engine_clear,
    .m_free = engine_free,
};

PyMODINIT_FUNC PyInit__engine(void)
{
    return PyModuleDef_Init(&engine_module_def);
}
