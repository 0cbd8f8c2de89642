/* Interruptible waits for pool tasks, and the task's own deadline control.
 *
 * The watchdog's TaskTimeout (and interrupt()'s KeyboardInterrupt) is an asynchronous exception,
 * raised only when the thread runs bytecode: a task blocked in time.sleep or a lock acquire
 * would not see it (signals do not help off the main thread). During a threaded run the Python
 * layer installs these in place of time.sleep, threading's waiter-lock factory (every
 * Condition.wait: Event, Queue, Barrier, Semaphore) and Thread.join; on a pool worker running a
 * task they wait on the worker's `wake` event, which a delivery notifies, and raise the
 * delivered exception themselves, exactly once. On any other thread they are the originals. */
#ifndef PYTEST_THREADPOOL_WAITS_H
#define PYTEST_THREADPOOL_WAITS_H

#include "compat.h"

int waits_exec(PyObject *module, engine_state *st);

#endif
