/* Capture: a per-task output sink with one byte buffer per stream (0: stdout, 1: stderr), and
 * the calling thread's current capture (a C thread-local holding a strong reference). */
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
    atomic_int closed;
    atomic_int tee;
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

/* Append str (encoded to UTF-8, lone surrogates replaced) or raw bytes. -1: MemoryError set. */
int capture_write_str(capture_object *c, int stream, PyObject *str);
int capture_write_bytes(capture_object *c, int stream, const char *data, size_t n);

int capture_exec(PyObject *module, engine_state *st);

#endif
