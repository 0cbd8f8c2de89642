/* The directory scan behind pytest's numbered temporary directories (tmp_path & co), in C. */
#ifndef PYTEST_THREADPOOL_NUMBERED_DIRS_H
#define PYTEST_THREADPOOL_NUMBERED_DIRS_H

#include "compat.h"

int numbered_dirs_exec(PyObject *module, engine_state *st);

#endif
