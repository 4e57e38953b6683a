/* consume.c - the worker's poll loop and batch boundaries: collect a batch, hand it to
 * the lane (lane.c), hold the next one while it is in flight, idle housekeeping.
 * Setup and shutdown are in setup.c, rebalances in rebalance.c, offset commits in
 * commit.c. */
#include "consume.h"
#include "worker.h"

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "crash.h"
#include "kafka.h"
#include "lag.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "wmetrics.h"

volatile sig_atomic_t payq_run = 1;

/* ---- librdkafka callbacks (all run inside rd_kafka_consumer_poll on this thread) ---- */

/* True for the errors that retrying cannot cure: the broker refuses this principal (an ACL
 * is missing) or its credentials. librdkafka would retry them for ever while the worker
 * looks healthy and applies nothing; stopping says what is wrong where an operator looks.
 * Not the local _AUTHENTICATION: librdkafka also reports a connection lost during the SASL
 * handshake (a broker restarting) with it, and that one must be retried. */
bool worker_access_denied(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED: return true;
	default: return false;
	}
}

/* Stops the worker on an access error: nothing is committed, so nothing is lost. */
void worker_stop_denied(worker_t *w, rd_kafka_resp_err_t err, const char *reason)
{
	log_error("Kafka refuses access: %s: %s; check this principal's credentials and ACLs "
		  "(README, Security)",
		  rd_kafka_err2name(err), reason);
	w->fatal = true;
	payq_run = 0;
}

/* ---- polling ---- */

/* Holds m for l's next batch. */
static int hold(lane_t *l, rd_kafka_message_t *m)
{
	bool fail = payq_fault_point("hold_alloc"); /* tests: as if realloc failed */

	if (fail || l->nheld == l->held_cap) {
		size_t cap = l->held_cap ? l->held_cap * 2 : 64;
		entry_t *p = fail ? NULL : realloc(l->held, cap * sizeof(*p));
		if (!p)
			return -1;
		l->held = p;
		l->held_cap = cap;
	}
	if (!l->nheld)
		l->held_since_ms = payq_now_ms();
	l->held[l->nheld++].msg = m;
	return 0;
}

/* Holding m failed (out of memory). Dropping it alone would be a loss: the offsets of
 * later messages of its partition would be stored past it. So forget the held messages
 * of its partition from m on and seek the partition back to m, which makes it fetched
 * again. If the seek fails, stop: a fatal error stores nothing more, and the partition's
 * next owner fetches m from the committed offset. */
static void rewind_to(lane_t *l, rd_kafka_message_t *m)
{
	worker_t *w = l->w;
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_error_t *error;
	rd_kafka_resp_err_t err;
	size_t k = 0;

	for (size_t i = 0; i < l->nheld; i++) {
		rd_kafka_message_t *h = l->held[i].msg;
		if (h->partition == m->partition && h->offset >= m->offset)
			rd_kafka_message_destroy(h);
		else
			l->held[k++] = l->held[i];
	}
	l->nheld = k;
	rd_kafka_topic_partition_list_add(list, rd_kafka_topic_name(m->rkt), m->partition)->offset =
		m->offset;
	log_warn("out of memory holding %s/%" PRId32 "/%" PRId64 ": seeking back to it",
		 rd_kafka_topic_name(m->rkt), m->partition, m->offset);
	rd_kafka_message_destroy(m);
	error = rd_kafka_seek_partitions(w->rk, list, 10000);
	err = error ? rd_kafka_error_code(error) : list->elems[0].err;
	if (err) {
		log_error("seeking back to a message that could not be held: %s",
			  error ? rd_kafka_error_string(error) : rd_kafka_err2str(err));
		w->fatal = true;
		payq_run = 0;
	}
	if (error)
		rd_kafka_error_destroy(error);
	rd_kafka_topic_partition_list_destroy(list);
}

/* Polls once. A message comes back only if it is a real message; errors are logged. */
static rd_kafka_message_t *poll_one(worker_t *w, int timeout_ms)
{
	rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, timeout_ms);

	atomic_store(&w->last_poll_ms, payq_now_ms());
	if (!m)
		return NULL;
	if (!m->err) {
		int64_t ts = rd_kafka_message_timestamp(m, NULL);
		payq_fetch_wake_taken(w->fetch_wake, m->len);
		if (ts > 0)
			payq_metrics_observe("payq_poll_latency_seconds", NULL,
					     (double)(payq_wall_ms() - ts) / 1000.0);
	}
	if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
		/* With the main queue forwarded to the consumer, fatal errors such as a
		 * fenced static member arrive here rather than in error_cb. */
		char buf[512];
		rd_kafka_fatal_error(w->rk, buf, sizeof(buf));
		log_error("fatal Kafka error: %s", buf);
		w->fatal = true;
		payq_run = 0;
		rd_kafka_message_destroy(m);
		return NULL;
	}
	if (worker_access_denied(m->err)) {
		worker_stop_denied(w, m->err, rd_kafka_message_errstr(m));
		rd_kafka_message_destroy(m);
		return NULL;
	}
	if (m->err) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			log_warn("consumer: %s", rd_kafka_message_errstr(m));
		rd_kafka_message_destroy(m);
		return NULL;
	}
	return m;
}

/* Holds m for its partition's lane; if that fails, seeks its partition back to it.
 * Returns true when m was held. */
static bool hold_or_rewind(worker_t *w, rd_kafka_message_t *m)
{
	lane_t *l = worker_lane_of(w, m->partition);
#ifdef PAYQ_MUTATION_LANE_BY_MESSAGE
	/* Deliberately broken build: messages go to the lanes in turn, so one order's
	 * commands (one partition) run on two connections at once. */
	static unsigned turn;
	l = &w->lanes[turn++ % (unsigned)w->nlanes];
#endif

	if (!hold(l, m))
		return true;
#ifdef PAYQ_MUTATION_HOLD_DROP
	/* Deliberately broken build: the message is skipped. */
	rd_kafka_message_destroy(m);
	(void)rewind_to;
#else
	rewind_to(l, m);
#endif
	return false;
}

/* Pauses or resumes the assigned partitions of lane l. */
void worker_set_paused(lane_t *l, bool pause)
{
	worker_t *w = l->w;
	rd_kafka_topic_partition_list_t *parts;

	if (l->paused == pause)
		return;
	if (rd_kafka_assignment(w->rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		for (int i = parts->cnt - 1; i >= 0 && w->nlanes > 1; i--)
			if (worker_lane_of(w, parts->elems[i].partition) != l)
				rd_kafka_topic_partition_list_del_by_idx(parts, i);
		if (pause)
			rd_kafka_pause_partitions(w->rk, parts);
		else
			rd_kafka_resume_partitions(w->rk, parts);
		rd_kafka_topic_partition_list_destroy(parts);
		l->paused = pause;
	}
}

/* True when l's next batch is whole: nothing more of its partitions is taken from the
 * consumer queue until it is sent. */
static bool lane_full(const lane_t *l)
{
	return l->nheld >= (size_t)l->w->cfg->batch_max;
}

/* While lane `self` waits on the synchronous path (worker_tick), the other lanes' batches
 * in flight go on: each is advanced, and stored once its COMMIT result has arrived. No
 * batch is sent from here (the loop sends), so a lane whose next batch is whole is
 * paused until the loop sends it. */
static void tick_others(worker_t *w, const lane_t *self)
{
	for (int i = 0; i < w->nlanes; i++) {
		lane_t *o = &w->lanes[i];
		if (o == self)
			continue;
		lane_step(o);
		if (o->state == LANE_DONE || o->state == LANE_SETTLED) {
			if (lane_finish(o) == BATCH_ABANDONED)
				w->fatal = true; /* as the loop does with an abandoned batch */
			else
				worker_release_batch(o);
			o->in_flight = false;
		}
		if (lane_full(o) && !payq_fault_armed("hold_alloc"))
			worker_set_paused(o, true);
	}
}

/* Lane l waits wait_ms (DLQ delivery, a database retry, a gateway call) with its own
 * partitions paused, still polling so the worker stays in the group; the other lanes go
 * on meanwhile (tick_others). Returns false when the caller should give up: a fatal
 * error, or a shutdown whose deadline has passed. */
bool worker_tick(void *opaque, int wait_ms)
{
	lane_t *l = opaque;
	worker_t *w = l->w;
	int64_t until = payq_now_ms() + wait_ms;

	/* The hold_alloc fault test keeps fetching, so that messages do reach hold(): a
	 * pause discards what was fetched ahead. */
	if (!payq_fault_armed("hold_alloc"))
		worker_set_paused(l, true);
	do {
		rd_kafka_message_t *m = poll_one(w, wait_ms > 100 ? 100 : wait_ms);
		if (m)
			hold_or_rewind(w, m);
		if (w->nlanes > 1)
			tick_others(w, l);
		if (w->fatal)
			return false;
		if (!payq_run) {
#ifndef PAYQ_MUTATION_SIGTERM_ONE_LANE
			/* Stopping: fetch nothing new for any lane. */
			for (int i = 0; i < w->nlanes; i++)
				worker_set_paused(&w->lanes[i], true);
#else
			/* Deliberately broken build: only this lane stays paused, so the others'
			 * partitions are still fetched, and applied on the way out. */
#endif
			if (!w->stop_deadline_ms)
				w->stop_deadline_ms = payq_now_ms() + w->cfg->shutdown_timeout_ms;
			/* The last fifth is for the final commit and leaving the group. */
			if (payq_now_ms() >= w->stop_deadline_ms - w->cfg->shutdown_timeout_ms / 5)
				return false;
		}
	} while (payq_now_ms() < until);
	return true;
}

/* Milliseconds left before the shutdown deadline (never below 0). */
int worker_shutdown_left_ms(const worker_t *w)
{
	int64_t left = w->stop_deadline_ms - payq_now_ms();
	return left > 0 ? (int)left : 0;
}

/* Idle: flush a pending commit, keep readiness honest, notice a new database session
 * and a fatal DLQ producer. */
static void idle(worker_t *w, int64_t *last_ping)
{
	char errstr[512];

	worker_commit(w, false);
	if (payq_now_ms() - *last_ping > 5000) {
		bool ok = true;
		*last_ping = payq_now_ms();
		for (int i = 0; i < w->nlanes; i++) {
			lane_t *l = &w->lanes[i];
			if (payq_apply_connect(l->apply, errstr, sizeof(errstr)) !=
			    PAYQ_CONNECT_OK) {
				ok = false;
				continue;
			}
			/* A new session while idle: the lost tail, if any, is re-applied now
			 * rather than when traffic comes. */
			worker_resync_progress(l, false);
			l->rewound = false;
			ok = ok && payq_apply_ping(l->apply) == 0;
		}
		atomic_store(&w->db_ok, ok);
	}
	if (payq_dlq_fatal(w->dlq, errstr, sizeof(errstr))) {
		log_error("fatal DLQ producer error: %s", errstr);
		w->fatal = true;
	}
}

/* True when the loop must give the batches in flight up: a fatal error, or a shutdown
 * whose deadline has passed (its last fifth is for the final commit and leaving the
 * group, as in worker_tick). */
static bool give_up(worker_t *w)
{
	if (w->fatal)
		return true;
	if (payq_run)
		return false;
	if (!w->stop_deadline_ms)
		w->stop_deadline_ms = payq_now_ms() + w->cfg->shutdown_timeout_ms;
	return payq_now_ms() >= w->stop_deadline_ms - w->cfg->shutdown_timeout_ms / 5;
}

/* How many whole batches a running lane may hold before the loop stops taking from the
 * consumer queue. The queue is shared, in fetch order: one partition's run of messages can
 * fill one lane while the next lane waits behind it. With one batch (the old rule) the
 * lanes went out part full, every batch_wait, and the database idled a third of the time;
 * with four, the lanes' batches go out whole (tests/bench, side by side: 52-53k -> 59-62k
 * commands/s with two lanes). */
#define HOLD_BATCHES 4

/* True while the loop takes what Kafka delivers: no running lane holds HOLD_BATCHES
 * whole batches yet. What is beyond stays in librdkafka's queue, which bounds itself
 * (queued.max.messages.kbytes): pausing the partitions instead would throw the
 * prefetched messages away and fetch them again for every batch. A paused lane (backing
 * off, or full while another lane was on the synchronous path) gets nothing new, so it
 * does not hold the other lanes up. */
static bool want_more(const worker_t *w)
{
	if (!payq_run)
		return false; /* after a signal: finish what was polled, fetch nothing new */
	for (int i = 0; i < w->nlanes; i++) {
		const lane_t *l = &w->lanes[i];
		if (l->nheld >= HOLD_BATCHES * (size_t)w->cfg->batch_max && !l->paused)
			return false;
	}
	return true;
}

/* Holds what the consumer queue has now, without waiting, while want_more(). */
static void hold_ready(worker_t *w)
{
	size_t limit = 4 * (size_t)w->cfg->batch_max;
	char drain[64];

	if (w->wake_fd[0] >= 0)
		while (read(w->wake_fd[0], drain, sizeof(drain)) > 0)
			;
	for (size_t i = 0; i < limit && !w->fatal && want_more(w); i++) {
		rd_kafka_message_t *m = poll_one(w, 0);
		if (!m) {
			if (!w->cq || !rd_kafka_queue_length(w->cq))
				break;
			continue;
		}
		if (!hold_or_rewind(w, m))
			continue;
		payq_crash_point("collected_unsent");
		if (payq_fault_point("consumer_fatal"))
			rd_kafka_test_fatal_error(w->rk, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID,
						  "payq fault injection");
	}
#ifndef PAYQ_MUTATION_NO_FETCH_WAKE
	payq_fetch_wake_check(w->fetch_wake); /* librdkafka 2.0.2 does not wake by itself */
#endif
}

/* True when l's held messages are to be sent now: the lane is free and they make a
 * whole batch, or the oldest has waited PAYQ_BATCH_WAIT_MS, or the worker is stopping. */
static bool batch_due(const lane_t *l, int64_t now)
{
	return l->state == LANE_IDLE && l->nheld &&
	       (lane_full(l) || now >= l->held_since_ms + l->w->cfg->batch_wait_ms || !payq_run);
}

/* Waits (at most 100 ms) until something needs the loop: an answer on a lane's
 * connection, a message on the consumer queue while the loop takes more, or a held
 * batch coming due. Then holds what Kafka delivered. */
static void wait_for_work(worker_t *w)
{
	struct pollfd pfd[PAYQ_LANES_MAX + 1];
	bool more = want_more(w);
	int64_t now = payq_now_ms();
	int n = 0, timeout = 100;

	for (int i = 0; i < w->nlanes; i++) {
		lane_t *l = &w->lanes[i];
		if (l->state == LANE_IN_FLIGHT) {
			pfd[n].fd = payq_apply_socket(l->apply);
			pfd[n].events = POLLIN;
			if (payq_apply_async_wants_write(l->apply))
				pfd[n].events |= POLLOUT;
			n++;
		} else if ((l->state == LANE_IDLE && l->nheld) || l->state == LANE_BACKOFF) {
			int64_t due = (l->state == LANE_BACKOFF
					       ? l->retry_at_ms
					       : l->held_since_ms + w->cfg->batch_wait_ms) -
				      now;
			if (due < timeout)
				timeout = due > 0 ? (int)due : 0;
		}
	}
	if (more) {
		/* Without the wake pipe the consumer is polled at least every 10 ms; with it,
		 * the pipe says when the queue goes from empty to not empty, so a queue not
		 * emptied last time is served at once. */
		if (w->wake_fd[0] < 0)
			timeout = timeout > 10 ? 10 : timeout;
		else if (rd_kafka_queue_length(w->cq))
			timeout = 0;
		else
			pfd[n++] = (struct pollfd){.fd = w->wake_fd[0], .events = POLLIN};
	}
	if (timeout > 0)
		poll(pfd, (nfds_t)n, timeout);
	if (more)
		hold_ready(w);
}

/* What the loop does with lane l's batch settled (or given up). Returns false to stop. */
static bool after_batch(lane_t *l, batch_result_t r)
{
	l->in_flight = false;
	if (r == BATCH_ABANDONED)
		return false;
	worker_release_batch(l);
	return true;
}

/* Moves l's held messages, a batch at most, to l->batch. */
static void take_held(lane_t *l)
{
	size_t max = (size_t)l->w->cfg->batch_max;
	size_t take = l->nheld < max ? l->nheld : max;

	/* One copy and one move: held can be a whole batch of large entries. */
	memcpy(l->batch, l->held, take * sizeof(*l->held));
	l->nbatch = take;
	l->nheld -= take;
	memmove(l->held, l->held + take, l->nheld * sizeof(*l->held));
	if (l->nheld)
		l->held_since_ms = payq_now_ms();
}

/* A lane's batch in flight longer than this with its next batch whole is slow (a lock
 * wait, a stalled server): its partitions are paused, so that the loop goes on taking
 * the other lanes' messages. A batch takes some 10 to 30 ms otherwise. */
#define SLOW_LANE_MS 500

/* Pauses a slow lane (SLOW_LANE_MS), and resumes an idle one that nothing keeps paused
 * any more (its held messages dropped by a revoke, or sent). */
static void set_lane_pause(lane_t *l, int64_t now)
{
	if (payq_fault_armed("hold_alloc") || !payq_run)
		return;
	if (l->state == LANE_IN_FLIGHT && lane_full(l) && now - l->sent_ms > SLOW_LANE_MS)
		worker_set_paused(l, true);
#ifdef PAYQ_MUTATION_IDLE_LANE_PAUSED
	/* Deliberately broken build: the old rule, a lane resumed only when it sends, so a
	 * lane whose held messages a revoke dropped stays paused. */
	else if (l->state == LANE_IDLE && l->paused && !lane_full(l) && l->nheld)
#else
	else if (l->state == LANE_IDLE && l->paused && !lane_full(l))
#endif
		worker_set_paused(l, false);
}

/* Moves lane l on: advances its batch in flight, settles it once it is no longer in
 * flight, and sends its next batch when one is due. Returns false to stop. */
static bool advance(worker_t *w, lane_t *l)
{
	batch_result_t r;

	lane_step(l);
	r = l->state == LANE_BACKOFF ? lane_retry(l) : lane_finish(l);
	if (r != BATCH_SENT && !after_batch(l, r))
		return false;
	set_lane_pause(l, payq_now_ms());
	if (!batch_due(l, payq_now_ms()) || w->fatal)
		return true;
	take_held(l);
	l->in_flight = true;
	r = lane_send(l);
	return r == BATCH_SENT || after_batch(l, r);
}

/* True when no lane has a batch in flight or messages held. */
static bool all_idle(const worker_t *w)
{
	for (int i = 0; i < w->nlanes; i++)
		if (w->lanes[i].state != LANE_IDLE || w->lanes[i].nheld)
			return false;
	return true;
}

/*
 * Polls and settles batches until a signal or a fatal error. Returns an exit code.
 *
 * Each lane (lane.c) has at most one batch in flight on its own connection; the loop
 * waits on the lanes' connections and the consumer queue together (wait_for_work),
 * holds what Kafka delivers for each partition's lane (the lane's next batch), and
 * sends a lane's next batch once the lane is free and the batch is whole or has waited
 * PAYQ_BATCH_WAIT_MS (advance). Once any lane's next batch is whole, it takes nothing
 * more from the consumer queue until that batch is sent. What each callback may see:
 *   - rebalance_cb (rebalance.c), inside rd_kafka_consumer_poll: in hold_ready (or
 *     worker_tick), any lane IDLE with held messages, a batch in flight
 *     (LANE_IN_FLIGHT, in_flight) or one the fast path failed (LANE_FAILED): it first
 *     calls lane_quiesce on every lane, which waits for the COMMIT result and stores
 *     the batch's offsets while its partitions are still assigned (LANE_SETTLED), or
 *     leaves a failed batch to the synchronous path; a batch keeps its messages, the
 *     held ones of revoked partitions are dropped. Inside worker_tick (the synchronous
 *     path of one lane: DLQ delivery, database retries, gateway calls) that lane is
 *     IDLE and its batch in_flight, as before lanes existed; tick_others advances the
 *     other lanes' batches in flight and stores them, but sends none.
 *   - worker_commit_cb, async_commit_cb, error_cb, stats_cb: as worker.h says; none of
 *     them touches a lane.
 *   - close_consumer's final revoke, after the loop: every lane IDLE (the loop gave up
 *     or finished its batches).
 */
static int loop(worker_t *w)
{
	char errstr[512];
	int rc = PAYQ_EXIT_OK;
	int64_t last_ping = 0;

	while (!w->fatal) {
		bool stop = false;

		for (int i = 0; i < w->nlanes && !stop; i++)
			stop = !advance(w, &w->lanes[i]);
		if (stop) {
			rc = PAYQ_EXIT_RUNTIME;
			break;
		}
		/* After a signal: fetch nothing new, finish the batches already polled, then
		 * stop; past the deadline, give the batches in flight up. */
		if (!payq_run && all_idle(w))
			break;
		if (give_up(w)) {
			rc = PAYQ_EXIT_RUNTIME;
			break;
		}
		if (all_idle(w) && payq_run) {
			idle(w, &last_ping);
			if (w->fatal)
				break;
		}
		wait_for_work(w);
	}
	for (int i = 0; i < w->nlanes; i++) {
		lane_t *l = &w->lanes[i];
		/* SETTLED: stored inside the last callback; anything else was given up. */
		if (l->state != LANE_IDLE && l->state != LANE_SETTLED)
			rc = PAYQ_EXIT_RUNTIME;
		lane_abandon(l);
		l->in_flight = false;
	}
	if (w->fatal) {
		if (payq_dlq_fatal(w->dlq, errstr, sizeof(errstr)))
			log_error("fatal DLQ producer error: %s", errstr);
		rc = PAYQ_EXIT_RUNTIME;
	}
	if (!w->stop_deadline_ms)
		w->stop_deadline_ms = payq_now_ms() + w->cfg->shutdown_timeout_ms;
	log_info("shutting down");
	return rc;
}

int payq_consume_run(payq_config_t *cfg)
{
	worker_t w;
	int rc;

	memset(&w, 0, sizeof(w));
	w.cfg = cfg;
	w.wake_fd[0] = w.wake_fd[1] = -1;
	rc = worker_setup(&w);
	if (rc == PAYQ_EXIT_OK)
		rc = loop(&w);
	worker_shutdown(&w);
	return rc;
}
