/* TaskResult: the immutable outcome of one submitted task, delivered by Pool.next_result(). */
#ifndef PYTEST_THREADPOOL_TASK_RESULT_H
#define PYTEST_THREADPOOL_TASK_RESULT_H

#include "compat.h"
#include "scheduler.h"

/* Build a TaskResult from a finished (or cancelled / hung) task record. The record's label,
 * value, exception and stack references are moved into the result. */
PyObject *task_result_from_task(engine_state *st, task_t *t);

int task_result_exec(PyObject *module, engine_state *st);

#endif
