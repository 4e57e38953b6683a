/* main.c - payq-console: the operator console's HTTP server (libmicrohttpd, one thread). */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/rand.h>

#include "assets.h"
#include "console.h"
#include "log.h"
#include "pg.h"
#include "range.h"
#include "util.h"
#include "wmetrics.h"

#define BODY_MAX 65536

console_t console;
static volatile sig_atomic_t running = 1;

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-console [--listen ADDR:PORT] [--token-file PATH | --user-header NAME\n"
		"         [--role-header NAME]] [--action-db CONNINFO] [settings]\n"
		"\n"
		"The operator console: dead letters, pending and unknown payments, one order's\n"
		"timeline, anomalies, audit gaps, lag, and the operator action log. It reads\n"
		"PostgreSQL with --db (connect it as payq_readonly) and Kafka with a group-less\n"
		"reader. Actions (re-drive, reconcile now, resolve, audit repair, acknowledge)\n"
		"run payq-replay's and the reconciler's code in-process with --action-db (as\n"
		"payq_worker), after their payq.operator_actions row is written.\n"
		"\n"
		"  --listen ADDR:PORT  IPv4 address and port (PAYQ_CONSOLE_LISTEN, 127.0.0.1:8480)\n"
		"  --token-file PATH   lines TOKEN ROLE NAME (PAYQ_CONSOLE_TOKEN_FILE): log in\n"
		"                      with a token, or send Authorization: Bearer TOKEN\n"
		"  --user-header NAME  trust a reverse proxy's header for the user\n"
		"                      (PAYQ_CONSOLE_USER_HEADER); the role comes from\n"
		"  --role-header NAME  (PAYQ_CONSOLE_ROLE_HEADER, X-Payq-Role)\n"
		"  --action-db CONNINFO  (PAYQ_CONSOLE_ACTION_DB; default: --db)\n"
		"  --plan-ttl-s N      a plan older than N seconds is refused (PAYQ_CONSOLE_PLAN_TTL_S, 300)\n"
		"  --local-role ROLE   without a token file or proxy, on loopback only: everybody's\n"
		"                      role (PAYQ_CONSOLE_LOCAL_ROLE, viewer)\n"
		"  --rate R            messages per second of a re-drive (PAYQ_CONSOLE_RATE, 100)\n"
		"\n"
		"Refuses to start on a non-loopback address without --token-file or\n"
		"--user-header.\n");
}

static void on_signal(int sig)
{
	(void)sig;
	running = 0;
}

typedef struct request {
	char *body;
	size_t len;
	bool too_large;
} request_t;

static enum MHD_Result send_reply(struct MHD_Connection *conn, console_reply_t *r)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(r->body ? strlen(r->body) : 0,
								    r->body ? r->body : (void *)"",
								    MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	if (!r->body)
		r->body = NULL;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				r->type ? r->type : "text/plain");
	MHD_add_response_header(resp, "Content-Security-Policy",
				"default-src 'self'; frame-ancestors 'none'; form-action 'self'");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	if (r->set_cookie[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, r->set_cookie);
	ret = MHD_queue_response(conn, r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static bool serve_asset(const char *url, console_reply_t *r)
{
	static const char *const pages[] = {"/",      "/dlq", "/payments", "/order", "/anomalies",
					    "/audit", "/lag", "/actions",  "/login"};
	const char *path = url;

	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		if (!strcmp(url, pages[i]))
			path = "/index.html";
	for (const console_asset_t *a = console_assets; a->path; a++) {
		if (strcmp(a->path, path))
			continue;
		r->status = 200;
		r->type = a->type;
		r->body = strndup((const char *)a->data, a->len);
		return true;
	}
	return false;
}

/* A POST from a page must carry the session's CSRF token; a cross-site one carries no
 * token (and, SameSite=Strict, no cookie either). */
static bool csrf_ok(struct MHD_Connection *conn, const console_ident_t *id)
{
	const char *tok = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-CSRF-Token");

	if (id->bearer)
		return true;
	return tok && id->csrf[0] && strlen(tok) == strlen(id->csrf) && !strcmp(tok, id->csrf);
}

static void route(struct MHD_Connection *conn, const char *url, bool post, const char *body,
		  console_reply_t *r)
{
	console_ident_t id;

	if (!post && serve_asset(url, r))
		return;
	if (post && !strcmp(url, "/login")) {
		console_login(body, r);
		return;
	}
	if (strncmp(url, "/api/", 5)) {
		console_error(r, post ? 405 : 404, "not found");
		return;
	}
	if (!console_identify(conn, &id) || id.role == CONSOLE_ROLE_NONE) {
		console_error(r, 401, "log in first");
		return;
	}
	if (!post) {
		console_view(url, conn, &id, r);
		return;
	}
	if (!csrf_ok(conn, &id)) {
		console_error(r, 403, "missing or wrong CSRF token");
		return;
	}
	/* Every POST acts: viewers never may, whatever the page shows. */
	if (!console_allowed(&id, CONSOLE_ROLE_OPERATOR)) {
		console_error(r, 403, "%s may not act", console_role_name(id.role));
		return;
	}
	if (!strcmp(url, "/api/plan"))
		console_plan(&id, body, r);
	else if (!strcmp(url, "/api/execute"))
		console_execute(&id, body, r);
	else
		console_error(r, 404, "not found");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	request_t *req = *con_cls;
	console_reply_t r = {0};
	bool post = !strcmp(method, MHD_HTTP_METHOD_POST);

	if (!post && strcmp(method, MHD_HTTP_METHOD_GET)) {
		console_error(&r, 405, "GET or POST");
		return send_reply(conn, &r);
	}
	if (!req) {
		if (!(req = calloc(1, sizeof(*req))))
			return MHD_NO;
		*con_cls = req;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (req->len + *upload_data_size > BODY_MAX) {
			req->too_large = true;
		} else {
			char *nb = realloc(req->body, req->len + *upload_data_size + 1);
			if (!nb)
				return MHD_NO;
			memcpy(nb + req->len, upload_data, *upload_data_size);
			req->body = nb;
			req->len += *upload_data_size;
			req->body[req->len] = '\0';
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (req->too_large)
		console_error(&r, 413, "request body over %d bytes", BODY_MAX);
	else
		route(conn, url, post, req->body, &r);
	return send_reply(conn, &r);
}

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	request_t *req = *con_cls;

	if (req) {
		free(req->body);
		free(req);
	}
	*con_cls = NULL;
}

static const char *opt_or_env(const char *val, const char *env, const char *def)
{
	const char *e = getenv(env);
	return val ? val : e && *e ? e : def;
}

typedef struct options {
	const char *listen, *token_file, *user_header, *role_header, *action_db, *ttl, *local_role,
		*rate;
} options_t;

static int own_args(int argc, char **argv, options_t *o)
{
	for (int i = 1; i < argc; i++) {
		const char **dst = !strcmp(argv[i], "--listen")	       ? &o->listen
				   : !strcmp(argv[i], "--token-file")  ? &o->token_file
				   : !strcmp(argv[i], "--user-header") ? &o->user_header
				   : !strcmp(argv[i], "--role-header") ? &o->role_header
				   : !strcmp(argv[i], "--action-db")   ? &o->action_db
				   : !strcmp(argv[i], "--plan-ttl-s")  ? &o->ttl
				   : !strcmp(argv[i], "--local-role")  ? &o->local_role
				   : !strcmp(argv[i], "--rate")	       ? &o->rate
								       : NULL;
		if (!dst || i + 1 >= argc) {
			fprintf(stderr, "payq-console: unknown argument \"%s\" (see --help)\n",
				argv[i]);
			return -1;
		}
		*dst = argv[++i];
	}
	o->listen = opt_or_env(o->listen, "PAYQ_CONSOLE_LISTEN", "127.0.0.1:8480");
	o->token_file = opt_or_env(o->token_file, "PAYQ_CONSOLE_TOKEN_FILE", NULL);
	o->user_header = opt_or_env(o->user_header, "PAYQ_CONSOLE_USER_HEADER", NULL);
	o->role_header = opt_or_env(o->role_header, "PAYQ_CONSOLE_ROLE_HEADER", "X-Payq-Role");
	o->action_db = opt_or_env(o->action_db, "PAYQ_CONSOLE_ACTION_DB", NULL);
	o->ttl = opt_or_env(o->ttl, "PAYQ_CONSOLE_PLAN_TTL_S", "300");
	o->local_role = opt_or_env(o->local_role, "PAYQ_CONSOLE_LOCAL_ROLE", "viewer");
	o->rate = opt_or_env(o->rate, "PAYQ_CONSOLE_RATE", "100");
	return 0;
}

static int parse_listen(const char *text, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	long port;
	char *end;

	if (!colon || (size_t)(colon - text) >= sizeof(host))
		return -1;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int configure(const options_t *o, const struct sockaddr_in *sa, char *errstr,
		     size_t errstr_size)
{
	bool loopback = (ntohl(sa->sin_addr.s_addr) >> 24) == 127;

	console.plan_ttl_ms = strtoll(o->ttl, NULL, 10) * 1000;
	console.rate = strtod(o->rate, NULL);
	if (console.plan_ttl_ms <= 0 || console.plan_ttl_ms > 3600 * 1000 || !(console.rate > 0))
		return payq_err(errstr, errstr_size, "--plan-ttl-s: 1 to 3600; --rate: > 0");
	console.role_header = (char *)o->role_header;
	if (o->token_file && o->user_header)
		return payq_err(errstr, errstr_size, "--token-file or --user-header, not both");
	if (o->user_header) {
		console.auth = CONSOLE_AUTH_HEADER;
		console.user_header = (char *)o->user_header;
	} else if (o->token_file) {
		console.auth = CONSOLE_AUTH_TOKENS;
		if (console_auth_init(o->token_file, errstr, errstr_size))
			return -1;
	} else if (!loopback) {
		return payq_err(errstr, errstr_size,
				"%s is not a loopback address: give "
				"--token-file or --user-header (behind a proxy that sets it)",
				o->listen);
	} else {
		console.auth = CONSOLE_AUTH_LOCAL;
		if ((console.local_role = console_role_parse(o->local_role)) == CONSOLE_ROLE_NONE)
			return payq_err(errstr, errstr_size,
					"--local-role: viewer, operator or admin");
	}
	console.act_cfg = console.cfg;
	if (o->action_db)
		console.act_cfg.db = (char *)o->action_db;
	if (!(console.rk = payq_range_client_new(&console.cfg, errstr, errstr_size)))
		return -1;
	return RAND_bytes(console.secret, sizeof(console.secret)) == 1
		       ? 0
		       : payq_err(errstr, errstr_size, "no randomness");
}

int main(int argc, char **argv)
{
	char errstr[512];
	options_t o = {0};
	struct sockaddr_in sa;
	struct MHD_Daemon *d;

	payq_config_init(&console.cfg);
	if (payq_config_load_env(&console.cfg, PAYQ_PROG_ALL, errstr, sizeof(errstr))) {
		fprintf(stderr, "payq-console: %s\n", errstr);
		return 2;
	}
	switch (payq_config_parse_args(&console.cfg, PAYQ_PROG_ALL, "payq-console", usage, &argc,
				       argv, errstr, sizeof(errstr))) {
	case PAYQ_ARGS_EXIT: return 0;
	case PAYQ_ARGS_ERROR: fprintf(stderr, "payq-console: %s\n", errstr); return 2;
	default: break;
	}
	if (own_args(argc, argv, &o) || parse_listen(o.listen, &sa)) {
		fprintf(stderr, "payq-console: bad arguments or --listen (IPv4 ADDR:PORT)\n");
		return 2;
	}
	payq_pg_configure(&console.cfg, PAYQ_PROG_REPLAY, PAYQ_PG_BOUND_SESSIONS);
	payq_worker_metrics_init();
	if (configure(&o, &sa, errstr, sizeof(errstr))) {
		fprintf(stderr, "payq-console: %s\n", errstr);
		return 2;
	}
	payq_pg_warn_insecure(console.cfg.db);
	if (console.act_cfg.db != console.cfg.db)
		payq_pg_warn_insecure(console.act_cfg.db);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
			     handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			     MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
			     MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "payq-console: cannot listen on %s\n", o.listen);
		return 1;
	}
	log_info("payq-console: listening on http://%s (auth: %s)", o.listen,
		 console.auth == CONSOLE_AUTH_HEADER   ? "proxy header"
		 : console.auth == CONSOLE_AUTH_TOKENS ? "token file"
						       : "loopback, no login");
	while (running)
		usleep(100000);
	MHD_stop_daemon(d);
	rd_kafka_destroy(console.rk);
	if (console.ro)
		PQfinish(console.ro);
	if (console.act)
		PQfinish(console.act);
	return 0;
}
