/* range.h - a slice of a topic: per-partition offset bounds from offsets or times, read once. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

/* What the operator asked for. Offsets and times apply to every selected partition;
 * -1 means unset. The range is half-open: from is included, to is not. */
typedef struct payq_range_spec {
	int32_t *partitions; /* NULL: every partition of the topic */
	size_t npartitions, partitions_cap;
	int64_t from_offset, from_time_ms; /* unset: the low watermark */
	int64_t to_offset, to_time_ms;	   /* unset: the high watermark when resolved */
} payq_range_spec_t;

/* One partition of a resolved range: [start, end) lies within [low, high]. */
typedef struct payq_range_part {
	int32_t partition;
	int64_t low, high; /* watermarks at resolve time */
	int64_t start, end;
} payq_range_part_t;

typedef struct payq_range {
	char *topic;
	payq_range_part_t *parts; /* sorted by partition */
	size_t cnt;
} payq_range_t;

/* A spec with nothing set: the whole topic up to its high watermark. */
void payq_range_spec_init(payq_range_spec_t *spec);
void payq_range_spec_free(payq_range_spec_t *spec);

/* Creates the client every subcommand uses for reading, metadata and the admin API: a
 * consumer that only ever uses assign(), never joins a group and never commits.
 * auto.offset.reset=error, so records deleted by retention mid-read are noticed.
 * Returns the handle, or NULL with errstr. */
rd_kafka_t *payq_range_client_new(const payq_config_t *cfg, char *errstr, size_t errstr_size);

/* Closes and destroys a client of payq_range_client_new(). NULL is ignored. */
void payq_range_client_destroy(rd_kafka_t *rk);

/* Resolves spec against topic: partitions from metadata, watermarks, and times through
 * rd_kafka_offsets_for_times() (the first offset whose timestamp is at or after the
 * time; the high watermark when there is none). Offsets are clamped to the watermarks.
 * Fills r, which the caller frees with payq_range_free(). Returns 0, or -1 with errstr
 * (an unknown topic or partition is an error). */
int payq_range_resolve(rd_kafka_t *rk, const char *topic, const payq_range_spec_t *spec,
		       payq_range_t *r, char *errstr, size_t errstr_size);

/* For each partition of r, the first offset whose timestamp is at or after ts_ms, or the
 * high watermark when there is none. out[i] belongs to r->parts[i]. Returns 0 or -1. */
int payq_range_offsets_for_time(rd_kafka_t *rk, const payq_range_t *r, int64_t ts_ms, int64_t *out,
				char *errstr, size_t errstr_size);

/* Called for each message of the range, in offset order within a partition. Returns 0
 * to go on, or -1 to stop the read (the callback logs why). */
typedef int (*payq_range_cb)(void *opaque, const rd_kafka_message_t *m);

/* How a read of a range ended. */
typedef enum {
	PAYQ_RANGE_DONE = 0,	/* every partition was read to its end */
	PAYQ_RANGE_FAILED,	/* a Kafka error or a callback stop; errstr says which */
	PAYQ_RANGE_INTERRUPTED, /* replay_run was cleared */
} payq_range_read_t;

/* Reads every message in [start, end) of every partition of r, then stops: each end was
 * fixed when the range was resolved, so the read finishes even while producers write. */
payq_range_read_t payq_range_read(rd_kafka_t *rk, const payq_range_t *r, payq_range_cb cb,
				  void *opaque, char *errstr, size_t errstr_size);

/* Messages in the range: the sum of end - start. */
int64_t payq_range_total(const payq_range_t *r);

/* Prints one line per partition with messages: topic/partition [start, end) count. */
void payq_range_print(const payq_range_t *r, const char *prefix);

void payq_range_free(payq_range_t *r);
