/* Scheduler data structures: task records, the ready heap, the id table used for dependencies,
 * and the FIFO of results. All of them are plain C (PyMem_Raw memory) and are only mutated by a
 * thread that is attached and holds the owning pool's core mutex (a PyMutex), and never with a
 * Python allocation in the middle, so the pool's tp_traverse can read them without locking. */
#ifndef PYTEST_THREADPOOL_SCHEDULER_H
#define PYTEST_THREADPOOL_SCHEDULER_H

#include "compat.h"

enum task_state { TASK_WAITING, TASK_READY, TASK_RUNNING, TASK_DONE };

/* One entry of the result stream: a finished task record or an object given to post(). */
typedef struct result_node {
    struct result_node *next;
    struct task *task; /* NULL for a posted object */
    PyObject *obj;     /* posted object (strong) */
} result_node;

typedef struct task {
    int64_t id;
    double priority;
    double timeout;
    PyObject *fn;    /* strong; moved to the worker when it starts */
    PyObject *arg;   /* strong; moved to the worker when it starts */
    PyObject *label; /* strong str */
    char *label_utf8; /* raw copy for the crash table (may be truncated) */
    size_t label_len;
    int state;
    double ready_time; /* submit time, or the moment the last dependency completed */
    double start_time;
    double end_time;
    Py_ssize_t ndeps;      /* unresolved dependencies */
    int64_t *dependents;   /* ids of tasks waiting on this one */
    Py_ssize_t ndependents, cap_dependents;
    struct task *wprev, *wnext; /* list of tasks waiting on dependencies */
    /* outcome */
    PyObject *value;     /* strong or NULL */
    PyObject *exception; /* strong or NULL */
    PyObject *stack;     /* strong or NULL */
    int worker;
    char cancelled, timed_out, hung;
    result_node node; /* embedded so publishing a result never allocates */
} task_t;

/* Allocate a task record (fields zeroed, worker = -1). */
task_t *task_alloc(void);
/* Free a task record and drop every reference it still owns. Needs an attached thread state. */
void task_free(task_t *t);
/* Visit the Python references a task record owns (for tp_traverse). */
int task_traverse(task_t *t, visitproc visit, void *arg);

/* Binary max-heap: highest priority first, then lowest id (FIFO). */
typedef struct {
    task_t **items;
    Py_ssize_t len, cap;
} task_heap;

int heap_reserve(task_heap *h, Py_ssize_t n); /* ensure room for n items; -1 on no memory */
void heap_push(task_heap *h, task_t *t);      /* capacity must be reserved */
task_t *heap_pop(task_heap *h);
void heap_free(task_heap *h);

/* Open-addressing table id -> task for tasks that have not completed yet. */
typedef struct {
    task_t **slots;
    size_t cap; /* power of two, or 0 */
    size_t len;
} task_table;

int table_reserve(task_table *tb, size_t n); /* ensure n entries fit; -1 on no memory */
void table_insert(task_table *tb, task_t *t); /* capacity must be reserved */
task_t *table_get(task_table *tb, int64_t id);
void table_remove(task_table *tb, int64_t id);
void table_free(task_table *tb);

/* FIFO of result nodes. */
typedef struct {
    result_node *head, *tail;
    Py_ssize_t len;
} result_list;

void results_push(result_list *rl, result_node *n);
result_node *results_pop(result_list *rl);

#endif
