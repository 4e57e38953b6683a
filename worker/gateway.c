/* gateway.c - the payment channel client of gateway mode (libcurl multi).
 *
 * Every request of a batch is added to one multi handle, which runs them concurrently,
 * at most PAYQ_GATEWAY_CONCURRENCY connections at a time, and keeps those connections
 * alive from batch to batch. Anything but a clear answer (a timeout, a reset, a 5xx, a
 * 409 for a key still in progress) is PAYQ_CHARGE_UNKNOWN: the money may or may not
 * have moved, and only asking again with the same idempotency key can tell.
 */
#include "gateway.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "log.h"
#include "metrics.h"
#include "secretfile.h"
#include "util.h"

enum { RESPONSE_MAX = 4096, API_KEY_MAX = 4096 };

struct payq_gateway {
	CURLM *multi;
	char *base; /* gateway URL without a trailing slash */
	char *auth; /* "Authorization: Bearer <key>", or NULL without a key file */
	const char *ca_file, *cert_file, *cert_key_file; /* the config's, or NULL */
	const char *protocols; /* "https", or "http,https" with PAYQ_GATEWAY_ALLOW_INSECURE=1 */
	long timeout_ms, connect_timeout_ms;
	int64_t key_retention_ms;
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
	char error[CURL_ERROR_SIZE]; /* libcurl's own words for a failure (TLS: which check) */
	char response[RESPONSE_MAX];
	size_t len;
	int64_t t0_us;
} request_t;

static const char *const status_names[] = {"succeeded", "declined", "unknown", "not_found",
					   "mismatch"};

const char *payq_charge_status_name(payq_charge_status_t s)
{
	return (unsigned)s < PAYQ_ARRAY_SIZE(status_names) ? status_names[s] : "?";
}

const char *payq_gateway_key(const char *order_id, const char *command_id, char *buf, size_t size)
{
#ifdef PAYQ_MUTATION_AMBIGUOUS_KEY
	/* Deliberately broken build: the old key, which two pairs of IDs can share
	 * ("shop" + "1:pay" and "shop:1" + "pay"). */
	snprintf(buf, size, "%s:%s", order_id, command_id);
#else
	snprintf(buf, size, "%s|%s", order_id, command_id);
#endif
	return buf;
}

int payq_gateway_parse_retention(const char *text, int64_t *ms, char *errstr, size_t errstr_size)
{
	if (!text || payq_parse_duration_ms(text, ms) || *ms <= 0)
		return payq_err(
			errstr, errstr_size,
			"gateway-key-retention (PAYQ_GATEWAY_KEY_RETENTION): \"%s\" is not a "
			"duration such as 24h or 7d",
			text ? text : "");
	return 0;
}

/* Builds the channel's Authorization header from the API key (PAYQ_GATEWAY_API_KEY_FILE,
 * read, checked and registered with the logger by the settings code). The key must be
 * one bearer token of visible ASCII: anything else could inject a header. */
static int set_api_key(payq_gateway_t *g, const char *key, char *errstr, size_t errstr_size)
{
	static const char prefix[] = "Authorization: Bearer ";
	size_t len = strlen(key), bad;

	for (bad = 0; bad < len && key[bad] >= 0x21 && key[bad] <= 0x7e; bad++)
		;
	if (!len)
		return payq_err(errstr, errstr_size,
				"gateway-api-key (PAYQ_GATEWAY_API_KEY_FILE): "
				"the key is empty");
	if (len > API_KEY_MAX)
		return payq_err(errstr, errstr_size,
				"gateway-api-key (PAYQ_GATEWAY_API_KEY_FILE): "
				"the key is longer than %d bytes",
				API_KEY_MAX);
	if (bad < len)
		return payq_err(errstr, errstr_size,
				"gateway-api-key (PAYQ_GATEWAY_API_KEY_FILE): "
				"the key has a byte that is not visible ASCII at offset %zu (one "
				"token, no spaces)",
				bad);
	if (!(g->auth = malloc(sizeof(prefix) + len)))
		return payq_err(errstr, errstr_size, "out of memory");
	memcpy(g->auth, prefix, sizeof(prefix) - 1);
	memcpy(g->auth + sizeof(prefix) - 1, key, len + 1);
	return 0;
}

/* Checks the TLS files now, so that a typo stops the worker at start (exit 2) rather
 * than failing every charge. The client key is a secret: not readable by every user. */
static int check_tls_files(const payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	const struct {
		const char *what, *path;
	} files[] = {
		{"gateway-ca-file (PAYQ_GATEWAY_CA_FILE)", cfg->gateway_ca_file},
		{"gateway-cert-file (PAYQ_GATEWAY_CERT_FILE)", cfg->gateway_cert_file},
	};

	for (size_t i = 0; i < PAYQ_ARRAY_SIZE(files); i++)
		if (files[i].path && *files[i].path && access(files[i].path, R_OK))
			return payq_err(errstr, errstr_size, "%s: %s: %s", files[i].what,
					files[i].path, strerror(errno));
	if (cfg->gateway_cert_key_file && *cfg->gateway_cert_key_file) {
		if (!cfg->gateway_cert_file || !*cfg->gateway_cert_file)
			return payq_err(
				errstr, errstr_size,
				"gateway-cert-key-file "
				"(PAYQ_GATEWAY_CERT_KEY_FILE) needs PAYQ_GATEWAY_CERT_FILE, "
				"the certificate it belongs to");
		if (payq_secret_file_check(cfg->gateway_cert_key_file, errstr, errstr_size))
			return -1;
	}
	return 0;
}

/* "" and NULL both mean unset. */
static const char *opt_path(const char *s)
{
	return s && *s ? s : NULL;
}

payq_gateway_t *payq_gateway_new(const payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	payq_gateway_t *g;
	size_t len;
	int64_t retention;
	bool insecure;

	if (!cfg->gateway_url || !*cfg->gateway_url) {
		payq_err(
			errstr, errstr_size,
			"gateway mode needs PAYQ_GATEWAY_URL (--gateway-url), the payment channel");
		return NULL;
	}
	insecure = cfg->gateway_allow_insecure && !strcmp(cfg->gateway_allow_insecure, "1");
	if (strncmp(cfg->gateway_url, "http://", 7) != 0 &&
	    strncmp(cfg->gateway_url, "https://", 8) != 0) {
		payq_err(errstr, errstr_size,
			 "gateway-url (PAYQ_GATEWAY_URL): \"%s\" is not an "
			 "http:// or https:// URL",
			 cfg->gateway_url);
		return NULL;
	}
	/* Card data and the API key would cross the network in clear. */
	if (!strncmp(cfg->gateway_url, "http://", 7) && !insecure) {
		payq_err(errstr, errstr_size,
			 "gateway-url (PAYQ_GATEWAY_URL): \"%s\" is plaintext "
			 "http://: use https://, or set PAYQ_GATEWAY_ALLOW_INSECURE=1 (a sandbox "
			 "or test channel only)",
			 cfg->gateway_url);
		return NULL;
	}
	if (payq_gateway_parse_retention(cfg->gateway_key_retention, &retention, errstr,
					 errstr_size) ||
	    check_tls_files(cfg, errstr, errstr_size))
		return NULL;
	g = calloc(1, sizeof(*g));
	if (!g || !(g->base = strdup(cfg->gateway_url)) || !(g->multi = curl_multi_init())) {
		payq_gateway_destroy(g);
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	if (cfg->gateway_api_key && set_api_key(g, cfg->gateway_api_key, errstr, errstr_size)) {
		payq_gateway_destroy(g);
		return NULL;
	}
	g->ca_file = opt_path(cfg->gateway_ca_file);
	g->cert_file = opt_path(cfg->gateway_cert_file);
	g->cert_key_file = opt_path(cfg->gateway_cert_key_file);
	g->protocols = insecure ? "http,https" : "https";
	len = strlen(g->base);
	while (len && g->base[len - 1] == '/')
		g->base[--len] = '\0';
	g->key_retention_ms = retention;
	g->timeout_ms = (long)cfg->gateway_timeout_ms;
	g->connect_timeout_ms = (long)cfg->gateway_connect_timeout_ms;
	g->concurrency = (size_t)cfg->gateway_concurrency;
	curl_multi_setopt(g->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->gateway_concurrency);
	curl_multi_setopt(g->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg->gateway_concurrency);
	curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, (long)cfg->gateway_concurrency);
	return g;
}

int64_t payq_gateway_key_retention_ms(const payq_gateway_t *g)
{
	return g->key_retention_ms;
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
	if (g->auth) {
		explicit_bzero(g->auth, strlen(g->auth));
		free(g->auth);
	}
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
	char *s, amount[24];

	/* A raw integer token: cJSON would print 10^15 as 1e+15. */
	snprintf(amount, sizeof(amount), "%" PRId64, c->amount_minor);
	cJSON_AddStringToObject(o, "order_id", c->order_id);
	cJSON_AddStringToObject(o, "command_id", c->command_id);
	cJSON_AddRawToObject(o, "amount_minor", amount);
	cJSON_AddStringToObject(o, "currency", c->currency);
	if (c->payer_id)
		cJSON_AddStringToObject(o, "payer_id", c->payer_id);
	else
		cJSON_AddNullToObject(o, "payer_id");
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

/* TLS as the settings say; the peer's certificate and name are always checked, and
 * only https (or http when allowed) is spoken, whatever a URL or redirect says. */
static void set_tls(const payq_gateway_t *g, CURL *easy)
{
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, g->protocols);
#ifdef PAYQ_MUTATION_GATEWAY_NO_VERIFY
	/* Deliberately broken build: any certificate is taken, so anyone on the path can
	 * pose as the channel and read the API key. */
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
#else
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
#endif
	if (g->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, g->ca_file);
	if (g->cert_file) {
		curl_easy_setopt(easy, CURLOPT_SSLCERT, g->cert_file);
		curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
	}
	if (g->cert_key_file)
		curl_easy_setopt(easy, CURLOPT_SSLKEY, g->cert_key_file);
}

static int request_init(payq_gateway_t *g, request_t *r, payq_charge_t *c, bool post)
{
	char key[PAYQ_GATEWAY_KEY_MAX + 32], url[1024];
	char *escaped;

	memset(r, 0, sizeof(*r));
	r->charge = c;
	snprintf(key, sizeof(key), "%s", c->key);
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
		char header[PAYQ_GATEWAY_KEY_MAX + 64];
		snprintf(url, sizeof(url), "%s/charges", g->base);
		snprintf(header, sizeof(header), "Idempotency-Key: %s", key);
		if (!(r->body = charge_body(c)))
			return -1;
		r->headers = curl_slist_append(NULL, "Content-Type: application/json");
		r->headers = curl_slist_append(r->headers, header);
		if (r->headers && c->traceparent[0]) {
			snprintf(header, sizeof(header), "traceparent: %s", c->traceparent);
			r->headers = curl_slist_append(r->headers, header);
		}
		if (r->headers && c->traceparent[0] && c->tracestate && c->tracestate[0]) {
			snprintf(header, sizeof(header), "tracestate: %s", c->tracestate);
			r->headers = curl_slist_append(r->headers, header);
		}
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
	if (r->headers && g->auth)
		r->headers = curl_slist_append(r->headers, g->auth);
	if (!r->headers)
		return -1;
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, g->timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, g->connect_timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "payq-worker/" PAYQ_VERSION);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->error);
	set_tls(g, r->easy);
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

static void classify(request_t *r, CURLcode cc, bool post)
{
	payq_charge_t *c = r->charge;
	long http_status = 0;
	char text[160];

	if (cc != CURLE_OK) {
		const char *why = r->error[0] ? r->error : curl_easy_strerror(cc);

		c->charge_id[0] = c->decline_code[0] = '\0';
		c->status = PAYQ_CHARGE_UNKNOWN;
		c->http_status = 0;
		payq_utf8_clean(text, sizeof(text), why, strlen(why));
		snprintf(c->detail, sizeof(c->detail), "gateway: %s", text);
		return;
	}
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &http_status);
	payq_gateway_classify(c, http_status, r->response, r->len, post);
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
	r->easy = NULL;
	if (!c->key[0]) {
		unsent(c, "no live payment with a stored idempotency key: not sent");
		return -1;
	}
	/* The channel may have forgotten the key: a POST would charge a second time. */
	if (post && c->past_retention) {
		unsent(c, "recorded longer ago than PAYQ_GATEWAY_KEY_RETENTION, so the channel "
			  "may have forgotten its key: not charged again");
		return -1;
	}
	if (request_init(g, r, c, post) || curl_multi_add_handle(g->multi, r->easy) != CURLM_OK) {
		request_free(r);
		r->easy = NULL;
		unsent(c, "out of memory");
		return -1;
	}
	return 0;
}

/* Failures that no retry can cure until a person acts: the channel refused our
 * credentials, or TLS failed (an unknown CA, a name mismatch, a bad client certificate).
 * Counted per call to log one clear line, not one per payment. */
typedef enum { REFUSAL_AUTH, REFUSAL_TLS, REFUSAL__CNT } refusal_t;

typedef struct refusals {
	size_t count[REFUSAL__CNT];
	char sample[REFUSAL__CNT][sizeof(((payq_charge_t *)0)->detail)]; /* the first detail */
} refusals_t;

static bool tls_failure(CURLcode cc)
{
	switch (cc) {
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CLIENTCERT: return true;
	default: return false;
	}
}

static void note_refusal(refusals_t *rf, const payq_charge_t *c, CURLcode cc)
{
	refusal_t kind;

	if (c->http_status == 401 || c->http_status == 403)
		kind = REFUSAL_AUTH;
	else if (tls_failure(cc))
		kind = REFUSAL_TLS;
	else
		return;
	if (!rf->count[kind]++)
		snprintf(rf->sample[kind], sizeof(rf->sample[kind]), "%s", c->detail);
}

static void log_refusals(const refusals_t *rf, size_t n, bool post)
{
	const char *what = post ? "charges" : "status queries";

	if (rf->count[REFUSAL_AUTH])
		log_error("gateway: the channel refused our credentials on %zu of %zu %s (%s): "
			  "check PAYQ_GATEWAY_API_KEY_FILE; these payments stay unknown and are "
			  "asked about again",
			  rf->count[REFUSAL_AUTH], n, what, rf->sample[REFUSAL_AUTH]);
	if (rf->count[REFUSAL_TLS])
		log_error("gateway: TLS with the channel failed on %zu of %zu %s (%s): check "
			  "PAYQ_GATEWAY_CA_FILE, PAYQ_GATEWAY_CERT_FILE and the channel's "
			  "certificate; these payments stay unknown and are asked about again",
			  rf->count[REFUSAL_TLS], n, what, rf->sample[REFUSAL_TLS]);
}

static void finish(request_t *r, CURLcode cc, bool post, refusals_t *rf)
{
	char labels[96];

	classify(r, cc, post);
	note_refusal(rf, r->charge, cc);
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
	refusals_t rf;

	memset(&rf, 0, sizeof(rf));

	if (!reqs) {
		for (size_t i = 0; i < n; i++)
			unsent(&c[i], "out of memory");
		return;
	}
	while (done < n) {
		CURLMsg *msg;
		int running = 0, left;
		size_t finished;

		while (next < n && next - done < g->concurrency) {
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
			finish(r, msg->data.result, post, &rf);
			done++;
			finished++;
		}
		/* A connection just came free: send the next request now, not after a poll
		 * that has nothing to wait for (that cost 100 ms per charge at concurrency 1). */
		if (done < n && !(finished && next < n))
			curl_multi_poll(g->multi, NULL, 0, 100, NULL);
		if (g->idle && payq_now_ms() - t0 > 1000 && payq_now_ms() - last_idle >= 200) {
			last_idle = payq_now_ms();
			if (!g->idle(g->idle_opaque, 0)) {
				/* A deadline: the requests in flight are abandoned too (unknown,
				 * for the reconciler), however long their own timeout. */
				log_warn("gateway: giving up on %zu requests not yet sent and %zu "
					 "in flight",
					 n - next, next - done);
				break;
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
	log_refusals(&rf, n, post);
}

void payq_gateway_charge(payq_gateway_t *g, payq_charge_t *c, size_t n)
{
	run(g, c, n, true);
}

void payq_gateway_query(payq_gateway_t *g, payq_charge_t *c, size_t n)
{
	run(g, c, n, false);
}
