/* pg.c - libpq helpers: connecting, and telling transient errors from permanent ones. */
#include "pg.h"

#include <string.h>

#include "log.h"
#include "util.h"

static void notice_processor(void *arg, const char *message)
{
	(void)arg;
	log_debug("PostgreSQL: %.*s", (int)strcspn(message, "\n"), message);
}

PGconn *payq_pg_connect(const char *conninfo, const char *appname, char *errstr,
			size_t errstr_size)
{
	const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
	const char *vals[] = {conninfo ? conninfo : "", appname, "10", NULL};
	PGconn *conn;

	/* expand_dbname lets conninfo be a full conninfo string or a URI. */
	conn = PQconnectdbParams(keys, vals, 1);
	if (!conn) {
		payq_err(errstr, errstr_size, "PostgreSQL: out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		payq_err(errstr, errstr_size, "PostgreSQL: %s", PQerrorMessage(conn));
		/* libpq messages end in a newline; keep log lines on one line. */
		errstr[strcspn(errstr, "\n")] = '\0';
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, notice_processor, NULL);
	return conn;
}

const char *payq_pg_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

bool payq_pg_transient(PGconn *conn, const PGresult *res)
{
	static const char *const codes[] = {"40001", "40P01", "57P01", "57P02", "57P03",
					    "55P03", "57014", "25006"};
	const char *st = payq_pg_sqlstate(res);

	if (!res || !conn || PQstatus(conn) != CONNECTION_OK || !*st)
		return true;
	if (!strncmp(st, "08", 2))
		return true;
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(codes); i++)
		if (!strcmp(st, codes[i]))
			return true;
	return false;
}

int payq_pg_exec(PGconn *conn, const char *sql, char *errstr, size_t errstr_size)
{
	PGresult *res = PQexec(conn, sql);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		ret = payq_err(errstr, errstr_size, "%s", PQerrorMessage(conn));
		errstr[strcspn(errstr, "\n")] = '\0';
	}
	PQclear(res);
	return ret;
}
