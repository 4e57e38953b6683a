/* crash.h - test-only crash points: PAYQ_CRASH_AT=name[:N] kills the worker with
 * SIGKILL the Nth time (default 1st) it passes the point called name. Built only with
 * -Dcrash_points=true; inert unless the variable is set. */
#pragma once

#ifdef PAYQ_CRASH_POINTS
void payq_crash_point(const char *name);
#else
#define payq_crash_point(name) ((void)0)
#endif
