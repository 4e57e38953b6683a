/* gateway_answer.c - reads the payment channel's answer to one charge or query
 * (payq_gateway_classify, gateway.h): a pure function of the HTTP status and the body, so
 * that tests/fuzz/fuzz_gateway can drive it without a network. Every string it keeps is
 * bounded and valid UTF-8, and an answer about another payment settles nothing. */
#include "gateway.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "util.h"

static const char *json_str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Copies a string field of the channel's answer as valid UTF-8, cut to fit. */
static void copy_text(char *dst, size_t size, const char *s)
{
	payq_utf8_clean(dst, size, s ? s : "", s ? strlen(s) : 0);
}

/* An answer that settles a payment must be about that payment: its key, amount and
 * currency (and its order and command IDs, when it names them) must be the payment's.
 * Anything else (a bug or a compromise at the channel, a key shared by mistake) settles
 * nothing. Returns true when it matches; else says why in why. */
static bool answer_matches(const cJSON *body, const payq_charge_t *c, char *why, size_t size)
{
	const cJSON *amount = cJSON_GetObjectItemCaseSensitive(body, "amount_minor");
	const char *key = json_str(body, "idempotency_key"), *cur = json_str(body, "currency");
	const char *order = json_str(body, "order_id"), *cmd = json_str(body, "command_id");
	char shown[80];

	if (!key || strcmp(key, c->key)) {
		copy_text(shown, sizeof(shown), key ? key : "(none)");
		snprintf(why, size, "idempotency_key %s", shown);
	} else if (!cJSON_IsNumber(amount) || amount->valuedouble != (double)c->amount_minor) {
		snprintf(why, size, "amount_minor %.17g, expected %" PRId64,
			 cJSON_IsNumber(amount) ? amount->valuedouble : -1.0, c->amount_minor);
	} else if (!cur || strcmp(cur, c->currency)) {
		copy_text(shown, sizeof(shown), cur ? cur : "(none)");
		snprintf(why, size, "currency %s, expected %s", shown, c->currency);
	} else if ((order && strcmp(order, c->order_id)) || (cmd && strcmp(cmd, c->command_id))) {
		copy_text(shown, sizeof(shown), order && strcmp(order, c->order_id) ? order : cmd);
		snprintf(why, size, "order or command %s", shown);
	} else {
		return true;
	}
	return false;
}

void payq_gateway_classify(payq_charge_t *c, long http_status, const char *response, size_t len,
			   bool post)
{
	cJSON *body;
	const char *status, *id, *code, *err;
	char why[200], text[160];

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
	} else if (((c->http_status / 100 == 2 && status && !strcmp(status, "succeeded") && id) ||
		    ((c->http_status == 402 || c->http_status / 100 == 2) && status &&
		     !strcmp(status, "declined"))) &&
		   !answer_matches(body, c, why, sizeof(why))) {
		c->status = PAYQ_CHARGE_MISMATCH;
		snprintf(c->detail, sizeof(c->detail),
			 "gateway: the answer is not about this "
			 "payment: %.140s",
			 why);
		log_error("charge_mismatch: order %s command %s: %s", c->order_id, c->command_id,
			  c->detail);
	} else if (c->http_status / 100 == 2 && status && !strcmp(status, "succeeded") && id) {
		c->status = PAYQ_CHARGE_SUCCEEDED;
		copy_text(c->charge_id, sizeof(c->charge_id), id);
		snprintf(c->detail, sizeof(c->detail), "gateway: charge %s succeeded",
			 c->charge_id);
	} else if ((c->http_status == 402 || c->http_status / 100 == 2) && status &&
		   !strcmp(status, "declined")) {
		c->status = PAYQ_CHARGE_DECLINED;
		copy_text(c->charge_id, sizeof(c->charge_id), id);
		copy_text(c->decline_code, sizeof(c->decline_code), code ? code : "declined");
		snprintf(c->detail, sizeof(c->detail), "gateway: declined (%s)", c->decline_code);
	} else {
		/* 409 (the key is still in progress), 422 (the key was used with another
		 * request: a bug somewhere, never a reason to change the key), 5xx, or an
		 * answer we cannot read: unknown, to be asked again. */
		copy_text(text, sizeof(text), err);
		snprintf(c->detail, sizeof(c->detail), "gateway: HTTP %ld%s%s", c->http_status,
			 err ? ": " : "", text);
		if (c->http_status == 422 || c->http_status == 400) {
			char trace_id[33] = "";
			payq_log_ctx_t ctx = {.partition = -1,
					      .offset = -1,
					      .command_id = c->command_id,
					      .order_id = c->order_id};
			if (c->traceparent[0]) { /* "00-<trace id>-..." */
				snprintf(trace_id, sizeof(trace_id), "%.32s", c->traceparent + 3);
				ctx.trace_id = trace_id;
			}
			payq_log(PAYQ_LOG_ERROR, &ctx, "gateway refused %s for order %s: %s",
				 post ? "a charge" : "a query", c->order_id, c->detail);
		}
	}
	cJSON_Delete(body);
	/* The answer's bytes go to PostgreSQL, which refuses a statement over one invalid
	 * UTF-8 byte: a channel's bad byte, or a character cut by the bounds above, would
	 * fail every retry of the batch (found by tests/fuzz/fuzz_gateway). */
	payq_utf8_scrub(c->charge_id);
	payq_utf8_scrub(c->decline_code);
	payq_utf8_scrub(c->detail);
}
