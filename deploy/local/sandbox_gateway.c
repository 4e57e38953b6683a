/* sandbox_gateway.c - payq-sandbox-gateway: a card processor test double with idempotency
 * keys, status queries, declines, switchable faults and a ledger of real charges. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "http.h"
#include "util.h"

#define PROG "payq-sandbox-gateway"
#define KEY_MAX 255
#define BODY_MAX (64 * 1024)
#define DELAY_MAX_MS 600000
#define AMOUNT_MAX 9007199254740991LL /* 2^53 - 1: exact in every JSON parser */
#define JSON_TYPE "application/json"
/* libmicrohttpd 0.9.74 renamed these two; numbers build against any version. */
#define HTTP_CONTENT_TOO_LARGE 413
#define HTTP_UNPROCESSABLE_CONTENT 422
#define FILE_MAX (1024 * 1024) /* --tls-cert, --tls-key, --api-key-file */

typedef enum { CH_IN_PROGRESS, CH_SUCCEEDED, CH_DECLINED } charge_status_t;

/* Hostile answers (POST /faults "lie"): the answer names another amount, currency or
 * key than the request, as a buggy or compromised channel might. The charge itself is
 * recorded as asked. */
typedef enum { LIE_NONE, LIE_AMOUNT, LIE_CURRENCY, LIE_KEY, LIE__CNT } lie_t;
static const char *const lie_names[LIE__CNT] = {"none", "amount", "currency", "key"};

/* One idempotency key and what it did. The strings live in buf, after the struct. */
typedef struct charge {
	uint64_t seq; /* the charge id's number, given when the key is first seen */
	int64_t amount_minor;
	charge_status_t status;
	unsigned int http_status;
	char *body; /* the stored answer, NULL while in progress */
	const char *key, *order_id, *command_id, *payer_id; /* payer_id may be NULL */
	char currency[4];
	bool forgotten; /* POST /forget: the key expired, the charge stays in the ledger */
	char buf[];
} charge_t;

/* A parsed POST /charges body; the strings belong to the cJSON tree. */
typedef struct charge_req {
	const char *order_id, *command_id, *currency, *payer_id;
	int64_t amount_minor;
} charge_req_t;

enum { S_POST, S_GET, S_REPLAYED, S_409, S_422, S_ERRORS, S_DROPPED, S_401, S_COUNT };
static const char *const stat_names[S_COUNT] = {
	[S_POST] = "post_charges", [S_GET] = "get_charges",  [S_REPLAYED] = "replayed",
	[S_409] = "conflicts_409", [S_422] = "mismatch_422", [S_ERRORS] = "errors_injected",
	[S_DROPPED] = "dropped",   [S_401] = "unauthorized_401",
};

/* The payments API's credentials: with --tls-cert and --tls-key it speaks HTTPS only;
 * with --api-key-file every payments request needs "Authorization: Bearer KEY". Read
 * once at start, then only read. */
static struct {
	char *cert, *key; /* PEM, NUL-terminated; NULL: plaintext */
	char *client_ca;  /* PEM: a client certificate it signed is required; NULL: none asked */
	char *api_key;    /* NULL: no check */
} creds;

/* Everything the handlers share, under one mutex that is never held across a sleep. */
static struct {
	pthread_mutex_t lock;
	int64_t latency_ms, jitter_ms;
	double error_rate, drop_rate;
	bool down;
	lie_t lie;
	bool bad_text; /* declines and errors carry invalid UTF-8 */
	uint64_t stats[S_COUNT];
	uint64_t rng;
	int64_t decline_suffix;
	const char *decline_payer;
	charge_t **recs; /* in charge id order */
	size_t nrecs, caprecs;
	uint32_t *slots; /* open addressing over recs: index + 1, 0 = empty */
	size_t nslots;
	uint64_t next_seq, generation; /* generation changes on every reset */
	size_t charges, declines;
} st = {.lock = PTHREAD_MUTEX_INITIALIZER, .decline_suffix = 13, .decline_payer = "declined-"};

/* Latency sleeps wait on this condition, so that shutdown does not wait for them. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
} nap_ctl = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The payments listener. Its socket stays bound for the whole run, so that "down" keeps
 * the port (shutdown() stops the listening) and "up" listens on it again. */
static struct {
	pthread_mutex_t lock;
	struct sockaddr_in addr;
	int fd;
	struct MHD_Daemon *daemon;   /* NULL while down */
	struct MHD_Daemon **retired; /* quiesced daemons finishing their connections */
	size_t nretired;
} api = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static volatile sig_atomic_t run = 1;

static void stop(int sig)
{
	(void)sig;
	run = 0;
}

/* Allocation failure in a test double is not worth a recovery path. */
static void *must(void *p)
{
	if (!p) {
		fputs(PROG ": out of memory\n", stderr);
		abort();
	}
	return p;
}

/* ---- dice (splitmix64, seeded; callers hold st.lock) ---- */

static uint64_t rng_next(void)
{
	uint64_t z = (st.rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* True with probability p: 0 never, 1 always. */
static bool roll(double p)
{
	return (double)(rng_next() >> 11) * 0x1p-53 < p;
}

/* Sleeps ms milliseconds, or less when the program stops. */
static void nap(int64_t ms)
{
	struct timespec until;

	if (ms <= 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000 + (until.tv_nsec + ms % 1000 * 1000000) / 1000000000;
	until.tv_nsec = (until.tv_nsec + ms % 1000 * 1000000) % 1000000000;
	pthread_mutex_lock(&nap_ctl.lock);
	while (!nap_ctl.stopping &&
	       pthread_cond_timedwait(&nap_ctl.wake, &nap_ctl.lock, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&nap_ctl.lock);
}

/* ---- keys and ledger (callers hold st.lock) ---- */

static size_t hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return (size_t)h;
}

static charge_t *table_find(const char *key)
{
	size_t mask = st.nslots - 1;

	for (size_t i = hash(key) & mask; st.nslots && st.slots[i]; i = (i + 1) & mask) {
		charge_t *c = st.recs[st.slots[i] - 1];
		if (!c->forgotten && !strcmp(c->key, key)) /* a forgotten key is no key */
			return c;
	}
	return NULL;
}

static void slot_put(uint32_t idx)
{
	size_t mask = st.nslots - 1, i = hash(st.recs[idx - 1]->key) & mask;

	while (st.slots[i])
		i = (i + 1) & mask;
	st.slots[i] = idx;
}

/* Appends c to the ledger and indexes its key; the table stays at most half full. */
static void table_add(charge_t *c)
{
	if (st.nrecs == st.caprecs) {
		st.caprecs = st.caprecs ? st.caprecs * 2 : 1024;
		st.recs = must(realloc(st.recs, st.caprecs * sizeof(*st.recs)));
	}
	st.recs[st.nrecs++] = c;
	if (st.nrecs * 2 <= st.nslots) {
		slot_put((uint32_t)st.nrecs);
		return;
	}
	st.nslots = st.nslots ? st.nslots * 2 : 2048;
	free(st.slots);
	st.slots = must(calloc(st.nslots, sizeof(*st.slots)));
	for (size_t i = 1; i <= st.nrecs; i++)
		slot_put((uint32_t)i);
}

/* Forgets every key, charge and counter. A request sleeping meanwhile sees the new
 * generation and does not touch its freed charge. */
static void state_clear(void)
{
	for (size_t i = 0; i < st.nrecs; i++) {
		free(st.recs[i]->body);
		free(st.recs[i]);
	}
	free(st.recs);
	free(st.slots);
	st.recs = NULL;
	st.slots = NULL;
	st.nrecs = st.caprecs = st.nslots = st.charges = st.declines = 0;
	memset(st.stats, 0, sizeof(st.stats));
	st.generation++;
}

/* A new in-progress charge. Charge ids are never reused, not even after a reset. */
static charge_t *charge_new(const char *key, const charge_req_t *r)
{
	size_t lk = strlen(key) + 1, lo = strlen(r->order_id) + 1;
	size_t lc = strlen(r->command_id) + 1, lp = r->payer_id ? strlen(r->payer_id) + 1 : 0;
	charge_t *c = must(calloc(1, sizeof(*c) + lk + lo + lc + lp));
	char *p = c->buf;

	c->key = memcpy(p, key, lk);
	c->order_id = memcpy(p += lk, r->order_id, lo);
	c->command_id = memcpy(p += lo, r->command_id, lc);
	c->payer_id = lp ? memcpy(p + lc, r->payer_id, lp) : NULL;
	memcpy(c->currency, r->currency, 4);
	c->amount_minor = r->amount_minor;
	c->seq = ++st.next_seq;
	c->status = CH_IN_PROGRESS;
	return c;
}

static bool same_request(const charge_t *c, const charge_req_t *r)
{
	return !strcmp(c->order_id, r->order_id) && !strcmp(c->command_id, r->command_id) &&
	       c->amount_minor == r->amount_minor && !strcmp(c->currency, r->currency) &&
	       (c->payer_id && r->payer_id ? !strcmp(c->payer_id, r->payer_id)
					   : c->payer_id == r->payer_id);
}

/* A decline code that is not valid UTF-8 (a stray 0xff), long enough that a cut by
 * bytes splits one of its two-byte characters. */
static const char bad_decline[] =
	"card_declined\xff\xc3\x28"
	"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"
	"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc"
	"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc";

/* The decline rules, payer first; NULL means the charge goes through. */
static const char *decline_code(const charge_t *c)
{
	size_t n = strlen(st.decline_payer);

	if (n && c->payer_id && !strncmp(c->payer_id, st.decline_payer, n))
		return st.bad_text ? bad_decline : "card_declined";
	if (st.decline_suffix >= 0 && c->amount_minor % 100 == st.decline_suffix)
		return "insufficient_funds";
	return NULL;
}

/* Decides an in-progress charge and stores the answer every replay repeats. */
static void charge_finish(charge_t *c)
{
	const char *code = decline_code(c);
	cJSON *o = must(cJSON_CreateObject());
	char id[32];

	snprintf(id, sizeof(id), "ch_%08" PRIu64, c->seq);
	c->status = code ? CH_DECLINED : CH_SUCCEEDED;
	c->http_status = code ? MHD_HTTP_PAYMENT_REQUIRED : MHD_HTTP_CREATED;
	*(code ? &st.declines : &st.charges) += 1;
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "idempotency_key", c->key);
	cJSON_AddStringToObject(o, "status", code ? "declined" : "succeeded");
	if (code)
		cJSON_AddStringToObject(o, "decline_code", code);
	cJSON_AddStringToObject(o, "order_id", c->order_id);
	cJSON_AddStringToObject(o, "command_id", c->command_id);
	cJSON_AddNumberToObject(o, "amount_minor", (double)c->amount_minor);
	cJSON_AddStringToObject(o, "currency", c->currency);
	c->body = must(cJSON_PrintUnformatted(o));
	cJSON_Delete(o);
}

/* The stored answer as it goes out: itself, or (with a "lie" fault) with another
 * amount, currency or key. Under st.lock; returns a malloc'd string. */
static char *answer_body(const charge_t *c)
{
	cJSON *o;
	char *out, key[KEY_MAX + 8];

	if (st.lie == LIE_NONE || !(o = cJSON_Parse(c->body)))
		return must(strdup(c->body));
	if (st.lie == LIE_AMOUNT) {
		cJSON_ReplaceItemInObjectCaseSensitive(
			o, "amount_minor", must(cJSON_CreateNumber((double)c->amount_minor + 1)));
	} else if (st.lie == LIE_CURRENCY) {
		const char *other = strcmp(c->currency, "XXX") ? "XXX" : "XTS";
		cJSON_ReplaceItemInObjectCaseSensitive(o, "currency",
						       must(cJSON_CreateString(other)));
	} else {
		snprintf(key, sizeof(key), "%s-other", c->key);
		cJSON_ReplaceItemInObjectCaseSensitive(o, "idempotency_key",
						       must(cJSON_CreateString(key)));
	}
	out = must(cJSON_PrintUnformatted(o));
	cJSON_Delete(o);
	return out;
}

/* ---- HTTP plumbing ---- */

/* A request's body, gathered across the handler calls. */
typedef struct request {
	char *body;
	size_t len;
	bool too_large;
} request_t;

/* Queues body (malloc'd; taken) with status, plus one optional header. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status, char *body,
			     const char *type, const char *header, const char *value)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (header)
		MHD_add_response_header(resp, header, value);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_json(struct MHD_Connection *conn, cJSON *o)
{
	char *body = must(cJSON_PrintUnformatted(o));

	cJSON_Delete(o);
	return reply(conn, MHD_HTTP_OK, body, JSON_TYPE, NULL, NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned int status,
				   const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Answers {"error": MESSAGE}. */
static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned int status,
				   const char *fmt, ...)
{
	char msg[512], quoted[1100], *body;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	payq_json_escape(quoted, sizeof(quoted), msg);
	if (asprintf(&body, "{\"error\":%s}", quoted) < 0)
		must(NULL);
	return reply(conn, status, body, JSON_TYPE, NULL, NULL);
}

static enum MHD_Result reply_405(struct MHD_Connection *conn, const char *allow)
{
	char *body = must(strdup("{\"error\":\"method not allowed\"}"));

	return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, body, JSON_TYPE, MHD_HTTP_HEADER_ALLOW,
		     allow);
}

/* libmicrohttpd calls a handler once for the headers, once per body chunk and once at
 * the end. Gathers the body (past BODY_MAX it is dropped and remembered as too large)
 * and returns true on that last call. */
static bool gather(void **con_cls, const char *data, size_t *size)
{
	request_t *req = *con_cls;

	if (!req) {
		*con_cls = must(calloc(1, sizeof(*req)));
		return false;
	}
	if (!*size)
		return true;
	if (req->too_large || req->len + *size > BODY_MAX) {
		req->too_large = true;
		free(req->body);
		req->body = NULL;
		req->len = 0;
	} else {
		req->body = must(realloc(req->body, req->len + *size + 1));
		memcpy(req->body + req->len, data, *size);
		req->len += *size;
		req->body[req->len] = '\0';
	}
	*size = 0;
	return false;
}

/* Called for every request the handler saw, answered or not. */
static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	request_t *req = *con_cls;

	if (req)
		free(req->body);
	free(req);
	*con_cls = NULL;
}

/* Idempotency keys are 1..KEY_MAX printable ASCII characters. */
static bool key_ok(const char *key)
{
	size_t n = 0;

	for (; key && key[n]; n++)
		if (key[n] < 0x20 || key[n] > 0x7e)
			return false;
	return n >= 1 && n <= KEY_MAX;
}

/* An integral JSON number in [min, max]. */
static bool json_int(const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)min) ||
	    !(v->valuedouble <= (double)max) || v->valuedouble != (double)(int64_t)v->valuedouble)
		return false;
	*out = (int64_t)v->valuedouble;
	return true;
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

	nap(delay);

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
	nap(delay);
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

static FILE *request_log; /* --request-log, line-buffered; stdio locks it per call */

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
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
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

static enum MHD_Result on_api(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *data,
			      size_t *size, void **con_cls)
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
		return reply_error(conn, MHD_HTTP_FORBIDDEN, "client certificate missing or not "
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

/* ---- listeners ---- */

/* A TCP socket bound to sin with SO_REUSEADDR, or -1 with errno. */
static int bind_one(const struct sockaddr_in *sin)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1, e;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (!bind(fd, (const struct sockaddr *)sin, sizeof(*sin)))
		return fd;
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

/* A socket bound to *sin, not yet listening; port 0 becomes the port chosen. Linux lets
 * go of an automatically chosen port when its listening socket is shut down ("down"),
 * but keeps one bound by number: so a probe socket picks the port, and the real socket
 * binds it by number (SO_REUSEADDR allows both until the probe is closed). */
static int bind_socket(struct sockaddr_in *sin, char *err, size_t size)
{
	socklen_t len = sizeof(*sin);
	int probe = -1, fd = -1;

	if (!sin->sin_port &&
	    ((probe = bind_one(sin)) < 0 || getsockname(probe, (struct sockaddr *)sin, &len)))
		goto out;
	fd = bind_one(sin);
out:
	if (fd < 0)
		payq_err(err, size, "bind %s:%d: %s", inet_ntoa(sin->sin_addr),
			 ntohs(sin->sin_port), strerror(errno));
	if (probe >= 0)
		close(probe);
	return fd;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	/* Drops and cut connections say this; they are deliberate here. */
	if (!strstr(msg, "Application reported internal error"))
		fprintf(stderr, PROG ": http: %s\n", msg);
}

/* Listens on fd and serves it with handler: one thread per connection, so that a
 * latency sleep holds up only its own request, and poll(), so that descriptors above
 * FD_SETSIZE work. ITC makes MHD_quiesce_daemon possible. */
static struct MHD_Daemon *serve(int fd, MHD_AccessHandlerCallback handler, bool tls, char *err,
				size_t size)
{
	struct MHD_Daemon *d;
	unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	/* TLS: the certificate and key, and the CA of client certificates (MHD then asks
	 * the client for one; client_cert_ok() checks it). */
	struct MHD_OptionItem tls_opts[] = {
		{tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, creds.cert},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, creds.key},
		{creds.client_ca ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, creds.client_ca},
		{MHD_OPTION_END, 0, NULL},
	};

	if (listen(fd, 1024)) {
		payq_err(err, size, "listen: %s", strerror(errno));
		return NULL;
	}
	d = MHD_start_daemon(flags | (tls ? MHD_USE_TLS : 0), 0, NULL, NULL, handler, NULL,
			     MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
			     MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
			     request_done, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4096,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60, MHD_OPTION_ARRAY,
			     tls_opts, MHD_OPTION_END);
	if (!d)
		payq_err(err, size, "libmicrohttpd could not start");
	return d;
}

/* Stops listening: new connections are refused at once, the port stays ours. The old
 * daemon keeps its connections and is stopped by reap() once they are gone. Quiescing
 * also keeps MHD from closing api.fd. Under api.lock. */
static int api_quiesce(char *err, size_t size)
{
	if (MHD_quiesce_daemon(api.daemon) == MHD_INVALID_SOCKET)
		return payq_err(err, size, "libmicrohttpd could not stop listening");
	shutdown(api.fd, SHUT_RD);
	api.retired = must(realloc(api.retired, (api.nretired + 1) * sizeof(*api.retired)));
	api.retired[api.nretired++] = api.daemon;
	api.daemon = NULL;
	return 0;
}

/* Switches the payments API down or up; -1 with err when the listener did not follow. */
static int api_set_down(bool down, char *err, size_t size)
{
	bool was_up;
	int rc = 0;

	pthread_mutex_lock(&api.lock);
	was_up = api.daemon;
	if (down && api.daemon) {
		pthread_mutex_lock(&st.lock);
		st.down = true; /* first, so that no new request starts */
		pthread_mutex_unlock(&st.lock);
		rc = api_quiesce(err, size);
	} else if (!down && !api.daemon) {
		api.daemon = serve(api.fd, on_api, creds.cert, err, size);
		rc = api.daemon ? 0 : -1;
	}
	pthread_mutex_lock(&st.lock);
	st.down = !api.daemon;
	pthread_mutex_unlock(&st.lock);
	if (was_up != !!api.daemon)
		fprintf(stderr, PROG ": payments API %s\n", api.daemon ? "up" : "down");
	pthread_mutex_unlock(&api.lock);
	return rc;
}

/* Stops the retired daemons that have no connection left (every one when all). */
static void reap(bool all)
{
	size_t kept = 0;

	pthread_mutex_lock(&api.lock);
	for (size_t i = 0; i < api.nretired; i++) {
		const union MHD_DaemonInfo *info =
			MHD_get_daemon_info(api.retired[i], MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
		if (all || (info && !info->num_connections))
			MHD_stop_daemon(api.retired[i]);
		else
			api.retired[kept++] = api.retired[i];
	}
	api.nretired = kept;
	pthread_mutex_unlock(&api.lock);
}

/* ---- control API ---- */

static enum MHD_Result get_healthz(struct MHD_Connection *conn, const request_t *req)
{
	return reply(conn, MHD_HTTP_OK, must(strdup("ok\n")), "text/plain; charset=utf-8", NULL,
		     NULL);
}

/* The numeric faults, for GET and POST /faults. */
static const struct fault {
	const char *name;
	int64_t *ms;  /* 0..DELAY_MAX_MS, or */
	double *rate; /* 0..1 */
} faults[] = {
	{"latency_ms", &st.latency_ms, NULL},
	{"jitter_ms", &st.jitter_ms, NULL},
	{"error_rate", NULL, &st.error_rate},
	{"drop_rate", NULL, &st.drop_rate},
};

static enum MHD_Result get_faults(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = must(cJSON_CreateObject());

	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(faults); i++)
		cJSON_AddNumberToObject(o, faults[i].name,
					faults[i].ms ? (double)*faults[i].ms : *faults[i].rate);
	cJSON_AddBoolToObject(o, "down", st.down);
	cJSON_AddStringToObject(o, "lie", lie_names[st.lie]);
	cJSON_AddBoolToObject(o, "bad_text", st.bad_text);
	pthread_mutex_unlock(&st.lock);
	return reply_json(conn, o);
}

static int lie_parse(const cJSON *v)
{
	for (int i = 0; cJSON_IsString(v) && i < LIE__CNT; i++)
		if (!strcmp(v->valuestring, lie_names[i]))
			return i;
	return -1;
}

/* Checks one field of POST /faults: NULL, or what is wrong with it. */
static const char *fault_check(const cJSON *v)
{
	int64_t ms;

	if (!strcmp(v->string, "down") || !strcmp(v->string, "bad_text"))
		return cJSON_IsBool(v) ? NULL : "must be true or false";
	if (!strcmp(v->string, "lie"))
		return lie_parse(v) >= 0 ? NULL : "must be none, amount, currency or key";
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(faults); i++) {
		if (strcmp(v->string, faults[i].name))
			continue;
		if (faults[i].ms)
			return json_int(v, 0, DELAY_MAX_MS, &ms) ? NULL
								 : "must be an integer 0..600000";
		return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1
			       ? NULL
			       : "must be a number 0..1";
	}
	return "unknown fault (want latency_ms, jitter_ms, error_rate, drop_rate, down, lie or "
	       "bad_text)";
}

/* Applies the fields given, or none when one is bad, and answers the new state. */
static enum MHD_Result post_faults(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = req->body ? cJSON_ParseWithLength(req->body, req->len) : NULL;
	const cJSON *v, *down = cJSON_GetObjectItemCaseSensitive(o, "down");
	const char *bad = cJSON_IsObject(o) ? NULL : "want a JSON object";
	char err[256] = "body";

	for (v = bad ? NULL : o->child; v && !bad; v = v->next)
		if ((bad = fault_check(v)))
			snprintf(err, sizeof(err), "%s", v->string);
	if (bad) {
		cJSON_Delete(o);
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "%s: %s", err, bad);
	}
	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(faults); i++) {
		if (!(v = cJSON_GetObjectItemCaseSensitive(o, faults[i].name)))
			continue;
		if (faults[i].ms)
			*faults[i].ms = (int64_t)v->valuedouble;
		else
			*faults[i].rate = v->valuedouble;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(o, "lie")))
		st.lie = (lie_t)lie_parse(v);
	if ((v = cJSON_GetObjectItemCaseSensitive(o, "bad_text")))
		st.bad_text = cJSON_IsTrue(v);
	pthread_mutex_unlock(&st.lock);
	if (down && api_set_down(cJSON_IsTrue(down), err, sizeof(err))) {
		cJSON_Delete(o);
		return reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "down: %s", err);
	}
	cJSON_Delete(o);
	return get_faults(conn, req);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The summary a payment worker is judged by: multi_charged_orders must stay empty. */
static enum MHD_Result get_ledger(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = must(cJSON_CreateObject()), *multi = must(cJSON_CreateArray());
	const char **orders;
	size_t n = 0, distinct = 0;

	pthread_mutex_lock(&st.lock);
	orders = must(malloc((st.charges + 1) * sizeof(*orders)));
	for (size_t i = 0; i < st.nrecs; i++)
		if (st.recs[i]->status == CH_SUCCEEDED)
			orders[n++] = st.recs[i]->order_id;
	/* Sorted, an order charged k times is a run of k; list each run longer than 1. */
	qsort(orders, n, sizeof(*orders), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (!i || strcmp(orders[i], orders[i - 1]))
			distinct++;
		else if (i == 1 || strcmp(orders[i - 1], orders[i - 2]))
			cJSON_AddItemToArray(multi, must(cJSON_CreateString(orders[i])));
	}
	cJSON_AddNumberToObject(o, "charges", (double)st.charges);
	cJSON_AddNumberToObject(o, "declines", (double)st.declines);
	cJSON_AddNumberToObject(o, "keys", (double)st.nrecs);
	pthread_mutex_unlock(&st.lock);
	free(orders);
	cJSON_AddNumberToObject(o, "orders_charged", (double)distinct);
	cJSON_AddItemToObject(o, "multi_charged_orders", multi);
	return reply_json(conn, o);
}

/* key,order_id,command_id,amount_minor,currency,status,charge_id for each decided key. */
static enum MHD_Result get_ledger_csv(struct MHD_Connection *conn, const request_t *req)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = must(open_memstream(&buf, &len));

	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < st.nrecs; i++) {
		const charge_t *c = st.recs[i];
		if (c->status != CH_IN_PROGRESS)
			fprintf(fp, "%s,%s,%s,%" PRId64 ",%s,%s,ch_%08" PRIu64 "\n", c->key,
				c->order_id, c->command_id, c->amount_minor, c->currency,
				c->status == CH_SUCCEEDED ? "succeeded" : "declined", c->seq);
	}
	pthread_mutex_unlock(&st.lock);
	if (fclose(fp))
		must(NULL);
	return reply(conn, MHD_HTTP_OK, buf, "text/csv; charset=utf-8", NULL, NULL);
}

static enum MHD_Result get_stats(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = must(cJSON_CreateObject());

	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < S_COUNT; i++)
		cJSON_AddNumberToObject(o, stat_names[i], (double)st.stats[i]);
	pthread_mutex_unlock(&st.lock);
	return reply_json(conn, o);
}

/* Forgets keys, charges and counters (not the faults) and answers the empty ledger. */
static enum MHD_Result post_reset(struct MHD_Connection *conn, const request_t *req)
{
	pthread_mutex_lock(&st.lock);
	state_clear();
	pthread_mutex_unlock(&st.lock);
	return get_ledger(conn, req);
}

/* Forgets every idempotency key, as a real channel does after its retention (Stripe:
 * 24 h): a later POST with such a key charges again. The ledger keeps the charges. */
static enum MHD_Result post_forget(struct MHD_Connection *conn, const request_t *req)
{
	cJSON *o = must(cJSON_CreateObject());
	size_t n = 0;

	pthread_mutex_lock(&st.lock);
	for (size_t i = 0; i < st.nrecs; i++)
		if (st.recs[i]->status != CH_IN_PROGRESS && !st.recs[i]->forgotten) {
			st.recs[i]->forgotten = true;
			n++;
		}
	pthread_mutex_unlock(&st.lock);
	cJSON_AddNumberToObject(o, "forgotten", (double)n);
	return reply_json(conn, o);
}

static const struct route {
	const char *path, *method;
	enum MHD_Result (*fn)(struct MHD_Connection *conn, const request_t *req);
} routes[] = {
	/* clang-format off */
	{"/healthz",    "GET",  get_healthz},
	{"/faults",     "GET",  get_faults},
	{"/faults",     "POST", post_faults},
	{"/ledger",     "GET",  get_ledger},
	{"/ledger.csv", "GET",  get_ledger_csv},
	{"/stats",      "GET",  get_stats},
	{"/reset",      "POST", post_reset},
	{"/forget",     "POST", post_forget},
	/* clang-format on */
};

static enum MHD_Result on_control(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *size, void **con_cls)
{
	const char *allow = NULL;

	if (!gather(con_cls, data, size))
		return MHD_YES;
	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(routes); i++) {
		if (strcmp(url, routes[i].path))
			continue;
		if (!strcmp(method, routes[i].method))
			return routes[i].fn(conn, *con_cls);
		allow = routes[i].method;
	}
	if (allow)
		return reply_405(conn, !strcmp(url, "/faults") ? "GET, POST" : allow);
	return reply_error(conn, MHD_HTTP_NOT_FOUND, "not found: %s", url);
}

/* ---- command line ---- */

static void usage(FILE *fp)
{
	fprintf(fp,
		"Usage: payq-sandbox-gateway [--listen HOST:PORT] [--control HOST:PORT]\n"
		"         [--port-file FILE] [--latency-ms N] [--jitter-ms N] [--error-rate P]\n"
		"         [--drop-rate P] [--decline-suffix NN] [--decline-payer PREFIX] [--seed S]\n"
		"         [--request-log FILE] [--tls-cert FILE --tls-key FILE]\n"
		"         [--tls-client-ca FILE] [--api-key-file FILE]\n"
		"\n"
		"A card processor for the tests and the demo. It keeps every idempotency key in\n"
		"memory, repeats the first answer to a repeated request, declines some charges and\n"
		"injects faults on request. Runs until SIGTERM or SIGINT.\n"
		"\n"
		"  --listen HOST:PORT      payments API (default 127.0.0.1:0, a free port)\n"
		"  --control HOST:PORT     control API, never faulty (default 127.0.0.1:0)\n"
		"  --port-file FILE        write \"API_PORT CONTROL_PORT\" there once listening\n"
		"  --latency-ms N          delay of each payments request (default 0), plus\n"
		"  --jitter-ms N           a uniform 0..N ms (default 0)\n"
		"  --error-rate P          share of payments requests answered 503 (default 0)\n"
		"  --drop-rate P           share of charges whose answer is lost (default 0)\n"
		"  --decline-suffix NN     decline amounts ending in NN, insufficient_funds\n"
		"                          (default 13; -1: never)\n"
		"  --decline-payer PREFIX  decline payer ids starting with PREFIX, card_declined\n"
		"                          (default \"declined-\"; \"\": never)\n"
		"  --seed S                seed of the fault dice (default: from the clock)\n"
		"  --request-log FILE      append one JSON line per payments request: method, path,\n"
		"                          idempotency_key, traceparent, tracestate\n"
		"  --tls-cert FILE         PEM certificate (chain) of the payments API, which then\n"
		"  --tls-key FILE          speaks HTTPS only, with this PEM private key\n"
		"  --tls-client-ca FILE    with --tls-cert: a payments request needs a client\n"
		"                          certificate this PEM CA signed; else 403\n"
		"  --api-key-file FILE     every payments request needs \"Authorization: Bearer\n"
		"                          KEY\", KEY being this file's one line; else 401\n"
		"\n"
		"Payments API: POST /charges, GET /charges/KEY. Control API: GET /healthz,\n"
		"GET|POST /faults (latency_ms, jitter_ms, error_rate, drop_rate, down; lie: answers\n"
		"name another amount, currency or key; bad_text: decline and error texts are not\n"
		"valid UTF-8), GET /ledger, GET /ledger.csv, GET /stats, POST /reset (forgets keys,\n"
		"charges and counters), POST /forget (forgets the keys only, as after a channel's\n"
		"key retention: the same key then charges again).\n"
		"amount_minor must be a plain decimal integer (1e+15 is refused with 400).\n"
		"The control API is always plaintext and open: bind it to loopback.\n"
		"\n"
		"Exit codes: 0 stopped by a signal, 1 runtime error, 2 usage error.\n");
}

typedef enum { OPT_STRING, OPT_INT, OPT_RATE } opt_type_t;

static const char *listen_arg = "127.0.0.1:0", *control_arg = "127.0.0.1:0", *port_file;
static const char *request_log_arg, *tls_cert_arg, *tls_key_arg, *tls_client_ca_arg;
static const char *api_key_arg;
static int64_t seed = -1;

static const struct option_def {
	const char *name;
	opt_type_t type;
	void *dst;
	int64_t min, max;
} options[] = {
	{"--listen", OPT_STRING, &listen_arg, 0, 0},
	{"--control", OPT_STRING, &control_arg, 0, 0},
	{"--port-file", OPT_STRING, &port_file, 0, 0},
	{"--latency-ms", OPT_INT, &st.latency_ms, 0, DELAY_MAX_MS},
	{"--jitter-ms", OPT_INT, &st.jitter_ms, 0, DELAY_MAX_MS},
	{"--error-rate", OPT_RATE, &st.error_rate, 0, 0},
	{"--drop-rate", OPT_RATE, &st.drop_rate, 0, 0},
	{"--decline-suffix", OPT_INT, &st.decline_suffix, -1, 99},
	{"--decline-payer", OPT_STRING, &st.decline_payer, 0, 0},
	{"--seed", OPT_INT, &seed, 0, INT64_MAX},
	{"--request-log", OPT_STRING, &request_log_arg, 0, 0},
	{"--tls-cert", OPT_STRING, &tls_cert_arg, 0, 0},
	{"--tls-key", OPT_STRING, &tls_key_arg, 0, 0},
	{"--tls-client-ca", OPT_STRING, &tls_client_ca_arg, 0, 0},
	{"--api-key-file", OPT_STRING, &api_key_arg, 0, 0},
};

/* Stores one option value. Returns 0, or -1 after saying what is wrong. */
static int set_option(const struct option_def *o, const char *v)
{
	char *end;
	double d;

	if (o->type == OPT_STRING) {
		*(const char **)o->dst = v;
		return 0;
	}
	if (o->type == OPT_INT) {
		if (!payq_parse_int64(v, o->min, o->max, o->dst))
			return 0;
		fprintf(stderr, PROG ": %s: \"%s\" is not an integer %" PRId64 "..%" PRId64 "\n",
			o->name, v, o->min, o->max);
		return -1;
	}
	errno = 0;
	d = strtod(v, &end);
	if (!errno && end != v && !*end && d >= 0 && d <= 1) {
		*(double *)o->dst = d;
		return 0;
	}
	fprintf(stderr, PROG ": %s: \"%s\" is not a number 0..1\n", o->name, v);
	return -1;
}

/* Returns -1 to go on, or the exit code. */
static int parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const struct option_def *o = NULL;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--version")) {
			printf(PROG " %s (libmicrohttpd %s)\n", PAYQ_VERSION, MHD_get_version());
			return 0;
		}
		for (size_t j = 0; j < PAYQ_ARRAY_SIZE(options); j++)
			if (!strcmp(argv[i], options[j].name))
				o = &options[j];
		if (!o) {
			fprintf(stderr, PROG ": unknown argument \"%s\" (see --help)\n", argv[i]);
			return 2;
		}
		if (i + 1 == argc) {
			fprintf(stderr, PROG ": %s needs a value (see --help)\n", argv[i]);
			return 2;
		}
		if (set_option(o, argv[++i]))
			return 2;
	}
	return -1;
}

/* Reads a whole file (at most FILE_MAX bytes) as a NUL-terminated string. Returns it,
 * or NULL after saying what is wrong (never quoting the content). */
static char *slurp(const char *opt, const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!fp) {
		fprintf(stderr, PROG ": %s %s: %s\n", opt, path, strerror(errno));
		return NULL;
	}
	buf = must(malloc(FILE_MAX + 1));
	len = fread(buf, 1, FILE_MAX + 1, fp);
	if (ferror(fp) || len > FILE_MAX || memchr(buf, '\0', len)) {
		fprintf(stderr, PROG ": %s %s: %s\n", opt, path,
			ferror(fp) ? strerror(errno) : "too large, or not text");
		free(buf);
		buf = NULL;
	} else {
		buf[len] = '\0';
	}
	fclose(fp);
	return buf;
}

/* Loads --tls-cert, --tls-key and --api-key-file. Returns 0, or 2 (a usage error). */
static int load_creds(void)
{
	if (!tls_cert_arg != !tls_key_arg) {
		fprintf(stderr, PROG ": --tls-cert and --tls-key go together\n");
		return 2;
	}
	if (tls_cert_arg && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		fprintf(stderr, PROG ": this libmicrohttpd (%s) is built without TLS\n",
			MHD_get_version());
		return 2;
	}
	if (tls_client_ca_arg && !tls_cert_arg) {
		fprintf(stderr, PROG ": --tls-client-ca needs --tls-cert and --tls-key\n");
		return 2;
	}
	if (tls_cert_arg && (!(creds.cert = slurp("--tls-cert", tls_cert_arg)) ||
			     !(creds.key = slurp("--tls-key", tls_key_arg))))
		return 2;
	if (tls_client_ca_arg && !(creds.client_ca = slurp("--tls-client-ca", tls_client_ca_arg)))
		return 2;
	if (api_key_arg) {
		size_t len;
		if (!(creds.api_key = slurp("--api-key-file", api_key_arg)))
			return 2;
		len = strcspn(creds.api_key, "\r\n");
		creds.api_key[len] = '\0';
		if (!len) {
			fprintf(stderr, PROG ": --api-key-file %s: the first line is empty\n",
				api_key_arg);
			return 2;
		}
	}
	return 0;
}

/* Writes "API_PORT CONTROL_PORT\n" to FILE.tmp and renames it: readers never see half. */
static int write_port_file(const char *path, int api_port, int control_port)
{
	char tmp[4096];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (!(fp = fopen(tmp, "w"))) {
		fprintf(stderr, PROG ": --port-file %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	fprintf(fp, "%d %d\n", api_port, control_port);
	if (fclose(fp) || rename(tmp, path)) {
		fprintf(stderr, PROG ": --port-file %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Binds both listeners and serves them. Returns the control daemon, or NULL. */
static struct MHD_Daemon *start(struct sockaddr_in *control_addr)
{
	struct MHD_Daemon *control = NULL;
	char err[512];
	int fd;

	if ((api.fd = bind_socket(&api.addr, err, sizeof(err))) < 0 ||
	    !(api.daemon = serve(api.fd, on_api, creds.cert, err, sizeof(err)))) {
		fprintf(stderr, PROG ": payments API: %s\n", err);
		return NULL;
	}
	if ((fd = bind_socket(control_addr, err, sizeof(err))) < 0 ||
	    !(control = serve(fd, on_control, false, err, sizeof(err)))) {
		if (fd >= 0)
			close(fd);
		fprintf(stderr, PROG ": control API: %s\n", err);
	}
	return control;
}

int main(int argc, char **argv)
{
	struct MHD_Daemon *control;
	struct sockaddr_in control_addr;
	struct sigaction sa = {.sa_handler = stop};
	pthread_condattr_t attr;
	char err[512], host[2][INET_ADDRSTRLEN];
	int rc = parse_args(argc, argv);

	if (rc >= 0)
		return rc;
	if (payq_http_parse_addr("--listen", listen_arg, &api.addr, err, sizeof(err)) ||
	    payq_http_parse_addr("--control", control_arg, &control_addr, err, sizeof(err))) {
		fprintf(stderr, PROG ": %s\n", err);
		return 2;
	}
	if (request_log_arg && !(request_log = fopen(request_log_arg, "a"))) {
		fprintf(stderr, PROG ": --request-log %s: %s\n", request_log_arg, strerror(errno));
		return 2;
	}
	if (request_log)
		setvbuf(request_log, NULL, _IOLBF, 0);
	if ((rc = load_creds()))
		return rc;
	st.rng = seed >= 0 ? (uint64_t)seed : (uint64_t)payq_wall_ms() ^ (uint64_t)getpid() << 32;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&nap_ctl.wake, &attr);
	pthread_condattr_destroy(&attr);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	rc = 1;
	control = start(&control_addr);
	inet_ntop(AF_INET, &api.addr.sin_addr, host[0], sizeof(host[0]));
	inet_ntop(AF_INET, &control_addr.sin_addr, host[1], sizeof(host[1]));
	if (control && (!port_file || !write_port_file(port_file, ntohs(api.addr.sin_port),
						       ntohs(control_addr.sin_port)))) {
		fprintf(stderr, "listening: api %s:%d control %s:%d\n", host[0],
			ntohs(api.addr.sin_port), host[1], ntohs(control_addr.sin_port));
		while (run) {
			usleep(100 * 1000);
			reap(false);
		}
		rc = 0;
	}

	/* Wake the sleepers for good, so that stopping the daemons waits for nobody. */
	pthread_mutex_lock(&nap_ctl.lock);
	nap_ctl.stopping = true;
	pthread_cond_broadcast(&nap_ctl.wake);
	pthread_mutex_unlock(&nap_ctl.lock);
	if (control)
		MHD_stop_daemon(control);
	pthread_mutex_lock(&api.lock);
	if (api.daemon)
		api_quiesce(err, sizeof(err)); /* so that api.fd is ours to close */
	pthread_mutex_unlock(&api.lock);
	reap(true);
	if (api.fd >= 0)
		close(api.fd);
	free(api.retired);
	state_clear();
	pthread_cond_destroy(&nap_ctl.wake);
	if (request_log)
		fclose(request_log);
	free(creds.cert);
	free(creds.key);
	free(creds.client_ca);
	free(creds.api_key);
	return rc;
}
