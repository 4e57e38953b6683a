/* lane.c - the apply lane: one batch at a time, applied on the lane's connection without
 * blocking the loop (apply_async.c), so that consume.c keeps polling Kafka and holds
 * the next batch meanwhile.
 *
 * The rules (DESIGN18.md, and model/payq.pml):
 *   - a batch is sent only when the lane is IDLE: batch N+1 only after N's COMMIT result
 *     arrived and N's offsets were stored (lane_finish), so that N+1 reads N's writes
 *     and a failed N is retried before anything after it moves progress;
 *   - N's offsets are stored only after its COMMIT result, as on the synchronous path;
 *   - a transient error (a lost connection, no answer in time, a serialization
 *     failure) pauses the lane's partitions and sends the same batch again after a
 *     backoff (LANE_BACKOFF, lane_retry), without blocking the loop: the other lanes go
 *     on. The batch stays the lane's until it commits, so nothing after it moves
 *     progress, as on the synchronous path;
 *   - an error retrying cannot cure (one command the database refuses) sends the batch
 *     to the synchronous path (batch.c), which splits it to find the command; so does
 *     gateway mode, whose charge and settle are there.
 */
#include "worker.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "crash.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "util.h"

/* How long the answers of a batch in flight may take: what payq_pg_get_result allows one
 * answer on the synchronous path (statement_timeout + tcp_user_timeout), at least 30 s
 * plus tcp_user_timeout when no statement timeout is configured. */
static int64_t answer_bound_ms(const lane_t *l)
{
	const worker_t *w = l->w;
	int64_t bound = payq_pg_answer_bound_ms(), tcp = w->cfg->db_tcp_user_timeout_ms;

	return bound ? bound : 30000 + (tcp > 0 ? tcp : 0);
}

static batch_result_t send_batch(lane_t *l);
static void back_off(lane_t *l, const char *sqlstate, const char *err);

batch_result_t lane_send(lane_t *l)
{
	worker_t *w = l->w;
	char errstr[512];
	batch_result_t r = worker_batch_prepare(l);

	if (r != BATCH_DONE)
		return r;
	/* Gateway mode charges and settles on the synchronous path; a batch of malformed
	 * messages only writes progress. */
	if (w->gw || !l->nitems)
		return worker_batch_settle_sync(l);
	l->attempt = 0;
	switch (worker_connect(l, errstr, sizeof(errstr))) {
	case PAYQ_CONNECT_OK: break;
	case PAYQ_CONNECT_RETRY:
#ifdef PAYQ_MUTATION_CONNECT_SYNC
		/* Deliberately broken build: the rule before the lanes' review fixes, a lane
		 * that cannot connect settles on the synchronous path, which holds every lane
		 * until it connects. */
		return worker_batch_settle_sync(l);
#endif
		/* The database is not reachable from this lane: back off without blocking
		 * the other lanes. */
		back_off(l, "08000", errstr);
		return BATCH_SENT;
	case PAYQ_CONNECT_FATAL:
	default: return BATCH_ABANDONED;
	}
	/* A new session may have lost the last commits: the batch is dropped and its
	 * partitions resume from the database (as on the synchronous path). */
	if (worker_resync_progress(l, false)) {
		l->rewound = false;
		return BATCH_REWOUND;
	}
	payq_crash_point("after_commit_before_next_send");
	return send_batch(l);
}

/* Sends the prepared batch on the fast path, or settles it on the synchronous path when
 * the connection cannot take it. */
static batch_result_t send_batch(lane_t *l)
{
	if (payq_apply_async_send(l->apply, l->items, l->nitems, l->prog, l->nprog)) {
		/* A connection lost on the way backs off; anything else (out of memory for
		 * the scratch buffers) takes the synchronous path. */
		if (payq_apply_connected(l->apply))
			return worker_batch_settle_sync(l);
		back_off(l, "08000", "the connection was lost sending the batch");
		return BATCH_SENT;
	}
	l->sent_ms = payq_now_ms();
	l->state = LANE_IN_FLIGHT;
	l->commit_sent = false;
	l->deadline_ms = payq_now_ms() + answer_bound_ms(l);
	return BATCH_SENT;
}

/* The fast path failed; lane_finish decides how the batch is retried. */
static void failed(lane_t *l)
{
	/* Its COMMIT may have landed all the same: a duplicate of the batch's own row then
	 * counts as the row's outcome. */
	l->retried = l->retried || l->commit_sent;
	l->state = LANE_FAILED;
}

/* A transient error: the lane's partitions pause and the batch waits out a backoff
 * (the synchronous path's, with the same log line and metric), while the loop goes on. */
static void back_off(lane_t *l, const char *sqlstate, const char *err)
{
	int64_t wait = worker_db_retry_note(l, &l->attempt, sqlstate, "the batch", err);

	l->retried = true;
	l->retry_at_ms = payq_now_ms() + wait;
	l->state = LANE_BACKOFF;
	if (!payq_fault_armed("hold_alloc"))
		worker_set_paused(l, true);
}

/* A 23505 is transient (another worker won a race for the key; the retry sees its row)
 * until it repeats: then, as on the synchronous path, the batch is split. */
static bool curable(const lane_t *l, const char *sqlstate)
{
	return !payq_apply_async_permanent(l->apply) &&
	       (strcmp(sqlstate, "23505") != 0 || l->attempt < 5);
}

void lane_step(lane_t *l)
{
	bool was_sent = l->commit_sent;

	if (l->state != LANE_IN_FLIGHT)
		return;
	switch (payq_apply_async_step(l->apply)) {
	case PAYQ_ASYNC_WAIT:
		l->commit_sent = payq_apply_async_commit_sent(l->apply);
		/* Each round trip has its own bound, from when it was sent, as each answer
		 * on the synchronous path (a stall point may hold the sending). */
		if (l->commit_sent && !was_sent)
			l->deadline_ms = payq_now_ms() + answer_bound_ms(l);
#ifdef PAYQ_MUTATION_EARLY_SEND
		/* Deliberately broken build: the batch counts as committed once its COMMIT is
		 * sent, and the next one goes before the COMMIT result has arrived. */
		if (l->commit_sent) {
			payq_apply_async_forget(l->apply);
			l->state = LANE_DONE;
			return;
		}
#endif
		if (payq_now_ms() < l->deadline_ms)
			return;
		log_warn("PostgreSQL: no answer within %" PRId64 " ms on the fast path: dropping "
			 "the connection; its COMMIT, if sent, may still land",
			 answer_bound_ms(l));
		payq_apply_async_abandon(l->apply);
		failed(l);
		return;
	case PAYQ_ASYNC_DONE: l->state = LANE_DONE; return;
	case PAYQ_ASYNC_FAILED: failed(l); return;
	}
}

batch_result_t lane_finish(lane_t *l)
{
	batch_result_t r;

	switch (l->state) {
	case LANE_IDLE:
	case LANE_IN_FLIGHT: return BATCH_SENT;
	case LANE_DONE: r = worker_batch_committed(l); break;
	case LANE_FAILED: {
		const char *sqlstate, *err = payq_apply_async_error(l->apply, &sqlstate);
		if (curable(l, sqlstate)) {
			back_off(l, sqlstate, err[0] ? err : "no answer in time");
			return BATCH_SENT;
		}
		log_warn("database error (SQLSTATE %s) on the fast path: retrying the batch on "
			 "the synchronous path, which splits it: %s",
			 sqlstate[0] ? sqlstate : "none", err);
		l->state = LANE_IDLE; /* the synchronous path owns the connection now */
		r = worker_batch_settle_sync(l);
		break;
	}
	case LANE_BACKOFF: return BATCH_SENT;
	case LANE_SETTLED:
	default: r = (batch_result_t)l->result; break;
	}
	l->state = LANE_IDLE;
	return r;
}

batch_result_t lane_retry(lane_t *l)
{
	char errstr[512];
	payq_connect_t rc;

	if (l->state != LANE_BACKOFF || payq_now_ms() < l->retry_at_ms)
		return BATCH_SENT;
	rc = worker_connect(l, errstr, sizeof(errstr));
	if (rc == PAYQ_CONNECT_FATAL) {
		l->state = LANE_IDLE;
		return BATCH_ABANDONED;
	}
	if (rc != PAYQ_CONNECT_OK) {
		back_off(l, "08000", errstr);
		return BATCH_SENT;
	}
	l->state = LANE_IDLE;
	/* A new session may have lost the last commits (a failover): the batch is dropped
	 * and its partitions resume from the database, as on the synchronous path. */
	if (worker_resync_progress(l, false)) {
		l->rewound = false;
		return BATCH_REWOUND;
	}
	return send_batch(l);
}

/* The batch's answer bound (each round trip has its own, from when it was sent), or the
 * shutdown deadline when that comes first. */
static int64_t quiesce_until(const lane_t *l)
{
	const worker_t *w = l->w;

	if (w->stop_deadline_ms && w->stop_deadline_ms < l->deadline_ms)
		return w->stop_deadline_ms;
	return l->deadline_ms;
}

/* Waits for the batch in flight until it is no longer in flight or its deadline passes
 * (then it is abandoned: the connection dropped, the batch left to the synchronous path). */
static void wait_lane(lane_t *l)
{
#ifndef PAYQ_MUTATION_QUIESCE_NO_STEP
	/* Answers may have arrived while another lane was waited for, or while the process
	 * did not run: they count before the deadline does. */
	lane_step(l);
#else
	/* Deliberately broken build: the deadline is checked before the answers that have
	 * arrived are taken, so a batch whose COMMIT result is there is abandoned. */
#endif
	while (l->state == LANE_IN_FLIGHT) {
		struct pollfd pfd = {.fd = payq_apply_socket(l->apply), .events = POLLIN};
		int64_t left = quiesce_until(l) - payq_now_ms();

		if (payq_apply_async_wants_write(l->apply))
			pfd.events |= POLLOUT;
		if (left <= 0 || pfd.fd < 0) {
			log_warn("the batch in flight did not finish in time: abandoning it");
			payq_apply_async_abandon(l->apply);
			failed(l);
			return;
		}
		poll(&pfd, 1, left > 100 ? 100 : (int)left);
		lane_step(l);
	}
}

void lane_quiesce(lane_t *l)
{
	/* Tests: the process stops here with a batch in flight, past its answer bound. */
	if (l->state == LANE_IN_FLIGHT)
		payq_stall_point("quiesce_in_flight");
	wait_lane(l);
	if (l->state != LANE_DONE)
		return; /* FAILED: the loop settles it on the synchronous path, outside */
	l->result = worker_batch_committed(l);
	l->state = LANE_SETTLED;
}

void lane_abandon(lane_t *l)
{
	if (l->state == LANE_IN_FLIGHT)
		payq_apply_async_abandon(l->apply);
	l->state = LANE_IDLE;
}
