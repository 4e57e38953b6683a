/* crash.c - test-only crash points, for the crash-recovery tests. */
#include "crash.h"

#ifdef PAYQ_CRASH_POINTS
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

void payq_crash_point(const char *name)
{
	static long hits;
	const char *at = getenv("PAYQ_CRASH_AT");
	size_t len = strlen(name);
	long nth = 1;

	if (!at || strncmp(at, name, len) || (at[len] && at[len] != ':'))
		return;
	if (at[len] == ':')
		nth = strtol(at + len + 1, NULL, 10);
	if (++hits < nth)
		return;
	log_warn("crash point %s reached (hit %ld): SIGKILL", name, hits);
	kill(getpid(), SIGKILL);
}
#endif
