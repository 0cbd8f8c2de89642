/* The runner's clocks, read with clock_gettime and never through the time module: a test may
 * replace time.monotonic & co for the whole process (freezegun even rebinds every module
 * attribute that is a real time function), and the runner's timings must not follow it. They
 * touch no shared state, so they need neither the GIL nor a lock. */
#include "clock.h"

#include <errno.h>

static PyObject *read_clock(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyFloat_FromDouble(engine_timespec_seconds(&ts));
}

static PyObject *clock_monotonic(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return read_clock(CLOCK_MONOTONIC);
}

static PyObject *clock_wall_time(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return read_clock(CLOCK_REALTIME);
}

static PyObject *clock_thread_time(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return read_clock(CLOCK_THREAD_CPUTIME_ID);
}

static PyMethodDef clock_methods[] = {
    {"monotonic", clock_monotonic, METH_NOARGS,
     "monotonic() -> float\n\nCLOCK_MONOTONIC in seconds (as time.monotonic(), which a test\n"
     "may have replaced)."},
    /* time.perf_counter() reads CLOCK_MONOTONIC on Linux: the same clock, so values compare */
    {"perf_counter", clock_monotonic, METH_NOARGS,
     "perf_counter() -> float\n\nThe clock of time.perf_counter() (CLOCK_MONOTONIC), in seconds."},
    {"wall_time", clock_wall_time, METH_NOARGS,
     "wall_time() -> float\n\nCLOCK_REALTIME in seconds since the epoch (as time.time())."},
    {"thread_time", clock_thread_time, METH_NOARGS,
     "thread_time() -> float\n\nCPU seconds used by the calling thread (CLOCK_THREAD_CPUTIME_ID,\n"
     "as time.thread_time())."},
    {NULL, NULL, 0, NULL},
};

int clock_exec(PyObject *module, engine_state *st)
{
    (void)st;
    return PyModule_AddFunctions(module, clock_methods);
}
