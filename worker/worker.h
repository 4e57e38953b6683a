/* worker.h - the worker's loop state, shared by consume.c (poll loop and batch
 * boundaries), rebalance.c (assign, revoke, the drift check), batch.c (decode, DLQ,
 * apply, charge, store) and commit.c (Kafka offset commits). Private to payq-worker.
 *
 * Threads and callbacks, and what each may see and touch:
 *   - The main thread runs the loop, the lane (lane.c) and everything in batch.c. All
 *     librdkafka consumer callbacks run on it too, inside rd_kafka_consumer_poll
 *     (poll_one), which the loop reaches in collect, idle and hold_ready (while the
 *     lane's batch is in flight), batch.c through worker_tick() while it waits (DLQ
 *     delivery, database retries, gateway calls), and close_consumer's queue poll at
 *     shutdown. consume.c's loop says which lane state each callback may meet.
 *   - rebalance_cb (worker_rebalance_cb): first lane_quiesce: a batch in flight on the
 *     lane is waited for (bounded) and, once committed, its offsets stored (lane,
 *     lane_result); then reads cfg, cooperative, paused, fatal, in_flight; touches
 *     batch/nbatch (only when !in_flight: a batch being settled or in flight keeps its
 *     messages), held/nheld (the next batch: dropped for revoked partitions),
 *     commit_dirty, progress_gen (drift check), joined, and the apply connection
 *     (consumer_progress reads; free once the lane is quiesced).
 *   - worker_commit_cb (synchronous commits) touches commit_dirty only; async_commit_cb also
 *     clears async_commit_ms. final_commit_cb writes only its own opaque result.
 *   - error_cb and poll_one set fatal (and payq_run); stats_cb reads cfg->group.
 *   - The DLQ delivery report (dlq.c dr_msg_cb) sees only the payq_dlq_t, never this
 *     struct: batch.c learns its result from payq_dlq_deliver and payq_dlq_fatal.
 *   - The HTTP thread (healthz, readyz) reads only the atomics last_poll_ms, joined and
 *     db_ok.
 *
 * Progress is written in three places, each naming the others: the batch's
 * consumer_progress row with its database transaction (batch.c, worker_process_batch,
 * through payq_apply_batch or payq_apply_settle; or lane.c, lane_send, through
 * payq_apply_async_send), Kafka's stored offsets after that COMMIT (batch.c,
 * store_offsets, reached from worker_batch_committed on the lane), and a partition the
 * drift check moves
 * (rebalance.c, rebalance_cb and worker_resync_progress, which store the database's
 * offset in Kafka).
 */
#ifndef PAYQ_WORKER_H
#define PAYQ_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "apply.h"
#include "codec.h"
#include "config.h"
#include "dlq.h"
#include "fetch_wake.h"
#include "gateway.h"
#include "http.h"
#include "reconcile.h"

/* One polled message and what decoding it found. */
typedef struct entry {
	rd_kafka_message_t *msg;
	payq_reason_t reason;
	char error[256];
} entry_t;

/* Where a lane's batch is (lane.c). */
typedef enum {
	LANE_IDLE,	/* no batch sent: the loop may send the next one */
	LANE_IN_FLIGHT, /* sent on the fast path; its COMMIT result has not arrived */
	LANE_DONE,	/* its COMMIT result arrived, OK: its offsets are to be stored */
	LANE_FAILED,	/* the fast path failed: lane_finish decides how to retry */
	LANE_BACKOFF,	/* a transient error: its partitions paused, sent again at retry_at */
	LANE_SETTLED,	/* settled inside a rebalance callback (lane_quiesce): result */
} lane_state_t;

struct worker;

/* An apply lane (PAYQ_APPLY_LANES): one database connection and the batches of the
 * partitions p with p % nlanes == id. An order maps to one partition, so its commands
 * stay on one lane, in order, and two lanes never lock the same order. Each lane
 * holds, sends, commits and stores its own partitions' batches. */
typedef struct lane {
	struct worker *w;
	int id;
	payq_apply_t *apply;
	bool paused; /* its partitions are paused (a retry, or its next batch is full) */

	lane_state_t state;
	int result;	     /* batch_result_t of a batch settled in a callback */
	bool commit_sent;    /* the batch's COMMIT has been sent */
	int64_t deadline_ms; /* the in-flight batch's answers are due by then */
	int64_t sent_ms;     /* when the batch in flight was sent */
	bool in_flight;	     /* the batch is being settled: it keeps its messages */
	bool retried;	     /* an apply attempt of the batch failed transiently */
	int attempt;	     /* the batch's fast-path retries so far */
	int64_t retry_at_ms; /* LANE_BACKOFF: when to send it again */

	entry_t *batch; /* the batch being applied, in poll order */
	size_t nbatch;
	entry_t *held; /* polled while the batch is in flight: the next batch */
	size_t nheld, held_cap;
	int64_t held_since_ms; /* when the first of the held messages was polled */
	payq_item_t *items;
	payq_dlq_entry_t *dead;
	payq_progress_t *prog;
	size_t nitems, ndead, nprog, npoison; /* of the batch, once prepared (batch.c) */
	int64_t batch_t0;		      /* when its settling began (us) */
	size_t *poison;
	char (*poison_err)[200];

	uint64_t progress_gen; /* the database session whose progress was last compared */
	bool rewound;	       /* resync_progress() dropped the batch and sought back */
} lane_t;

typedef struct worker {
	payq_config_t *cfg;
	rd_kafka_t *rk;
	payq_dlq_t *dlq;
	payq_http_t *http;
	payq_gateway_t *gw; /* gateway mode only */
	payq_reconciler_t *reconciler;
	payq_charge_t *charges; /* gateway mode (one lane): this batch's charges */
	size_t *charge_item;	/* the item of each charge */
	bool cooperative;
	bool fatal;
	bool commit_dirty;
	int64_t async_commit_ms;  /* when the async commit in flight was sent, or 0 */
	int64_t stop_deadline_ms; /* set when a signal arrives */

	lane_t *lanes; /* PAYQ_APPLY_LANES of them */
	int nlanes;
	rd_kafka_queue_t *cq;	       /* the consumer queue, whose IO event wakes the wait */
	payq_fetch_wake_t *fetch_wake; /* fetch_wake.c: fetching again as the queue drains */
	int wake_fd[2];		       /* its pipe: read end, write end (-1 when none) */

	atomic_llong last_poll_ms;
	atomic_bool joined;
	atomic_bool db_ok;
} worker_t;

/* The lane of a partition. */
static inline lane_t *worker_lane_of(worker_t *w, int32_t partition)
{
	return &w->lanes[(partition < 0 ? 0 : partition) % w->nlanes];
}

/* What became of a batch handed to worker_process_batch. */
typedef enum {
	BATCH_DONE,	 /* settled: committed, offsets stored */
	BATCH_REWOUND,	 /* dropped for a rewind (worker_resync_progress): go on */
	BATCH_ABANDONED, /* shutdown deadline or fatal error: nothing of it stored */
	BATCH_SENT,	 /* in flight on the lane: lane_finish settles it later */
} batch_result_t;

/* setup.c: everything the loop needs, and its release. worker_setup returns an exit
 * code. */
int worker_setup(worker_t *w);
void worker_shutdown(worker_t *w);

/* consume.c */
/* True for the Kafka errors that retrying cannot cure (access denied); stop_denied stops
 * the worker on one. */
bool worker_access_denied(rd_kafka_resp_err_t err);
void worker_stop_denied(worker_t *w, rd_kafka_resp_err_t err, const char *reason);
void worker_set_paused(lane_t *l, bool pause);
bool worker_tick(void *opaque, int wait_ms);

/* The result of one step of settling a batch (batch.c, charge.c). */
typedef enum {
	STEP_OK,      /* done: go on to the next step */
	STEP_ABANDON, /* the batch is abandoned (or dropped for a rewind): nothing of it is
		       * stored, so it is delivered again */
} step_t;

/* The trace ID of a command's message, or NULL without a valid traceparent. */
static inline const char *worker_trace_id(const payq_item_t *it)
{
	return it->trace.valid ? it->trace.trace_id : NULL;
}

/* Connects the apply connection if it is not (batch.c); a schema too old for this worker
 * (PAYQ_CONNECT_FATAL) is logged and makes the worker stop (w->fatal). */
payq_connect_t worker_connect(lane_t *l, char *errstr, size_t errstr_size);

/* After a failed database step: counts the retry by SQLSTATE, logs it, drops a broken
 * connection and returns how long to wait (backoff with jitter) (batch.c). */
int64_t worker_db_retry_note(lane_t *l, int *attempt, const char *sqlstate, const char *what,
			     const char *errstr);
/* worker_db_retry_note, then waits that long with l's partitions paused (worker_tick).
 * Returns false when the caller must give up (fatal error, or the shutdown deadline
 * passed). */
bool worker_db_retry_wait(lane_t *l, int *attempt, const char *sqlstate, const char *what,
			  const char *errstr);

/* Gateway mode, steps 2 and 3 (charge.c): charges the batch's pending payments, then
 * records the answers and (when prog is given) the batch's consumer_progress in one
 * transaction. STEP_ABANDON: the pays stay pending and resume, with the same keys, on
 * redelivery. */
step_t worker_charge_and_settle(lane_t *l, size_t n, const payq_progress_t *prog, size_t np);

int worker_shutdown_left_ms(const worker_t *w);

/* commit.c */
void worker_commit(worker_t *w, bool sync);
void worker_final_commit(worker_t *w);
void worker_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		      rd_kafka_topic_partition_list_t *offsets, void *opaque);

/* rebalance.c */
void worker_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			 rd_kafka_topic_partition_list_t *parts, void *opaque);
bool worker_resync_progress(lane_t *l, bool force);

/* batch.c: settling w->batch. worker_process_batch does it all on the synchronous
 * path; the lane (lane.c) runs worker_batch_prepare (decode, DLQ), then applies the batch
 * without blocking and calls worker_batch_committed (store the offsets) after its COMMIT,
 * or worker_batch_settle_sync when the fast path failed. BATCH_DONE from prepare: go on. */
batch_result_t worker_batch_prepare(lane_t *l);
batch_result_t worker_batch_settle_sync(lane_t *l);
batch_result_t worker_batch_committed(lane_t *l);
void worker_release_batch(lane_t *l);

/* lane.c: the apply lane, one batch at a time on its own connection without blocking
 * the loop. lane_send prepares w->batch (decode, DLQ) and sends it (BATCH_SENT), or
 * settles it synchronously (gateway mode, no commands, the fast path unavailable).
 * lane_step advances the batch in flight as answers arrive; lane_finish, once it is no
 * longer in flight, stores its offsets and frees the lane, puts it in LANE_BACKOFF after
 * a transient error, or settles it on the synchronous path after a permanent one;
 * lane_retry sends a LANE_BACKOFF batch again once its backoff has passed. lane_quiesce, for
 * rebalance callbacks, waits for the batch in flight (bounded) so that the connection is free and
 * the offsets are stored while the partitions are still assigned. lane_abandon gives the batch in
 * flight up. */
batch_result_t lane_send(lane_t *l);
void lane_step(lane_t *l);
batch_result_t lane_finish(lane_t *l);
batch_result_t lane_retry(lane_t *l);
void lane_quiesce(lane_t *l);
void lane_abandon(lane_t *l);

#endif
