/* sink.h - where payq-producer's messages go: Kafka with delivery accounting, or a dry run. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

/* Exit codes, shared by every subcommand and listed in --help. */
#define PAYQ_PRODUCER_EXIT_OK 0		   /* every message has a PERSISTED delivery report */
#define PAYQ_PRODUCER_EXIT_UNDELIVERED 1   /* some message was not persisted, or Kafka failed */
#define PAYQ_PRODUCER_EXIT_USAGE 2	   /* bad arguments or invalid input: nothing was sent */
#define PAYQ_PRODUCER_EXIT_INTERRUPTED 130 /* SIGINT or SIGTERM stopped the run */

typedef struct payq_producer_opts {
	bool dry_run;	/* compute partitions and print, send nothing */
	int partitions; /* dry run: partition count; 0 asks the broker's metadata */
	bool print;	/* write "partition\tkey\tvalue" lines to stdout (kcat -f '%p\t%k\t%s\n') */
	double rate;	/* messages per second; 0 is unlimited */
} payq_producer_opts_t;

/* One message. key must not be NULL. A NULL value is sent as a null (tombstone) value.
 * type and command_id become the payq-type and payq-command-id headers; NULL omits one. */
typedef struct payq_producer_msg {
	const char *key;
	size_t key_len;
	const void *value;
	size_t value_len;
	const char *type;
	const char *command_id;
} payq_producer_msg_t;

typedef struct payq_producer payq_producer_t;

/* Creates the idempotent producer (acks=all, murmur2_random, lz4; -X overrides), or for
 * a dry run just learns the partition count. Returns the sink, or NULL with errstr. */
payq_producer_t *payq_producer_new(const payq_config_t *cfg, const payq_producer_opts_t *opts,
				   char *errstr, size_t errstr_size);

/* Queues one message, throttled to opts->rate; on a full queue it polls and retries.
 * A dry run prints "partition order_id command_id type" (or, with print, the message).
 * Returns 0, or -1 when the run must stop: a signal, or a fatal Kafka error. */
int payq_producer_send(payq_producer_t *s, const payq_producer_msg_t *m);

/* True while no signal or fatal error has stopped the run. */
bool payq_producer_running(const payq_producer_t *s);

/* Flushes (bounded by message.timeout.ms, or PAYQ_SHUTDOWN_TIMEOUT_MS after a signal),
 * purges what is left, logs the closing summary with counts per partition.
 * Returns a PAYQ_PRODUCER_EXIT_* code. */
int payq_producer_finish(payq_producer_t *s);

/* Number of messages with a PERSISTED delivery report (queued ones in a dry run). */
int64_t payq_producer_delivered(const payq_producer_t *s);

/* Frees the sink. NULL is allowed. */
void payq_producer_destroy(payq_producer_t *s);
