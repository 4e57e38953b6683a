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

static int hold(worker_t *w, rd_kafka_message_t *m)
{
	bool fail = payq_fault_point("hold_alloc"); /* tests: as if realloc failed */

	if (fail || w->nheld == w->held_cap) {
		size_t cap = w->held_cap ? w->held_cap * 2 : 64;
		entry_t *p = fail ? NULL : realloc(w->held, cap * sizeof(*p));
		if (!p)
			return -1;
		w->held = p;
		w->held_cap = cap;
	}
	if (!w->nheld)
		w->held_since_ms = payq_now_ms();
	w->held[w->nheld++].msg = m;
	return 0;
}

/* Holding m failed (out of memory). Dropping it alone would be a loss: the offsets of
 * later messages of its partition would be stored past it. So forget the held messages
 * of its partition from m on and seek the partition back to m, which makes it fetched
 * again. If the seek fails, stop: a fatal error stores nothing more, and the partition's
 * next owner fetches m from the committed offset. */
static void rewind_to(worker_t *w, rd_kafka_message_t *m)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_error_t *error;
	rd_kafka_resp_err_t err;
	size_t k = 0;

	for (size_t i = 0; i < w->nheld; i++) {
		rd_kafka_message_t *h = w->held[i].msg;
		if (h->partition == m->partition && h->offset >= m->offset)
			rd_kafka_message_destroy(h);
		else
			w->held[k++] = w->held[i];
	}
	w->nheld = k;
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

/* Holds m for the next batch; if that fails, seeks its partition back to it. Returns
 * true when m was held. */
static bool hold_or_rewind(worker_t *w, rd_kafka_message_t *m)
{
	if (!hold(w, m))
		return true;
#ifdef PAYQ_MUTATION_HOLD_DROP
	/* Deliberately broken build: the message is skipped. */
	rd_kafka_message_destroy(m);
	(void)rewind_to;
#else
	rewind_to(w, m);
#endif
	return false;
}

void worker_set_paused(worker_t *w, bool pause)
{
	rd_kafka_topic_partition_list_t *parts;

	if (w->paused == pause)
		return;
	if (rd_kafka_assignment(w->rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (pause)
			rd_kafka_pause_partitions(w->rk, parts);
		else
			rd_kafka_resume_partitions(w->rk, parts);
		rd_kafka_topic_partition_list_destroy(parts);
	}
	w->paused = pause;
}

/* Waits wait_ms with fetching paused, still polling so the worker stays in the group.
 * Returns false when the caller should give up: a fatal error, or a shutdown whose
 * deadline has passed. */
bool worker_tick(void *opaque, int wait_ms)
{
	worker_t *w = opaque;
	int64_t until = payq_now_ms() + wait_ms;

	/* The hold_alloc fault test keeps fetching, so that messages do reach hold(): a
	 * pause discards what was fetched ahead. */
	if (!payq_fault_armed("hold_alloc"))
		worker_set_paused(w, true);
	do {
		rd_kafka_message_t *m = poll_one(w, wait_ms > 100 ? 100 : wait_ms);
		if (m)
			hold_or_rewind(w, m);
		if (w->fatal)
			return false;
		if (!payq_run) {
			if (!w->stop_deadline_ms)
				w->stop_deadline_ms = payq_now_ms() + w->cfg->shutdown_timeout_ms;
			/* The last fifth is for the final commit and leaving the group. */
			if (payq_now_ms() >= w->stop_deadline_ms - w->cfg->shutdown_timeout_ms / 5)
				return false;
		}
	} while (payq_now_ms() < until);
	return true;
}

/* Fills the batch: held messages first, then polls until batch_max messages or
 * batch_wait_ms after the first one was polled. Returns the batch size. */
static size_t collect(worker_t *w)
{
	size_t max = (size_t)w->cfg->batch_max;
	int64_t deadline = 0;

	/* A batch goes when it is full or when its oldest message has waited batch_wait_ms:
	 * messages held while the last batch was in flight have been waiting since then. */
	if (w->nheld)
		deadline = w->held_since_ms + w->cfg->batch_wait_ms;
	if (w->nheld && w->nbatch < max) {
		/* One copy and one move: held can be a whole batch of large entries. */
		size_t take = w->nheld < max - w->nbatch ? w->nheld : max - w->nbatch;

		memcpy(w->batch + w->nbatch, w->held, take * sizeof(*w->held));
		w->nbatch += take;
		w->nheld -= take;
		memmove(w->held, w->held + take, w->nheld * sizeof(*w->held));
	}
	if (w->nheld)
		w->held_since_ms = payq_now_ms();
	while (payq_run && !w->fatal && w->nbatch < max) {
		int64_t now = payq_now_ms();
		int timeout = deadline ? (int)(deadline - now) : 100;
		rd_kafka_message_t *m;

		if (deadline && now >= deadline)
			break;
		m = poll_one(w, timeout > 100 ? 100 : timeout < 0 ? 0 : timeout);
		if (!m) {
			if (!deadline)
				break; /* idle: let the caller do housekeeping */
			continue;
		}
		w->batch[w->nbatch++].msg = m;
		if (payq_fault_point("consumer_fatal"))
			rd_kafka_test_fatal_error(w->rk, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID,
						  "payq fault injection");
		if (!deadline)
			deadline = payq_now_ms() + w->cfg->batch_wait_ms;
	}
	return w->nbatch;
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
		*last_ping = payq_now_ms();
		if (payq_apply_connect(w->apply, errstr, sizeof(errstr)) == PAYQ_CONNECT_OK) {
			/* A new session while idle: the lost tail, if any, is re-applied
			 * now rather than when traffic comes. */
			worker_resync_progress(w, false);
			w->rewound = false;
			atomic_store(&w->db_ok, payq_apply_ping(w->apply) == 0);
		} else {
			atomic_store(&w->db_ok, false);
		}
	}
	if (payq_dlq_fatal(w->dlq, errstr, sizeof(errstr))) {
		log_error("fatal DLQ producer error: %s", errstr);
		w->fatal = true;
	}
}

/* True when the loop must give the batch in flight up: a fatal error, or a shutdown
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

/* True while the next batch is not full yet: until then the loop takes what Kafka
 * delivers. */
static bool want_more(const worker_t *w)
{
	return w->nheld < (size_t)w->cfg->batch_max;
}

/* Holds what the consumer queue has now (the next batch), without waiting, up to a whole
 * batch. What is beyond stays in librdkafka's queue, which bounds itself
 * (queued.max.messages.kbytes), as while a batch applied on the synchronous path:
 * pausing the partitions instead would throw the prefetched messages away and fetch
 * them again for every batch. */
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
		if (hold_or_rewind(w, m))
			payq_crash_point("collected_unsent");
	}
}

/* While the lane's batch is in flight: waits (at most 100 ms) for its connection, and for
 * the consumer queue while the next batch is not full, then advances the batch and
 * holds what Kafka delivered. */
static void wait_in_flight(worker_t *w)
{
	bool more = want_more(w);
	struct pollfd pfd[2] = {
		{.fd = payq_apply_socket(w->apply), .events = POLLIN},
		{.fd = more ? w->wake_fd[0] : -1, .events = POLLIN},
	};

	if (payq_apply_async_wants_write(w->apply))
		pfd[0].events |= POLLOUT;
	poll(pfd, 2, 100);
	lane_step(w);
	if (more) {
		hold_ready(w);
		lane_step(w);
	}
}

/* What the loop does with a batch settled (or given up). Returns false to stop. */
static bool after_batch(worker_t *w, batch_result_t r)
{
	w->in_flight = false;
	if (r == BATCH_ABANDONED)
		return false;
	worker_release_batch(w);
	return true;
}

/*
 * Polls and settles batches until a signal or a fatal error. Returns an exit code.
 *
 * One batch at a time is in flight on the lane (lane.c); while it is, the loop waits on
 * the lane's connection and the consumer queue together and holds what Kafka delivers:
 * the next batch, sent once the lane is free again. Once a whole batch is held it waits
 * on the connection alone, so callbacks then wait for the batch in flight, as they did
 * while a batch applied on the synchronous path. What each callback may see:
 *   - rebalance_cb (rebalance.c), inside rd_kafka_consumer_poll: in collect or idle, the
 *     lane IDLE and no batch in hand, or a batch being collected (not in_flight: the
 *     revoked partitions' messages are dropped); in hold_ready, a batch in flight
 *     (LANE_IN_FLIGHT, in_flight) or one the fast path failed (LANE_FAILED): it first
 *     calls lane_quiesce, which waits for the COMMIT result and stores the batch's
 *     offsets while its partitions are still assigned (LANE_SETTLED), or leaves a failed
 *     batch to the synchronous path; the batch keeps its messages, the held ones of
 *     revoked partitions are dropped. Inside worker_tick (the synchronous path: DLQ
 *     delivery, database retries, gateway calls) the lane is IDLE and the batch
 *     in_flight, as before the lane existed.
 *   - worker_commit_cb, async_commit_cb, error_cb, stats_cb: as worker.h says; none of
 *     them touches the lane.
 *   - close_consumer's final revoke, after the loop: the lane is IDLE (the loop gave up
 *     or finished its batch).
 */
static int loop(worker_t *w)
{
	char errstr[512];
	int rc = PAYQ_EXIT_OK;
	int64_t last_ping = 0;

	while (!w->fatal) {
		batch_result_t r;

		if (w->lane != LANE_IDLE) {
			if (w->lane == LANE_IN_FLIGHT && give_up(w)) {
				lane_abandon(w);
				w->in_flight = false;
				rc = PAYQ_EXIT_RUNTIME;
				break;
			}
			if (w->lane == LANE_IN_FLIGHT)
				wait_in_flight(w);
			r = lane_finish(w);
			if (r != BATCH_SENT && !after_batch(w, r)) {
				rc = PAYQ_EXIT_RUNTIME;
				break;
			}
			continue;
		}
		/* After a signal: stop fetching, finish the batches already polled, then stop. */
		if (!collect(w) && !payq_run)
			break;
		if (!w->nbatch) {
			idle(w, &last_ping);
			continue;
		}
		w->in_flight = true;
		r = lane_send(w);
		if (r != BATCH_SENT && !after_batch(w, r)) {
			rc = PAYQ_EXIT_RUNTIME;
			break;
		}
	}
	if (w->lane != LANE_IDLE) {
		lane_abandon(w);
		w->in_flight = false;
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
