/* setup.c - the worker's setup and shutdown: buffers, the applier, gateway mode and the
 * reconciler, the HTTP probes, the DLQ producer, the consumer (with its callbacks and
 * the consumer queue's wakeup pipe), and their orderly release. The loop is in
 * consume.c. */
#include "consume.h"
#include "worker.h"

#include <fcntl.h>
#include <inttypes.h>
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

/* ---- librdkafka callbacks (they run inside rd_kafka_consumer_poll on the main thread) ---- */

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
	if (worker_access_denied((rd_kafka_resp_err_t)err)) {
		worker_stop_denied(w, (rd_kafka_resp_err_t)err, reason);
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

/* ---- setup ---- */

static rd_kafka_t *make_consumer(worker_t *w, char *errstr, size_t errstr_size)
{
	/* Its properties, and the ones -X may not change, are in common/kafka_clients.c. */
	rd_kafka_conf_t *conf;
	char strategy[128];
	size_t sz = sizeof(strategy);

	conf = payq_kafka_conf_new(w->cfg, PAYQ_KAFKA_WORKER_CONSUMER, errstr, errstr_size);
	if (!conf)
		return NULL;
	rd_kafka_conf_set_opaque(conf, w);
#ifdef PAYQ_CRASH_POINTS
	if (payq_fault_armed("assign_race"))
		rd_kafka_conf_set_log_cb(conf, payq_fault_log_cb);
#endif
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_rebalance_cb(conf, worker_rebalance_cb);
	rd_kafka_conf_set_offset_commit_cb(conf, worker_commit_cb);
	rd_kafka_conf_set_stats_cb(conf, stats_cb);
	if (rd_kafka_conf_get(conf, "partition.assignment.strategy", strategy, &sz) ==
	    RD_KAFKA_CONF_OK)
		w->cooperative = strstr(strategy, "cooperative") != NULL;
	return payq_kafka_consumer_new(conf, errstr, errstr_size);
}

/* The consumer queue's IO event: librdkafka writes to a pipe when the queue becomes
 * non-empty, so that the loop waits on it and on the database socket with one poll(2).
 * Without it the consumer is polled every 10 ms, which still works. */
static void enable_wakeup(worker_t *w)
{
	w->cq = rd_kafka_queue_get_consumer(w->rk);
	if (!w->cq || pipe2(w->wake_fd, O_NONBLOCK | O_CLOEXEC)) {
		w->wake_fd[0] = w->wake_fd[1] = -1;
		log_warn("no wakeup pipe for the consumer queue: polling in 100 ms slices");
		return;
	}
	rd_kafka_queue_io_event_enable(w->cq, w->wake_fd[1], "1", 1);
	w->fetch_wake = payq_fetch_wake_start(w->rk, w->cq);
}

static void disable_wakeup(worker_t *w)
{
	payq_fetch_wake_stop(w->fetch_wake);
	w->fetch_wake = NULL;
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
		rd_kafka_event_t *ev = rd_kafka_queue_poll(
			q, worker_shutdown_left_ms(w) < 100 ? worker_shutdown_left_ms(w) : 100);
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

static void free_lane(lane_t *l)
{
	payq_apply_destroy(l->apply);
	free(l->batch);
	free(l->held);
	free(l->items);
	free(l->dead);
	free(l->prog);
	free(l->poison);
	free(l->poison_err);
}

void worker_shutdown(worker_t *w)
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
	for (int i = 0; i < w->nlanes; i++) {
		lane_t *l = &w->lanes[i];
		for (size_t j = 0; j < l->nheld; j++)
			rd_kafka_message_destroy(l->held[j].msg);
		l->nheld = 0;
		worker_release_batch(l);
	}
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
	for (int i = 0; i < w->nlanes; i++)
		free_lane(&w->lanes[i]);
	free(w->lanes);
	free(w->charges);
	free(w->charge_item);
}

/* Allocates lane l's batch buffers and connection. */
static bool alloc_lane(worker_t *w, lane_t *l, int id)
{
	size_t max = (size_t)w->cfg->batch_max;

	l->w = w;
	l->id = id;
	l->batch = calloc(max, sizeof(*l->batch));
	l->items = calloc(max, sizeof(*l->items));
	l->dead = calloc(max, sizeof(*l->dead));
	l->prog = calloc(max, sizeof(*l->prog));
	l->poison = calloc(max, sizeof(*l->poison));
	l->poison_err = calloc(max, sizeof(*l->poison_err));
	l->apply = payq_apply_new(w->cfg->db, w->cfg->group, w->cfg->topic);
	return l->batch && l->items && l->dead && l->prog && l->poison && l->poison_err && l->apply;
}

/* Allocates the lanes and gateway mode's charges. Gateway mode charges and settles on
 * the synchronous path, one batch at a time: it runs one lane. */
static bool alloc_worker(worker_t *w)
{
	size_t max = (size_t)w->cfg->batch_max;
	bool gateway = !strcmp(w->cfg->payment_mode, "gateway");

	w->nlanes = gateway ? 1 : (int)w->cfg->apply_lanes;
	if (gateway && w->cfg->apply_lanes > 1)
		log_info("payment mode gateway: applying on one lane (PAYQ_APPLY_LANES=%" PRId64
			 " applies to ledger mode)",
			 w->cfg->apply_lanes);
	w->lanes = calloc((size_t)w->nlanes, sizeof(*w->lanes));
	if (!w->lanes) {
		w->nlanes = 0;
		return false;
	}
	for (int i = 0; i < w->nlanes; i++)
		if (!alloc_lane(w, &w->lanes[i], i))
			return false;
	w->charges = calloc(max, sizeof(*w->charges));
	w->charge_item = calloc(max, sizeof(*w->charge_item));
	return w->charges && w->charge_item;
}

/* Gateway mode's channel client, and the reconciler when it runs. Returns an exit code. */
static int setup_payments(worker_t *w)
{
	payq_config_t *cfg = w->cfg;
	char errstr[512];

	if (!strcmp(cfg->payment_mode, "gateway")) {
		int64_t *delays;
		size_t ndelays;
		if (payq_reconcile_parse_schedule(cfg->reconcile_schedule, &delays, &ndelays,
						  errstr, sizeof(errstr)) ||
		    !(w->gw = payq_gateway_new(cfg, errstr, sizeof(errstr)))) {
			log_error("%s", errstr);
			return PAYQ_EXIT_USAGE;
		}
		payq_apply_set_gateway(w->lanes[0].apply, delays[0]);
		/* A slow channel must not starve the consumer: keep polling, paused. */
		payq_gateway_set_idle(w->gw, worker_tick, &w->lanes[0]);
		free(delays);
		log_info("payment mode gateway: charging through %s (timeout %" PRId64
			 " ms, %" PRId64 " at once)",
			 cfg->gateway_url, cfg->gateway_timeout_ms, cfg->gateway_concurrency);
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
	crc = payq_apply_connect(w->lanes[0].apply, errstr, sizeof(errstr));
	if (crc == PAYQ_CONNECT_FATAL) {
		log_error("%s", errstr);
		return PAYQ_EXIT_SCHEMA;
	}
	if (crc == PAYQ_CONNECT_RETRY)
		log_warn("database not reachable yet, will retry: %s", errstr);
	atomic_store(&w->db_ok, crc == PAYQ_CONNECT_OK);

	if (cfg->http_addr && *cfg->http_addr) {
		w->http =
			payq_http_start(cfg->http_addr, healthz, readyz, w, errstr, sizeof(errstr));
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
	log_info("consuming %s as group %s (batch %" PRId64 ", wait %" PRId64
		 " ms, commit %s, %d apply lanes)",
		 cfg->topic, cfg->group, cfg->batch_max, cfg->batch_wait_ms, cfg->commit_mode,
		 w->nlanes);
	return PAYQ_EXIT_OK;
}

/* Sets up everything the loop needs. Returns an exit code. */
int worker_setup(worker_t *w)
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
