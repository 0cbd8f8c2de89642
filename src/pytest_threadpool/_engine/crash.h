/* Crash attribution: a process-global table of label slots (one per thread that runs tests)
 * and fatal-signal handlers that print the busy slots with async-signal-safe calls only. */
#ifndef PYTEST_THREADPOOL_CRASH_H
#define PYTEST_THREADPOOL_CRASH_H

#include "compat.h"

#define CRASH_SLOTS 1024
#define CRASH_NAME_MAX 64
#define CRASH_LABEL_MAX 256

/* Claim a free slot for the calling thread under `name` (truncated). Returns -1 if full. */
int crash_slot_acquire(const char *name);
/* Release a slot claimed by crash_slot_acquire (the slot's thread is ending). */
void crash_slot_release(int slot);
/* Mark the slot busy running `label` (copied, truncated) / idle again. Lock-free. */
void crash_slot_begin(int slot, const char *label, size_t len);
void crash_slot_end(int slot);
/* The slot's worker was abandoned as hung; its line says so. */
void crash_slot_abandon(int slot);

int crash_exec(PyObject *module, engine_state *st);

#endif
