/* apply.h - applies a batch of commands to PostgreSQL in one transaction. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "gateway.h"
#include "outcome.h"
#include "trace.h"

/* One valid command of a batch, with its Kafka coordinates. */
typedef struct payq_item {
	payq_command_t cmd;
	int32_t partition;
	int64_t offset;
	int64_t timestamp_ms;	/* Kafka message timestamp, for latency */
	payq_outcome_t outcome; /* set by a successful payq_apply_batch() */
	bool charge;		/* gateway mode: its payment is pending; charge it, then settle */
	payq_trace_t trace;	/* from the message's traceparent and tracestate headers */
	/* With outcome duplicate: the row found was written by this very message (same
	 * topic, partition and offset), and records this outcome (PAYQ_OUT__CNT if not).
	 * After a retry whose first COMMIT did land, that is the batch's own outcome. */
	bool own_row;
	payq_outcome_t recorded;
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

/* What payq_apply_connect found. Any value but PAYQ_CONNECT_OK is nonzero. */
typedef enum {
	PAYQ_CONNECT_OK = 0,	 /* connected, schema checked, statements prepared */
	PAYQ_CONNECT_RETRY = -1, /* a connection problem, in errstr: retry later */
	PAYQ_CONNECT_FATAL = -2, /* the schema is too old, in errstr: do not retry */
} payq_connect_t;

/* Connects if not connected, checks the schema version and prepares the statements. */
payq_connect_t payq_apply_connect(payq_apply_t *a, char *errstr, size_t errstr_size);

/* Gateway mode: a pay that passes the outcome table records a pending payment and the
 * outcome pending, and sets item.charge; the caller charges the channel after COMMIT and
 * records the results with payq_apply_settle(). A redelivered pay whose outcome is still
 * pending is a duplicate with charge set: it resumes with the same idempotency key.
 * While an order has a pending or unknown payment, pay and cancel_order for it are
 * rejected_payment_in_progress. first_look_ms: when the reconciler first looks at a
 * payment left pending or unknown. */
void payq_apply_set_gateway(payq_apply_t *a, int64_t first_look_ms);

/* Drops the connection, for example after a transient error. */
void payq_apply_disconnect(payq_apply_t *a);

/* True when connected and the last use succeeded. */
bool payq_apply_connected(const payq_apply_t *a);

/* Runs SELECT 1, for readiness. Returns 0 or -1. */
int payq_apply_ping(payq_apply_t *a);

/* Applies items in order, in one transaction, following DESIGN.md's outcome table,
 * and writes progress (may be NULL) in the same transaction. On PAYQ_APPLY_OK the
 * transaction has committed and every item's outcome is set. Otherwise nothing is
 * known to be committed, no item has charge set, and sqlstate (6 bytes) and errstr say
 * why. */
payq_apply_status_t payq_apply_batch(payq_apply_t *a, payq_item_t *items, size_t n,
				     const payq_progress_t *progress, size_t nprogress,
				     char sqlstate[6], char *errstr, size_t errstr_size);

/* Gateway mode, step 3: records what the channel said for each charge, in one
 * transaction with progress (may be NULL). succeeded: payment succeeded, order paid,
 * outcome applied; declined: payment failed, outcome rejected_declined, order unpaid;
 * unknown: payment unknown (the reconciler's), outcome stays pending. A payment that is
 * no longer pending or unknown (someone else settled it) is left alone. Same errors as
 * payq_apply_batch(). */
payq_apply_status_t payq_apply_settle(payq_apply_t *a, const payq_charge_t *c, size_t n,
				      const payq_progress_t *progress, size_t nprogress,
				      char sqlstate[6], char *errstr, size_t errstr_size);

/* Gateway mode: fills each charge's key with the idempotency key stored with its
 * payment, and past_retention when the payment was recorded more than retention_ms ago.
 * A charge whose payment is no longer pending or unknown gets an empty key (nothing to
 * charge). Returns 0, or -1 on a database error. */
int payq_apply_read_keys(payq_apply_t *a, payq_charge_t *c, size_t n, int64_t retention_ms);

/* Gateway mode: after payq_apply_settle() refused c[0..n) together with a permanent
 * error, settles them one by one; one the database refuses is recorded unknown with the
 * refusal as its detail (c[i] changes to say so) and raises settle_refused. Never
 * returns PAYQ_APPLY_PERMANENT; PAYQ_APPLY_TRANSIENT means retry (what is settled stays
 * settled). */
payq_apply_status_t payq_apply_settle_each(payq_apply_t *a, payq_charge_t *c, size_t n,
					   char sqlstate[6], char *errstr, size_t errstr_size);

/* Records an anomaly about one payment, once per kind and payment, and counts it in
 * payq_anomalies_total. Returns 1 when recorded now, 0 when already there, -1 on a
 * database error. */
int payq_apply_payment_anomaly(payq_apply_t *a, const char *kind, const char *order_id,
			       const char *command_id, const char *detail);

/* What payq_apply_read_progress found. */
typedef enum {
	PAYQ_PROGRESS_FOUND, /* *next is the partition's next offset */
	PAYQ_PROGRESS_NONE,  /* the partition has no consumer_progress row */
	PAYQ_PROGRESS_ERROR, /* not connected, or the read failed */
} payq_progress_read_t;

/* Reads consumer_progress for a partition into *next (-1 unless found). Also remembers
 * the row's reset generation (0 without a row): later progress writes for the partition
 * are guarded by it (call it on assign). */
payq_progress_read_t payq_apply_read_progress(payq_apply_t *a, int32_t partition, int64_t *next);

/* True once a progress write was refused because `payq-replay reset-offsets` moved the
 * row since the partition was assigned: this worker left the group and finished a batch
 * after the reset. The batch's effects committed (the dedup table absorbs their
 * redelivery); its offsets must not be stored. *partition (may be NULL) names one. */
bool payq_apply_progress_stale(const payq_apply_t *a, int32_t *partition);

/* Reads payq.dedup_horizon into *horizon_ms (Unix ms; 0 when none was ever recorded).
 * Returns 0 or -1. */
int payq_apply_read_horizon(payq_apply_t *a, int64_t *horizon_ms);

/* Counts the connections made so far. A change means a new session, possibly on another
 * server (after a failover): what it has applied must be read again. */
uint64_t payq_apply_generation(const payq_apply_t *a);

/* Records an anomaly outside any batch (for example offset_gap). Returns 0 or -1. */
int payq_apply_anomaly(payq_apply_t *a, const char *kind, int32_t partition, int64_t offset,
		       const char *detail);

/* ---- the fast path, without blocking (apply_async.c) ----
 * The same transaction as payq_apply_batch, in two pipelines on a non-blocking
 * connection: payq_apply_async_send sends round trip 1; payq_apply_async_step, called
 * when the socket is readable (or writable, when payq_apply_async_wants_write), takes the
 * results that arrived, evaluates the outcome table and sends round trip 2 when the
 * reads are in, and says DONE once the COMMIT result has arrived. Gateway mode never
 * takes it. items and progress must stay untouched until DONE or FAILED. */
typedef enum {
	PAYQ_ASYNC_WAIT,   /* in flight: wait for the socket */
	PAYQ_ASYNC_DONE,   /* committed: every item's outcome is set */
	PAYQ_ASYNC_FAILED, /* not known to be committed: the transaction was rolled back or
			    * the connection dropped; payq_apply_async_error says why */
} payq_async_t;

/* Sends round trip 1. Returns 0, or -1 (nothing in flight; the caller falls back to
 * payq_apply_batch, which reconnects if needed). */
int payq_apply_async_send(payq_apply_t *a, payq_item_t *items, size_t n,
			  const payq_progress_t *progress, size_t nprogress);
payq_async_t payq_apply_async_step(payq_apply_t *a);
/* True while a batch is in flight on the connection. */
bool payq_apply_async_busy(const payq_apply_t *a);
/* True when round trip 2 (the COMMIT) has been sent. */
bool payq_apply_async_commit_sent(const payq_apply_t *a);
/* The connection's socket (-1 when none), and whether to wait for it to be writable. */
int payq_apply_socket(const payq_apply_t *a);
bool payq_apply_async_wants_write(const payq_apply_t *a);
/* Gives the batch in flight up: the connection is dropped (the server rolls back what
 * has not committed; a COMMIT already on its way may still land). */
void payq_apply_async_abandon(payq_apply_t *a);
#ifdef PAYQ_MUTATION_EARLY_SEND
void payq_apply_async_forget(payq_apply_t *a);
#endif
/* True when the last FAILED was an error retrying cannot cure (one command the database
 * refuses): the batch must be split to find it (payq_apply_batch's PERMANENT). */
bool payq_apply_async_permanent(const payq_apply_t *a);
/* The SQLSTATE ("" if none) and the error of the last FAILED. */
const char *payq_apply_async_error(const payq_apply_t *a, const char **sqlstate);
