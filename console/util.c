/* util.c - payq-console: JSON replies, SQL as JSON, hashes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "console.h"
#include "pg.h"
#include "util.h"

void console_json(console_reply_t *r, unsigned status, cJSON *j)
{
	r->status = status;
	r->type = "application/json";
	r->body = j ? cJSON_PrintUnformatted(j) : NULL;
	if (!r->body)
		r->body = strdup("{}");
	cJSON_Delete(j);
}

void console_error(console_reply_t *r, unsigned status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	cJSON *j = cJSON_CreateObject();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(j, "error", msg);
	console_json(r, status, j);
}

static bool ensure_conn(PGconn **conn, const char *dsn, char *errstr, size_t errstr_size)
{
	if (*conn && PQstatus(*conn) == CONNECTION_OK)
		return true;
	if (*conn)
		PQfinish(*conn);
	*conn = payq_pg_connect(dsn, "payq-console", errstr, errstr_size);
	return *conn != NULL;
}

cJSON *console_sql_rows(PGconn **conn, const char *dsn, const char *sql, int n,
			const char *const *params, char *errstr, size_t errstr_size)
{
	char *wrapped;
	PGresult *res;
	cJSON *j = NULL;

	if (!ensure_conn(conn, dsn, errstr, errstr_size))
		return NULL;
	if (asprintf(&wrapped, "SELECT coalesce(json_agg(t), '[]')::text FROM (%s) t", sql) < 0) {
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	res = PQexecParams(*conn, wrapped, n, NULL, params, NULL, NULL, 0);
	free(wrapped);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		payq_err(errstr, errstr_size, "%s", PQerrorMessage(*conn));
	else if (!(j = cJSON_Parse(PQgetvalue(res, 0, 0))))
		payq_err(errstr, errstr_size, "unreadable JSON from PostgreSQL");
	PQclear(res);
	return j;
}

void console_sha256_hex(const char *text, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < len && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
}

int console_random_hex(size_t n, char *out)
{
	unsigned char b[64];

	if (n > sizeof(b) || RAND_bytes(b, (int)n) != 1)
		return -1;
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	return 0;
}

const char *console_role_name(console_role_t r)
{
	switch (r) {
	case CONSOLE_ROLE_VIEWER: return "viewer";
	case CONSOLE_ROLE_OPERATOR: return "operator";
	case CONSOLE_ROLE_ADMIN: return "admin";
	default: return "none";
	}
}

console_role_t console_role_parse(const char *s)
{
	if (!s)
		return CONSOLE_ROLE_NONE;
	if (!strcmp(s, "viewer"))
		return CONSOLE_ROLE_VIEWER;
	if (!strcmp(s, "operator"))
		return CONSOLE_ROLE_OPERATOR;
	if (!strcmp(s, "admin"))
		return CONSOLE_ROLE_ADMIN;
	return CONSOLE_ROLE_NONE;
}
