/* lane.c - the apply lane: one batch at a time, applied on the lane's connection without
 * blocking the loop (apply_async.c), so that consume.c keeps polling Kafka and holds
 * the next batch meanwhile.
 *
 * The rules (DESIGN18.md, and model/payq.pml):
 *   - a batch is sent only when the lane is IDLE: batch N+1 only after N's COMMIT result
 *     arrived and N's offsets were stored (lane_finish), so that N+1 reads N's writes
 *     and a failed N is retried before anything after it moves progress;
 *   - N's offsets are stored only after its COMMIT result, as on the synchronous path;
 *   - anything but a clean COMMIT (an error, a lost connection, no answer in time) sends
 *     the batch to the synchronous path (batch.c), with its retries, backoff and poison
 *     isolation unchanged; so does gateway mode, whose charge and settle are there.
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
static int64_t answer_bound_ms(const worker_t *w)
{
	int64_t bound = payq_pg_answer_bound_ms(), tcp = w->cfg->db_tcp_user_timeout_ms;

	return bound ? bound : 30000 + (tcp > 0 ? tcp : 0);
}

batch_result_t lane_send(worker_t *w)
{
	char errstr[512];
	batch_result_t r = worker_batch_prepare(w);

	if (r != BATCH_DONE)
		return r;
	/* Gateway mode charges and settles on the synchronous path; a batch of malformed
	 * messages only writes progress. */
	if (w->gw || !w->nitems ||
	    payq_apply_connect(w->apply, errstr, sizeof(errstr)) != PAYQ_CONNECT_OK)
		return worker_batch_settle_sync(w);
	/* A new session may have lost the last commits: the batch is dropped and its
	 * partitions resume from the database (as on the synchronous path). */
	if (worker_resync_progress(w, false)) {
		w->rewound = false;
		return BATCH_REWOUND;
	}
	payq_crash_point("after_commit_before_next_send");
	if (payq_apply_async_send(w->apply, w->items, w->nitems, w->prog, w->nprog))
		return worker_batch_settle_sync(w);
	w->lane = LANE_IN_FLIGHT;
	w->lane_commit_sent = false;
	w->lane_deadline_ms = payq_now_ms() + answer_bound_ms(w);
	return BATCH_SENT;
}

/* The fast path failed: says why; the synchronous path takes the batch over. */
static void failed(worker_t *w)
{
	const char *sqlstate, *err = payq_apply_async_error(w->apply, &sqlstate);
	char labels[64];

	snprintf(labels, sizeof(labels), "sqlstate=\"%s\"", sqlstate[0] ? sqlstate : "none");
	payq_metrics_add("payq_db_retries_total", labels, 1);
	/* The same words as the synchronous path's retries: tests and operators look for
	 * them. */
	log_warn("database error (SQLSTATE %s), retrying the batch on the synchronous path "
		 "(the fast path failed): %s",
		 sqlstate[0] ? sqlstate : "none", err[0] ? err : "no answer in time");
	w->lane = LANE_FAILED;
}

void lane_step(worker_t *w)
{
	bool was_sent = w->lane_commit_sent;

	if (w->lane != LANE_IN_FLIGHT)
		return;
	switch (payq_apply_async_step(w->apply)) {
	case PAYQ_ASYNC_WAIT:
		w->lane_commit_sent = payq_apply_async_commit_sent(w->apply);
		/* Each round trip has its own bound, from when it was sent, as each answer
		 * on the synchronous path (a stall point may hold the sending). */
		if (w->lane_commit_sent && !was_sent)
			w->lane_deadline_ms = payq_now_ms() + answer_bound_ms(w);
#ifdef PAYQ_MUTATION_EARLY_SEND
		/* Deliberately broken build: the batch counts as committed once its COMMIT is
		 * sent, and the next one goes before the COMMIT result has arrived. */
		if (w->lane_commit_sent) {
			payq_apply_async_forget(w->apply);
			w->lane = LANE_DONE;
			return;
		}
#endif
		if (payq_now_ms() < w->lane_deadline_ms)
			return;
		log_warn("PostgreSQL: no answer within %" PRId64 " ms on the fast path: dropping "
			 "the connection; its COMMIT, if sent, may still land",
			 answer_bound_ms(w));
		payq_apply_async_abandon(w->apply);
		failed(w);
		return;
	case PAYQ_ASYNC_DONE: w->lane = LANE_DONE; return;
	case PAYQ_ASYNC_FAILED: failed(w); return;
	}
}

batch_result_t lane_finish(worker_t *w)
{
	batch_result_t r;

	switch (w->lane) {
	case LANE_IDLE:
	case LANE_IN_FLIGHT: return BATCH_SENT;
	case LANE_DONE: r = worker_batch_committed(w); break;
	case LANE_FAILED:
		/* Its COMMIT may have landed all the same: a duplicate of the batch's own
		 * row then counts as the row's outcome. */
		w->retried = w->lane_commit_sent;
		w->lane = LANE_IDLE; /* the synchronous path owns the connection now */
		r = worker_batch_settle_sync(w);
		break;
	case LANE_SETTLED:
	default: r = (batch_result_t)w->lane_result; break;
	}
	w->lane = LANE_IDLE;
	return r;
}

/* Waits for the batch in flight until it is no longer in flight or the deadline passes
 * (then it is abandoned: the connection dropped, the batch left to the synchronous path). */
static void wait_lane(worker_t *w, int64_t until)
{
	while (w->lane == LANE_IN_FLIGHT) {
		struct pollfd pfd = {.fd = payq_apply_socket(w->apply), .events = POLLIN};
		int64_t left = until - payq_now_ms();

		if (payq_apply_async_wants_write(w->apply))
			pfd.events |= POLLOUT;
		if (left <= 0 || pfd.fd < 0) {
			log_warn("the batch in flight did not finish in time: abandoning it");
			payq_apply_async_abandon(w->apply);
			failed(w);
			return;
		}
		poll(&pfd, 1, left > 100 ? 100 : (int)left);
		lane_step(w);
	}
}

void lane_quiesce(worker_t *w)
{
	int64_t until = w->lane_deadline_ms;

	if (w->stop_deadline_ms && w->stop_deadline_ms < until)
		until = w->stop_deadline_ms;
	wait_lane(w, until);
	if (w->lane != LANE_DONE)
		return; /* FAILED: the loop settles it on the synchronous path, outside */
	w->lane_result = worker_batch_committed(w);
	w->lane = LANE_SETTLED;
}

void lane_abandon(worker_t *w)
{
	if (w->lane == LANE_IN_FLIGHT)
		payq_apply_async_abandon(w->apply);
	w->lane = LANE_IDLE;
}
