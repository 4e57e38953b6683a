/* outcome.h - DESIGN.md's outcome table (docs/outcomes.md), with no I/O.
 *
 * In: the state of the batch's orders and of their idempotency keys, as read from the
 * database, and the batch's commands in offset order. Out: each command's outcome and
 * what it does, and the merged state to write: every change to one order, whatever
 * number of commands made it, ends in one payq_order_state_t, and every new key in one
 * payq_key_state_t. worker/apply.c reads the state and writes the effects. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "strmap.h"

/* What happened to one command. All but the last two are recorded in
 * processed_commands.outcome: DESIGN.md's six, and gateway mode's pending (charged or
 * about to be, result not yet known), rejected_declined and rejected_payment_in_progress.
 * duplicate and key_reuse leave no new row. */
typedef enum {
	PAYQ_OUT_APPLIED = 0,
	PAYQ_OUT_REJECTED_ORDER_EXISTS,
	PAYQ_OUT_REJECTED_UNKNOWN_ORDER,
	PAYQ_OUT_REJECTED_ALREADY_PAID,
	PAYQ_OUT_REJECTED_ORDER_CANCELLED,
	PAYQ_OUT_REJECTED_AMOUNT_MISMATCH,
	PAYQ_OUT_PENDING,
	PAYQ_OUT_REJECTED_DECLINED,
	PAYQ_OUT_REJECTED_PAYMENT_IN_PROGRESS,
	PAYQ_OUT_DUPLICATE,
	PAYQ_OUT_KEY_REUSE,
	PAYQ_OUT__CNT
} payq_outcome_t;

/* orders.status */
typedef enum { PAYQ_ORDER_UNPAID = 0, PAYQ_ORDER_PAID, PAYQ_ORDER_CANCELLED } payq_order_status_t;

/* One order touched by the batch. */
typedef struct payq_order_state {
	const char *order_id;
	bool in_db, exists, changed;
	bool in_progress; /* gateway mode: a pending or unknown payment */
	payq_order_status_t status;
	int db_version, version;
	int64_t amount;
	const char *currency;
	const char *customer_id;     /* new orders only */
	const char *paid_command_id; /* set when paid in this batch */
} payq_order_state_t;

/* One idempotency key (order_id, command_id) seen by the batch. */
typedef struct payq_key_state {
	const char *order_id, *command_id;
	const char *hash_hex;
	bool in_db;
	bool pending;		     /* gateway mode: its recorded outcome is pending */
	bool resumed;		     /* gateway mode: one of its redeliveries charges again */
	const char *outcome, *topic; /* in_db: the row's outcome and Kafka coordinates */
	int32_t partition;
	int64_t offset;
	int first; /* command that created the key in this batch, or -1 */
	int dups;  /* redeliveries seen in this batch */
} payq_key_state_t;

/* The state of one batch. Zero it before first use; it is reused from batch to batch. */
typedef struct payq_batch_state {
	bool gateway; /* gateway mode: a pay records pending and is charged after COMMIT */
	payq_order_state_t *orders;
	size_t norders, orders_cap;
	payq_key_state_t *keys;
	size_t nkeys, keys_cap;
	payq_strmap_t order_map, key_map;
} payq_batch_state_t;

/* One command of the batch, with where it came from. */
typedef struct payq_outcome_in {
	const payq_command_t *cmd;
	const char *hash_hex; /* payload_sha256 in lower-case hex */
	const char *topic;
	int32_t partition;
	int64_t offset;
} payq_outcome_in_t;

/* What one command does. */
typedef struct payq_outcome_out {
	payq_outcome_t outcome;
	char detail[128]; /* empty when there is nothing to say */
	/* Gateway mode: charge the pay after COMMIT (a new pending pay, or the first
	 * redelivery in the batch of one whose recorded outcome is still pending). */
	bool charge;
	bool new_payment; /* insert a payment (applied or pending pay) */
	bool key_reuse;	  /* record a key_reuse anomaly */
	/* With outcome duplicate: the key's row was written by this very message (same
	 * topic, partition and offset) and records this outcome (PAYQ_OUT__CNT if not). */
	bool own_row;
	payq_outcome_t recorded;
} payq_outcome_out_t;

typedef enum {
	PAYQ_OUTCOME_OK = 0,
	PAYQ_OUTCOME_NOMEM,
} payq_outcome_status_t;

const char *payq_outcome_name(payq_outcome_t o);
/* The outcome a processed_commands.outcome value names, or PAYQ_OUT__CNT. */
payq_outcome_t payq_outcome_parse(const char *name);
const char *payq_order_status_name(payq_order_status_t s);
/* The status an orders.status value names; anything unknown reads as unpaid. */
payq_order_status_t payq_order_status_parse(const char *name);

/* Empties the batch and makes room for norders orders and nkeys keys. */
payq_outcome_status_t payq_batch_reset(payq_batch_state_t *b, size_t norders, size_t nkeys);
/* Before the first key is added: makes room for nkeys keys, keeping the orders. Each
 * command adds at most one key, so room for the keys read plus the batch's commands is
 * enough. */
payq_outcome_status_t payq_batch_reserve_keys(payq_batch_state_t *b, size_t nkeys);
void payq_batch_free(payq_batch_state_t *b);

/* The order's state; with add, a new zeroed one (not existing) when it has none yet.
 * NULL without add when the batch has no such order. */
payq_order_state_t *payq_batch_order(payq_batch_state_t *b, const char *order_id, bool add);
/* The key's state, or NULL. */
payq_key_state_t *payq_batch_key(payq_batch_state_t *b, const char *order_id,
				 const char *command_id);
/* Adds a key (which must not be there yet), first = -1; NULL when out of room. */
payq_key_state_t *payq_batch_key_add(payq_batch_state_t *b, const char *order_id,
				     const char *command_id);

/* Evaluates the table for command number idx of the batch (in offset order) against
 * the state and the batch's earlier commands, and applies its effect to the state. The
 * command's order must be in the batch (payq_batch_order with add). */
void payq_outcome_eval(payq_batch_state_t *b, const payq_outcome_in_t *in, int idx,
		       payq_outcome_out_t *out);
