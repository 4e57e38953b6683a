/* console.h - payq-console: what its modules share. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "config.h"

/* Ordered: a role may do what every lower role may. */
typedef enum {
	CONSOLE_ROLE_NONE = 0,
	CONSOLE_ROLE_VIEWER,
	CONSOLE_ROLE_OPERATOR,
	CONSOLE_ROLE_ADMIN,
} console_role_t;

typedef struct console_ident {
	char user[128];
	console_role_t role;
	char csrf[65]; /* what a POST must carry in X-CSRF-Token; "" for bearer requests */
	bool bearer;   /* Authorization: Bearer: no cookie, so no CSRF to fear */
} console_ident_t;

typedef enum { CONSOLE_AUTH_LOCAL, CONSOLE_AUTH_TOKENS, CONSOLE_AUTH_HEADER } console_auth_mode_t;

typedef struct console {
	payq_config_t cfg;     /* reads: cfg.db connects as payq_readonly */
	payq_config_t act_cfg; /* actions: the same settings with db = the action DSN */
	PGconn *ro;	       /* the read connection */
	PGconn *act;	       /* the action log's connection (action DSN) */
	rd_kafka_t *rk;	       /* group-less reader (replay's range client) */
	int64_t plan_ttl_ms;   /* a plan older than this is refused */
	double rate;	       /* messages per second of re-drives and repairs */
	console_auth_mode_t auth;
	console_role_t local_role; /* CONSOLE_AUTH_LOCAL: everybody's role */
	char *user_header, *role_header;
	unsigned char secret[32]; /* HMAC key of the CSRF tokens, new at every start */
} console_t;

extern console_t console;

/* A reply under construction: status, body and type; body is malloc()ed. */
typedef struct console_reply {
	unsigned status;
	char *body;
	const char *type;
	char set_cookie[256];
} console_reply_t;

/* Fills r with JSON (takes j) and status. */
void console_json(console_reply_t *r, unsigned status, cJSON *j);
/* {"error": msg} with status. */
void console_error(console_reply_t *r, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Runs sql (a SELECT) with params on conn and returns its rows as a JSON array of
 * objects (PostgreSQL's json_agg), or NULL with errstr. Reconnects a lost connection. */
cJSON *console_sql_rows(PGconn **conn, const char *dsn, const char *sql, int n,
			const char *const *params, char *errstr, size_t errstr_size);

/* Hex SHA-256 of text into out[65]. */
void console_sha256_hex(const char *text, char out[65]);
/* Hex of n random bytes into out (2n+1). Returns 0 or -1. */
int console_random_hex(size_t n, char *out);

const char *console_role_name(console_role_t r);
console_role_t console_role_parse(const char *s);

/* auth.c */
int console_auth_init(const char *token_file, char *errstr, size_t errstr_size);
/* Who sent the request: header, bearer token or session cookie. False: nobody known. */
struct MHD_Connection;
bool console_identify(struct MHD_Connection *conn, console_ident_t *id);
/* POST /login with token=...: a session cookie in r. */
void console_login(const char *body, console_reply_t *r);
/* True when role may do what needs `need`; the server's only check (see the mutant). */
bool console_allowed(const console_ident_t *id, console_role_t need);

/* views.c: the read-only pages' data. */
void console_view(const char *path, struct MHD_Connection *conn, const console_ident_t *id,
		  console_reply_t *r);
/* The DLQ, read with the group-less reader: grouped by reason (redacted unless admin). */
cJSON *console_dlq_scan(const char *only_reason, bool redact, cJSON **targets, char *errstr,
			size_t errstr_size);

/* actions.c */
void console_plan(const console_ident_t *id, const char *body, console_reply_t *r);
void console_execute(const console_ident_t *id, const char *body, console_reply_t *r);
