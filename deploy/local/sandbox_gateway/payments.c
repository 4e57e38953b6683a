/* payments.c - payq-sandbox-gateway's payments API, the channel a payq worker charges in
 * gateway mode: POST /charges (idempotency keys, declines, drops), GET /charges/KEY, the
 * injected errors and latency, the API key and client certificate checks, and the request
 * log. */
#include "payments.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <gnutls/gnutls.h>

#include "server.h"
#include "state.h"
#include "util.h"

#define AMOUNT_MAX 9007199254740991LL /* 2^53 - 1: exact in every JSON parser */
/* libmicrohttpd 0.9.74 renamed these two; numbers build against any version. */
#define HTTP_CONTENT_TOO_LARGE 413
#define HTTP_UNPROCESSABLE_CONTENT 422

/* ---- latency sleeps ---- */

/* Latency sleeps wait on this condition, so that shutdown does not wait for them. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
} nap_ctl = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Sleeps ms milliseconds, or less when the program stops; true when it stops. Then the
 * request answers nothing (MHD_NO cuts the connection), like a processor that goes down
 * mid-request, rather than racing MHD_stop_daemon to write on a closing socket. */
static bool nap(int64_t ms)
{
	struct timespec until;
	bool stopping;

	if (ms <= 0)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000 + (until.tv_nsec + ms % 1000 * 1000000) / 1000000000;
	until.tv_nsec = (until.tv_nsec + ms % 1000 * 1000000) % 1000000000;
	pthread_mutex_lock(&nap_ctl.lock);
	while (!nap_ctl.stopping &&
	       pthread_cond_timedwait(&nap_ctl.wake, &nap_ctl.lock, &until) != ETIMEDOUT)
		;
	stopping = nap_ctl.stopping;
	pthread_mutex_unlock(&nap_ctl.lock);
	return stopping;
}

/* The sleeps measure time on the monotonic clock, which a wall clock change does not move. */
void nap_init(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&nap_ctl.wake, &attr);
	pthread_condattr_destroy(&attr);
}

void nap_wake_all(void)
{
	pthread_mutex_lock(&nap_ctl.lock);
	nap_ctl.stopping = true;
	pthread_cond_broadcast(&nap_ctl.wake);
	pthread_mutex_unlock(&nap_ctl.lock);
}

void nap_destroy(void)
{
	pthread_cond_destroy(&nap_ctl.wake);
}

/* ---- the charge request ---- */

/* Idempotency keys are 1..KEY_MAX printable ASCII characters. */
static bool key_ok(const char *key)
{
	size_t n = 0;

	for (; key && key[n]; n++)
		if (key[n] < 0x20 || key[n] > 0x7e)
			return false;
	return n >= 1 && n <= KEY_MAX;
}

static const char *json_nonempty(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

/* Parses a charge request into r. Returns the tree r points into (the caller deletes
 * it), or NULL with a message naming the bad field in err. */
static cJSON *parse_charge(const request_t *req, charge_req_t *r, char *err, size_t size)
{
	cJSON *o = req->body ? cJSON_ParseWithLength(req->body, req->len) : NULL;
	const cJSON *payer = cJSON_GetObjectItemCaseSensitive(o, "payer_id");
	const char *bad = NULL;

	r->order_id = json_nonempty(o, "order_id");
	r->command_id = json_nonempty(o, "command_id");
	r->currency = json_nonempty(o, "currency");
	r->payer_id = cJSON_IsString(payer) ? payer->valuestring : NULL;
	if (!cJSON_IsObject(o))
		bad = "body: want a JSON object";
	else if (!r->order_id)
		bad = "order_id: required, a non-empty string";
	else if (!r->command_id)
		bad = "command_id: required, a non-empty string";
	else if (!json_int(cJSON_GetObjectItemCaseSensitive(o, "amount_minor"), 1, AMOUNT_MAX,
			   &r->amount_minor))
		bad = "amount_minor: required, an integer >= 1";
	else if (!r->currency || strlen(r->currency) != 3 ||
		 strspn(r->currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)
		bad = "currency: required, three upper-case letters such as \"EUR\"";
	else if (payer && !cJSON_IsString(payer) && !cJSON_IsNull(payer))
		bad = "payer_id: must be a string or null";
	if (!bad)
		return o;
	payq_err(err, size, "%s", bad);
	cJSON_Delete(o);
	return NULL;
}

/* ---- payments API ---- */

/* Counts one request and rolls its error dice and delay. */
static bool begin_request(int counter, int64_t *delay)
{
	bool injected;
	uint64_t jitter;

	pthread_mutex_lock(&st.lock);
	st.stats[counter]++;
	injected = roll(st.error_rate);
	st.stats[S_ERRORS] += injected;
	jitter = (uint64_t)st.jitter_ms;
	*delay = st.latency_ms + (jitter ? (int64_t)(rng_next() % (jitter + 1)) : 0);
	pthread_mutex_unlock(&st.lock);
	return injected;
}

/* The 503 of an injected error; with bad_text its message is not valid UTF-8. */
static enum MHD_Result injected_error(struct MHD_Connection *conn)
{
	bool bad;

	pthread_mutex_lock(&st.lock);
	bad = st.bad_text;
	pthread_mutex_unlock(&st.lock);
	if (bad)
		return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
			     must(strdup("{\"error\":\"sandbox: injected error \xff\xfe\xc3\"}")),
			     JSON_TYPE, NULL, NULL);
	return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "sandbox: injected error");
}

/* amount_minor must be written as a plain decimal integer, as card processors require
 * (an exponent such as 1e+15 is refused). The body is the worker's compact JSON. */
static bool amount_plain(const request_t *req)
{
	const char *p = req->body ? strstr(req->body, "\"amount_minor\":") : NULL;
	size_t n;

	if (!p)
		return false;
	p += strlen("\"amount_minor\":");
	n = strspn(p, "0123456789");
	return n > 0 && (p[n] == ',' || p[n] == '}');
}

/* Answers a key seen before: 422 for another request, 409 while the first one is in
 * progress, else the stored answer again (*replayed). Under st.lock; *body is malloc'd. */
static unsigned int answer_known(const charge_t *c, const charge_req_t *r, char **body,
				 bool *replayed)
{
	bool same = same_request(c, r);

	*replayed = same && c->status != CH_IN_PROGRESS;
	if (*replayed) {
		st.stats[S_REPLAYED]++;
		*body = answer_body(c);
		return c->http_status;
	}
	st.stats[same ? S_409 : S_422]++;
	*body = must(strdup(same ? "{\"error\":\"a request with this idempotency key is in "
				   "progress\"}"
				 : "{\"error\":\"idempotency key reused with a different "
				   "request\"}"));
	return same ? MHD_HTTP_CONFLICT : HTTP_UNPROCESSABLE_CONTENT;
}

static enum MHD_Result post_charge(struct MHD_Connection *conn, const request_t *req)
{
	const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
	charge_req_t r;
	charge_t *c;
	uint64_t gen;
	int64_t delay;
	unsigned int status;
	bool replayed, drop;
	char err[256], *body;
	cJSON *tree;

	if (begin_request(S_POST, &delay))
		return injected_error(conn);
	if (req->too_large)
		return reply_error(conn, HTTP_CONTENT_TOO_LARGE, "body: over %d bytes", BODY_MAX);
	if (!key_ok(key))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST,
				   "Idempotency-Key header: required, 1..%d printable ASCII",
				   KEY_MAX);
	if (!(tree = parse_charge(req, &r, err, sizeof(err))))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "%s", err);
	if (!amount_plain(req)) {
		cJSON_Delete(tree);
		return reply_error(conn, MHD_HTTP_BAD_REQUEST,
				   "amount_minor: must be a plain decimal integer");
	}

	pthread_mutex_lock(&st.lock);
	if ((c = table_find(key))) {
		status = answer_known(c, &r, &body, &replayed);
		pthread_mutex_unlock(&st.lock);
		cJSON_Delete(tree);
		return reply(conn, status, body, JSON_TYPE, replayed ? "Idempotent-Replayed" : NULL,
			     "true");
	}
	/* In progress before the sleep, so that a concurrent retry gets a 409. */
	c = charge_new(key, &r);
	table_add(c);
	gen = st.generation;
	pthread_mutex_unlock(&st.lock);
	cJSON_Delete(tree);

	if (nap(delay))
		return MHD_NO;

	pthread_mutex_lock(&st.lock);
	if (gen != st.generation) { /* a reset freed c meanwhile */
		pthread_mutex_unlock(&st.lock);
		return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				   "sandbox: reset while this charge was in progress");
	}
	charge_finish(c);
	status = c->http_status;
	body = answer_body(c);
	/* The charge stands either way: a drop loses only the answer, like a network
	 * failure after the processor committed. */
	drop = roll(st.drop_rate);
	st.stats[S_DROPPED] += drop;
	pthread_mutex_unlock(&st.lock);
	if (drop) {
		free(body);
		return MHD_NO;
	}
	return reply(conn, status, body, JSON_TYPE, NULL, NULL);
}

/* GET /charges/{K}; libmicrohttpd has percent-decoded the path already. */
static enum MHD_Result get_charge(struct MHD_Connection *conn, const char *key)
{
	const charge_t *c;
	char *body = NULL;
	bool in_progress;
	int64_t delay;

	if (begin_request(S_GET, &delay))
		return injected_error(conn);
	if (nap(delay))
		return MHD_NO;
	pthread_mutex_lock(&st.lock);
	c = table_find(key);
	in_progress = c && c->status == CH_IN_PROGRESS;
	if (in_progress)
		st.stats[S_409]++;
	else if (c)
		body = answer_body(c);
	pthread_mutex_unlock(&st.lock);
	if (body)
		return reply(conn, MHD_HTTP_OK, body, JSON_TYPE, NULL, NULL);
	if (in_progress)
		return reply_error(conn, MHD_HTTP_CONFLICT,
				   "a request with this idempotency key is in progress");
	return reply_error(conn, MHD_HTTP_NOT_FOUND, "no such charge");
}

FILE *request_log; /* --request-log, line-buffered; stdio locks it per call */

/* Appends ,"name":VALUE (a JSON string, or null) to line at *n. */
static void log_field(char *line, size_t size, size_t *n, const char *name, const char *value)
{
	if (*n >= size)
		return;
	*n += (size_t)snprintf(line + *n, size - *n, ",\"%s\":", name);
	if (*n >= size)
		return;
	if (value)
		*n += payq_json_escape(line + *n, size - *n, value);
	else
		*n += (size_t)snprintf(line + *n, size - *n, "null");
}

/* With --request-log: one JSON line per payments request, as the request came in (so a
 * test can see the trace context the worker sent). Header values are the client's:
 * escaped, and cut to the line's size. */
static void log_request(struct MHD_Connection *conn, const char *url, const char *method)
{
	char line[2048];
	size_t n = 0;

	if (!request_log)
		return;
	n += (size_t)snprintf(line, sizeof(line), "{\"ts_ms\":%" PRId64, payq_wall_ms());
	log_field(line, sizeof(line), &n, "method", method);
	log_field(line, sizeof(line), &n, "path", url);
	log_field(line, sizeof(line), &n, "idempotency_key",
		  MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key"));
	log_field(line, sizeof(line), &n, "traceparent",
		  MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "traceparent"));
	log_field(line, sizeof(line), &n, "tracestate",
		  MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "tracestate"));
	if (n > sizeof(line) - 3)
		n = sizeof(line) - 3;
	line[n++] = '}';
	line[n++] = '\n';
	fwrite(line, 1, n, request_log);
}

/* True when the request carries "Authorization: Bearer KEY" with the right key, or when
 * no key is configured. The comparison takes the same time wherever the first
 * difference is, as a real channel's would. */
static bool authorized(struct MHD_Connection *conn)
{
	const char *h =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	size_t want, got;
	unsigned char diff = 0;

	if (!creds.api_key)
		return true;
	if (!h || strncasecmp(h, "Bearer ", 7))
		return false;
	h += 7;
	want = strlen(creds.api_key);
	got = strlen(h);
	for (size_t i = 0; i < want; i++)
		diff |= (unsigned char)(creds.api_key[i] ^ (i < got ? h[i] : 0));
	return !diff && got == want;
}

/* With --tls-client-ca: true when the client showed a certificate that CA signed. */
static bool client_cert_ok(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci;
	unsigned int status = 0;

	if (!creds.client_ca)
		return true;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	return ci && ci->tls_session &&
	       gnutls_certificate_verify_peers2((gnutls_session_t)ci->tls_session, &status) ==
		       GNUTLS_E_SUCCESS &&
	       !status;
}

enum MHD_Result on_api(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
		       const char *version, const char *data, size_t *size, void **con_cls)
{
	bool down;

	/* While down, a keep-alive connection from before is cut at its next request, as
	 * by a crashed server; requests already being handled finish. */
	if (!*con_cls) {
		pthread_mutex_lock(&st.lock);
		down = st.down;
		pthread_mutex_unlock(&st.lock);
		if (down)
			return MHD_NO;
	}
	if (!gather(con_cls, data, size))
		return MHD_YES;
	log_request(conn, url, method);
	if (!client_cert_ok(conn)) {
		pthread_mutex_lock(&st.lock);
		st.stats[S_401]++;
		pthread_mutex_unlock(&st.lock);
		return reply_error(conn, MHD_HTTP_FORBIDDEN,
				   "client certificate missing or not "
				   "signed by the --tls-client-ca");
	}
	if (!authorized(conn)) {
		pthread_mutex_lock(&st.lock);
		st.stats[S_401]++;
		pthread_mutex_unlock(&st.lock);
		return reply_error(conn, MHD_HTTP_UNAUTHORIZED, "missing or wrong API key");
	}
	if (!strcmp(url, "/charges"))
		return strcmp(method, MHD_HTTP_METHOD_POST) ? reply_405(conn, "POST")
							    : post_charge(conn, *con_cls);
	if (!strncmp(url, "/charges/", 9))
		return strcmp(method, MHD_HTTP_METHOD_GET) ? reply_405(conn, "GET")
							   : get_charge(conn, url + 9);
	return reply_error(conn, MHD_HTTP_NOT_FOUND, "not found: %s", url);
}
