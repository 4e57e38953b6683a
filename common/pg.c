/* pg.c - libpq helpers: connecting, and telling transient errors from permanent ones. */
#include "pg.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "util.h"

/* The session bounds of payq_pg_configure; a GUC at -1 is left to the server. */
static struct {
	bool set;
	int64_t statement_timeout_ms, lock_timeout_ms, idle_in_tx_timeout_ms;
	int64_t connect_timeout_s, keepalives_idle_s, keepalives_interval_s, keepalives_count;
	int64_t tcp_user_timeout_ms;
} session = {.connect_timeout_s = 10,
	     .statement_timeout_ms = -1,
	     .lock_timeout_ms = -1,
	     .idle_in_tx_timeout_ms = -1};

/* v, the value of setting env, when prog reads that setting; -1 (the server's) if not. */
static int64_t setting_of(unsigned prog, const char *env, int64_t v)
{
	return payq_config_find(env, prog) ? v : -1;
}

void payq_pg_configure(const payq_config_t *cfg, unsigned prog, payq_pg_bounds_t bounds)
{
	if (bounds == PAYQ_PG_BOUND_CONNECTIONS)
		prog = 0; /* no program's statement settings */
	session.set = true;
	session.statement_timeout_ms =
		setting_of(prog, "PAYQ_DB_STATEMENT_TIMEOUT_MS", cfg->db_statement_timeout_ms);
	session.lock_timeout_ms =
		setting_of(prog, "PAYQ_DB_LOCK_TIMEOUT_MS", cfg->db_lock_timeout_ms);
	session.idle_in_tx_timeout_ms = setting_of(prog, "PAYQ_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
						   cfg->db_idle_in_transaction_timeout_ms);
	session.connect_timeout_s = cfg->db_connect_timeout_s;
	session.keepalives_idle_s = cfg->db_keepalives_idle_s;
	session.keepalives_interval_s = cfg->db_keepalives_interval_s;
	session.keepalives_count = cfg->db_keepalives_count;
	session.tcp_user_timeout_ms = cfg->db_tcp_user_timeout_ms;
}

static bool loopback_host(const char *h, size_t len)
{
	static const char *const names[] = {"localhost", "::1", "0:0:0:0:0:0:0:1"};

	if (len == 0 || h[0] == '/' || h[0] == '@') /* unix socket */
		return true;
	if (len >= 4 && !strncmp(h, "127.", 4))
		return true;
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(names); i++)
		if (strlen(names[i]) == len && !strncmp(h, names[i], len))
			return true;
	return false;
}

/* The first host of a comma-separated libpq host list that is not loopback, as
 * *start and *len; false when every one is. */
static bool remote_host(const char *hosts, const char **start, size_t *len)
{
	const char *p = hosts ? hosts : "";

	for (;;) {
		size_t n = strcspn(p, ",");
		if (!loopback_host(p, n)) {
			*start = p;
			*len = n;
			return true;
		}
		if (!p[n])
			return false;
		p += n + 1;
	}
}

bool payq_pg_warn_insecure(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", NULL);
	const char *host = getenv("PGHOST"), *hostaddr = getenv("PGHOSTADDR");
	const char *mode = getenv("PGSSLMODE"), *start;
	char shown[256];
	size_t len;
	bool warned = false;

	if (!opts)
		return false; /* connecting reports the error */
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (!strcmp(o->keyword, "host"))
			host = o->val;
		else if (!strcmp(o->keyword, "hostaddr"))
			hostaddr = o->val;
		else if (!strcmp(o->keyword, "sslmode"))
			mode = o->val;
	}
	if (!mode || !*mode)
		mode = "prefer"; /* libpq's default */
	if (strcmp(mode, "verify-full") &&
	    (remote_host(host, &start, &len) ||
	     (hostaddr && *hostaddr && remote_host(hostaddr, &start, &len)))) {
		payq_log_mask(start, shown, sizeof(shown));
		log_warn("PostgreSQL: sslmode=%s towards %.*s: the server is not authenticated "
			 "and the connection may be read; use sslmode=verify-full with sslrootcert",
			 mode, (int)(len < sizeof(shown) ? len : sizeof(shown) - 1), shown);
		warned = true;
	}
	PQconninfoFree(opts);
	return warned;
}

/* The conninfo's own options (or PGOPTIONS), then the configured -c settings. */
static char *session_options(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", NULL);
	const char *own = getenv("PGOPTIONS");
	char extra[256] = "", *out;
	size_t n = 0;

	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "options") && o->val)
			own = o->val;
	if (session.statement_timeout_ms >= 0)
		n += (size_t)snprintf(extra + n, sizeof(extra) - n,
				      " -c statement_timeout=%" PRId64,
				      session.statement_timeout_ms);
	if (session.lock_timeout_ms >= 0)
		n += (size_t)snprintf(extra + n, sizeof(extra) - n, " -c lock_timeout=%" PRId64,
				      session.lock_timeout_ms);
	if (session.idle_in_tx_timeout_ms >= 0)
		snprintf(extra + n, sizeof(extra) - n,
			 " -c idle_in_transaction_session_timeout=%" PRId64,
			 session.idle_in_tx_timeout_ms);
	n = strlen(own ? own : "") + strlen(extra) + 1;
	out = malloc(n);
	if (out)
		snprintf(out, n, "%s%s", own ? own : "",
			 own && *own ? extra : extra + (*extra != 0));
	PQconninfoFree(opts);
	return out;
}

static void notice_processor(void *arg, const char *message)
{
	(void)arg;
	log_debug("PostgreSQL: %.*s", (int)strcspn(message, "\n"), message);
}

PGconn *payq_pg_connect(const char *conninfo, const char *appname, char *errstr, size_t errstr_size)
{
	char connect_timeout[24], idle[24], interval[24], count[24], user_timeout[24];
	char *options = NULL;
	/* Later keywords override the expanded dbname's: the configured bounds win. */
	const char *keys[] = {"dbname",		  "application_name",
			      "connect_timeout",  "keepalives",
			      "keepalives_idle",  "keepalives_interval",
			      "keepalives_count", "tcp_user_timeout",
			      "options",	  NULL};
	const char *vals[PAYQ_ARRAY_SIZE(keys)] = {conninfo ? conninfo : "", appname,
						   connect_timeout};
	PGconn *conn;

	snprintf(connect_timeout, sizeof(connect_timeout), "%" PRId64, session.connect_timeout_s);
	if (session.set) {
		snprintf(idle, sizeof(idle), "%" PRId64, session.keepalives_idle_s);
		snprintf(interval, sizeof(interval), "%" PRId64, session.keepalives_interval_s);
		snprintf(count, sizeof(count), "%" PRId64, session.keepalives_count);
		snprintf(user_timeout, sizeof(user_timeout), "%" PRId64,
			 session.tcp_user_timeout_ms);
		options = session_options(conninfo);
		if (!options) {
			payq_err(errstr, errstr_size, "PostgreSQL: out of memory");
			return NULL;
		}
		vals[3] = "1";
		vals[4] = idle;
		vals[5] = interval;
		vals[6] = count;
		vals[7] = user_timeout;
		vals[8] = options;
	} else {
		keys[3] = NULL; /* only connect_timeout: libpq's defaults for the rest */
	}
	/* expand_dbname lets conninfo be a full conninfo string or a URI. */
	conn = PQconnectdbParams(keys, vals, 1);
	free(options);
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
#ifdef PAYQ_MUTATION_TIMEOUT_PERMANENT
	/* Deliberately broken: lock and statement timeouts count as permanent. */
	static const char *const codes[] = {"40001", "40P01", "57P01", "57P02",
					    "57P03", "25006", "25P03", "57P05"};
#else
	static const char *const codes[] = {"40001", "40P01", "57P01", "57P02", "57P03",
					    "55P03", "57014", "25006", "25P03", "57P05"};
#endif
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
	PGresult *res = payq_pg_query(conn, sql);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		ret = payq_err(errstr, errstr_size, "%s", PQerrorMessage(conn));
		errstr[strcspn(errstr, "\n")] = '\0';
	}
	PQclear(res);
	return ret;
}

/* Poll at most this long at a time over TLS: bytes OpenSSL has already read from the
 * socket do not make it readable again, and PQconsumeInput takes them on the next turn. */
#define TLS_POLL_SLICE_MS 100

int64_t payq_pg_answer_bound_ms(void)
{
	if (session.statement_timeout_ms <= 0)
		return 0;
	return session.statement_timeout_ms + session.tcp_user_timeout_ms;
}

PGresult *payq_pg_get_result(PGconn *conn)
{
	int64_t bound = payq_pg_answer_bound_ms(), deadline;

	if (!conn || !bound)
		return PQgetResult(conn);
	deadline = payq_now_ms() + bound;
	while (PQconsumeInput(conn) && PQisBusy(conn)) {
		struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
		int64_t left = deadline - payq_now_ms();

		if (pfd.fd < 0)
			break;
		if (left <= 0) {
			log_warn("PostgreSQL: no answer within %" PRId64 " ms (statement_timeout + "
				 "tcp_user_timeout): dropping the connection",
				 bound);
			/* The next read sees end of file: libpq marks the connection bad. */
			shutdown(pfd.fd, SHUT_RDWR);
			PQconsumeInput(conn);
			break;
		}
		if (PQsslInUse(conn) && left > TLS_POLL_SLICE_MS)
			left = TLS_POLL_SLICE_MS;
		if (poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) < 0 && errno != EINTR)
			break;
	}
	return PQgetResult(conn);
}

/* What PQexec returns after a send: the last result, each awaited within the bound; NULL
 * when the send failed (PQerrorMessage says why). */
static PGresult *last_result(PGconn *conn, int sent)
{
	PGresult *last = NULL, *r;

	if (!sent)
		return NULL;
	while ((r = payq_pg_get_result(conn))) {
		ExecStatusType st = PQresultStatus(r);

		PQclear(last);
		last = r;
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH ||
		    PQstatus(conn) == CONNECTION_BAD)
			break;
	}
	return last;
}

PGresult *payq_pg_query(PGconn *conn, const char *sql)
{
	return last_result(conn, PQsendQuery(conn, sql));
}

PGresult *payq_pg_exec_prepared(PGconn *conn, const char *name, int n, const char *const *values,
				const int *lengths, const int *formats, int result_format)
{
	return last_result(
		conn, PQsendQueryPrepared(conn, name, n, values, lengths, formats, result_format));
}

PGresult *payq_pg_prepare(PGconn *conn, const char *name, const char *sql, int n, const Oid *types)
{
	return last_result(conn, PQsendPrepare(conn, name, sql, n, types));
}
