/* gateway.h - the payment channel client of gateway mode: charges and status queries
 * over HTTP, many at once through libcurl's multi interface. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* What the channel said about one idempotency key. */
typedef enum {
	PAYQ_CHARGE_SUCCEEDED = 0, /* money moved; charge_id is set */
	PAYQ_CHARGE_DECLINED,	   /* refused by the channel; decline_code is set */
	PAYQ_CHARGE_UNKNOWN,	   /* no answer, 5xx, timeout, 409, ...: ask again later */
	PAYQ_CHARGE_NOT_FOUND,	   /* status query only: the channel never saw the key */
	PAYQ_CHARGE_MISMATCH,	   /* an answer for another key, amount or currency: settles
				    * nothing, the payment stays unknown (charge_mismatch) */
} payq_charge_status_t;

/* Longest idempotency key the channel takes (Stripe: 255). */
#define PAYQ_GATEWAY_KEY_MAX 255

/* One request. The caller fills the inputs; every call fills status and detail. */
typedef struct payq_charge {
	/* in */
	const char *order_id, *command_id, *currency, *payer_id; /* payer_id may be NULL */
	int64_t amount_minor;
	char key[PAYQ_GATEWAY_KEY_MAX + 1]; /* as stored with the payment; never changes */
	bool retry; /* resuming an earlier attempt (redelivery or reconciliation) */
	/* W3C trace context sent with a charge: a child span of the command's traceparent
	 * ("" without one) and its tracestate (NULL or ""), see trace.h */
	char traceparent[56];
	const char *tracestate;
	bool past_retention; /* recorded longer ago than the channel keeps keys */
	/* out */
	payq_charge_status_t status;
	long http_status; /* 0 when there was no response */
	char charge_id[64];
	char decline_code[64];
	char detail[200]; /* why, for logs, processed_commands.detail and anomalies */
} payq_charge_t;

typedef struct payq_gateway payq_gateway_t;

/* Needs cfg->gateway_url. Call curl_global_init() once before the first one. */
payq_gateway_t *payq_gateway_new(const payq_config_t *cfg, char *errstr, size_t errstr_size);
void payq_gateway_destroy(payq_gateway_t *g);

/* PAYQ_GATEWAY_KEY_RETENTION in milliseconds. A charge with past_retention set is never
 * sent: it comes back PAYQ_CHARGE_UNKNOWN. */
int64_t payq_gateway_key_retention_ms(const payq_gateway_t *g);

/* Called about every 200 ms while a call below has run for more than a second, so a
 * slow channel does not starve the caller's own duties (a consumer's polls). Returning
 * false (a deadline) ends the call at once: the requests not yet sent and those still
 * in flight come back PAYQ_CHARGE_UNKNOWN (money may have moved). */
typedef bool (*payq_gateway_idle_fn)(void *opaque, int wait_ms);
void payq_gateway_set_idle(payq_gateway_t *g, payq_gateway_idle_fn fn, void *opaque);

/* POST /charges for every charge, at most PAYQ_GATEWAY_CONCURRENCY at once; the timeout
 * of each runs from when it is sent. Returns when each has an answer or timed out. */
void payq_gateway_charge(payq_gateway_t *g, payq_charge_t *c, size_t n);

/* GET /charges/{key} for every charge: SUCCEEDED, DECLINED, NOT_FOUND or UNKNOWN. */
void payq_gateway_query(payq_gateway_t *g, payq_charge_t *c, size_t n);

/* Writes the idempotency key of a new payment, "<order_id>|<command_id>", into buf
 * (at least PAYQ_GATEWAY_KEY_MAX + 1 bytes). '|' is outside the ID charset, so the key
 * names one pair of IDs, and no key of the old form "<order_id>:<command_id>" (kept by
 * payments recorded before it) can equal it. Returns buf. */
const char *payq_gateway_key(const char *order_id, const char *command_id, char *buf, size_t size);

const char *payq_charge_status_name(payq_charge_status_t s);

/* Parses PAYQ_GATEWAY_KEY_RETENTION ("24h"): how long the channel remembers an
 * idempotency key. Returns 0, or -1 with errstr. */
int payq_gateway_parse_retention(const char *text, int64_t *ms, char *errstr, size_t errstr_size);

/* Reads one answer of the channel, its HTTP status and body (len bytes; the worker keeps
 * a NUL after them), into c's status, http_status, charge_id, decline_code and detail.
 * post says whether it answered a charge. Called by the client, and by the fuzz target
 * (tests/fuzz/fuzz_gateway.c). */
void payq_gateway_classify(payq_charge_t *c, long http_status, const char *response, size_t len,
			   bool post);
