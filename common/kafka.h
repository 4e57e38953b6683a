/* kafka.h - librdkafka helpers shared by the programs: configuration, logging, headers. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

/* Makes a client configuration: bootstrap.servers from cfg, then the program's
 * defaults (a NULL-terminated list of key, value pairs), then cfg's -X pairs, so -X
 * always wins. librdkafka's log lines go through payq's JSON logger.
 * Returns a conf the caller owns, or NULL with librdkafka's error text in errstr. */
rd_kafka_conf_t *payq_kafka_conf_new(const payq_config_t *cfg, const char *const *defaults,
				     char *errstr, size_t errstr_size);

/* Returns the last value of header name, with its length in *lenp, or NULL. */
const char *payq_kafka_header(const rd_kafka_message_t *msg, const char *name, size_t *lenp);

/* Copies header name into buf as a NUL-terminated string. Returns 0, or -1 if absent. */
int payq_kafka_header_str(const rd_kafka_message_t *msg, const char *name, char *buf,
			  size_t size);

/* Fetches partition counts for a topic. Returns the count, or -1 with errstr. */
int payq_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms,
			       char *errstr, size_t errstr_size);
