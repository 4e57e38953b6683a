/* crash.h - test-only crash points: PAYQ_CRASH_AT=name[:N] kills the worker with
 * SIGKILL the Nth time (default 1st) it passes the point called name. Built only with
 * -Dcrash_points=true; inert unless the variable is set. */
#pragma once

#include <stdbool.h>

#ifdef PAYQ_CRASH_POINTS
void payq_crash_point(const char *name);
/* True the Nth time (default 1st) the point called name is passed while
 * PAYQ_FAULT_AT=name[:N]; the caller then injects the fault. */
bool payq_fault_point(const char *name);
/* True while PAYQ_FAULT_AT names the point called name, whatever the pass (counts
 * nothing), for a fault that needs the path to it opened first. */
bool payq_fault_armed(const char *name);
/* Sleeps PAYQ_STALL_MS (default 10000) the Nth time (default 1st) the point called name
 * is passed while PAYQ_STALL_AT=name[:N]: a worker frozen inside its transaction, holding
 * its locks, as a zombie whose assignment was lost meanwhile. */
void payq_stall_point(const char *name);
#else
#define payq_crash_point(name) ((void)0)
#define payq_fault_point(name) false
#define payq_fault_armed(name) false
#define payq_stall_point(name) ((void)0)
#endif
