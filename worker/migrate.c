/* migrate.c - applies the embedded schema migrations under an advisory lock. */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg.h"
#include "util.h"

/* Any constant works, as long as every payq build uses the same one. */
#define MIGRATE_LOCK_KEY "7351402613"

static int current_version(PGconn *conn, int *version, char *errstr, size_t errstr_size)
{
	PGresult *res =
		payq_pg_query(conn, "SELECT coalesce(max(version), 0) FROM payq.schema_migrations");
	int ret = 0;

	if (PQresultStatus(res) == PGRES_TUPLES_OK) {
		*version = atoi(PQgetvalue(res, 0, 0));
	} else if (!strcmp(payq_pg_sqlstate(res), "42P01") ||
		   !strcmp(payq_pg_sqlstate(res), "3F000")) {
		*version = 0; /* no schema or no table yet */
	} else {
		ret = payq_err(errstr, errstr_size,
			       "reading payq.schema_migrations (SQLSTATE %s): %s",
			       *payq_pg_sqlstate(res) ? payq_pg_sqlstate(res) : "none",
			       PQerrorMessage(conn));
		errstr[strcspn(errstr, "\n")] = '\0';
	}
	PQclear(res);
	return ret;
}

int payq_migrate(PGconn *conn, int *applied, char *errstr, size_t errstr_size)
{
	int version = 0, ret = -1;

	*applied = 0;
	if (payq_pg_exec(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", errstr,
			 errstr_size))
		return -1;
	if (payq_pg_exec(conn,
			 "CREATE SCHEMA IF NOT EXISTS payq;"
			 "CREATE TABLE IF NOT EXISTS payq.schema_migrations ("
			 " version integer PRIMARY KEY, name text NOT NULL,"
			 " applied_at timestamptz NOT NULL DEFAULT now())",
			 errstr, errstr_size))
		goto out;
	if (current_version(conn, &version, errstr, errstr_size))
		goto out;

	for (int i = 0; i < payq_migrations_cnt; i++) {
		const payq_migration_t *m = &payq_migrations[i];
		char vbuf[16];
		const char *params[2] = {vbuf, m->name};
		PGresult *res;

		if (m->version <= version)
			continue;
		if (payq_pg_exec(conn, "BEGIN", errstr, errstr_size))
			goto out;
		if (payq_pg_exec(conn, m->sql, errstr, errstr_size)) {
			char inner[512];
			snprintf(inner, sizeof(inner), "%s", errstr);
			payq_err(errstr, errstr_size, "migration %03d_%s: %s", m->version, m->name,
				 inner);
			PQclear(PQexec(conn, "ROLLBACK"));
			goto out;
		}
		snprintf(vbuf, sizeof(vbuf), "%d", m->version);
		res = PQexecParams(
			conn, "INSERT INTO payq.schema_migrations (version, name) VALUES ($1, $2)",
			2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			payq_err(errstr, errstr_size, "recording migration %d: %s", m->version,
				 PQerrorMessage(conn));
			PQclear(res);
			PQclear(PQexec(conn, "ROLLBACK"));
			goto out;
		}
		PQclear(res);
		if (payq_pg_exec(conn, "COMMIT", errstr, errstr_size))
			goto out;
		log_info("applied migration %03d_%s", m->version, m->name);
		(*applied)++;
	}
	ret = 0;
out:
	PQclear(PQexec(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
	return ret;
}

payq_schema_check_t payq_migrate_check(PGconn *conn, char *errstr, size_t errstr_size)
{
	/* Set by current_version() on success; initialised because gcc -O3 cannot see
	 * that through payq_err()'s return value (-Werror=maybe-uninitialized). */
	int version = 0, want = payq_migrations[payq_migrations_cnt - 1].version;

	/* A failed read says nothing about the version: a statement timeout, a
	 * serialization failure or a dropped connection must not pass for an old schema. */
	if (current_version(conn, &version, errstr, errstr_size))
		return PAYQ_SCHEMA_UNREADABLE;
	if (version < want) {
		payq_err(errstr, errstr_size,
			 "database schema is at version %d but this worker needs %d; "
			 "run `payq-worker migrate` first",
			 version, want);
		return PAYQ_SCHEMA_TOO_OLD;
	}
	if (version > want)
		log_warn("database schema is at version %d, newer than this worker's %d", version,
			 want);
	return PAYQ_SCHEMA_OK;
}
