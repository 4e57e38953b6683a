/* cli.h - what payq-replay's subcommands share: exit codes, the run flag, options, progress. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "range.h"

/* Exit codes of every subcommand, listed in each --help. */
enum {
	REPLAY_EXIT_OK = 0,	       /* done; audit: no gaps */
	REPLAY_EXIT_GAPS = 1,	       /* audit found gaps */
	REPLAY_EXIT_USAGE = 2,	       /* bad arguments, or refused: past the dedup horizon */
	REPLAY_EXIT_ACTIVE = 3,	       /* refused: the consumer group has active members */
	REPLAY_EXIT_FAILED = 4,	       /* Kafka or PostgreSQL error, or a copy not PERSISTED */
	REPLAY_EXIT_INTERRUPTED = 130, /* SIGINT or SIGTERM */
};

/* The exit code table, for the end of every subcommand's --help. */
void replay_print_exit_codes(FILE *fp);

/* Cleared by SIGINT and SIGTERM; every loop polls with a timeout and checks it. */
extern volatile sig_atomic_t replay_run;

/* Installs the SIGINT and SIGTERM handlers that clear replay_run. */
void replay_handle_signals(void);

/* Long option ids shared by subcommands; getopt_long returns them. */
enum {
	OPT_PARTITION = 1000,
	OPT_FROM_OFFSET,
	OPT_FROM_TIME,
	OPT_TO_OFFSET,
	OPT_TO_TIME,
	OPT_DRY_RUN,
	OPT_FORCE,
	OPT_RATE,
	OPT_TO_TOPIC,
	OPT__FIRST_OWN, /* subcommands number their own options from here */
};

/* Applies one range option (OPT_PARTITION .. OPT_TO_TIME) to spec. Returns 1 when opt
 * was a range option, 0 when it was not, -1 with errstr on a bad value. The spec's
 * partitions array grows with malloc(); payq_range_spec_free() frees it. */
int replay_range_opt(int opt, const char *arg, payq_range_spec_t *spec, char *errstr,
		     size_t errstr_size);

/* Parses a rate in messages per second (a positive number). Returns 0 or -1. */
int replay_parse_rate(const char *s, double *out);

/* Formats ms since the epoch as ISO 8601 UTC with milliseconds into buf. */
const char *replay_fmt_time(int64_t ms, char *buf, size_t size);

/* A progress line on stderr, redrawn at most five times a second, only when stderr is a
 * terminal, so logs and pipes stay clean. */
typedef struct replay_progress {
	bool tty, shown;
	int64_t last_ms;
} replay_progress_t;

void replay_progress_init(replay_progress_t *p);
void replay_progress(replay_progress_t *p, bool force, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Ends the progress line, if one was drawn. */
void replay_progress_end(replay_progress_t *p);
