/* crash.h - test-only crash points: PAYQ_CRASH_AT=name[:N] kills the worker with
 * SIGKILL the Nth time (default 1st) it passes the point called name. Built only with
 * -Dcrash_points=true; inert unless the variable is set. */
#pragma once

#include <stdbool.h>

#ifdef PAYQ_CRASH_POINTS
#include <librdkafka/rdkafka.h>

void payq_crash_point(const char *name);
/* True the Nth time (default 1st) the point called name is passed while
 * PAYQ_FAULT_AT=name[:N]; the caller then injects the fault. */
bool payq_fault_point(const char *name);
/* True while PAYQ_FAULT_AT names the point called name, whatever the pass (counts
 * nothing), for a fault that needs the path to it opened first. */
bool payq_fault_armed(const char *name);
/* Sleeps PAYQ_STALL_MS (default 10000) the Nth time (default 1st) the point called name
 * is passed while PAYQ_STALL_AT=name[:N]: a worker frozen inside its transaction, holding
 * its locks, as a zombie whose assignment was lost meanwhile. With PAYQ_STALL_UNTIL=FILE
 * it wakes early, once FILE exists: the test wakes it when its scenario is ready. */
void payq_stall_point(const char *name);
/* librdkafka's log callback while PAYQ_FAULT_AT=assign_race (set in setup.c): where
 * librdkafka's main thread logs the fetch start of partition 0 (with -X debug=topic),
 * between the version barrier that start takes and queuing it, it holds that thread
 * 300 ms, as a scheduler may on a loaded machine; rebalance.c holds the worker's thread
 * 100 ms after the assign meanwhile (tests/faults/assign_race.sh). */
void payq_fault_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);
#else
#define payq_crash_point(name) ((void)0)
#define payq_fault_point(name) false
#define payq_fault_armed(name) false
#define payq_stall_point(name) ((void)0)
#endif
