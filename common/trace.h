/* trace.h - W3C trace context (traceparent, tracestate) read from Kafka headers and passed on. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#define PAYQ_TRACE_ID_LEN 32 /* lowercase hex characters */
#define PAYQ_SPAN_ID_LEN 16
#define PAYQ_TRACEPARENT_LEN 55 /* "00-" trace "-" span "-" flags */
#define PAYQ_TRACESTATE_MAX 512 /* W3C: at most 32 members of at most 256 characters; bounded */

/* The trace context of one command; valid is false when the message carried none (or a
 * malformed one, which W3C says to ignore). */
typedef struct payq_trace {
	bool valid;
	char trace_id[PAYQ_TRACE_ID_LEN + 1];
	char parent_id[PAYQ_SPAN_ID_LEN + 1];
	char flags[3];
	char tracestate[PAYQ_TRACESTATE_MAX + 1]; /* "" when absent or not printable ASCII */
} payq_trace_t;

/* Parses a traceparent value of len bytes (not NUL-terminated) per W3C Trace Context level 1:
 * version 00 is exactly "00-<32 hex>-<16 hex>-<2 hex>", lowercase, IDs not all zero; a higher
 * version (not ff) is read by its version-00 prefix when followed by '-' or the end. Returns
 * false (t->valid false) otherwise. */
bool payq_trace_parse(const char *value, size_t len, payq_trace_t *t);

/* Reads traceparent and tracestate from a message's headers (the first of each). t->valid is
 * false when there is no valid traceparent; a tracestate without one is dropped. */
void payq_trace_from_message(const rd_kafka_message_t *m, payq_trace_t *t);

/* Writes a version-00 traceparent into out (PAYQ_TRACEPARENT_LEN + 1 bytes): with parent, its
 * trace ID and flags and a fresh random span ID (a child span); without (NULL or invalid), a
 * fresh random trace ID too, sampled. Returns 0, or -1 when no random bytes were available. */
int payq_trace_child(const payq_trace_t *parent, char *out, size_t out_size);
