/* Scheduler data structures (see scheduler.h). */
#include "scheduler.h"

#include <string.h>

task_t *task_alloc(void)
{
    task_t *t = PyMem_RawCalloc(1, sizeof(task_t));
    if (t != NULL) {
        t->worker = -1;
        t->node.task = t;
    }
    return t;
}

void task_free(task_t *t)
{
    if (t == NULL) {
        return;
    }
    Py_XDECREF(t->fn);
    Py_XDECREF(t->arg);
    Py_XDECREF(t->label);
    Py_XDECREF(t->value);
    Py_XDECREF(t->exception);
    Py_XDECREF(t->stack);
    PyMem_RawFree(t->label_utf8);
    PyMem_RawFree(t->dependents);
    PyMem_RawFree(t);
}

int task_traverse(task_t *t, visitproc visit, void *arg)
{
    Py_VISIT(t->fn);
    Py_VISIT(t->arg);
    Py_VISIT(t->label);
    Py_VISIT(t->value);
    Py_VISIT(t->exception);
    Py_VISIT(t->stack);
    return 0;
}

/* ---- heap ---- */

static inline int heap_before(const task_t *a, const task_t *b)
{
    if (a->priority != b->priority) {
        return a->priority > b->priority;
    }
    return a->id < b->id;
}

int heap_reserve(task_heap *h, Py_ssize_t n)
{
    if (n <= h->cap) {
        return 0;
    }
    Py_ssize_t cap = h->cap ? h->cap : 64;
    while (cap < n) {
        cap *= 2;
    }
    task_t **items = PyMem_RawRealloc(h->items, (size_t)cap * sizeof(task_t *));
    if (items == NULL) {
        return -1;
    }
    h->items = items;
    h->cap = cap;
    return 0;
}

void heap_push(task_heap *h, task_t *t)
{
    Py_ssize_t i = h->len++;
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!heap_before(t, h->items[parent])) {
            break;
        }
        h->items[i] = h->items[parent];
        i = parent;
    }
    h->items[i] = t;
}

task_t *heap_pop(task_heap *h)
{
    if (h->len == 0) {
        return NULL;
    }
    task_t *top = h->items[0];
    task_t *last = h->items[--h->len];
    Py_ssize_t i = 0, n = h->len;
    for (;;) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && heap_before(h->items[child + 1], h->items[child])) {
            child++;
        }
        if (!heap_before(h->items[child], last)) {
            break;
        }
        h->items[i] = h->items[child];
        i = child;
    }
    if (n > 0) {
        h->items[i] = last;
    }
    return top;
}

void heap_free(task_heap *h)
{
    PyMem_RawFree(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}

/* ---- id table (linear probing, backward-shift deletion) ---- */

static inline size_t table_hash(int64_t id, size_t mask)
{
    return (size_t)(((uint64_t)id * UINT64_C(0x9E3779B97F4A7C15)) >> 17) & mask;
}

int table_reserve(task_table *tb, size_t n)
{
    /* keep the load factor at or below 1/2 */
    if (tb->cap != 0 && n * 2 <= tb->cap) {
        return 0;
    }
    size_t cap = tb->cap ? tb->cap : 64;
    while (n * 2 > cap) {
        cap *= 2;
    }
    if (cap == tb->cap) {
        return 0;
    }
    task_t **slots = PyMem_RawCalloc(cap, sizeof(task_t *));
    if (slots == NULL) {
        return -1;
    }
    size_t mask = cap - 1;
    for (size_t i = 0; i < tb->cap; i++) {
        task_t *t = tb->slots[i];
        if (t != NULL) {
            size_t j = table_hash(t->id, mask);
            while (slots[j] != NULL) {
                j = (j + 1) & mask;
            }
            slots[j] = t;
        }
    }
    PyMem_RawFree(tb->slots);
    tb->slots = slots;
    tb->cap = cap;
    return 0;
}

void table_insert(task_table *tb, task_t *t)
{
    size_t mask = tb->cap - 1;
    size_t j = table_hash(t->id, mask);
    while (tb->slots[j] != NULL) {
        j = (j + 1) & mask;
    }
    tb->slots[j] = t;
    tb->len++;
}

task_t *table_get(task_table *tb, int64_t id)
{
    if (tb->cap == 0) {
        return NULL;
    }
    size_t mask = tb->cap - 1;
    for (size_t j = table_hash(id, mask);; j = (j + 1) & mask) {
        task_t *t = tb->slots[j];
        if (t == NULL) {
            return NULL;
        }
        if (t->id == id) {
            return t;
        }
    }
}

void table_remove(task_table *tb, int64_t id)
{
    if (tb->cap == 0) {
        return;
    }
    size_t mask = tb->cap - 1;
    size_t j = table_hash(id, mask);
    while (tb->slots[j] != NULL && tb->slots[j]->id != id) {
        j = (j + 1) & mask;
    }
    if (tb->slots[j] == NULL) {
        return;
    }
    tb->slots[j] = NULL;
    tb->len--;
    /* Shift later members of the probe run back so lookups never stop at the hole early. */
    size_t hole = j;
    for (size_t k = (j + 1) & mask; tb->slots[k] != NULL; k = (k + 1) & mask) {
        size_t home = table_hash(tb->slots[k]->id, mask);
        /* move k into the hole unless its home lies cyclically in (hole, k] */
        int stays = (hole <= k) ? (hole < home && home <= k) : (hole < home || home <= k);
        if (!stays) {
            tb->slots[hole] = tb->slots[k];
            tb->slots[k] = NULL;
            hole = k;
        }
    }
}

void table_free(task_table *tb)
{
    PyMem_RawFree(tb->slots);
    tb->slots = NULL;
    tb->cap = tb->len = 0;
}

/* ---- result FIFO ---- */

void results_push(result_list *rl, result_node *n)
{
    n->next = NULL;
    if (rl->tail != NULL) {
        rl->tail->next = n;
    }
    else {
        rl->head = n;
    }
    rl->tail = n;
    rl->len++;
}

result_node *results_pop(result_list *rl)
{
    result_node *n = rl->head;
    if (n != NULL) {
        rl->head = n->next;
        if (rl->head == NULL) {
            rl->tail = NULL;
        }
        n->next = NULL;
        rl->len--;
    }
    return n;
}
