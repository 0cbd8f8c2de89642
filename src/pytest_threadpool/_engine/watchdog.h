/* Watchdog: one thread per pool that delivers TaskTimeout at each running task's deadline and
 * abandons (and replaces) workers whose task ignores it for `grace` seconds. */
#ifndef PYTEST_THREADPOOL_WATCHDOG_H
#define PYTEST_THREADPOOL_WATCHDOG_H

#include "pool.h"

/* Start the pool's watchdog thread unless it runs already. Attached, no locks held. */
int watchdog_ensure(pool_core *core);

#endif
