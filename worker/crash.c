/* crash.c - test-only crash points, for the crash-recovery tests. */
#include "crash.h"

#ifdef PAYQ_CRASH_POINTS
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "kafka.h"
#include "log.h"

/* True when var names this point and this is its Nth pass. */
static bool hit(const char *var, const char *name, long *hits)
{
	const char *at = getenv(var);
	size_t len = strlen(name);
	long nth = 1;

	if (!at || strncmp(at, name, len) || (at[len] && at[len] != ':'))
		return false;
	if (at[len] == ':')
		nth = strtol(at + len + 1, NULL, 10);
	return ++*hits == nth;
}

void payq_crash_point(const char *name)
{
	static long hits;

	if (!hit("PAYQ_CRASH_AT", name, &hits))
		return;
	log_warn("crash point %s reached (hit %ld): SIGKILL", name, hits);
	kill(getpid(), SIGKILL);
}

bool payq_fault_point(const char *name)
{
	static long hits;

	if (!hit("PAYQ_FAULT_AT", name, &hits))
		return false;
	log_warn("fault point %s reached (hit %ld)", name, hits);
	return true;
}

bool payq_fault_armed(const char *name)
{
	const char *at = getenv("PAYQ_FAULT_AT");
	size_t len = strlen(name);

	return at && !strncmp(at, name, len) && (!at[len] || at[len] == ':');
}

void payq_stall_point(const char *name)
{
	static long hits;
	const char *ms = getenv("PAYQ_STALL_MS");
	long wait = ms ? strtol(ms, NULL, 10) : 10000;
	const char *until = getenv("PAYQ_STALL_UNTIL");

	if (!hit("PAYQ_STALL_AT", name, &hits))
		return;
	log_warn("stall point %s reached (hit %ld): sleeping %ld ms%s%s", name, hits, wait,
		 until ? " or until this file exists: " : "", until ? until : "");
	/* A signal ends the stall, as it ends one long sleep. */
	for (long slept = 0; slept < wait && !(until && !access(until, F_OK)); slept += 50)
		if (usleep((useconds_t)(wait - slept < 50 ? wait - slept : 50) * 1000))
			break;
	log_warn("stall point %s: awake", name);
}

void payq_fault_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (!strcmp(fac, "CONSUMER") && strstr(buf, "Start consuming ") &&
	    strstr(buf, " [0] at offset")) {
		payq_kafka_log_cb(rk, 4, fac,
				  "fault assign_race: holding the fetch start of "
				  "partition 0 for 300 ms");
		usleep(300 * 1000);
	}
	payq_kafka_log_cb(rk, level, fac, buf);
}
#endif
