/* Dispatcher (sys.stdout / sys.stderr stand-in) and its binary view DispatcherBuffer. */
#ifndef PYTEST_THREADPOOL_DISPATCHER_H
#define PYTEST_THREADPOOL_DISPATCHER_H

#include "compat.h"

int dispatcher_exec(PyObject *module, engine_state *st);

#endif
