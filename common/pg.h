/* pg.h - libpq helpers: connecting, and telling transient errors from permanent ones. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* Connects with conninfo (NULL or "" means libpq's PG* variables). Sets
 * application_name. Returns the connection, or NULL with errstr. */
PGconn *payq_pg_connect(const char *conninfo, const char *appname, char *errstr,
			size_t errstr_size);

/* The SQLSTATE of a result, or "" when there is none (as after a lost connection). */
const char *payq_pg_sqlstate(const PGresult *res);

/* True for errors that must be retried, never skipped: connection loss, class 08,
 * 40001, 40P01, 57P01-57P03, 55P03, 57014 and 25006 (DESIGN.md, Worker behaviour).
 * A NULL result or a bad connection status also counts as transient. */
bool payq_pg_transient(PGconn *conn, const PGresult *res);

/* Runs one statement without parameters. Returns 0, or -1 with errstr. */
int payq_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errstr_size);
