/* prefixed_suffixes(root, prefix): what pytest's find_suffixes(root, prefix) yields, in C.
 *
 * pytest numbers tmp_path directories by scanning the base directory for entries that start
 * with the test's name (case-insensitively) on every request: in Python that is a few hundred
 * nanoseconds per entry, so a session with n tmp_path tests spends O(n^2) there. This does the
 * same scan with readdir, detached from the interpreter. It only decides the cases it can match
 * exactly: an ASCII prefix and ASCII entry names (ASCII lower-casing is then what str.lower does).
 * Otherwise it returns None and the caller uses pytest's own implementation. */
#include "numbered_dirs.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char **names;
    size_t count;
    size_t cap;
    int non_ascii; /* some entry name is not ASCII: let Python decide */
    int error;     /* errno of a failed opendir/readdir/malloc, else 0 */
} scan_result;

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static int has_prefix_ascii_nocase(const char *name, const char *prefix, size_t prefix_len)
{
    for (size_t i = 0; i < prefix_len; i++) {
        if (name[i] == '\0' ||
            ascii_lower((unsigned char)name[i]) != ascii_lower((unsigned char)prefix[i])) {
            return 0;
        }
    }
    return 1;
}

static int is_ascii(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s >= 0x80) {
            return 0;
        }
    }
    return 1;
}

static int keep_name(scan_result *r, const char *name)
{
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        char **grown = realloc(r->names, cap * sizeof(char *));
        if (grown == NULL) {
            return -1;
        }
        r->names = grown;
        r->cap = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        return -1;
    }
    r->names[r->count++] = copy;
    return 0;
}

/* No Python API in here: it runs detached. */
static void scan(const char *root, const char *prefix, size_t prefix_len, scan_result *r)
{
    DIR *dir = opendir(root);
    if (dir == NULL) {
        r->error = errno ? errno : EIO;
        return;
    }
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(dir);
        if (entry == NULL) {
            if (errno != 0) {
                r->error = errno;
            }
            break;
        }
        const char *name = entry->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
            continue; /* os.scandir skips them */
        }
        if (!is_ascii(name)) {
            r->non_ascii = 1;
            break;
        }
        if (has_prefix_ascii_nocase(name, prefix, prefix_len) && keep_name(r, name) < 0) {
            r->error = ENOMEM;
            break;
        }
    }
    closedir(dir);
}

static void free_result(scan_result *r)
{
    for (size_t i = 0; i < r->count; i++) {
        free(r->names[i]);
    }
    free(r->names);
}

static PyObject *prefixed_suffixes(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *root_obj;
    const char *prefix;
    Py_ssize_t prefix_len;
    if (!PyArg_ParseTuple(args, "O&s#:prefixed_suffixes", PyUnicode_FSConverter, &root_obj, &prefix,
                          &prefix_len)) {
        return NULL;
    }
    if (!is_ascii(prefix) || (size_t)prefix_len != strlen(prefix)) {
        Py_DECREF(root_obj);
        Py_RETURN_NONE;
    }
    /* Copy the path: the bytes object is not touched while detached. */
    char *root = strdup(PyBytes_AS_STRING(root_obj));
    Py_DECREF(root_obj);
    if (root == NULL) {
        return PyErr_NoMemory();
    }
    scan_result r = {0};
    Py_BEGIN_ALLOW_THREADS
    scan(root, prefix, (size_t)prefix_len, &r);
    Py_END_ALLOW_THREADS

    PyObject *result = NULL;
    if (r.error != 0) {
        errno = r.error;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, root);
    }
    else if (r.non_ascii) {
        result = Py_NewRef(Py_None);
    }
    else if ((result = PyList_New((Py_ssize_t)r.count)) != NULL) {
        for (size_t i = 0; i < r.count; i++) {
            PyObject *suffix = PyUnicode_DecodeASCII(r.names[i] + prefix_len,
                                                     (Py_ssize_t)strlen(r.names[i] + prefix_len),
                                                     "strict");
            if (suffix == NULL) {
                Py_CLEAR(result);
                break;
            }
            PyList_SET_ITEM(result, (Py_ssize_t)i, suffix);
        }
    }
    free_result(&r);
    free(root);
    return result;
}

static PyMethodDef numbered_dirs_methods[] = {
    {"prefixed_suffixes", prefixed_suffixes, METH_VARARGS,
     "prefixed_suffixes(root, prefix) -> list[str] | None\n\n"
     "The remainders of the names in directory `root` that start with `prefix`\n"
     "(ASCII case-insensitively), in directory order, as pytest's find_suffixes yields them;\n"
     "None when `prefix` or an entry name is not ASCII (use pytest's scan then)."},
    {NULL, NULL, 0, NULL},
};

int numbered_dirs_exec(PyObject *module, engine_state *st)
{
    (void)st;
    return PyModule_AddFunctions(module, numbered_dirs_methods);
}
