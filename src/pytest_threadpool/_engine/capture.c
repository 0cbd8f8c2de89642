/* Capture type and the thread-local current capture (see capture.h).
 *
 * Buffers are raw memory guarded by the capture's PyMutex. No Python API is called while the
 * mutex is held: an allocation could run a finalizer that prints, re-enter the dispatcher and
 * deadlock on the same (non-reentrant) mutex. */
#include "capture.h"

ENGINE_TLS capture_object *engine_tls_capture;

/* Grow b so that `extra` more bytes fit. Raw allocator: no thread-state requirement. */
static int buf_reserve(byte_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) {
            return -1;
        }
        cap *= 2;
    }
    char *data = PyMem_RawRealloc(b->data, cap);
    if (data == NULL) {
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

/* UTF-8 encode straight from the str's storage into the buffer: no temporary bytes object. */
static void encode_utf8(char **out, int kind, const void *data, Py_ssize_t n)
{
    unsigned char *p = (unsigned char *)*out;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (ch < 0x80) {
            *p++ = (unsigned char)ch;
        }
        else if (ch < 0x800) {
            *p++ = (unsigned char)(0xC0 | (ch >> 6));
            *p++ = (unsigned char)(0x80 | (ch & 0x3F));
        }
        else if (ch < 0x10000) {
            if (ch >= 0xD800 && ch <= 0xDFFF) {
                *p++ = '?'; /* lone surrogate: errors="replace" */
                continue;
            }
            *p++ = (unsigned char)(0xE0 | (ch >> 12));
            *p++ = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
            *p++ = (unsigned char)(0x80 | (ch & 0x3F));
        }
        else {
            *p++ = (unsigned char)(0xF0 | (ch >> 18));
            *p++ = (unsigned char)(0x80 | ((ch >> 12) & 0x3F));
            *p++ = (unsigned char)(0x80 | ((ch >> 6) & 0x3F));
            *p++ = (unsigned char)(0x80 | (ch & 0x3F));
        }
    }
    *out = (char *)p;
}

int capture_write_str(capture_object *c, int stream, PyObject *str)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(str);
    if (n == 0) {
        return 0;
    }
    int ascii = PyUnicode_IS_ASCII(str);
    int kind = PyUnicode_KIND(str);
    const void *data = PyUnicode_DATA(str);
    size_t worst = ascii ? (size_t)n : (size_t)n * (kind == PyUnicode_1BYTE_KIND ? 2 : 4);
    byte_buf *b = &c->buf[stream];
    PyMutex_Lock(&c->mu);
    if (buf_reserve(b, worst) < 0) {
        PyMutex_Unlock(&c->mu);
        PyErr_NoMemory();
        return -1;
    }
    if (ascii) {
        memcpy(b->data + b->len, data, (size_t)n);
        b->len += (size_t)n;
    }
    else {
        char *p = b->data + b->len;
        encode_utf8(&p, kind, data, n);
        b->len = (size_t)(p - b->data);
    }
    PyMutex_Unlock(&c->mu);
    return 0;
}

static int append_bytes(capture_object *c, byte_buf *b, const char *data, size_t n)
{
    if (n == 0) {
        return 0;
    }
    PyMutex_Lock(&c->mu);
    if (buf_reserve(b, n) < 0) {
        PyMutex_Unlock(&c->mu);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    PyMutex_Unlock(&c->mu);
    return 0;
}

int capture_write_bytes(capture_object *c, int stream, const char *data, size_t n)
{
    return append_bytes(c, &c->buf[stream], data, n);
}

int capture_write_fd(capture_object *c, int stream, const char *data, size_t n)
{
    /* the flag is read outside the mutex: a write racing with the fixture that flips it may
     * land on either side, as it would race with the fixture's start or end anyway */
    int separate = atomic_load_explicit(&c->separate_fds, memory_order_relaxed);
    return append_bytes(c, separate ? &c->fdbuf[stream] : &c->buf[stream], data, n);
}

/* ---- Capture type ---- */

#define CAP(op) ((capture_object *)(op))

static PyObject *capture_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Capture() takes no arguments");
        return NULL;
    }
    capture_object *c = (capture_object *)type->tp_alloc(type, 0);
    if (c != NULL) {
        atomic_init(&c->closed, 0);
        atomic_init(&c->tee, 0);
        atomic_init(&c->route_fds, 1);
        atomic_init(&c->separate_fds, 0);
    }
    return (PyObject *)c;
}

static void capture_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyMem_RawFree(CAP(op)->buf[0].data);
    PyMem_RawFree(CAP(op)->buf[1].data);
    PyMem_RawFree(CAP(op)->fdbuf[0].data);
    PyMem_RawFree(CAP(op)->fdbuf[1].data);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *decode_pair(byte_buf *bufs, int owned)
{
    PyObject *out = PyUnicode_DecodeUTF8(bufs[0].data ? bufs[0].data : "",
                                         (Py_ssize_t)bufs[0].len, "replace");
    PyObject *err = out ? PyUnicode_DecodeUTF8(bufs[1].data ? bufs[1].data : "",
                                               (Py_ssize_t)bufs[1].len, "replace")
                        : NULL;
    if (owned) {
        PyMem_RawFree(bufs[0].data);
        PyMem_RawFree(bufs[1].data);
    }
    if (err == NULL) {
        Py_XDECREF(out);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, out, err);
    Py_DECREF(out);
    Py_DECREF(err);
    return pair;
}

static PyObject *take_pair(capture_object *c, byte_buf *bufs)
{
    byte_buf taken[2];
    PyMutex_Lock(&c->mu);
    taken[0] = bufs[0];
    taken[1] = bufs[1];
    memset(bufs, 0, 2 * sizeof(byte_buf));
    PyMutex_Unlock(&c->mu);
    return decode_pair(taken, 1);
}

static PyObject *capture_take(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return take_pair(CAP(op), CAP(op)->buf);
}

static PyObject *capture_take_fd(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return take_pair(CAP(op), CAP(op)->fdbuf);
}

static PyObject *capture_write_fd_method(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        return PyErr_Format(PyExc_TypeError, "write_fd() takes 2 arguments (%zd given)", nargs);
    }
    int stream = PyLong_AsInt(args[0]);
    if (stream == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (stream != 0 && stream != 1) {
        PyErr_SetString(PyExc_ValueError, "stream must be 0 (stdout) or 1 (stderr)");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int rc = capture_write_fd(CAP(op), stream, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *capture_peek(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    capture_object *c = CAP(op);
    byte_buf copy[2] = {{NULL, 0, 0}, {NULL, 0, 0}};
    int nomem = 0;
    PyMutex_Lock(&c->mu);
    for (int i = 0; i < 2; i++) {
        if (c->buf[i].len > 0) {
            copy[i].data = PyMem_RawMalloc(c->buf[i].len);
            if (copy[i].data == NULL) {
                nomem = 1;
                break;
            }
            memcpy(copy[i].data, c->buf[i].data, c->buf[i].len);
            copy[i].len = copy[i].cap = c->buf[i].len;
        }
    }
    PyMutex_Unlock(&c->mu);
    if (nomem) {
        PyMem_RawFree(copy[0].data);
        PyMem_RawFree(copy[1].data);
        return PyErr_NoMemory();
    }
    return decode_pair(copy, 1);
}

static PyObject *capture_close(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    atomic_store(&CAP(op)->closed, 1);
    Py_RETURN_NONE;
}

static PyObject *capture_get_closed(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(atomic_load(&CAP(op)->closed));
}

static PyObject *capture_get_tee(PyObject *op, void *closure)
{
    (void)closure;
    return PyBool_FromLong(atomic_load(&CAP(op)->tee));
}

static int capture_set_tee(PyObject *op, PyObject *value, void *closure)
{
    (void)closure;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete tee");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) {
        return -1;
    }
    atomic_store(&CAP(op)->tee, v);
    return 0;
}

static PyObject *get_flag(atomic_int *flag)
{
    return PyBool_FromLong(atomic_load(flag));
}

static int set_flag(atomic_int *flag, PyObject *value, const char *name)
{
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", name);
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) {
        return -1;
    }
    atomic_store(flag, v);
    return 0;
}

static PyObject *capture_get_route_fds(PyObject *op, void *closure)
{
    (void)closure;
    return get_flag(&CAP(op)->route_fds);
}

static int capture_set_route_fds(PyObject *op, PyObject *value, void *closure)
{
    (void)closure;
    return set_flag(&CAP(op)->route_fds, value, "route_fds");
}

static PyObject *capture_get_separate_fds(PyObject *op, void *closure)
{
    (void)closure;
    return get_flag(&CAP(op)->separate_fds);
}

static int capture_set_separate_fds(PyObject *op, PyObject *value, void *closure)
{
    (void)closure;
    return set_flag(&CAP(op)->separate_fds, value, "separate_fds");
}

static PyObject *capture_repr(PyObject *op)
{
    capture_object *c = CAP(op);
    PyMutex_Lock(&c->mu);
    size_t out = c->buf[0].len, err = c->buf[1].len;
    PyMutex_Unlock(&c->mu);
    return PyUnicode_FromFormat("<Capture %s%s stdout=%zuB stderr=%zuB>",
                                atomic_load(&c->closed) ? "closed" : "open",
                                atomic_load(&c->tee) ? " tee" : "", out, err);
}

static PyMethodDef capture_methods[] = {
    {"take", capture_take, METH_NOARGS,
     "take() -> tuple[str, str]\n\n(stdout, stderr) since the last take; clears the buffers."},
    {"peek", capture_peek, METH_NOARGS,
     "peek() -> tuple[str, str]\n\n(stdout, stderr) since the last take, without clearing."},
    {"take_fd", capture_take_fd, METH_NOARGS,
     "take_fd() -> tuple[str, str]\n\n"
     "fd-level (stdout, stderr) written while separate_fds was set; clears them."},
    {"write_fd", (PyCFunction)(void (*)(void))capture_write_fd_method, METH_FASTCALL,
     "write_fd(stream: int, data: bytes-like, /) -> None\n\n"
     "Append fd-level output (a subprocess's): like os.write routed here."},
    {"close", capture_close, METH_NOARGS,
     "close() -> None\n\nLater writes pass through to the dispatcher's fallback."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef capture_getset[] = {
    {"closed", capture_get_closed, NULL, "True after close().", NULL},
    {"tee", capture_get_tee, capture_set_tee,
     "When True, writes are recorded and also passed through to the fallback.", NULL},
    {"route_fds", capture_get_route_fds, capture_set_route_fds,
     "When True (default), fd-level writes of the threads using it (os.write to fds 1 and 2\n"
     "through the engine's router) come here instead of the fds.", NULL},
    {"separate_fds", capture_get_separate_fds, capture_set_separate_fds,
     "When True, fd-level output goes to buffers of its own (take_fd), not take()'s.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot capture_slots[] = {
    {Py_tp_doc, "Capture()\n\nPer-task output sink (stdout and stderr byte buffers)."},
    {Py_tp_new, capture_new},
    {Py_tp_dealloc, capture_dealloc},
    {Py_tp_methods, capture_methods},
    {Py_tp_getset, capture_getset},
    {Py_tp_repr, capture_repr},
    {0, NULL},
};

static PyType_Spec capture_spec = {
    .name = "pytest_threadpool._engine.Capture",
    .basicsize = sizeof(capture_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = capture_slots,
};

/* ---- thread-local current capture ---- */

static PyObject *set_thread_capture(PyObject *module, PyObject *capture)
{
    engine_state *st = engine_state_from_module(module);
    if (capture != Py_None && !PyObject_TypeCheck(capture, (PyTypeObject *)st->capture_type)) {
        return PyErr_Format(PyExc_TypeError, "expected a Capture or None, not %.100s",
                            Py_TYPE(capture)->tp_name);
    }
    capture_object *prev = engine_tls_capture;
    engine_tls_capture = capture == Py_None ? NULL : (capture_object *)Py_NewRef(capture);
    /* our reference to the previous capture goes to the caller */
    return prev ? (PyObject *)prev : Py_NewRef(Py_None);
}

static PyObject *get_thread_capture(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    capture_object *c = engine_tls_capture;
    return Py_NewRef(c ? (PyObject *)c : Py_None);
}

static PyMethodDef capture_functions[] = {
    {"set_thread_capture", set_thread_capture, METH_O,
     "set_thread_capture(capture: Capture | None) -> Capture | None\n\n"
     "Set the calling thread's current capture; returns the previous one."},
    {"get_thread_capture", get_thread_capture, METH_NOARGS,
     "get_thread_capture() -> Capture | None\n\nThe calling thread's current capture."},
    {NULL, NULL, 0, NULL},
};

int capture_exec(PyObject *module, engine_state *st)
{
    st->capture_type = PyType_FromModuleAndSpec(module, &capture_spec, NULL);
    if (st->capture_type == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Capture", st->capture_type) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, capture_functions);
}
