/* signals.c - one SIGINT and SIGTERM handler: it only sets flags, so it is async-safe. */
#include "signals.h"

#include <string.h>

static volatile sig_atomic_t stopped;
static volatile sig_atomic_t *run_flag;

static void on_signal(int sig)
{
	(void)sig;
	stopped = 1;
	if (run_flag)
		*run_flag = 0;
}

void payq_signals_install(volatile sig_atomic_t *flag)
{
	struct sigaction sa;

	run_flag = flag;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

bool payq_signals_stopped(void)
{
	return stopped != 0;
}
