/* db.c - payq-replay's PostgreSQL reads and writes: dedup rows, progress, the horizon. */
#include "db.h"

#include <stdlib.h>
#include <string.h>

#include "pg.h"
#include "sqlbuf.h"
#include "util.h"

static int pg_fail(PGconn *conn, PGresult *res, const char *what, char *errstr, size_t errstr_size)
{
	payq_err(errstr, errstr_size, "%s: %s", what, PQerrorMessage(conn));
	errstr[strcspn(errstr, "\n")] = '\0';
	PQclear(res);
	return -1;
}

bool replay_db_configured(const payq_config_t *cfg)
{
	return (cfg->db && *cfg->db) || getenv("PGHOST") || getenv("PGDATABASE") ||
	       getenv("PGSERVICE");
}

PGconn *replay_db_connect(const payq_config_t *cfg, const char *what, char *errstr,
			  size_t errstr_size)
{
	char appname[64];
	PGconn *conn;
	PGresult *res;

	snprintf(appname, sizeof(appname), "payq-replay %s", what);
	conn = payq_pg_connect(cfg->db, appname, errstr, errstr_size);
	if (!conn)
		return NULL;
	res = PQexec(conn, "SELECT to_regclass('payq.processed_commands') IS NOT NULL"
			   " AND to_regclass('payq.dedup_horizon') IS NOT NULL"
			   " AND to_regclass('payq.dedup_pruned_offsets') IS NOT NULL");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pg_fail(conn, res, "checking the schema", errstr, errstr_size);
		PQfinish(conn);
		return NULL;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t")) {
		payq_err(errstr, errstr_size,
			 "the database lacks payq.processed_commands, payq.dedup_horizon "
			 "or payq.dedup_pruned_offsets; run `payq-worker migrate` first");
		PQclear(res);
		PQfinish(conn);
		return NULL;
	}
	PQclear(res);
	return conn;
}

void replay_keys_free(replay_keys_t *k)
{
	payq_sqlbuf_free(&k->orders);
	payq_sqlbuf_free(&k->commands);
	free(k->tags);
	memset(k, 0, sizeof(*k));
}

int replay_keys_add(replay_keys_t *k, const char *order_id, const char *command_id, size_t tag)
{
	if (k->n == k->cap &&
	    payq_grow((void **)&k->tags, &k->cap, k->cap ? 2 * k->cap : 256, sizeof(*k->tags)))
		return -1;
	payq_sqlbuf_str(&k->orders, order_id);
	payq_sqlbuf_str(&k->commands, command_id);
	k->tags[k->n++] = tag;
	return k->orders.oom || k->commands.oom ? -1 : 0;
}

size_t replay_keys_count(const replay_keys_t *k)
{
	return k->n;
}

int replay_keys_lookup(replay_keys_t *k, PGconn *conn, bool *found, char *errstr,
		       size_t errstr_size)
{
	const char *params[2];
	PGresult *res;

	if (!k->n)
		return 0;
	params[0] = payq_sqlbuf_array(&k->orders);
	params[1] = payq_sqlbuf_array(&k->commands);
	if (!params[0] || !params[1])
		return payq_err(errstr, errstr_size, "out of memory");
	res = PQexecParams(conn,
			   "SELECT x.i FROM unnest($1::text[], $2::text[]) WITH ORDINALITY"
			   " AS x(o, c, i) WHERE EXISTS (SELECT 1 FROM payq.processed_commands p"
			   " WHERE p.order_id = x.o AND p.command_id = x.c)",
			   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return pg_fail(conn, res, "reading processed_commands", errstr, errstr_size);
	for (int r = 0; r < PQntuples(res); r++) {
		long i = strtol(PQgetvalue(res, r, 0), NULL, 10);
		if (i >= 1 && (size_t)i <= k->n)
			found[k->tags[i - 1]] = true;
	}
	PQclear(res);
	payq_sqlbuf_reset(&k->orders);
	payq_sqlbuf_reset(&k->commands);
	k->n = 0;
	return 0;
}

int replay_db_horizon(PGconn *conn, int64_t *horizon_ms, char *errstr, size_t errstr_size)
{
	PGresult *res = PQexec(conn, "SELECT (extract(epoch FROM horizon) * 1000)::bigint"
				     " FROM payq.dedup_horizon");

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return pg_fail(conn, res, "reading payq.dedup_horizon", errstr, errstr_size);
	*horizon_ms = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
	PQclear(res);
	return 0;
}

/* Runs sql with the text parameters group (unless NULL) and topic, in that order, and
 * fills out[partition] from its rows of (partition, offset); -1 elsewhere. */
static int read_offsets(PGconn *conn, const char *sql, const char *group, const char *topic,
			int64_t *out, int nparts, const char *what, char *errstr,
			size_t errstr_size)
{
	const char *params[2] = {group, topic};
	PGresult *res;

	for (int p = 0; p < nparts; p++)
		out[p] = -1;
	res = group ? PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0)
		    : PQexecParams(conn, sql, 1, NULL, params + 1, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return pg_fail(conn, res, what, errstr, errstr_size);
	for (int r = 0; r < PQntuples(res); r++) {
		long p = strtol(PQgetvalue(res, r, 0), NULL, 10);
		if (p >= 0 && p < nparts && !PQgetisnull(res, r, 1))
			out[p] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
	}
	PQclear(res);
	return 0;
}

int replay_db_progress(PGconn *conn, const char *group, const char *topic, int64_t *next,
		       int nparts, char *errstr, size_t errstr_size)
{
	return read_offsets(conn,
			    "SELECT partition, next_offset FROM payq.consumer_progress"
			    " WHERE group_id = $1 AND topic = $2",
			    group, topic, next, nparts, "reading consumer_progress", errstr,
			    errstr_size);
}

int replay_db_horizon_offsets(PGconn *conn, const char *topic, int64_t *pruned_through,
			      int64_t *first_after, int nparts, char *errstr, size_t errstr_size)
{
	if (read_offsets(conn,
			 "SELECT partition, max_offset FROM payq.dedup_pruned_offsets"
			 " WHERE topic = $1",
			 NULL, topic, pruned_through, nparts, "reading payq.dedup_pruned_offsets",
			 errstr, errstr_size))
		return -1;
	/* A range scan of the first_seen_at index over the rows the horizon protects. */
	return read_offsets(conn,
			    "SELECT kafka_partition, min(kafka_offset) FROM payq.processed_commands"
			    " WHERE kafka_topic = $1 AND kafka_offset IS NOT NULL"
			    " AND first_seen_at >= (SELECT horizon FROM payq.dedup_horizon)"
			    " GROUP BY kafka_partition",
			    NULL, topic, first_after, nparts,
			    "reading processed_commands after the horizon", errstr, errstr_size);
}
