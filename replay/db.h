/* db.h - payq-replay's PostgreSQL reads and writes: dedup rows, progress, the horizon. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "sqlbuf.h"

/* True when a database is configured: --db / PAYQ_DB, or libpq's PGHOST, PGDATABASE
 * or PGSERVICE. */
bool replay_db_configured(const payq_config_t *cfg);

/* Connects to cfg->db as "payq-replay <what>" and checks that the schema has the
 * tables replay needs (migration 006 or later). Returns the connection, or NULL with
 * errstr. */
PGconn *replay_db_connect(const payq_config_t *cfg, const char *what, char *errstr,
			  size_t errstr_size);

/* A batch of idempotency keys to look up in processed_commands. A zeroed struct is an
 * empty batch; replay_keys_free() frees what it grew. */
typedef struct replay_keys {
	payq_sqlbuf_t orders, commands;
	size_t *tags;
	size_t n, cap;
} replay_keys_t;

void replay_keys_free(replay_keys_t *k);
/* Adds one key; tag is the caller's (an index into its own array). Returns 0 or -1. */
int replay_keys_add(replay_keys_t *k, const char *order_id, const char *command_id, size_t tag);
size_t replay_keys_count(const replay_keys_t *k);
/* Looks every key up in one statement. found[tag] is set true for each key that has a
 * processed_commands row; other entries are left alone. Empties the batch. Returns 0,
 * or -1 with errstr. */
int replay_keys_lookup(replay_keys_t *k, PGconn *conn, bool *found, char *errstr,
		       size_t errstr_size);

/* Reads consumer_progress for group and topic: next[p] for p < nparts gets next_offset,
 * or -1 where there is no row. Returns 0 or -1 with errstr. */
int replay_db_progress(PGconn *conn, const char *group, const char *topic, int64_t *next,
		       int nparts, char *errstr, size_t errstr_size);

/* Reads payq.dedup_horizon: *horizon_ms gets it in ms since the epoch, or -1 when nothing
 * was ever pruned. Returns 0 or -1 with errstr. */
int replay_db_horizon(PGconn *conn, int64_t *horizon_ms, char *errstr, size_t errstr_size);

/* Where the dedup horizon falls in each partition p < nparts of topic:
 *   pruned_through[p]: the highest offset whose processed_commands row prune deleted
 *     (payq.dedup_pruned_offsets), or -1;
 *   first_after[p]: the lowest kafka_offset among the rows first seen at or after the
 *     horizon, or -1. The worker consumes a partition in offset order, so every record
 *     from there on was consumed after the horizon, whatever its CreateTime.
 * Returns 0 or -1 with errstr. */
int replay_db_horizon_offsets(PGconn *conn, const char *topic, int64_t *pruned_through,
			      int64_t *first_after, int nparts, char *errstr, size_t errstr_size);
