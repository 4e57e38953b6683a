/* kafka.h - librdkafka helpers shared by the programs: consumers, headers, partition
 * counts. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "kafka_clients.h" /* payq_kafka_conf_new() and the client kinds */

/* Returns the last value of header name, with its length in *lenp, or NULL. */
const char *payq_kafka_header(const rd_kafka_message_t *msg, const char *name, size_t *lenp);

/* Copies header name into buf as a NUL-terminated string. Returns 0, or -1 if absent. */
int payq_kafka_header_str(const rd_kafka_message_t *msg, const char *name, char *buf, size_t size);

/* Fetches partition counts for a topic. Returns the count, or -1 with errstr. */
int payq_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
			       size_t errstr_size);

/* Creates a consumer from conf, which it takes over (destroyed on failure too), and routes
 * the main queue to the consumer queue, so that rd_kafka_consumer_poll() serves every
 * callback. Returns the handle, or NULL with errstr. */
rd_kafka_t *payq_kafka_consumer_new(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);
