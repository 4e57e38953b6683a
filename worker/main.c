/* main.c - payq-worker: parses arguments and runs one subcommand. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <libpq-fe.h>

#include "config.h"
#include "consume.h"
#include "log.h"
#include "migrate.h"
#include "pg.h"
#include "prune.h"
#include "reconcile.h"
#include "signals.h"

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-worker [run] [settings]\n"
		"       payq-worker migrate [--db CONNINFO]\n"
		"       payq-worker prune --older-than DURATION [--batch N]\n"
		"       payq-worker reconcile [--once] [--all]\n"
		"\n"
		"run      consume payq.commands and apply each command exactly once to PostgreSQL\n"
		"         (the default). Offsets are committed only after the database commit.\n"
		"migrate  apply the embedded schema migrations under an advisory lock; safe to\n"
		"         run from many pods at once, and to run twice.\n");
	payq_prune_usage(fp);
	payq_reconcile_usage(fp);
	fprintf(fp,
		"\n"
		"Exit codes: 0 clean stop, 1 runtime or fatal Kafka error, 2 bad arguments or\n"
		"settings, 3 database schema older than this worker (run `payq-worker migrate`).\n"
		"\n");
}

static int cmd_migrate(const payq_config_t *cfg)
{
	char errstr[512];
	int applied;
	PGconn *conn = payq_pg_connect(cfg->db, "payq-worker migrate", errstr, sizeof(errstr));

	if (!conn) {
		log_error("%s", errstr);
		return PAYQ_EXIT_RUNTIME;
	}
	if (payq_migrate(conn, &applied, errstr, sizeof(errstr))) {
		log_error("migrate: %s", errstr);
		PQfinish(conn);
		return PAYQ_EXIT_RUNTIME;
	}
	PQfinish(conn);
	log_info("schema is at version %d (%d migrations applied now)",
		 payq_migrations[payq_migrations_cnt - 1].version, applied);
	return PAYQ_EXIT_OK;
}

int main(int argc, char **argv)
{
	payq_config_t cfg;
	char errstr[512];
	const char *cmd = "run";
	int rc;

	payq_config_init(&cfg);
	if (payq_config_load_env(&cfg, PAYQ_PROG_WORKER, errstr, sizeof(errstr))) {
		fprintf(stderr, "payq-worker: %s\n", errstr);
		payq_config_destroy(&cfg);
		return PAYQ_EXIT_USAGE;
	}
	switch (payq_config_parse_args(&cfg, PAYQ_PROG_WORKER, "payq-worker", usage, &argc, argv,
				       errstr, sizeof(errstr))) {
	case PAYQ_ARGS_EXIT: payq_config_destroy(&cfg); return PAYQ_EXIT_OK;
	case PAYQ_ARGS_ERROR:
		fprintf(stderr, "payq-worker: %s\n", errstr);
		payq_config_destroy(&cfg);
		return PAYQ_EXIT_USAGE;
	case PAYQ_ARGS_OK: break;
	}
	/* A migration may rightly run long: only its connection is bounded. */
	payq_pg_configure(&cfg, PAYQ_PROG_WORKER,
			  argc >= 2 && !strcmp(argv[1], "migrate") ? PAYQ_PG_BOUND_CONNECTIONS
								   : PAYQ_PG_BOUND_SESSIONS);
	payq_pg_warn_insecure(cfg.db);
	if (argc >= 2 && !strcmp(argv[1], "prune")) {
		rc = payq_prune_main(&cfg, argc - 1, argv + 1);
		payq_config_destroy(&cfg);
		return rc;
	}
	/* Before any thread starts: the reconciler's thread uses libcurl too. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (argc >= 2 && !strcmp(argv[1], "reconcile")) {
		payq_signals_install(&payq_run);
		rc = payq_reconcile_main(&cfg, argc - 1, argv + 1);
		payq_config_destroy(&cfg);
		curl_global_cleanup();
		return rc;
	}
	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "payq-worker: unknown argument \"%s\" (see --help)\n",
			argc == 2 ? argv[1] : argv[2]);
		payq_config_destroy(&cfg);
		return PAYQ_EXIT_USAGE;
	}
	if (argc == 2)
		cmd = argv[1];

	if (!strcmp(cmd, "migrate")) {
		rc = cmd_migrate(&cfg);
	} else if (!strcmp(cmd, "run")) {
		payq_signals_install(&payq_run);
		rc = payq_consume_run(&cfg);
	} else {
		fprintf(stderr, "payq-worker: unknown command \"%s\" (see --help)\n", cmd);
		rc = PAYQ_EXIT_USAGE;
	}
	payq_config_destroy(&cfg);
	curl_global_cleanup();
	return rc;
}
