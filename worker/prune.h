/* prune.h - dedup retention: deletes old processed_commands rows in small batches. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "config.h"

/* Raises payq.dedup_horizon to now() - older_than_ms (never lowers it) and commits that
 * first, so no replay check can miss the horizon while rows vanish. Then deletes the
 * processed_commands rows first seen before that time, at most batch rows per statement,
 * each statement its own short transaction, so the worker is never blocked for long.
 * *deleted gets the rows deleted, also after a failure. Returns 0, or -1 with errstr. */
int payq_prune(PGconn *conn, int64_t older_than_ms, int64_t batch, int64_t *deleted, char *errstr,
	       size_t errstr_size);

/* Prints prune's lines for payq-worker --help. */
void payq_prune_usage(FILE *fp);

/* payq-worker prune --older-than DURATION [--batch N]. argv[0] is "prune" and the rest
 * are its options, the common settings already consumed. Connects to cfg->db, checks the
 * schema version and runs payq_prune(). Returns a PAYQ_EXIT_* code: 0 done, 1 database
 * error, 2 bad arguments, 3 schema too old. */
int payq_prune_main(const payq_config_t *cfg, int argc, char **argv);
