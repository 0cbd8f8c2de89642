/* TaskResult type: read-only record of one task's outcome and timings. */
#include "task_result.h"

#include <stddef.h>

typedef struct {
    PyObject_HEAD
    long long id;
    PyObject *label;
    PyObject *value;
    PyObject *exception;
    PyObject *stack;
    int worker;
    double queue_wait;
    double run_time;
    char cancelled;
    char timed_out;
    char hung;
} task_result_object;

#define TR(op) ((task_result_object *)(op))

static PyObject *steal_or_none(PyObject **slot)
{
    PyObject *o = *slot;
    *slot = NULL;
    return o != NULL ? o : Py_NewRef(Py_None);
}

PyObject *task_result_from_task(engine_state *st, task_t *t)
{
    PyTypeObject *tp = (PyTypeObject *)st->task_result_type;
    task_result_object *r = PyObject_GC_New(task_result_object, tp);
    if (r == NULL) {
        return NULL;
    }
    r->id = (long long)t->id;
    r->label = t->label ? t->label : PyUnicode_FromString("");
    t->label = NULL;
    if (r->label == NULL) {
        r->label = Py_NewRef(Py_None);
    }
    r->value = steal_or_none(&t->value);
    r->exception = steal_or_none(&t->exception);
    r->stack = steal_or_none(&t->stack);
    r->worker = t->worker;
    r->queue_wait = (t->start_time > 0 && t->start_time >= t->ready_time)
                        ? t->start_time - t->ready_time
                        : 0.0;
    r->run_time = (t->end_time > t->start_time && t->start_time > 0) ? t->end_time - t->start_time
                                                                      : 0.0;
    r->cancelled = t->cancelled;
    r->timed_out = t->timed_out;
    r->hung = t->hung;
    PyObject_GC_Track((PyObject *)r);
    return (PyObject *)r;
}

static int tr_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(TR(op)->label);
    Py_VISIT(TR(op)->value);
    Py_VISIT(TR(op)->exception);
    Py_VISIT(TR(op)->stack);
    return 0;
}

static int tr_clear(PyObject *op)
{
    Py_CLEAR(TR(op)->label);
    Py_CLEAR(TR(op)->value);
    Py_CLEAR(TR(op)->exception);
    Py_CLEAR(TR(op)->stack);
    return 0;
}

static void tr_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    (void)tr_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static const char *tr_state(task_result_object *r)
{
    if (r->hung) {
        return "hung";
    }
    if (r->cancelled) {
        return "cancelled";
    }
    if (r->timed_out) {
        return "timed out";
    }
    return r->exception != Py_None ? "raised" : "ok";
}

static PyObject *tr_repr(PyObject *op)
{
    task_result_object *r = TR(op);
    if (r->exception != Py_None && !r->cancelled) {
        return PyUnicode_FromFormat("<TaskResult id=%lld label=%R state=%s exception=%s>", r->id,
                                    r->label, tr_state(r), Py_TYPE(r->exception)->tp_name);
    }
    return PyUnicode_FromFormat("<TaskResult id=%lld label=%R state=%s>", r->id, r->label,
                                tr_state(r));
}

static PyMemberDef tr_members[] = {
    {"id", Py_T_LONGLONG, offsetof(task_result_object, id), Py_READONLY, "Task id from submit()."},
    {"label", Py_T_OBJECT_EX, offsetof(task_result_object, label), Py_READONLY,
     "Label given to submit() (the test id)."},
    {"value", Py_T_OBJECT_EX, offsetof(task_result_object, value), Py_READONLY,
     "Return value of fn(arg); None if it raised or never ran."},
    {"exception", Py_T_OBJECT_EX, offsetof(task_result_object, exception), Py_READONLY,
     "The BaseException the call raised (with its traceback), or None."},
    {"stack", Py_T_OBJECT_EX, offsetof(task_result_object, stack), Py_READONLY,
     "Stack of a hung task when it was abandoned (str), or None."},
    {"worker", Py_T_INT, offsetof(task_result_object, worker), Py_READONLY,
     "Index of the worker that ran the task, -1 if it never started."},
    {"queue_wait", Py_T_DOUBLE, offsetof(task_result_object, queue_wait), Py_READONLY,
     "Seconds from submit (or from its dependencies completing) to start."},
    {"run_time", Py_T_DOUBLE, offsetof(task_result_object, run_time), Py_READONLY,
     "Seconds the call ran."},
    {"cancelled", Py_T_BOOL, offsetof(task_result_object, cancelled), Py_READONLY,
     "True if the task was removed before it started."},
    {"timed_out", Py_T_BOOL, offsetof(task_result_object, timed_out), Py_READONLY,
     "True if the watchdog delivered TaskTimeout and the call ended with an exception."},
    {"hung", Py_T_BOOL, offsetof(task_result_object, hung), Py_READONLY,
     "True if the task ignored TaskTimeout for `grace` seconds and its worker was abandoned."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot tr_slots[] = {
    {Py_tp_doc, "TaskResult: outcome of one Pool task (created by the engine, immutable)."},
    {Py_tp_members, tr_members},
    {Py_tp_traverse, tr_traverse},
    {Py_tp_clear, tr_clear},
    {Py_tp_dealloc, tr_dealloc},
    {Py_tp_repr, tr_repr},
    {0, NULL},
};

static PyType_Spec tr_spec = {
    .name = "pytest_threadpool._engine.TaskResult",
    .basicsize = sizeof(task_result_object),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = tr_slots,
};

int task_result_exec(PyObject *module, engine_state *st)
{
    st->task_result_type = PyType_FromModuleAndSpec(module, &tr_spec, NULL);
    if (st->task_result_type == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "TaskResult", st->task_result_type);
}
