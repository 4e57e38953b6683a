/* kafka_clients.h - each program's librdkafka clients: the properties payq sets, those -X
 * may not change, and the configuration the clients really run with (-X dump). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

typedef enum {
	PAYQ_KAFKA_WORKER_CONSUMER, /* payq-worker: the group member that applies commands */
	PAYQ_KAFKA_WORKER_DLQ,	    /* payq-worker: the dead-letter producer */
	PAYQ_KAFKA_PRODUCER,	    /* payq-producer */
	PAYQ_KAFKA_REPLAY_READER,   /* payq-replay: reads ranges by assign(), never commits */
	PAYQ_KAFKA_REPLAY_SINK,	    /* payq-replay: the idempotent producer of copies */
	PAYQ_KAFKA__CNT
} payq_kafka_client_t;

/* Makes one client's configuration: bootstrap.servers from cfg, then payq's properties for
 * that client, then cfg's -X pairs, so -X wins where payq_kafka_check_x() let it. librdkafka's
 * log lines go through payq's JSON logger. Returns a conf the caller owns, or NULL with
 * librdkafka's error text in errstr. */
rd_kafka_conf_t *payq_kafka_conf_new(const payq_config_t *cfg, payq_kafka_client_t client,
				     char *errstr, size_t errstr_size);

/* The log callback payq_kafka_conf_new() sets: librdkafka's line to payq's logger. */
void payq_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* Checks cfg's -X pairs against the properties that prog's clients rely on (the offset
 * rule, the group, the producers' idempotence and partitioning). A pair is judged by the
 * property it really sets and the value librdkafka reads it as, so aliases and synonyms
 * count. Returns 0, or -1 with errstr naming the first offending pair, the property, the
 * value it must keep and why. */
int payq_kafka_check_x(const payq_config_t *cfg, unsigned prog, char *errstr, size_t errstr_size);

/* Prints, for each librdkafka client of prog: payq's defaults, then the -X overrides, then
 * the configuration librdkafka resolved from both. Secret values print as "***". */
void payq_kafka_dump(const payq_config_t *cfg, unsigned prog, FILE *fp);

/* True when the librdkafka property holds a secret: a password, a private key, a SASL or
 * OAuth secret. */
bool payq_kafka_secret_prop(const char *name);
