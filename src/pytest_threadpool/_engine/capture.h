/* Capture: a per-task output sink with one byte buffer per stream (0: stdout, 1: stderr), and
 * the calling thread's current capture (a C thread-local holding a strong reference).
 *
 * fd-level output of the task (os.write to fds 1/2, see fd_write_router in dispatcher.c, and
 * what its subprocesses wrote) joins the same buffers, in order with the sys-level output, when
 * `route_fds` is set; while `separate_fds` is set (a capsys-like fixture reads the sys-level
 * buffers) it goes to a second pair, `fdbuf`, that only the report sections read. */
#ifndef PYTEST_THREADPOOL_CAPTURE_H
#define PYTEST_THREADPOOL_CAPTURE_H

#include "compat.h"

typedef struct {
    char *data;
    size_t len, cap;
} byte_buf;

typedef struct {
    PyObject_HEAD
    PyMutex mu; /* guards buf; threads started by a test may share the capture */
    byte_buf buf[2];
    byte_buf fdbuf[2]; /* fd-level output while separate_fds is set (guarded by mu) */
    atomic_int closed;
    atomic_int tee;
    atomic_int route_fds;    /* fd-level writes of its threads come here (default 1) */
    atomic_int separate_fds; /* ... into fdbuf instead of buf (default 0) */
} capture_object;

extern ENGINE_TLS capture_object *engine_tls_capture;

/* The calling thread's capture if it is set and open, else NULL (borrowed). */
static inline capture_object *capture_active(void)
{
    capture_object *c = engine_tls_capture;
    return (c != NULL && !atomic_load_explicit(&c->closed, memory_order_relaxed)) ? c : NULL;
}

static inline int capture_tee(capture_object *c)
{
    return atomic_load_explicit(&c->tee, memory_order_relaxed);
}

/* Does the capture take fd-level writes (os.write to 1/2) of the threads that use it? */
static inline int capture_routes_fds(capture_object *c)
{
    return atomic_load_explicit(&c->route_fds, memory_order_relaxed);
}

/* Append str (encoded to UTF-8, lone surrogates replaced) or raw bytes. -1: MemoryError set. */
int capture_write_str(capture_object *c, int stream, PyObject *str);
int capture_write_bytes(capture_object *c, int stream, const char *data, size_t n);
/* Append fd-level output: to buf, or to fdbuf while separate_fds is set. -1: MemoryError set. */
int capture_write_fd(capture_object *c, int stream, const char *data, size_t n);

int capture_exec(PyObject *module, engine_state *st);

#endif
