/* main.c - payq-replay: parses the settings and runs one command from the table below. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cli.h"
#include "config.h"
#include "dlq.h"
#include "offsets.h"
#include "pg.h"
#include "republish.h"
#include "util.h"

/* One command: its name, its line in `payq-replay --help`, its own --help, and its steps,
 * which replay_command_run() takes in turn. */
typedef struct replay_command {
	const char *name;
	const char *summary;
	void (*usage)(FILE *fp);
	const replay_steps_t *steps;
	bool explicit_group; /* never the default group: cfg.group is NULL unless named */
} replay_command_t;

static const replay_command_t commands[] = {
	{"republish", "copy a range of a topic back onto a topic", replay_republish_usage,
	 &replay_republish_steps, false},
	{"dlq", "re-drive dead letters to the topic they came from", replay_dlq_usage,
	 &replay_dlq_steps, false},
	{"reset-offsets", "move a stopped group's committed offsets and its consumer_progress",
	 replay_offsets_usage, &replay_offsets_steps, true},
	{"audit", "check the topic against processed_commands and the DLQ", replay_audit_usage,
	 &replay_audit_steps, false},
};

/* The command named on the command line, so that `payq-replay COMMAND --help` shows its
 * own usage; payq_config_parse_args() calls usage() without context. */
static const replay_command_t *current;

static void usage(FILE *fp)
{
	if (current) {
		current->usage(fp);
		return;
	}
	fprintf(fp,
		"Usage: payq-replay [settings] COMMAND [options]\n"
		"\n"
		"Replays safely: the worker's dedup table makes a copy of an applied command a\n"
		"duplicate. `payq-replay COMMAND --help` describes each command.\n"
		"\n"
		"Commands:\n");
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(commands); i++)
		fprintf(fp, "  %-15s %s\n", commands[i].name, commands[i].summary);
	fputc('\n', fp);
	replay_print_exit_codes(fp);
}

static const replay_command_t *find(const char *name)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(commands); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

/* Reads the settings from the environment and the command line, leaving the command and
 * its options in argv. Prints the error, if any. */
static payq_args_result_t load_settings(payq_config_t *cfg, int *argc, char **argv)
{
	char errstr[512];
	payq_args_result_t r = PAYQ_ARGS_ERROR;

	if (!payq_config_load_env(cfg, PAYQ_PROG_REPLAY, errstr, sizeof(errstr)))
		r = payq_config_parse_args(cfg, PAYQ_PROG_REPLAY, "payq-replay", usage, argc, argv,
					   errstr, sizeof(errstr));
	if (r == PAYQ_ARGS_ERROR)
		fprintf(stderr, "payq-replay: %s\n", errstr);
	return r;
}

/* True when --group was given on the command line, before the settings parser consumes it. */
static bool group_named(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--group") || !strncmp(argv[i], "--group=", 8))
			return true;
	return getenv("PAYQ_GROUP") != NULL;
}

int main(int argc, char **argv)
{
	payq_config_t cfg;
	bool group_given = group_named(argc, argv);
	replay_exit_t rc;

	/* The first bare word that names a command, for its --help. */
	for (int i = 1; i < argc && !current; i++)
		if (argv[i][0] != '-')
			current = find(argv[i]);
	payq_config_init(&cfg);
	switch (load_settings(&cfg, &argc, argv)) {
	case PAYQ_ARGS_OK: break;
	case PAYQ_ARGS_EXIT: rc = REPLAY_EXIT_OK; goto out; /* --help and the like were served */
	case PAYQ_ARGS_ERROR: rc = REPLAY_EXIT_USAGE; goto out;
	}
	payq_pg_configure(&cfg, PAYQ_PROG_REPLAY, PAYQ_PG_BOUND_SESSIONS);
	if (cfg.db && *cfg.db)
		payq_pg_warn_insecure(cfg.db);
	current = argc < 2 ? NULL : find(argv[1]);
	if (!current) {
		if (argc < 2)
			fprintf(stderr, "payq-replay: no command given (see --help)\n");
		else
			fprintf(stderr, "payq-replay: unknown command \"%s\" (see --help)\n",
				argv[1]);
		rc = REPLAY_EXIT_USAGE;
		goto out;
	}
	if (current->explicit_group && !group_given) {
		free(cfg.group);
		cfg.group = NULL;
	}
	replay_handle_signals();
	rc = replay_command_run(current->steps, &cfg, argc - 1, argv + 1);
out:
	payq_config_destroy(&cfg);
	return rc;
}
