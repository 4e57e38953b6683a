/* gateway.c - the payment channel client of gateway mode (libcurl multi).
 *
 * Every request of a batch is added to one multi handle, which runs them concurrently,
 * at most PAYQ_GATEWAY_CONCURRENCY connections at a time, and keeps those connections
 * alive from batch to batch. Anything but a clear answer (a timeout, a reset, a 5xx, a
 * 409 for a key still in progress) is PAYQ_CHARGE_UNKNOWN: the money may or may not
 * have moved, and only asking again with the same idempotency key can tell.
 */
#include "gateway.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

enum { RESPONSE_MAX = 4096 };

struct payq_gateway {
	CURLM *multi;
	char *base; /* gateway URL without a trailing slash */
	long timeout_ms, connect_timeout_ms;
	size_t concurrency;
	payq_gateway_idle_fn idle;
	void *idle_opaque;
};

/* One request in flight. */
typedef struct request {
	CURL *easy;
	payq_charge_t *charge;
	struct curl_slist *headers;
	char *body;
	char response[RESPONSE_MAX];
	size_t len;
	int64_t t0_us;
} request_t;

static const char *const status_names[] = {"succeeded", "declined", "unknown", "not_found"};

const char *payq_charge_status_name(payq_charge_status_t s)
{
	return (unsigned)s < PAYQ_ARRAY_SIZE(status_names) ? status_names[s] : "?";
}

const char *payq_gateway_key(const char *order_id, const char *command_id, char *buf,
			     size_t size)
{
	snprintf(buf, size, "%s:%s", order_id, command_id);
	return buf;
}

payq_gateway_t *payq_gateway_new(const payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	payq_gateway_t *g;
	size_t len;

	if (!cfg->gateway_url || !*cfg->gateway_url) {
		payq_err(errstr, errstr_size,
			 "gateway mode needs PAYQ_GATEWAY_URL (--gateway-url), the payment channel");
		return NULL;
	}
	if (strncmp(cfg->gateway_url, "http://", 7) != 0 && strncmp(cfg->gateway_url, "https://", 8) != 0) {
		payq_err(errstr, errstr_size, "gateway-url (PAYQ_GATEWAY_URL): \"%s\" is not an "
			 "http:// or https:// URL", cfg->gateway_url);
		return NULL;
	}
	g = calloc(1, sizeof(*g));
	if (!g || !(g->base = strdup(cfg->gateway_url)) || !(g->multi = curl_multi_init())) {
		payq_gateway_destroy(g);
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	len = strlen(g->base);
	while (len && g->base[len - 1] == '/')
		g->base[--len] = '\0';
	g->timeout_ms = (long)cfg->gateway_timeout_ms;
	g->connect_timeout_ms = (long)cfg->gateway_connect_timeout_ms;
	g->concurrency = (size_t)cfg->gateway_concurrency;
	curl_multi_setopt(g->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->gateway_concurrency);
	curl_multi_setopt(g->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg->gateway_concurrency);
	curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, (long)cfg->gateway_concurrency);
	return g;
}

void payq_gateway_set_idle(payq_gateway_t *g, payq_gateway_idle_fn fn, void *opaque)
{
	g->idle = fn;
	g->idle_opaque = opaque;
}

void payq_gateway_destroy(payq_gateway_t *g)
{
	if (!g)
		return;
	if (g->multi)
		curl_multi_cleanup(g->multi);
	free(g->base);
	free(g);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *opaque)
{
	request_t *r = opaque;
	size_t n = size * nmemb, room = sizeof(r->response) - 1 - r->len;

	/* A longer answer is cut; the fields we read come first in any sane channel. */
	memcpy(r->response + r->len, ptr, n < room ? n : room);
	r->len += n < room ? n : room;
	r->response[r->len] = '\0';
	return n;
}

/* Builds the POST body: the fields the channel needs, and the ones it checks a
 * replayed key against. */
static char *charge_body(const payq_charge_t *c)
{
	cJSON *o = cJSON_CreateObject();
	char *s;

	cJSON_AddStringToObject(o, "order_id", c->order_id);
	cJSON_AddStringToObject(o, "command_id", c->command_id);
	cJSON_AddNumberToObject(o, "amount_minor", (double)c->amount_minor);
	cJSON_AddStringToObject(o, "currency", c->currency);
	if (c->payer_id)
		cJSON_AddStringToObject(o, "payer_id", c->payer_id);
	else
		cJSON_AddNullToObject(o, "payer_id");
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static int request_init(payq_gateway_t *g, request_t *r, payq_charge_t *c, bool post)
{
	char key[512], url[1024];
	char *escaped;

	memset(r, 0, sizeof(*r));
	r->charge = c;
	payq_gateway_key(c->order_id, c->command_id, key, sizeof(key));
#ifdef PAYQ_MUTATION_NEW_KEY_ON_RETRY
	/* Deliberately broken build: a retried charge gets a fresh idempotency key, so the
	 * channel cannot tell it from a new payment. */
	if (post && c->retry) {
		uint32_t nonce = 0;
		size_t len = strlen(key);
		payq_random_bytes(&nonce, sizeof(nonce));
		snprintf(key + len, sizeof(key) - len, ":retry-%08" PRIx32, nonce);
	}
#endif
	if (!(r->easy = curl_easy_init()))
		return -1;
	if (post) {
		char header[600];
		snprintf(url, sizeof(url), "%s/charges", g->base);
		snprintf(header, sizeof(header), "Idempotency-Key: %s", key);
		if (!(r->body = charge_body(c)))
			return -1;
		r->headers = curl_slist_append(NULL, "Content-Type: application/json");
		r->headers = curl_slist_append(r->headers, header);
		if (!r->headers)
			return -1;
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
	} else {
		if (!(escaped = curl_easy_escape(r->easy, key, 0)))
			return -1;
		snprintf(url, sizeof(url), "%s/charges/%s", g->base, escaped);
		curl_free(escaped);
		r->headers = curl_slist_append(NULL, "Accept: application/json");
	}
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, g->timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, g->connect_timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "payq-worker/" PAYQ_VERSION);
	r->t0_us = payq_now_us();
	return 0;
}

static void request_free(request_t *r)
{
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	cJSON_free(r->body);
}

static const char *json_str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Turns a finished request into a status. post says whether it answered a charge. */
static void classify(request_t *r, CURLcode cc, bool post)
{
	payq_charge_t *c = r->charge;
	long http_status = 0;

	if (cc != CURLE_OK) {
		c->charge_id[0] = c->decline_code[0] = '\0';
		c->status = PAYQ_CHARGE_UNKNOWN;
		c->http_status = 0;
		snprintf(c->detail, sizeof(c->detail), "gateway: %s", curl_easy_strerror(cc));
		return;
	}
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &http_status);
	payq_gateway_classify(c, http_status, r->response, r->len, post);
}

void payq_gateway_classify(payq_charge_t *c, long http_status, const char *response,
			   size_t len, bool post)
{
	cJSON *body;
	const char *status, *id, *code, *err;

	c->charge_id[0] = c->decline_code[0] = '\0';
	c->status = PAYQ_CHARGE_UNKNOWN;
	c->http_status = http_status;
	body = cJSON_ParseWithLength(response, len);
	status = json_str(body, "status");
	id = json_str(body, "id");
	code = json_str(body, "decline_code");
	err = json_str(body, "error");
	if (c->http_status == 404 && !post) {
		c->status = PAYQ_CHARGE_NOT_FOUND;
		snprintf(c->detail, sizeof(c->detail), "gateway: no charge with this key");
	} else if (c->http_status / 100 == 2 && status && !strcmp(status, "succeeded") && id) {
		c->status = PAYQ_CHARGE_SUCCEEDED;
		snprintf(c->charge_id, sizeof(c->charge_id), "%s", id);
		snprintf(c->detail, sizeof(c->detail), "gateway: charge %s succeeded", id);
	} else if ((c->http_status == 402 || c->http_status / 100 == 2) && status &&
		   !strcmp(status, "declined")) {
		c->status = PAYQ_CHARGE_DECLINED;
		snprintf(c->charge_id, sizeof(c->charge_id), "%s", id ? id : "");
		snprintf(c->decline_code, sizeof(c->decline_code), "%s", code ? code : "declined");
		snprintf(c->detail, sizeof(c->detail), "gateway: declined (%s)", c->decline_code);
	} else {
		/* 409 (the key is still in progress), 422 (the key was used with another
		 * request: a bug somewhere, never a reason to change the key), 5xx, or an
		 * answer we cannot read: unknown, to be asked again. */
		snprintf(c->detail, sizeof(c->detail), "gateway: HTTP %ld%s%.150s", c->http_status,
			 err ? ": " : "", err ? err : "");
		payq_utf8_scrub(c->detail); /* before the log line too */
		if (c->http_status == 422 || c->http_status == 400)
			log_error("gateway refused %s for order %s: %s", post ? "a charge" : "a query",
				  c->order_id, c->detail);
	}
	cJSON_Delete(body);
	/* The answer's bytes go to PostgreSQL, which refuses a statement over one invalid
	 * UTF-8 byte: a channel's bad byte, or a character cut by the bounds above, would
	 * fail every retry of the batch (found by tests/fuzz/fuzz_gateway). */
	payq_utf8_scrub(c->charge_id);
	payq_utf8_scrub(c->decline_code);
	payq_utf8_scrub(c->detail);
}

static void unsent(payq_charge_t *c, const char *why)
{
	c->status = PAYQ_CHARGE_UNKNOWN;
	c->http_status = 0;
	snprintf(c->detail, sizeof(c->detail), "gateway: %s", why);
}

/* Sends the next request. Returns 0, or -1 when it could not be sent (marked unknown). */
static int start(payq_gateway_t *g, request_t *r, payq_charge_t *c, bool post)
{
	if (request_init(g, r, c, post) || curl_multi_add_handle(g->multi, r->easy) != CURLM_OK) {
		request_free(r);
		r->easy = NULL;
		unsent(c, "out of memory");
		return -1;
	}
	return 0;
}

static void finish(request_t *r, CURLcode cc, bool post)
{
	char labels[96];

	classify(r, cc, post);
	payq_metrics_observe("payq_gateway_request_seconds", NULL,
			     (double)(payq_now_us() - r->t0_us) / 1e6);
	snprintf(labels, sizeof(labels), "op=\"%s\",result=\"%s\"", post ? "charge" : "query",
		 payq_charge_status_name(r->charge->status));
	payq_metrics_add("payq_gateway_requests_total", labels, 1);
	request_free(r);
	r->easy = NULL;
}

/* Runs every request, at most g->concurrency in flight: a request is handed to libcurl
 * only when a connection is free, so its timeout measures the channel, not our queue. */
static void run(payq_gateway_t *g, payq_charge_t *c, size_t n, bool post)
{
	request_t *reqs = calloc(n ? n : 1, sizeof(*reqs));
	size_t next = 0, done = 0;
	int64_t t0 = payq_now_ms(), last_idle = t0;
	bool sending = true;

	if (!reqs) {
		for (size_t i = 0; i < n; i++)
			unsent(&c[i], "out of memory");
		return;
	}
	while (done < n) {
		CURLMsg *msg;
		int running = 0, left;
		size_t finished;

		while (sending && next < n && next - done < g->concurrency) {
			if (start(g, &reqs[next], &c[next], post))
				done++; /* not sent: already marked unknown */
			next++;
		}
		if (curl_multi_perform(g->multi, &running) != CURLM_OK)
			break;
		finished = 0;
		while ((msg = curl_multi_info_read(g->multi, &left))) {
			request_t *r;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
			curl_multi_remove_handle(g->multi, msg->easy_handle);
			finish(r, msg->data.result, post);
			done++;
			finished++;
		}
		if (!sending && next == done)
			break;
		/* A connection just came free: send the next request now, not after a poll
		 * that has nothing to wait for (that cost 100 ms per charge at concurrency 1). */
		if (done < n && !(finished && sending && next < n))
			curl_multi_poll(g->multi, NULL, 0, 100, NULL);
		if (g->idle && payq_now_ms() - t0 > 1000 && payq_now_ms() - last_idle >= 200) {
			last_idle = payq_now_ms();
			if (sending && !g->idle(g->idle_opaque, 0)) {
				log_warn("gateway: giving up on %zu charges not yet sent", n - next);
				sending = false;
			}
		}
	}
	/* Whatever was not sent, or was left behind by a multi failure, is unknown: the
	 * reconciler asks the channel about it with the same key. */
	for (size_t i = 0; i < n; i++) {
		if (reqs[i].easy) {
			curl_multi_remove_handle(g->multi, reqs[i].easy);
			request_free(&reqs[i]);
			unsent(&c[i], "request abandoned");
		} else if (i >= next) {
			unsent(&c[i], "not sent (shutting down)");
		}
	}
	free(reqs);
}

void payq_gateway_charge(payq_gateway_t *g, payq_charge_t *c, size_t n)
{
	run(g, c, n, true);
}

void payq_gateway_query(payq_gateway_t *g, payq_charge_t *c, size_t n)
{
	run(g, c, n, false);
}
