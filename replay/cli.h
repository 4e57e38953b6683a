/* cli.h - what payq-replay's commands share: exit codes, the run flag, the option tail that
 * several commands take, error lines, progress. */
#pragma once

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "range.h"

/* Exit codes of every command, listed in each --help. */
typedef enum {
	REPLAY_EXIT_OK = 0,	       /* done; audit: no gaps */
	REPLAY_EXIT_GAPS = 1,	       /* audit found gaps */
	REPLAY_EXIT_USAGE = 2,	       /* bad arguments, or refused: past the dedup horizon */
	REPLAY_EXIT_ACTIVE = 3,	       /* refused: the consumer group has active members */
	REPLAY_EXIT_FAILED = 4,	       /* Kafka or PostgreSQL error, or a copy not PERSISTED */
	REPLAY_EXIT_INTERRUPTED = 130, /* SIGINT or SIGTERM */
} replay_exit_t;

/* The exit code table, for the end of every command's --help. */
void replay_print_exit_codes(FILE *fp);

/* Cleared by SIGINT and SIGTERM; every loop polls with a timeout and checks it. */
extern volatile sig_atomic_t replay_run;

/* Installs the SIGINT and SIGTERM handlers that clear replay_run. */
void replay_handle_signals(void);

/* Long option ids of the shared options; getopt_long returns them. */
enum {
	OPT_PARTITION = 1000,
	OPT_FROM_OFFSET,
	OPT_FROM_TIME,
	OPT_TO_OFFSET,
	OPT_TO_TIME,
	OPT_TO_TOPIC,
	OPT_RATE,
	OPT_DRY_RUN,
	OPT_EXECUTE,
	OPT_FORCE,
	OPT__FIRST_OWN, /* commands number their own options from here */
};

/* The shared options a command takes: a set of these bits. */
enum {
	REPLAY_TAKES_PARTITION = 1u << 0, /* --partition P, repeatable */
	REPLAY_TAKES_FROM = 1u << 1,	  /* --from-offset N, --from-time T */
	REPLAY_TAKES_TO = 1u << 2,	  /* --to-offset N, --to-time T: the end of the range */
	REPLAY_TAKES_TO_TOPIC = 1u << 3,  /* --to-topic T */
	REPLAY_TAKES_RATE = 1u << 4,	  /* --rate R */
	REPLAY_TAKES_DRY_RUN = 1u << 5,	  /* --dry-run */
	REPLAY_TAKES_EXECUTE = 1u << 6,	  /* --execute */
	REPLAY_TAKES_FORCE = 1u << 7,	  /* --force */
};

/* The values of the shared options. */
typedef struct replay_opts {
	payq_range_spec_t range; /* --partition, --from-*, --to-* */
	const char *to_topic;	 /* NULL: the command's default */
	double rate;		 /* messages per second; 0: no limit */
	bool dry_run, execute, force;
} replay_opts_t;

void replay_opts_init(replay_opts_t *o);
void replay_opts_free(replay_opts_t *o);

/* What one option did to a parse. */
typedef enum {
	REPLAY_OPT_TAKEN, /* applied */
	REPLAY_OPT_OTHER, /* not an option of this parser */
	REPLAY_OPT_BAD,	  /* a bad value; errstr says why */
} replay_opt_t;

/* The most options of its own a command may have. */
#define REPLAY_OWN_OPTS_MAX 7

/* A command's options: the shared ones it takes, and its own (up to the first without a
 * name), which parse_own applies to the command's state cmd. */
typedef struct replay_optdef {
	unsigned takes; /* REPLAY_TAKES_* bits */
	struct option own[REPLAY_OWN_OPTS_MAX + 1];
	replay_opt_t (*parse_own)(void *cmd, int opt, const char *arg, char *errstr,
				  size_t errstr_size);
} replay_optdef_t;

/* Parses a command's options in argv (argv[0] is the command's name) into opts and, through
 * def->parse_own, into cmd. An unknown option, a missing or bad value, or a bare word is
 * refused. Returns REPLAY_EXIT_OK, or REPLAY_EXIT_USAGE with errstr. */
replay_exit_t replay_parse_opts(const replay_optdef_t *def, int argc, char **argv,
				replay_opts_t *opts, void *cmd, char *errstr, size_t errstr_size);

/* What every step of a command gets: the settings, and the client that reads ranges, makes
 * metadata and admin calls (payq_range_client_new()), made before the plan. */
typedef struct replay_env {
	const payq_config_t *cfg;
	rd_kafka_t *rk;
} replay_env_t;

/* A command, which replay_command_run() takes through its steps over the command's own
 * state cmd (cmd_size bytes, zeroed: its request, its plan and its run). The options are
 * parsed by opts into cmd's replay_opts_t at opts_at and, through opts.parse_own, into
 * cmd itself. Then:
 *   request: checks the options against each other and sets defaults; REPLAY_EXIT_USAGE
 *            with errstr when they are wrong;
 *   plan:    the database and Kafka reads, before anything changes; a code with errstr;
 *   print:   the plan on stdout;
 *   execute: the side effects (or the dry run), with their own output and error lines;
 *   cleanup: frees what the others allocated; runs always. */
typedef struct replay_steps {
	const char *name;
	replay_optdef_t opts;
	size_t cmd_size, opts_at;
	replay_exit_t (*request)(const payq_config_t *cfg, void *cmd, char *errstr,
				 size_t errstr_size);
	replay_exit_t (*plan)(const replay_env_t *env, void *cmd, char *errstr, size_t errstr_size);
	void (*print)(const replay_env_t *env, const void *cmd);
	replay_exit_t (*execute)(const replay_env_t *env, void *cmd);
	void (*cleanup)(void *cmd);
} replay_steps_t;

/* Runs a command's steps; argv[0] is the command's name. Returns a replay_exit_t. */
int replay_command_run(const replay_steps_t *steps, const payq_config_t *cfg, int argc,
		       char **argv);

/* Applies one range option (OPT_PARTITION .. OPT_TO_TIME) to spec. The spec's partitions
 * array grows with malloc(); payq_range_spec_free() frees it. */
replay_opt_t replay_range_opt(int opt, const char *arg, payq_range_spec_t *spec, char *errstr,
			      size_t errstr_size);

/* The error lines of command cmd on stderr: "payq-replay CMD: ERR", and for a usage error
 * the pointer to the command's --help after it. */
void replay_error(const char *cmd, const char *errstr);
void replay_usage_error(const char *cmd, const char *errstr);

/* The exit code of a read that ended with rd, with its line on stderr: "interrupted", or
 * errstr when it failed. */
replay_exit_t replay_read_exit(const char *cmd, payq_range_read_t rd, const char *errstr);

/* Formats ms since the epoch as ISO 8601 UTC with milliseconds into buf. */
const char *replay_fmt_time(int64_t ms, char *buf, size_t size);

/* The number of partitions an array indexed by partition needs to cover r. */
int replay_range_nparts(const payq_range_t *r);

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
