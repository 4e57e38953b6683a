/* consume.h - the worker's consume loop: poll a batch, dead-letter, apply, store, commit. */
#pragma once

#include <signal.h>

#include "config.h"

/* Cleared by SIGTERM/SIGINT; the loop notices within one poll timeout. */
extern volatile sig_atomic_t payq_run;

/* Exit codes of payq-worker. */
enum {
	PAYQ_EXIT_OK = 0,
	PAYQ_EXIT_RUNTIME = 1, /* fatal Kafka error, or a batch abandoned at shutdown */
	PAYQ_EXIT_USAGE = 2,   /* bad arguments or settings */
	PAYQ_EXIT_SCHEMA = 3,  /* the database schema is older than this worker */
};

/* Runs the worker until a signal or a fatal error. Returns an exit code. */
int payq_consume_run(payq_config_t *cfg);
