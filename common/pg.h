/* pg.h - libpq helpers: connecting, and telling transient errors from permanent ones. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "config.h"

/* Takes the bounds (PAYQ_DB_*) that prog reads from cfg; every later payq_pg_connect
 * applies them. A migration may rightly run for long: PAYQ_PG_BOUND_CONNECTIONS leaves its
 * statements to the server's settings. Until then connections are unbounded but for libpq's
 * own defaults. Call once, before any thread connects. */
typedef enum {
	PAYQ_PG_BOUND_SESSIONS,	   /* also statement, lock and idle-in-transaction timeouts */
	PAYQ_PG_BOUND_CONNECTIONS, /* only connect, keepalives and tcp_user_timeout (migrate) */
} payq_pg_bounds_t;

void payq_pg_configure(const payq_config_t *cfg, unsigned prog, payq_pg_bounds_t bounds);

/* Logs a warning when conninfo (or PGSSLMODE) asks for less than sslmode=verify-full
 * towards a host that is not loopback or a unix socket: the link could be read or the
 * server impersonated. Returns true when it warned. */
bool payq_pg_warn_insecure(const char *conninfo);

/* Connects with conninfo (NULL or "" means libpq's PG* variables). Sets
 * application_name, and the configured bounds: connect_timeout, keepalives,
 * tcp_user_timeout as libpq parameters, and statement_timeout, lock_timeout and
 * idle_in_transaction_session_timeout as "-c" options after the conninfo's own
 * options, so that they win. Returns the connection, or NULL with errstr. */
PGconn *payq_pg_connect(const char *conninfo, const char *appname, char *errstr,
			size_t errstr_size);

/* The SQLSTATE of a result, or "" when there is none (as after a lost connection). */
const char *payq_pg_sqlstate(const PGresult *res);

/* True for errors that must be retried, never skipped: connection loss, class 08,
 * 40001, 40P01, 57P01-57P03, 55P03, 57014 and 25006 (DESIGN.md, Worker behaviour), and
 * the server's idle timeouts 25P03 and 57P05, which end the session.
 * A NULL result or a bad connection status also counts as transient: a session cut by
 * tcp_user_timeout, keepalives or payq_pg_get_result has no SQLSTATE. */
bool payq_pg_transient(PGconn *conn, const PGresult *res);

/* PQgetResult with a deadline: waits at most statement_timeout + tcp_user_timeout (as
 * configured) for the next result. A server that answers by then has either finished
 * or cancelled the statement itself; one that has not is unreachable (a half-open
 * connection, a middlebox that stopped forwarding), so the socket is shut down and NULL
 * returned, with the connection bad: a transient error, and the caller reconnects.
 * Without a configured statement_timeout it is plain PQgetResult. */
PGresult *payq_pg_get_result(PGconn *conn);

/* The bound payq_pg_get_result puts on one answer: statement_timeout + tcp_user_timeout
 * as configured, or 0 without a configured statement_timeout (no bound). */
int64_t payq_pg_answer_bound_ms(void);

/* PQexec, PQexecPrepared and PQprepare with the same arguments and results, but each wait
 * for an answer bounded as in payq_pg_get_result: a silent server ends in a NULL or
 * error result with the connection bad, never in a wait without end. */
PGresult *payq_pg_query(PGconn *conn, const char *sql);
PGresult *payq_pg_exec_prepared(PGconn *conn, const char *name, int n, const char *const *values,
				const int *lengths, const int *formats, int result_format);
PGresult *payq_pg_prepare(PGconn *conn, const char *name, const char *sql, int n, const Oid *types);

/* Runs one statement without parameters. Returns 0, or -1 with errstr. */
int payq_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errstr_size);
