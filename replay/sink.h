/* sink.h - copies records through an idempotent producer and confirms every delivery. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "range.h"

#define PAYQ_REPLAY_OF "payq-replay-of"

typedef struct payq_sink payq_sink_t;

typedef struct payq_sink_stats {
	int64_t queued;	   /* handed to librdkafka */
	int64_t delivered; /* PERSISTED delivery reports */
	int64_t failed;	   /* any other delivery report; each is logged with its source */
} payq_sink_stats_t;

/* Creates the producer: enable.idempotence=true, acks=all and partitioner=murmur2_random
 * (the Java client's, as payq-producer uses), so a copy lands in the partition the key
 * maps to; -X overrides. rate is messages per second, 0 for no limit. Returns the sink,
 * or NULL with errstr. */
payq_sink_t *payq_sink_new(const payq_config_t *cfg, double rate, char *errstr, size_t errstr_size);

/* Queues a copy of m for topic: the same key, value and headers, except headers whose
 * name starts with strip_prefix (NULL strips none) and any earlier payq-replay-of, plus
 * payq-replay-of: <topic>/<partition>/<offset> of m. Waits while the queue is full and
 * to keep to the rate. Returns 0, or -1 when replay_run was cleared or the producer hit
 * a fatal error (errstr says which). */
int payq_sink_copy(payq_sink_t *s, const char *topic, const rd_kafka_message_t *m,
		   const char *strip_prefix, char *errstr, size_t errstr_size);

/* Waits for every delivery report, for up to timeout_ms, or up to grace_ms once
 * replay_run is cleared, so an interrupted run still reports what landed. Returns 0 when
 * every copy was PERSISTED, or -1 (the failures were logged; errstr sums them up). */
int payq_sink_finish(payq_sink_t *s, int timeout_ms, int grace_ms, char *errstr,
		     size_t errstr_size);

/* Ends a run of copies after the read of their range ended with rd: waits for the delivery
 * reports as payq_sink_finish() does, with cfg's shutdown timeout as the grace, also after
 * an interruption, so that the summary says what landed. Returns rd, or, when the read was
 * done but a copy was not PERSISTED, PAYQ_RANGE_FAILED with errstr (PAYQ_RANGE_INTERRUPTED
 * once replay_run is cleared). */
payq_range_read_t payq_sink_finish_read(payq_sink_t *s, const payq_config_t *cfg,
					payq_range_read_t rd, char *errstr, size_t errstr_size);

/* Serves delivery reports without blocking, for progress while reading. */
void payq_sink_poll(payq_sink_t *s);

payq_sink_stats_t payq_sink_stats(const payq_sink_t *s);

/* Purges what is still queued and destroys the producer. NULL is ignored. */
void payq_sink_destroy(payq_sink_t *s);
