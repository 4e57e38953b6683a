/* apply.h - applies a batch of commands to PostgreSQL in one transaction. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/* What happened to one command. The first six are DESIGN.md's outcomes and are recorded
 * in processed_commands.outcome; the last two leave no new row. */
typedef enum {
	PAYQ_OUT_APPLIED = 0,
	PAYQ_OUT_REJECTED_ORDER_EXISTS,
	PAYQ_OUT_REJECTED_UNKNOWN_ORDER,
	PAYQ_OUT_REJECTED_ALREADY_PAID,
	PAYQ_OUT_REJECTED_ORDER_CANCELLED,
	PAYQ_OUT_REJECTED_AMOUNT_MISMATCH,
	PAYQ_OUT_DUPLICATE,
	PAYQ_OUT_KEY_REUSE,
	PAYQ_OUT__CNT
} payq_outcome_t;

/* One valid command of a batch, with its Kafka coordinates. */
typedef struct payq_item {
	payq_command_t cmd;
	int32_t partition;
	int64_t offset;
	int64_t timestamp_ms; /* Kafka message timestamp, for latency */
	payq_outcome_t outcome; /* set by a successful payq_apply_batch() */
} payq_item_t;

/* consumer_progress for one partition: every offset below next_offset is settled. */
typedef struct payq_progress {
	int32_t partition;
	int64_t next_offset;
} payq_progress_t;

typedef enum {
	PAYQ_APPLY_OK = 0,
	PAYQ_APPLY_TRANSIENT = 1, /* rolled back or unknown; retry the same batch */
	PAYQ_APPLY_PERMANENT = 2, /* a command made the database refuse; split the batch */
} payq_apply_status_t;

typedef struct payq_apply payq_apply_t;

/* Creates an applier for one consumer group and topic. Does not connect yet. */
payq_apply_t *payq_apply_new(const char *conninfo, const char *group, const char *topic);
void payq_apply_destroy(payq_apply_t *a);

/* Connects if not connected, checks the schema version and prepares the statements.
 * Returns 0; -1 with errstr on a connection problem (retry later); -2 when the schema
 * is too old (do not retry). */
int payq_apply_connect(payq_apply_t *a, char *errstr, size_t errstr_size);

/* Drops the connection, for example after a transient error. */
void payq_apply_disconnect(payq_apply_t *a);

/* True when connected and the last use succeeded. */
bool payq_apply_connected(const payq_apply_t *a);

/* Runs SELECT 1, for readiness. Returns 0 or -1. */
int payq_apply_ping(payq_apply_t *a);

/* Applies items in order, in one transaction, following DESIGN.md's outcome table,
 * and writes progress (may be NULL) in the same transaction. On PAYQ_APPLY_OK the
 * transaction has committed and every item's outcome is set. Otherwise nothing is
 * known to be committed; sqlstate (6 bytes) and errstr say why. */
payq_apply_status_t payq_apply_batch(payq_apply_t *a, payq_item_t *items, size_t n,
				     const payq_progress_t *progress, size_t nprogress,
				     char sqlstate[6], char *errstr, size_t errstr_size);

/* Reads consumer_progress for a partition. Returns the next offset, -1 if there is
 * no row, or -2 on error. */
int64_t payq_apply_read_progress(payq_apply_t *a, int32_t partition);

/* Records an anomaly outside any batch (for example offset_gap). Returns 0 or -1. */
int payq_apply_anomaly(payq_apply_t *a, const char *kind, int32_t partition, int64_t offset,
		       const char *detail);

const char *payq_outcome_name(payq_outcome_t o);
