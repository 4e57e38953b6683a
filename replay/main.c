/* main.c - payq-replay: parses the common settings and runs one subcommand. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cli.h"
#include "config.h"
#include "dlq.h"
#include "log.h"
#include "offsets.h"
#include "pg.h"
#include "republish.h"
#include "util.h"

typedef struct subcommand {
	const char *name;
	void (*usage)(FILE *fp);
	const char *summary;
} subcommand_t;

static const subcommand_t subcommands[] = {
	{"republish", replay_republish_usage, "copy a range of a topic back onto a topic"},
	{"dlq", replay_dlq_usage, "re-drive dead letters to the topic they came from"},
	{"reset-offsets", replay_offsets_usage,
	 "move a stopped group's committed offsets and its consumer_progress"},
	{"audit", replay_audit_usage, "check the topic against processed_commands and the DLQ"},
};

/* The subcommand named on the command line, so that `payq-replay SUB --help` shows its
 * own usage; payq_config_parse_args() calls usage() without context. */
static const subcommand_t *current;

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
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(subcommands); i++)
		fprintf(fp, "  %-15s %s\n", subcommands[i].name, subcommands[i].summary);
	fputc('\n', fp);
	replay_print_exit_codes(fp);
}

static const subcommand_t *find(const char *name)
{
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(subcommands); i++)
		if (!strcmp(subcommands[i].name, name))
			return &subcommands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	payq_config_t cfg;
	char errstr[512];
	bool group_given = getenv("PAYQ_GROUP") != NULL;
	int rc;

	/* Before the settings parser consumes them: the first bare word that names a
	 * subcommand, and whether --group was given (reset-offsets never resets the default
	 * group implicitly). */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--group") || !strncmp(argv[i], "--group=", 8))
			group_given = true;
		if (!current && argv[i][0] != '-')
			current = find(argv[i]);
	}

	payq_config_init(&cfg);
	if (payq_config_load_env(&cfg, PAYQ_PROG_REPLAY, errstr, sizeof(errstr))) {
		fprintf(stderr, "payq-replay: %s\n", errstr);
		payq_config_destroy(&cfg);
		return REPLAY_EXIT_USAGE;
	}
	switch (payq_config_parse_args(&cfg, PAYQ_PROG_REPLAY, "payq-replay", usage, &argc, argv,
				       errstr, sizeof(errstr))) {
	case PAYQ_ARGS_EXIT: payq_config_destroy(&cfg); return REPLAY_EXIT_OK;
	case PAYQ_ARGS_ERROR:
		fprintf(stderr, "payq-replay: %s\n", errstr);
		payq_config_destroy(&cfg);
		return REPLAY_EXIT_USAGE;
	case PAYQ_ARGS_OK: break;
	}
	payq_pg_configure(&cfg, PAYQ_PROG_REPLAY, PAYQ_PG_BOUND_SESSIONS);
	if (cfg.db && *cfg.db)
		payq_pg_warn_insecure(cfg.db);
	if (argc < 2 || !find(argv[1])) {
		if (argc < 2)
			fprintf(stderr, "payq-replay: no command given (see --help)\n");
		else
			fprintf(stderr, "payq-replay: unknown command \"%s\" (see --help)\n",
				argv[1]);
		payq_config_destroy(&cfg);
		return REPLAY_EXIT_USAGE;
	}

	replay_handle_signals();
	if (!strcmp(argv[1], "republish"))
		rc = replay_republish_main(&cfg, argc - 1, argv + 1);
	else if (!strcmp(argv[1], "dlq"))
		rc = replay_dlq_main(&cfg, argc - 1, argv + 1);
	else if (!strcmp(argv[1], "reset-offsets"))
		rc = replay_offsets_main(&cfg, group_given, argc - 1, argv + 1);
	else
		rc = replay_audit_main(&cfg, argc - 1, argv + 1);
	payq_config_destroy(&cfg);
	return rc;
}
