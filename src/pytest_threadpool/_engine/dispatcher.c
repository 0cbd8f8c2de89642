/* Dispatcher: the object installed as sys.stdout / sys.stderr. Writes go to the calling thread's
 * open Capture (see capture.h) or pass through to `fallback`. The fast path (capturing) is a
 * thread-local read, a type check and an append under the capture's own mutex; the dispatcher
 * object itself is not locked. */
#include "dispatcher.h"

#include "capture.h"

#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    PyObject_HEAD
    PyMutex mu; /* guards `fallback` (the plugin swaps it while other threads write) */
    PyObject *fallback;
    PyObject *name;
    PyObject *buffer; /* DispatcherBuffer (strong; it points back at us: GC breaks the cycle) */
    int stream;       /* 0: stdout buffer of the capture, 1: stderr buffer */
} dispatcher_object;

typedef struct {
    PyObject_HEAD
    dispatcher_object *owner;
} binview_object;

#define DISP(op) ((dispatcher_object *)(op))
#define VIEW(op) ((binview_object *)(op))

static engine_state *disp_state(PyObject *op)
{
    /* the types are final (no Py_TPFLAGS_BASETYPE), so the defining module is Py_TYPE's */
    return (engine_state *)PyType_GetModuleState(Py_TYPE(op));
}

static PyObject *get_fallback(dispatcher_object *d)
{
    PyMutex_Lock(&d->mu);
    PyObject *fb = Py_XNewRef(d->fallback);
    PyMutex_Unlock(&d->mu);
    return fb;
}

/* Call fallback.<attr>(*args) when the fallback has it; `missing` is returned otherwise. */
static PyObject *call_fallback(dispatcher_object *d, const char *attr, PyObject *args,
                               PyObject *kwargs, PyObject *missing)
{
    PyObject *fb = get_fallback(d);
    if (fb == NULL || fb == Py_None) {
        Py_XDECREF(fb);
        return Py_NewRef(missing);
    }
    PyObject *meth;
    int found = PyObject_GetOptionalAttrString(fb, attr, &meth);
    Py_DECREF(fb);
    if (found < 0) {
        return NULL;
    }
    if (found == 0) {
        return Py_NewRef(missing);
    }
    PyObject *r = args ? PyObject_Call(meth, args, kwargs) : PyObject_CallNoArgs(meth);
    Py_DECREF(meth);
    return r;
}

static PyObject *get_fallback_attr(dispatcher_object *d, const char *attr, PyObject *missing)
{
    PyObject *fb = get_fallback(d);
    if (fb == NULL || fb == Py_None) {
        Py_XDECREF(fb);
        return Py_NewRef(missing);
    }
    PyObject *value;
    int found = PyObject_GetOptionalAttrString(fb, attr, &value);
    Py_DECREF(fb);
    if (found < 0) {
        return NULL;
    }
    return found ? value : Py_NewRef(missing);
}

static PyObject *unsupported(PyObject *op, const char *msg)
{
    PyErr_SetString(disp_state(op)->unsupported_operation, msg);
    return NULL;
}

/* ---- Dispatcher ---- */

static PyObject *view_new(PyTypeObject *tp, dispatcher_object *owner)
{
    binview_object *v = PyObject_GC_New(binview_object, tp);
    if (v == NULL) {
        return NULL;
    }
    v->owner = (dispatcher_object *)Py_NewRef(owner);
    PyObject_GC_Track((PyObject *)v);
    return (PyObject *)v;
}

static PyObject *disp_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"fallback", "stream", "name", NULL};
    PyObject *fallback, *name = Py_None;
    int stream = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$iO:Dispatcher", kwlist, &fallback,
                                     &stream, &name)) {
        return NULL;
    }
    if (stream != 0 && stream != 1) {
        PyErr_SetString(PyExc_ValueError, "stream must be 0 (stdout) or 1 (stderr)");
        return NULL;
    }
    if (name != Py_None && !PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "name must be a str");
        return NULL;
    }
    engine_state *st = engine_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    dispatcher_object *d = (dispatcher_object *)type->tp_alloc(type, 0);
    if (d == NULL) {
        return NULL;
    }
    d->stream = stream;
    d->fallback = Py_NewRef(fallback);
    d->name = name != Py_None ? Py_NewRef(name)
                              : PyUnicode_FromString(stream ? "<stderr>" : "<stdout>");
    d->buffer = d->name ? view_new((PyTypeObject *)st->binary_view_type, d) : NULL;
    if (d->buffer == NULL) {
        Py_DECREF(d);
        return NULL;
    }
    return (PyObject *)d;
}

static int disp_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(DISP(op)->fallback);
    Py_VISIT(DISP(op)->name);
    Py_VISIT(DISP(op)->buffer);
    return 0;
}

static int disp_clear(PyObject *op)
{
    dispatcher_object *d = DISP(op);
    PyMutex_Lock(&d->mu);
    PyObject *fb = d->fallback;
    d->fallback = NULL;
    PyMutex_Unlock(&d->mu);
    Py_XDECREF(fb);
    Py_CLEAR(d->name);
    Py_CLEAR(d->buffer);
    return 0;
}

static void disp_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    PyObject_ClearWeakRefs(op);
    (void)disp_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *disp_write(PyObject *op, PyObject *s)
{
    if (!PyUnicode_Check(s)) {
        return PyErr_Format(PyExc_TypeError, "write() argument must be str, not %.100s",
                            Py_TYPE(s)->tp_name);
    }
    dispatcher_object *d = DISP(op);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    capture_object *c = capture_active();
    if (c != NULL) {
        if (capture_write_str(c, d->stream, s) < 0) {
            return NULL;
        }
        if (!capture_tee(c)) {
            return PyLong_FromSsize_t(n);
        }
    }
    PyObject *fb = get_fallback(d);
    if (fb != NULL && fb != Py_None) {
        PyObject *r = PyObject_CallMethodOneArg(fb, disp_state(op)->str_write, s);
        Py_DECREF(fb);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    else {
        Py_XDECREF(fb); /* like print() with sys.stdout None: output is dropped */
    }
    return PyLong_FromSsize_t(n);
}

static PyObject *disp_writelines(PyObject *op, PyObject *lines)
{
    PyObject *it = PyObject_GetIter(lines);
    if (it == NULL) {
        return NULL;
    }
    PyObject *line;
    while ((line = PyIter_Next(it)) != NULL) {
        PyObject *r = disp_write(op, line);
        Py_DECREF(line);
        if (r == NULL) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *disp_flush(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    capture_object *c = capture_active();
    if (c != NULL && !capture_tee(c)) {
        Py_RETURN_NONE;
    }
    PyObject *r = call_fallback(DISP(op), "flush", NULL, NULL, Py_None);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *disp_fileno(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (capture_active() != NULL) {
        return unsupported(op, "redirected stdout is pseudofile, has no fileno()");
    }
    PyObject *fb = get_fallback(DISP(op));
    if (fb == NULL || fb == Py_None) {
        Py_XDECREF(fb);
        return unsupported(op, "fileno");
    }
    PyObject *r = PyObject_CallMethod(fb, "fileno", NULL);
    Py_DECREF(fb);
    return r;
}

static PyObject *disp_isatty(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    if (capture_active() != NULL) {
        Py_RETURN_FALSE;
    }
    return call_fallback(DISP(op), "isatty", NULL, NULL, Py_False);
}

static PyObject *return_false(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    (void)op;
    Py_RETURN_FALSE;
}

static PyObject *return_true(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    (void)op;
    Py_RETURN_TRUE;
}

static PyObject *return_none(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    (void)op;
    Py_RETURN_NONE;
}

static PyObject *disp_reconfigure(PyObject *op, PyObject *args, PyObject *kwargs)
{
    if (capture_active() != NULL) {
        Py_RETURN_NONE; /* captured output is always UTF-8 bytes; nothing to change */
    }
    PyObject *r = call_fallback(DISP(op), "reconfigure", args, kwargs, Py_None);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *disp_detach(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return unsupported(op, "detach() is not supported: the dispatcher stays installed");
}

static PyObject *disp_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(op);
}

static PyObject *disp_exit(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    (void)op;
    (void)args;
    (void)nargs;
    Py_RETURN_NONE;
}

static PyObject *disp_get_fallback(PyObject *op, void *closure)
{
    (void)closure;
    PyObject *fb = get_fallback(DISP(op));
    return fb ? fb : Py_NewRef(Py_None);
}

static int disp_set_fallback(PyObject *op, PyObject *value, void *closure)
{
    (void)closure;
    dispatcher_object *d = DISP(op);
    PyObject *nv = Py_NewRef(value ? value : Py_None);
    PyMutex_Lock(&d->mu);
    PyObject *old = d->fallback;
    d->fallback = nv;
    PyMutex_Unlock(&d->mu);
    Py_XDECREF(old); /* outside the mutex: it may run arbitrary code */
    return 0;
}

static PyObject *disp_get_encoding(PyObject *op, void *closure)
{
    (void)closure;
    if (capture_active() == NULL) {
        PyObject *enc = get_fallback_attr(DISP(op), "encoding", Py_None);
        if (enc == NULL || PyUnicode_Check(enc)) {
            return enc;
        }
        Py_DECREF(enc);
    }
    return PyUnicode_FromString("utf-8");
}

static PyObject *disp_get_errors(PyObject *op, void *closure)
{
    (void)closure;
    if (capture_active() == NULL) {
        PyObject *errors = get_fallback_attr(DISP(op), "errors", Py_None);
        if (errors == NULL || PyUnicode_Check(errors)) {
            return errors;
        }
        Py_DECREF(errors);
    }
    return PyUnicode_FromString("replace");
}

static PyObject *disp_get_line_buffering(PyObject *op, void *closure)
{
    (void)closure;
    if (capture_active() != NULL) {
        Py_RETURN_FALSE;
    }
    return get_fallback_attr(DISP(op), "line_buffering", Py_False);
}

static PyObject *disp_get_write_through(PyObject *op, void *closure)
{
    (void)closure;
    if (capture_active() != NULL) {
        Py_RETURN_TRUE;
    }
    return get_fallback_attr(DISP(op), "write_through", Py_False);
}

static PyObject *disp_get_name(PyObject *op, void *closure)
{
    (void)closure;
    return Py_NewRef(DISP(op)->name);
}

static PyObject *disp_get_buffer(PyObject *op, void *closure)
{
    (void)closure;
    return Py_NewRef(DISP(op)->buffer);
}

static PyObject *disp_get_stream(PyObject *op, void *closure)
{
    (void)closure;
    return PyLong_FromLong(DISP(op)->stream);
}

static PyObject *disp_get_mode(PyObject *op, void *closure)
{
    (void)op;
    (void)closure;
    return PyUnicode_FromString("w");
}

static PyObject *get_false(PyObject *op, void *closure)
{
    (void)op;
    (void)closure;
    Py_RETURN_FALSE;
}

static PyObject *get_none(PyObject *op, void *closure)
{
    (void)op;
    (void)closure;
    Py_RETURN_NONE;
}

static PyObject *disp_repr(PyObject *op)
{
    return PyUnicode_FromFormat("<Dispatcher name=%R stream=%d>", DISP(op)->name,
                                DISP(op)->stream);
}

static PyMethodDef disp_methods[] = {
    {"write", disp_write, METH_O,
     "write(s: str) -> int\n\nTo the calling thread's capture, else to the fallback."},
    {"writelines", disp_writelines, METH_O, "writelines(lines) -> None"},
    {"flush", disp_flush, METH_NOARGS, "flush() -> None\n\nFlushes the fallback when not capturing."},
    {"fileno", disp_fileno, METH_NOARGS,
     "fileno() -> int\n\nio.UnsupportedOperation while capturing, else the fallback's."},
    {"isatty", disp_isatty, METH_NOARGS, "isatty() -> bool"},
    {"readable", return_false, METH_NOARGS, "readable() -> False"},
    {"seekable", return_false, METH_NOARGS, "seekable() -> False"},
    {"writable", return_true, METH_NOARGS, "writable() -> True"},
    {"reconfigure", (PyCFunction)(void (*)(void))disp_reconfigure, METH_VARARGS | METH_KEYWORDS,
     "reconfigure(**kwargs) -> None\n\nIgnored while capturing, else forwarded."},
    {"detach", disp_detach, METH_NOARGS, "detach() -> raises io.UnsupportedOperation"},
    {"close", return_none, METH_NOARGS, "close() -> None (no-op: the dispatcher stays usable)"},
    {"__enter__", disp_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))disp_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef disp_getset[] = {
    {"fallback", disp_get_fallback, disp_set_fallback,
     "Where writes go when the calling thread does not capture.", NULL},
    {"encoding", disp_get_encoding, NULL, "Text encoding.", NULL},
    {"errors", disp_get_errors, NULL, "Encoding error handler.", NULL},
    {"line_buffering", disp_get_line_buffering, NULL, NULL, NULL},
    {"write_through", disp_get_write_through, NULL, NULL, NULL},
    {"name", disp_get_name, NULL, NULL, NULL},
    {"mode", disp_get_mode, NULL, NULL, NULL},
    {"closed", get_false, NULL, "Always False.", NULL},
    {"newlines", get_none, NULL, "Always None.", NULL},
    {"buffer", disp_get_buffer, NULL, "Binary view writing to the same buffers.", NULL},
    {"stream", disp_get_stream, NULL, "0: stdout, 1: stderr.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot disp_slots[] = {
    {Py_tp_doc, "Dispatcher(fallback, *, stream=0, name=None)\n\n"
                "Per-thread routing stand-in for sys.stdout / sys.stderr."},
    {Py_tp_new, disp_new},
    {Py_tp_dealloc, disp_dealloc},
    {Py_tp_traverse, disp_traverse},
    {Py_tp_clear, disp_clear},
    {Py_tp_methods, disp_methods},
    {Py_tp_getset, disp_getset},
    {Py_tp_repr, disp_repr},
    {0, NULL},
};

static PyType_Spec disp_spec = {
    .name = "pytest_threadpool._engine.Dispatcher",
    .basicsize = sizeof(dispatcher_object),
    /* weak references, as the text streams it stands in for (structlog keys a WeakKeyDictionary
     * of write locks by sys.stdout) */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_MANAGED_WEAKREF,
    .slots = disp_slots,
};

/* ---- DispatcherBuffer (Dispatcher.buffer) ---- */

static int view_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(VIEW(op)->owner);
    return 0;
}

static int view_clear(PyObject *op)
{
    Py_CLEAR(VIEW(op)->owner);
    return 0;
}

static void view_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    PyObject_ClearWeakRefs(op);
    (void)view_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static dispatcher_object *view_owner(PyObject *op)
{
    dispatcher_object *d = VIEW(op)->owner;
    if (d == NULL) {
        PyErr_SetString(PyExc_ValueError, "the dispatcher of this buffer is gone");
    }
    return d;
}

static PyObject *view_write(PyObject *op, PyObject *b)
{
    dispatcher_object *d = view_owner(op);
    if (d == NULL) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(b, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return PyErr_Format(PyExc_TypeError, "a bytes-like object is required, not '%.100s'",
                            Py_TYPE(b)->tp_name);
    }
    Py_ssize_t n = view.len;
    capture_object *c = capture_active();
    if (c != NULL) {
        int rc = capture_write_bytes(c, d->stream, view.buf, (size_t)view.len);
        if (rc < 0 || !capture_tee(c)) {
            PyBuffer_Release(&view);
            return rc < 0 ? NULL : PyLong_FromSsize_t(n);
        }
    }
    PyObject *result = NULL;
    PyObject *fb = get_fallback(d);
    if (fb == NULL || fb == Py_None) {
        result = PyLong_FromSsize_t(n);
        goto done;
    }
    PyObject *fbuf;
    int found = PyObject_GetOptionalAttr(fb, disp_state((PyObject *)d)->str_buffer, &fbuf);
    if (found < 0) {
        goto done;
    }
    if (found) {
        PyObject *r = PyObject_CallMethodOneArg(fbuf, disp_state((PyObject *)d)->str_write, b);
        Py_DECREF(fbuf);
        if (r == NULL) {
            goto done;
        }
        Py_DECREF(r);
    }
    else {
        /* a text-only fallback (io.StringIO): hand it the decoded text */
        PyObject *text = PyUnicode_DecodeUTF8(view.buf, view.len, "replace");
        PyObject *r = text ? PyObject_CallMethodOneArg(fb, disp_state((PyObject *)d)->str_write,
                                                       text)
                           : NULL;
        Py_XDECREF(text);
        if (r == NULL) {
            goto done;
        }
        Py_DECREF(r);
    }
    result = PyLong_FromSsize_t(n);
done:
    Py_XDECREF(fb);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *view_flush(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    dispatcher_object *d = view_owner(op);
    if (d == NULL) {
        return NULL;
    }
    capture_object *c = capture_active();
    if (c != NULL && !capture_tee(c)) {
        Py_RETURN_NONE;
    }
    PyObject *fbuf = get_fallback_attr(d, "buffer", Py_None);
    if (fbuf == NULL) {
        return NULL;
    }
    PyObject *target = fbuf;
    if (fbuf == Py_None) {
        Py_DECREF(fbuf);
        target = get_fallback(d);
        if (target == NULL || target == Py_None) {
            Py_XDECREF(target);
            Py_RETURN_NONE;
        }
    }
    PyObject *flush;
    int found = PyObject_GetOptionalAttrString(target, "flush", &flush);
    Py_DECREF(target);
    if (found <= 0) {
        return found < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *r = PyObject_CallNoArgs(flush);
    Py_DECREF(flush);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *view_fileno(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    dispatcher_object *d = view_owner(op);
    return d ? disp_fileno((PyObject *)d, NULL) : NULL;
}

static PyObject *view_isatty(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    dispatcher_object *d = view_owner(op);
    return d ? disp_isatty((PyObject *)d, NULL) : NULL;
}

static PyObject *view_get_name(PyObject *op, void *closure)
{
    (void)closure;
    dispatcher_object *d = view_owner(op);
    return d ? Py_NewRef(d->name) : NULL;
}

static PyObject *view_get_mode(PyObject *op, void *closure)
{
    (void)op;
    (void)closure;
    return PyUnicode_FromString("wb");
}

static PyObject *view_repr(PyObject *op)
{
    dispatcher_object *d = VIEW(op)->owner;
    return PyUnicode_FromFormat("<DispatcherBuffer name=%R>", d ? d->name : Py_None);
}

static PyMethodDef view_methods[] = {
    {"write", view_write, METH_O, "write(b: bytes-like) -> int"},
    {"flush", view_flush, METH_NOARGS, "flush() -> None"},
    {"fileno", view_fileno, METH_NOARGS, "fileno() -> int"},
    {"isatty", view_isatty, METH_NOARGS, "isatty() -> bool"},
    {"readable", return_false, METH_NOARGS, NULL},
    {"seekable", return_false, METH_NOARGS, NULL},
    {"writable", return_true, METH_NOARGS, NULL},
    {"close", return_none, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef view_getset[] = {
    {"name", view_get_name, NULL, NULL, NULL},
    {"mode", view_get_mode, NULL, NULL, NULL},
    {"closed", get_false, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot view_slots[] = {
    {Py_tp_doc, "Binary view of a Dispatcher (its .buffer)."},
    {Py_tp_dealloc, view_dealloc},
    {Py_tp_traverse, view_traverse},
    {Py_tp_clear, view_clear},
    {Py_tp_methods, view_methods},
    {Py_tp_getset, view_getset},
    {Py_tp_repr, view_repr},
    {0, NULL},
};

static PyType_Spec view_spec = {
    .name = "pytest_threadpool._engine.DispatcherBuffer",
    .basicsize = sizeof(binview_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_MANAGED_WEAKREF,
    .slots = view_slots,
};

/* ---- os.write stand-in ----
 *
 * fd_write_router(original, owned=None) returns a builtin `write(fd, data, /)` bound to
 * `original` (the real os.write). A write to fd 1 or 2 from a thread whose capture is open and
 * routes fds goes into that capture (the test's report sections), as pytest's fd capture would
 * take it in a sequential run; everything else (other fds, threads without a capture, odd
 * arguments, whose errors the original raises) is passed to `original` unchanged. With `owned`
 * (the fds of the files the run points fds 1 and 2 at), a write is routed only while the fd
 * still refers to one of those files: a test that pointed fd 1 somewhere itself (click's
 * CliRunner(capture="fd"), a dup2 of its own) gets its writes there, as sequentially. The hot
 * path is a thread-local read, two flag reads, an fstat when `owned` is given and an append
 * under the capture's mutex. */

typedef struct {
    dev_t dev;
    ino_t ino;
} file_identity;

/* Does `fd` refer to one of the files in `owned` (bytes holding file_identity records)? */
static int fd_is_owned(long fd, PyObject *owned)
{
    struct stat st;
    if (fstat((int)fd, &st) != 0) {
        return 0; /* closed or invalid: the original reports it */
    }
    const file_identity *ids = (const file_identity *)PyBytes_AS_STRING(owned);
    Py_ssize_t n = PyBytes_GET_SIZE(owned) / (Py_ssize_t)sizeof(file_identity);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (ids[i].dev == st.st_dev && ids[i].ino == st.st_ino) {
            return 1;
        }
    }
    return 0;
}

static PyObject *fd_write(PyObject *bound, PyObject *const *args, Py_ssize_t nargs)
{
    /* bound: (original os.write, owned identities as bytes or None) */
    PyObject *original = PyTuple_GET_ITEM(bound, 0);
    PyObject *owned = PyTuple_GET_ITEM(bound, 1);
    if (nargs == 2 && PyLong_CheckExact(args[0])) {
        capture_object *c = capture_active();
        if (c != NULL && capture_routes_fds(c)) {
            int overflow;
            long fd = PyLong_AsLongAndOverflow(args[0], &overflow);
            Py_buffer view;
            /* The thread-local reference is borrowed, and getting the buffer may run Python code
             * (a __buffer__ method) that replaces the thread's capture and frees this one. */
            Py_INCREF(c);
            if ((fd == 1 || fd == 2) && (owned == Py_None || fd_is_owned(fd, owned)) &&
                PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) == 0) {
                Py_ssize_t n = view.len;
                int rc = capture_write_fd(c, (int)fd - 1, view.buf, (size_t)view.len);
                PyBuffer_Release(&view);
                int tee = capture_tee(c);
                Py_DECREF(c);
                if (rc < 0) {
                    return NULL;
                }
                if (!tee) {
                    return PyLong_FromSsize_t(n);
                }
                /* tee: the fd gets it too (below) */
            }
            else {
                Py_DECREF(c);
                if (PyErr_Occurred()) {
                    PyErr_Clear(); /* not bytes-like: the original raises its own TypeError */
                }
            }
        }
    }
    return PyObject_Vectorcall(original, args, (size_t)nargs, NULL);
}

static PyMethodDef fd_write_def = {
    "write", (PyCFunction)(void (*)(void))fd_write, METH_FASTCALL,
    "write(fd, data, /) -> int\n\n"
    "os.write, except that fds 1 and 2 written from a thread whose capture routes fds go to\n"
    "that capture (pytest-threadpool's fd-level capture of pool tests).",
};

/* The identities of the files open as `fds` (an iterable of ints), as bytes. */
static PyObject *identities_of(PyObject *fds)
{
    PyObject *seq = PySequence_Fast(fds, "owned must be an iterable of file descriptors");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *blob = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(file_identity));
    if (blob == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    file_identity *ids = (file_identity *)PyBytes_AS_STRING(blob);
    memset(ids, 0, (size_t)n * sizeof(file_identity));
    for (Py_ssize_t i = 0; i < n; i++) {
        int fd = PyLong_AsInt(PySequence_Fast_GET_ITEM(seq, i));
        struct stat st;
        if (fd == -1 && PyErr_Occurred()) {
            goto fail;
        }
        if (fstat(fd, &st) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        ids[i].dev = st.st_dev;
        ids[i].ino = st.st_ino;
    }
    Py_DECREF(seq);
    return blob;
fail:
    Py_DECREF(seq);
    Py_DECREF(blob);
    return NULL;
}

static PyObject *fd_write_router(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"original", "owned", NULL};
    PyObject *original;
    PyObject *owned = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:fd_write_router", names, &original,
                                     &owned)) {
        return NULL;
    }
    if (!PyCallable_Check(original)) {
        return PyErr_Format(PyExc_TypeError, "expected the callable os.write, not %.100s",
                            Py_TYPE(original)->tp_name);
    }
    PyObject *ids = owned == Py_None ? Py_NewRef(Py_None) : identities_of(owned);
    if (ids == NULL) {
        return NULL;
    }
    PyObject *bound = PyTuple_Pack(2, original, ids);
    Py_DECREF(ids);
    if (bound == NULL) {
        return NULL;
    }
    PyObject *name = PyModule_GetNameObject(module);
    if (name == NULL) {
        Py_DECREF(bound);
        return NULL;
    }
    PyObject *router = PyCFunction_NewEx(&fd_write_def, bound, name);
    Py_DECREF(name);
    Py_DECREF(bound);
    return router;
}

static PyMethodDef dispatcher_functions[] = {
    {"fd_write_router", (PyCFunction)(void (*)(void))fd_write_router,
     METH_VARARGS | METH_KEYWORDS,
     "fd_write_router(original, owned=None) -> Callable[[int, bytes], int]\n\n"
     "A stand-in for os.write that routes fds 1 and 2 of capturing threads (see Capture);\n"
     "with `owned` (fds), only while fd 1 or 2 refers to one of those files."},
    {NULL, NULL, 0, NULL},
};

static int register_abc(const char *abc, PyObject *type)
{
    PyObject *io = PyImport_ImportModule("io");
    PyObject *base = io ? PyObject_GetAttrString(io, abc) : NULL;
    PyObject *r = base ? PyObject_CallMethod(base, "register", "O", type) : NULL;
    Py_XDECREF(io);
    Py_XDECREF(base);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

int dispatcher_exec(PyObject *module, engine_state *st)
{
    st->binary_view_type = PyType_FromModuleAndSpec(module, &view_spec, NULL);
    if (st->binary_view_type == NULL) {
        return -1;
    }
    st->dispatcher_type = PyType_FromModuleAndSpec(module, &disp_spec, NULL);
    if (st->dispatcher_type == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Dispatcher", st->dispatcher_type) < 0 ||
        PyModule_AddObjectRef(module, "DispatcherBuffer", st->binary_view_type) < 0) {
        return -1;
    }
    /* isinstance(sys.stdout, io.TextIOBase) must hold once the dispatcher is installed */
    if (register_abc("TextIOBase", st->dispatcher_type) < 0 ||
        register_abc("BufferedIOBase", st->binary_view_type) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, dispatcher_functions);
}
