/* Small portability layer: thread-local storage and atomics shared by every engine file. */
#ifndef PYTEST_THREADPOOL_COMPAT_H
#define PYTEST_THREADPOOL_COMPAT_H

#include "module.h" /* Python.h first: it sets the feature-test macros */

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* C11 thread-local storage; only plain pointers and integers are stored in it (no destructors). */
#define ENGINE_TLS _Thread_local

/* True when the calling thread has an attached thread state (may use the C API). */
static inline int engine_attached(void)
{
    return PyThreadState_GetUnchecked() != NULL;
}

/* Copy a str as UTF-8 into PyMem_Raw memory (NUL-terminated; unencodable code points are
 * replaced). Avoids PyUnicode_AsUTF8AndSize, which caches into the shared str object. */
static inline char *engine_raw_utf8(PyObject *str, size_t *len)
{
    PyObject *bytes = NULL;
    const char *data;
    Py_ssize_t n;
    if (PyUnicode_IS_ASCII(str)) {
        data = (const char *)PyUnicode_DATA(str);
        n = PyUnicode_GET_LENGTH(str);
    }
    else {
        bytes = PyUnicode_AsEncodedString(str, "utf-8", "replace");
        if (bytes == NULL) {
            return NULL;
        }
        data = PyBytes_AS_STRING(bytes);
        n = PyBytes_GET_SIZE(bytes);
    }
    char *out = PyMem_RawMalloc((size_t)n + 1);
    if (out == NULL) {
        Py_XDECREF(bytes);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    *len = (size_t)n;
    Py_XDECREF(bytes);
    return out;
}

#endif
