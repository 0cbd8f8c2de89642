/* Crash attribution: label slot table and fatal-signal handler (see crash.h).
 *
 * Writers (workers, set_crash_label) copy the label first and then publish it by setting the
 * slot's `busy` flag with release ordering; the signal handler reads `busy` with acquire
 * ordering. The handler uses only write(2), sigaction(2) and raise(3). */
#include "crash.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    atomic_int used;      /* slot claimed by a thread */
    atomic_int busy;      /* label below is current */
    atomic_int abandoned; /* worker abandoned as hung */
    char name[CRASH_NAME_MAX];
    char label[CRASH_LABEL_MAX];
} crash_slot;

static crash_slot g_slots[CRASH_SLOTS];
/* Slot index + 1 of the calling thread (0: none); used by set_crash_label. */
static ENGINE_TLS int tls_slot_plus1;

static void copy_truncated(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap) {
        len = cap - 1;
        /* do not cut a UTF-8 sequence in half */
        while (len > 0 && ((unsigned char)src[len] & 0xC0) == 0x80) {
            len--;
        }
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

int crash_slot_acquire(const char *name)
{
    for (int i = 0; i < CRASH_SLOTS; i++) {
        int expected = 0;
        if (atomic_load_explicit(&g_slots[i].used, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&g_slots[i].used, &expected, 1)) {
            crash_slot *s = &g_slots[i];
            atomic_store(&s->busy, 0);
            atomic_store(&s->abandoned, 0);
            copy_truncated(s->name, sizeof(s->name), name, strlen(name));
            tls_slot_plus1 = i + 1;
            return i;
        }
    }
    return -1;
}

void crash_slot_release(int slot)
{
    if (slot < 0 || slot >= CRASH_SLOTS) {
        return;
    }
    atomic_store_explicit(&g_slots[slot].busy, 0, memory_order_release);
    atomic_store_explicit(&g_slots[slot].used, 0, memory_order_release);
    if (tls_slot_plus1 == slot + 1) {
        tls_slot_plus1 = 0;
    }
}

void crash_slot_begin(int slot, const char *label, size_t len)
{
    if (slot < 0 || slot >= CRASH_SLOTS) {
        return;
    }
    crash_slot *s = &g_slots[slot];
    atomic_store_explicit(&s->busy, 0, memory_order_relaxed);
    copy_truncated(s->label, sizeof(s->label), label ? label : "", label ? len : 0);
    atomic_store_explicit(&s->busy, 1, memory_order_release);
}

void crash_slot_end(int slot)
{
    if (slot >= 0 && slot < CRASH_SLOTS) {
        atomic_store_explicit(&g_slots[slot].busy, 0, memory_order_release);
    }
}

void crash_slot_abandon(int slot)
{
    if (slot >= 0 && slot < CRASH_SLOTS) {
        atomic_store_explicit(&g_slots[slot].abandoned, 1, memory_order_release);
    }
}

/* ---- signal handler (async-signal-safe code only below, up to the module functions) ---- */

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL};
static const char *const fatal_names[] = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGABRT", "SIGILL"};
#define N_FATAL ((int)(sizeof(fatal_signals) / sizeof(fatal_signals[0])))

static struct sigaction g_prev[N_FATAL];
static int g_installed; /* guarded by g_install_mu */
static PyMutex g_install_mu;
static atomic_int g_reported;
/* The process that installed the handler: a child forked by a test inherits the handler and a
 * copy of the slots, but the tests listed there run in the parent, so a child that crashes
 * only chains to the previous handler (faulthandler's traceback, as in a sequential run). */
static atomic_int g_owner_pid;
/* Where the report goes: fd 2 by default; the plugin passes a duplicate of the terminal's
 * stderr while fd 2 itself is redirected to a capture file. */
static atomic_int g_out_fd = 2;

static void write_all(const char *s, size_t n)
{
    int fd = atomic_load(&g_out_fd);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void write_str(const char *s)
{
    write_all(s, strlen(s));
}

static void write_int(int v)
{
    char buf[16];
    int i = (int)sizeof(buf);
    unsigned int u = v < 0 ? (unsigned int)(-(long)v) : (unsigned int)v;
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u && i > 1);
    if (v < 0) {
        buf[--i] = '-';
    }
    write_all(buf + i, sizeof(buf) - (size_t)i);
}

/* Written before the report, e.g. to erase the live status area first (set_crash_preamble). */
#define PREAMBLE_MAX 32
static char g_preamble[PREAMBLE_MAX];
static atomic_int g_preamble_len;
static PyMutex g_preamble_mu; /* one writer at a time (the handler only reads) */

static void report(int idx, int sig)
{
    int preamble = atomic_load_explicit(&g_preamble_len, memory_order_acquire);
    if (preamble > 0) {
        write_all(g_preamble, (size_t)preamble);
    }
    write_str("pytest-threadpool: fatal signal ");
    write_str(fatal_names[idx]);
    write_str(" (");
    write_int(sig);
    write_str("); tests running at that moment:\n");
    int any = 0;
    for (int i = 0; i < CRASH_SLOTS; i++) {
        crash_slot *s = &g_slots[i];
        if (!atomic_load_explicit(&s->used, memory_order_acquire) ||
            !atomic_load_explicit(&s->busy, memory_order_acquire)) {
            continue;
        }
        any = 1;
        write_str("  ");
        write_all(s->name, strnlen(s->name, sizeof(s->name)));
        if (atomic_load_explicit(&s->abandoned, memory_order_acquire)) {
            write_str(" (abandoned as hung)");
        }
        write_str(": ");
        write_all(s->label, strnlen(s->label, sizeof(s->label)));
        write_str("\n");
    }
    if (!any) {
        write_str("  (none)\n");
    }
}

static void crash_handler(int sig, siginfo_t *info, void *ucontext)
{
    int save_errno = errno;
    int idx = 0;
    while (idx < N_FATAL && fatal_signals[idx] != sig) {
        idx++;
    }
    if (idx == N_FATAL) {
        return;
    }
    /* one report per process, even if several threads crash at once */
    if (getpid() == atomic_load(&g_owner_pid) && atomic_exchange(&g_reported, 1) == 0) {
        report(idx, sig);
    }
    /* Chain: put the previous action back and run it, so faulthandler's traceback follows ours
     * and the process still dies from the signal. */
    struct sigaction prev = g_prev[idx];
    sigaction(sig, &prev, NULL);
    errno = save_errno;
    if (prev.sa_flags & SA_SIGINFO) {
        if (prev.sa_sigaction != NULL) {
            prev.sa_sigaction(sig, info, ucontext);
            return;
        }
    }
    else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
        prev.sa_handler(sig);
        return;
    }
    /* Default (or ignored, which would only refault forever): die from the signal. It stays
     * blocked until this handler returns, then the default action runs. */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ---- module functions ---- */

static PyObject *install_crash_handler(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    int fd = 2;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "install_crash_handler() takes at most one argument (fd)");
        return NULL;
    }
    if (nargs == 1) {
        fd = PyLong_AsInt(args[0]);
        if (fd == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (fd < 0) {
            PyErr_SetString(PyExc_ValueError, "fd must be a non-negative file descriptor");
            return NULL;
        }
    }
    atomic_store(&g_out_fd, fd);
    atomic_store(&g_owner_pid, (int)getpid());
    PyMutex_Lock(&g_install_mu);
    if (!g_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = crash_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        for (int i = 0; i < N_FATAL; i++) {
            if (sigaction(fatal_signals[i], &sa, &g_prev[i]) != 0) {
                for (int j = 0; j < i; j++) {
                    sigaction(fatal_signals[j], &g_prev[j], NULL);
                }
                PyMutex_Unlock(&g_install_mu);
                return PyErr_SetFromErrno(PyExc_OSError);
            }
        }
        atomic_store(&g_reported, 0);
        g_installed = 1;
    }
    PyMutex_Unlock(&g_install_mu);
    Py_RETURN_NONE;
}

static PyObject *uninstall_crash_handler(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    atomic_store(&g_out_fd, 2);
    (void)module;
    PyMutex_Lock(&g_install_mu);
    if (g_installed) {
        for (int i = 0; i < N_FATAL; i++) {
            struct sigaction cur;
            /* only restore where we are still the installed handler */
            if (sigaction(fatal_signals[i], NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
                cur.sa_sigaction == crash_handler) {
                sigaction(fatal_signals[i], &g_prev[i], NULL);
            }
        }
        g_installed = 0;
    }
    PyMutex_Unlock(&g_install_mu);
    Py_RETURN_NONE;
}

/* Name for a thread's slot: "main thread" for the main thread, else its threading name. */
static char *current_thread_name(void)
{
    PyObject *threading = PyImport_ImportModule("threading");
    if (threading == NULL) {
        return NULL;
    }
    PyObject *cur = PyObject_CallMethod(threading, "current_thread", NULL);
    PyObject *main = cur ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
    Py_DECREF(threading);
    char *result = NULL;
    if (main != NULL) {
        PyObject *name = cur == main ? PyUnicode_FromString("main thread")
                                     : PyObject_GetAttrString(cur, "name");
        if (name != NULL) {
            size_t n;
            if (PyUnicode_Check(name)) {
                result = engine_raw_utf8(name, &n);
            }
            else {
                PyErr_SetString(PyExc_TypeError, "thread name is not a str");
            }
            Py_DECREF(name);
        }
    }
    Py_XDECREF(cur);
    Py_XDECREF(main);
    return result;
}

static PyObject *set_crash_label(PyObject *module, PyObject *label)
{
    (void)module;
    if (label != Py_None && !PyUnicode_Check(label)) {
        return PyErr_Format(PyExc_TypeError, "label must be str or None, not %.100s",
                            Py_TYPE(label)->tp_name);
    }
    int slot = tls_slot_plus1 - 1;
    if (label == Py_None) {
        crash_slot_end(slot);
        Py_RETURN_NONE;
    }
    size_t n;
    char *s = engine_raw_utf8(label, &n);
    if (s == NULL) {
        return NULL;
    }
    if (slot < 0) {
        char *name = current_thread_name();
        if (name == NULL) {
            PyMem_RawFree(s);
            return NULL;
        }
        slot = crash_slot_acquire(name);
        PyMem_RawFree(name);
    }
    /* slot < 0: table full; attribution is best effort */
    crash_slot_begin(slot, s, n);
    PyMem_RawFree(s);
    Py_RETURN_NONE;
}

static PyObject *set_crash_preamble(PyObject *module, PyObject *text)
{
    (void)module;
    char *data;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(text, &data, &n) < 0) {
        return NULL;
    }
    if (n > PREAMBLE_MAX) {
        return PyErr_Format(PyExc_ValueError, "preamble longer than %d bytes", PREAMBLE_MAX);
    }
    /* Hide the old bytes from a concurrent report while they change. Writers are serialised:
     * two threads interleaving these three steps could publish one's length over a mix of both
     * byte strings. */
    PyMutex_Lock(&g_preamble_mu);
    atomic_store_explicit(&g_preamble_len, 0, memory_order_release);
    memcpy(g_preamble, data, (size_t)n);
    atomic_store_explicit(&g_preamble_len, (int)n, memory_order_release);
    PyMutex_Unlock(&g_preamble_mu);
    Py_RETURN_NONE;
}

static PyObject *crash_labels(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    for (int i = 0; i < CRASH_SLOTS; i++) {
        crash_slot *s = &g_slots[i];
        if (!atomic_load_explicit(&s->used, memory_order_acquire) ||
            !atomic_load_explicit(&s->busy, memory_order_acquire)) {
            continue;
        }
        PyObject *item = Py_BuildValue(
            "(s#s#)", s->name, (Py_ssize_t)strnlen(s->name, sizeof(s->name)), s->label,
            (Py_ssize_t)strnlen(s->label, sizeof(s->label)));
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

static PyMethodDef crash_methods[] = {
    {"install_crash_handler", (PyCFunction)(void (*)(void))install_crash_handler, METH_FASTCALL,
     "install_crash_handler(fd=2, /) -> None\n\nOn SIGSEGV/SIGBUS/SIGFPE/SIGABRT/SIGILL, print the "
     "tests running at that moment to fd (default 2), then chain to the previous handler (idempotent)."},
    {"uninstall_crash_handler", uninstall_crash_handler, METH_NOARGS,
     "uninstall_crash_handler() -> None\n\nRestore the handlers that were installed before."},
    {"set_crash_label", set_crash_label, METH_O,
     "set_crash_label(label: str | None) -> None\n\nSet (None: clear) the label reported for "
     "the calling thread if the process crashes."},
    {"set_crash_preamble", set_crash_preamble, METH_O,
     "set_crash_preamble(data: bytes) -> None\n\nBytes (at most 32) written before a crash "
     "report, e.g. an escape sequence erasing the live status area; b'' for none."},
    {"crash_labels", crash_labels, METH_NOARGS,
     "crash_labels() -> list[tuple[str, str]]\n\n(thread name, label) of every busy slot, as "
     "the crash handler would print them."},
    {NULL, NULL, 0, NULL},
};

int crash_exec(PyObject *module, engine_state *st)
{
    (void)st;
    if (PyModule_AddIntConstant(module, "CRASH_SLOTS", CRASH_SLOTS) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, crash_methods);
}
