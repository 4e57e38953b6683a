/* consume.c - the worker's poll loop and batch boundaries: setup, collect a batch, hand
 * it to batch.c, idle housekeeping, shutdown. Rebalances are in rebalance.c, offset
 * commits in commit.c. */
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

/* ---- health probes (HTTP thread) ---- */

static bool healthz(void *opaque, char *msg, size_t size)
{
	worker_t *w = opaque;
	int64_t age = payq_now_ms() - atomic_load(&w->last_poll_ms);

	if (age > 30000) {
		snprintf(msg, size, "main loop has not polled for %" PRId64 " ms", age);
		return false;
	}
	return true;
}

static bool readyz(void *opaque, char *msg, size_t size)
{
	worker_t *w = opaque;

	if (!atomic_load(&w->joined)) {
		snprintf(msg, size, "not joined to the consumer group");
		return false;
	}
	if (!atomic_load(&w->db_ok)) {
		snprintf(msg, size, "database not answering");
		return false;
	}
	return true;
}

/* ---- librdkafka callbacks (all run inside rd_kafka_consumer_poll on this thread) ---- */

/* True for the errors that retrying cannot cure: the broker refuses this principal (an ACL
 * is missing) or its credentials. librdkafka would retry them for ever while the worker
 * looks healthy and applies nothing; stopping says what is wrong where an operator looks.
 * Not the local _AUTHENTICATION: librdkafka also reports a connection lost during the SASL
 * handshake (a broker restarting) with it, and that one must be retried. */
static bool access_denied(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
		return true;
	default:
		return false;
	}
}

/* Stops the worker on an access error: nothing is committed, so nothing is lost. */
static void stop_denied(worker_t *w, rd_kafka_resp_err_t err, const char *reason)
{
	log_error("Kafka refuses access: %s: %s; check this principal's credentials and ACLs "
		  "(README, Security)",
		  rd_kafka_err2name(err), reason);
	w->fatal = true;
	payq_run = 0;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	worker_t *w = opaque;
	char buf[512];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, buf, sizeof(buf));
		log_error("fatal Kafka error: %s", buf);
		w->fatal = true;
		payq_run = 0;
		return;
	}
	if (access_denied((rd_kafka_resp_err_t)err)) {
		stop_denied(w, (rd_kafka_resp_err_t)err, reason);
		return;
	}
	log_warn("Kafka error: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	worker_t *w = opaque;

	(void)rk;
	payq_lag_from_stats(w->cfg->group, json, len);
	return 0; /* librdkafka frees json */
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
	if (access_denied(m->err)) {
		stop_denied(w, m->err, rd_kafka_message_errstr(m));
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
	while (w->nheld && w->nbatch < max) {
		w->batch[w->nbatch++] = w->held[0];
		memmove(w->held, w->held + 1, --w->nheld * sizeof(*w->held));
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

/* ---- setup and the loop ---- */

static rd_kafka_t *make_consumer(worker_t *w, char *errstr, size_t errstr_size)
{
	/* Its properties, and the ones -X may not change, are in common/kafka_clients.c. */
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char strategy[128];
	size_t sz = sizeof(strategy);

	conf = payq_kafka_conf_new(w->cfg, PAYQ_KAFKA_WORKER_CONSUMER, errstr, errstr_size);
	if (!conf)
		return NULL;
	rd_kafka_conf_set_opaque(conf, w);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_rebalance_cb(conf, worker_rebalance_cb);
	rd_kafka_conf_set_offset_commit_cb(conf, worker_commit_cb);
	rd_kafka_conf_set_stats_cb(conf, stats_cb);
	if (rd_kafka_conf_get(conf, "partition.assignment.strategy", strategy, &sz) ==
	    RD_KAFKA_CONF_OK)
		w->cooperative = strstr(strategy, "cooperative") != NULL;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

/* The consumer queue's IO event: librdkafka writes to a pipe when the queue becomes
 * non-empty, so that the loop waits on it and on the database socket with one poll(2).
 * Without it the wait is a 100 ms slice, which still works. */
static void enable_wakeup(worker_t *w)
{
	w->cq = rd_kafka_queue_get_consumer(w->rk);
	if (!w->cq || pipe2(w->wake_fd, O_NONBLOCK | O_CLOEXEC)) {
		w->wake_fd[0] = w->wake_fd[1] = -1;
		log_warn("no wakeup pipe for the consumer queue: polling in 100 ms slices");
		return;
	}
	rd_kafka_queue_io_event_enable(w->cq, w->wake_fd[1], "1", 1);
}

static void disable_wakeup(worker_t *w)
{
	if (w->cq) {
		if (w->wake_fd[1] >= 0)
			rd_kafka_queue_io_event_enable(w->cq, -1, NULL, 0);
		rd_kafka_queue_destroy(w->cq);
		w->cq = NULL;
	}
	for (int i = 0; i < 2; i++) {
		if (w->wake_fd[i] >= 0)
			close(w->wake_fd[i]);
		w->wake_fd[i] = -1;
	}
}

static int subscribe(worker_t *w, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	rd_kafka_topic_partition_list_add(topics, w->cfg->topic, RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(w->rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (err)
		return payq_err(errstr, errstr_size, "subscribe to %s: %s", w->cfg->topic,
				rd_kafka_err2str(err));
	return 0;
}

/* Milliseconds left before the shutdown deadline (never below 0). */
int worker_shutdown_left_ms(const worker_t *w)
{
	int64_t left = w->stop_deadline_ms - payq_now_ms();
	return left > 0 ? (int)left : 0;
}

/* Leaves the group, bounded by the shutdown deadline. Close leaves the group (a static
 * member stays until session.timeout.ms, which is the point of static membership) and
 * runs the final revoke, here on a queue served until the deadline: its rebalance
 * events go to worker_rebalance_cb, anything else (messages still fetched) is dropped.
 * Returns true when the consumer closed. */
static bool close_consumer(worker_t *w)
{
	rd_kafka_queue_t *q = rd_kafka_queue_new(w->rk);
	rd_kafka_error_t *error;
	bool closed;

	if (!q)
		return false;
	if ((error = rd_kafka_consumer_close_queue(w->rk, q))) {
		log_warn("closing the consumer: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	}
	while (!(closed = rd_kafka_consumer_closed(w->rk)) && worker_shutdown_left_ms(w) > 0) {
		rd_kafka_event_t *ev = rd_kafka_queue_poll(q, worker_shutdown_left_ms(w) < 100 ?
								      worker_shutdown_left_ms(w) : 100);
		if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
			worker_rebalance_cb(w->rk, rd_kafka_event_error(ev),
				     rd_kafka_event_topic_partition_list(ev), w);
		if (ev)
			rd_kafka_event_destroy(ev);
	}
	if (!closed)
		log_warn("the consumer did not close before the shutdown deadline; leaving anyway");
	rd_kafka_queue_destroy(q);
	return closed;
}

static void shutdown_worker(worker_t *w)
{
	bool closed = true;

	if (!w->stop_deadline_ms) /* a start that failed */
		w->stop_deadline_ms = payq_now_ms() + 5000;
	/* It abandons its gateway calls and winds down meanwhile. */
	payq_reconciler_request_stop(w->reconciler);
	disable_wakeup(w);
	if (w->rk) {
		worker_final_commit(w);
		if (!w->fatal)
			closed = close_consumer(w);
	}
	payq_dlq_destroy(w->dlq, worker_shutdown_left_ms(w));
	for (size_t i = 0; i < w->nheld; i++)
		rd_kafka_message_destroy(w->held[i].msg);
	worker_release_batch(w);
	/* After a fatal error librdkafka 2.0.2 refuses the consumer close, and a plain
	 * destroy then waits for it for ever. Destroying a consumer whose close is still
	 * under way would wait for that close too: past the deadline it is left to the
	 * process exit, and the group drops the member after session.timeout.ms. */
	if (w->rk && w->fatal)
		rd_kafka_destroy_flags(w->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	else if (w->rk && closed)
		rd_kafka_destroy(w->rk);
	payq_http_stop(w->http);
	payq_reconciler_stop(w->reconciler);
	payq_gateway_destroy(w->gw);
	payq_apply_destroy(w->apply);
	free(w->charges);
	free(w->charge_item);
	free(w->batch);
	free(w->held);
	free(w->items);
	free(w->dead);
	free(w->prog);
	free(w->poison);
	free(w->poison_err);
}

/* Allocates the batch buffers and the applier. */
static bool alloc_worker(worker_t *w)
{
	size_t max = (size_t)w->cfg->batch_max;

	w->batch = calloc(max, sizeof(*w->batch));
	w->items = calloc(max, sizeof(*w->items));
	w->dead = calloc(max, sizeof(*w->dead));
	w->prog = calloc(max, sizeof(*w->prog));
	w->poison = calloc(max, sizeof(*w->poison));
	w->poison_err = calloc(max, sizeof(*w->poison_err));
	w->charges = calloc(max, sizeof(*w->charges));
	w->charge_item = calloc(max, sizeof(*w->charge_item));
	w->apply = payq_apply_new(w->cfg->db, w->cfg->group, w->cfg->topic);
	return w->batch && w->items && w->dead && w->prog && w->poison && w->poison_err &&
	       w->charges && w->charge_item && w->apply;
}

/* Gateway mode's channel client, and the reconciler when it runs. Returns an exit code. */
static int setup_payments(worker_t *w)
{
	payq_config_t *cfg = w->cfg;
	char errstr[512];

	if (!strcmp(cfg->payment_mode, "gateway")) {
		int64_t *delays;
		size_t ndelays;
		if (payq_reconcile_parse_schedule(cfg->reconcile_schedule, &delays, &ndelays, errstr,
						  sizeof(errstr)) ||
		    !(w->gw = payq_gateway_new(cfg, errstr, sizeof(errstr)))) {
			log_error("%s", errstr);
			return PAYQ_EXIT_USAGE;
		}
		payq_apply_set_gateway(w->apply, delays[0]);
		/* A slow channel must not starve the consumer: keep polling, paused. */
		payq_gateway_set_idle(w->gw, worker_tick, w);
		free(delays);
		log_info("payment mode gateway: charging through %s (timeout %" PRId64
			 " ms, %" PRId64 " at once)", cfg->gateway_url, cfg->gateway_timeout_ms,
			 cfg->gateway_concurrency);
	}
	if (!strcmp(cfg->reconcile, "on") || (!strcmp(cfg->reconcile, "auto") && w->gw)) {
		w->reconciler = payq_reconciler_start(cfg, errstr, sizeof(errstr));
		if (!w->reconciler) {
			log_error("reconciler: %s", errstr);
			return PAYQ_EXIT_USAGE;
		}
	}
	return PAYQ_EXIT_OK;
}

/* The database, the HTTP probes, the DLQ producer and the consumer, subscribed.
 * Returns an exit code. */
static int setup_clients(worker_t *w)
{
	payq_config_t *cfg = w->cfg;
	char errstr[512];
	payq_connect_t crc;

	/* A schema that is too old stops the worker before it joins the group. */
	crc = payq_apply_connect(w->apply, errstr, sizeof(errstr));
	if (crc == PAYQ_CONNECT_FATAL) {
		log_error("%s", errstr);
		return PAYQ_EXIT_SCHEMA;
	}
	if (crc == PAYQ_CONNECT_RETRY)
		log_warn("database not reachable yet, will retry: %s", errstr);
	atomic_store(&w->db_ok, crc == PAYQ_CONNECT_OK);

	if (cfg->http_addr && *cfg->http_addr) {
		w->http = payq_http_start(cfg->http_addr, healthz, readyz, w, errstr,
					  sizeof(errstr));
		if (!w->http) {
			log_error("%s", errstr);
			return PAYQ_EXIT_USAGE;
		}
		log_info("serving /metrics, /healthz and /readyz on port %d",
			 payq_http_port(w->http));
	}

	w->dlq = payq_dlq_new(cfg, errstr, sizeof(errstr));
	if (!w->dlq) {
		log_error("DLQ producer: %s", errstr);
		return PAYQ_EXIT_USAGE;
	}
	w->rk = make_consumer(w, errstr, sizeof(errstr));
	if (!w->rk) {
		log_error("consumer: %s", errstr);
		return PAYQ_EXIT_USAGE;
	}
	enable_wakeup(w);
	if (subscribe(w, errstr, sizeof(errstr))) {
		log_error("%s", errstr);
		return PAYQ_EXIT_RUNTIME;
	}
	log_info("consuming %s as group %s (batch %" PRId64 ", wait %" PRId64 " ms, commit %s)",
		 cfg->topic, cfg->group, cfg->batch_max, cfg->batch_wait_ms, cfg->commit_mode);
	return PAYQ_EXIT_OK;
}

/* Sets up everything the loop needs. Returns an exit code. */
static int setup(worker_t *w)
{
	int rc;

	atomic_store(&w->last_poll_ms, payq_now_ms());
	payq_worker_metrics_init();
	if (!alloc_worker(w)) {
		log_error("out of memory");
		return PAYQ_EXIT_RUNTIME;
	}
	if ((rc = setup_payments(w)) != PAYQ_EXIT_OK)
		return rc;
	return setup_clients(w);
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

/* Holds what the consumer queue has now (the next batch), without waiting. Once a whole
 * batch is held, fetching pauses until the batch in flight is stored (store() in
 * batch.c resumes it). */
static void hold_ready(worker_t *w)
{
	size_t limit = 4 * (size_t)w->cfg->batch_max;
	char drain[64];

	if (w->wake_fd[0] >= 0)
		while (read(w->wake_fd[0], drain, sizeof(drain)) > 0)
			;
	for (size_t i = 0; i < limit && !w->fatal; i++) {
		rd_kafka_message_t *m = poll_one(w, 0);
		if (!m) {
			if (!w->cq || !rd_kafka_queue_length(w->cq))
				break;
			continue;
		}
		if (hold_or_rewind(w, m))
			payq_crash_point("collected_unsent");
	}
	if (w->nheld >= (size_t)w->cfg->batch_max && !w->paused)
		worker_set_paused(w, true);
}

/* While the lane's batch is in flight: waits (at most 100 ms) for its connection or for
 * the consumer queue, then advances the batch and holds what Kafka delivered. */
static void wait_in_flight(worker_t *w)
{
	struct pollfd pfd[2] = {
		{.fd = payq_apply_socket(w->apply), .events = POLLIN},
		{.fd = w->wake_fd[0], .events = POLLIN},
	};

	if (payq_apply_async_wants_write(w->apply))
		pfd[0].events |= POLLOUT;
	poll(pfd, 2, 100);
	lane_step(w);
	hold_ready(w);
	lane_step(w);
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
 * the next batch, sent once the lane is free again. What each callback may see:
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
	rc = setup(&w);
	if (rc == PAYQ_EXIT_OK)
		rc = loop(&w);
	shutdown_worker(&w);
	return rc;
}
