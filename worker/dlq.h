/* dlq.h - dead-letters malformed commands to payq.commands.dlq, waiting for PERSISTED. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

typedef struct payq_dlq payq_dlq_t;

/* One message to dead-letter, with its reason code and a readable error. */
typedef struct payq_dlq_entry {
	const rd_kafka_message_t *msg;
	const char *reason;
	char error[256];
	bool persisted; /* set by payq_dlq_deliver() */
	bool truncated; /* set by payq_dlq_deliver(): the full copy was too large */
} payq_dlq_entry_t;

/* Called between waits, so the caller can keep its consumer polling. Returns false to
 * give up (shutdown deadline passed or a fatal error). */
typedef bool (*payq_dlq_tick_fn)(void *opaque, int wait_ms);

/* Creates the idempotent DLQ producer. Returns NULL with errstr. */
payq_dlq_t *payq_dlq_new(const payq_config_t *cfg, char *errstr, size_t errstr_size);

/* Produces a copy of every entry (original key, value and headers plus the
 * payq-dlq-* headers) and waits until each has a PERSISTED delivery report, producing
 * again after failures with backoff. A copy too large for the DLQ (message.max.bytes,
 * or the topic's max.message.bytes) is sent truncated instead: payq-dlq-reason
 * too_large_for_dlq, payq-dlq-original-size, the original reason in payq-dlq-error.
 * Returns 0 when all are persisted, or -1 when tick gave up or the producer cannot go
 * on (a fatal error, or a truncated copy still too large; payq_dlq_fatal() says so). */
int payq_dlq_deliver(payq_dlq_t *d, payq_dlq_entry_t *entries, size_t n, payq_dlq_tick_fn tick,
		     void *opaque);

/* True after a fatal idempotent-producer error, or a copy that can never be delivered;
 * errstr gets the reason. */
bool payq_dlq_fatal(payq_dlq_t *d, char *errstr, size_t errstr_size);

#ifdef PAYQ_CRASH_POINTS
/* Raises a fatal idempotent-producer error on purpose (fault-injection tests; only in
 * -Dcrash_points=true builds, like the PAYQ_FAULT_AT point that calls it). */
void payq_dlq_test_fatal(payq_dlq_t *d);
#endif

/* Flushes within timeout_ms and destroys the producer. NULL is ignored. */
void payq_dlq_destroy(payq_dlq_t *d, int timeout_ms);
