/* trace.c - W3C trace context (traceparent, tracestate) read from Kafka headers and passed on. */
#include "trace.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static bool lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool all_zero(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != '0')
			return false;
	return true;
}

bool payq_trace_parse(const char *v, size_t len, payq_trace_t *t)
{
	memset(t, 0, sizeof(*t));
	if (!v || len < PAYQ_TRACEPARENT_LEN || !lower_hex(v, 2) || !memcmp(v, "ff", 2))
		return false;
	/* Version 00 has exactly these fields; a later version may append "-more". */
	if (!memcmp(v, "00", 2) ? len != PAYQ_TRACEPARENT_LEN
				: len > PAYQ_TRACEPARENT_LEN && v[PAYQ_TRACEPARENT_LEN] != '-')
		return false;
	if (v[2] != '-' || v[35] != '-' || v[52] != '-' || !lower_hex(v + 3, 32) ||
	    !lower_hex(v + 36, 16) || !lower_hex(v + 53, 2) || all_zero(v + 3, 32) ||
	    all_zero(v + 36, 16))
		return false;
	memcpy(t->trace_id, v + 3, PAYQ_TRACE_ID_LEN);
	memcpy(t->parent_id, v + 36, PAYQ_SPAN_ID_LEN);
	memcpy(t->flags, v + 53, 2);
	t->valid = true;
	return true;
}

/* tracestate is passed on as is, so only printable ASCII of bounded length is kept. */
static void set_tracestate(payq_trace_t *t, const char *v, size_t len)
{
	if (!v || len > PAYQ_TRACESTATE_MAX)
		return;
	for (size_t i = 0; i < len; i++)
		if (v[i] < 0x20 || v[i] > 0x7e)
			return;
	memcpy(t->tracestate, v, len);
	t->tracestate[len] = '\0';
}

void payq_trace_from_message(const rd_kafka_message_t *m, payq_trace_t *t)
{
	rd_kafka_headers_t *h = NULL;
	const void *v;
	size_t len;

	memset(t, 0, sizeof(*t));
	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h)
		return;
	if (rd_kafka_header_get(h, 0, "traceparent", &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    !payq_trace_parse(v, len, t))
		return;
	if (rd_kafka_header_get(h, 0, "tracestate", &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR)
		set_tracestate(t, v, len);
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int payq_trace_child(const payq_trace_t *parent, char *out, size_t out_size)
{
	unsigned char rnd[24];
	char trace_id[PAYQ_TRACE_ID_LEN + 1], span_id[PAYQ_SPAN_ID_LEN + 1];

	if (out_size < PAYQ_TRACEPARENT_LEN + 1)
		return -1;
	/* An all-zero ID is invalid; 2^-64 odds, but checked rather than hoped for. */
	do {
		if (payq_random_bytes(rnd, sizeof(rnd)))
			return -1;
		to_hex(rnd, 16, trace_id);
		to_hex(rnd + 16, 8, span_id);
	} while (all_zero(trace_id, PAYQ_TRACE_ID_LEN) || all_zero(span_id, PAYQ_SPAN_ID_LEN));
	if (parent && parent->valid)
		snprintf(out, out_size, "00-%s-%s-%s", parent->trace_id, span_id, parent->flags);
	else
		snprintf(out, out_size, "00-%s-%s-01", trace_id, span_id);
	return 0;
}
