/* commit.c - Kafka offset commits: the async one of the loop, the synchronous ones of
 * a revoke and of shutdown, and their callbacks. The offsets they carry are stored in
 * batch.c (store_offsets) and rebalance.c (partitions the drift check moved): see
 * worker.h on where progress is written. */
#include "worker.h"

#include <stdio.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

/* The result of any commit, synchronous or not. */
static void commit_result(worker_t *w, rd_kafka_resp_err_t err)
{
	if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return;
	if (err) {
		payq_metrics_add("payq_commit_errors_total", NULL, 1);
		log_warn("offset commit failed: %s", rd_kafka_err2str(err));
		/* The stored offsets are still there: try again on the next chance. */
		w->commit_dirty = true;
		return;
	}
	payq_metrics_set("payq_last_commit_timestamp_seconds", NULL,
			 (double)payq_wall_ms() / 1000.0);
}

/* The configured callback: synchronous commits only (the revoke's, the final one),
 * since the async ones carry their own. It must not touch the async in-flight mark: a
 * revoke's commit can complete while an async commit is still being retried. */
void worker_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
		      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	(void)rk;
	(void)offsets;
	commit_result(opaque, err);
}

/* The callback of the one async commit in flight (rd_kafka_commit_queue), served on
 * the consumer queue by rd_kafka_consumer_poll like commit_cb. */
static void async_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	worker_t *w = opaque;

	(void)rk;
	(void)offsets;
	w->async_commit_ms = 0;
	commit_result(w, err);
}

void worker_commit(worker_t *w, bool sync)
{
	rd_kafka_resp_err_t err;

	if (!w->commit_dirty || w->fatal)
		return;
	/* A lost assignment is someone else's now: commit nothing until the revoke has run
	 * and the worker is assigned again (rebalance.c). With several lanes, a second lane's
	 * batch can be stored after the loss and before the loop polls the revoke. */
	if (rd_kafka_assignment_lost(w->rk))
		return;
	/* One async commit at a time. librdkafka retries a commit that met a retriable
	 * error (a coordinator still loading after a broker restart), and a retried older
	 * commit can land after a newer one: the committed offset would move backwards
	 * (seen in the long chaos soak). The offsets stay stored and dirty, so the next
	 * commit, after this one's callback, carries them. (A callback lost in a rebalance
	 * must not stop commits for good: after 10 s the next one goes anyway.) */
	if (!sync && w->async_commit_ms && payq_now_ms() - w->async_commit_ms < 10000)
		return;
	if (sync) {
		err = rd_kafka_commit(w->rk, NULL, 0);
	} else {
		rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(w->rk);
		err = q ? rd_kafka_commit_queue(w->rk, NULL, q, async_commit_cb, w)
			: RD_KAFKA_RESP_ERR__UNKNOWN_GROUP;
		if (q)
			rd_kafka_queue_destroy(q); /* the commit keeps its own reference */
	}
	if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
		payq_metrics_add("payq_commit_errors_total", NULL, 1);
		log_warn("offset commit: %s", rd_kafka_err2str(err));
		return;
	}
	if (!sync && !err)
		w->async_commit_ms = payq_now_ms();
	if (sync)
		payq_metrics_set("payq_last_commit_timestamp_seconds", NULL,
				 (double)payq_wall_ms() / 1000.0);
	w->commit_dirty = false;
}

static void final_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
			    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	(void)rk;
	(void)offsets;
	*(rd_kafka_resp_err_t *)opaque = err;
}

/* The last commit, bounded by the shutdown deadline: a synchronous rd_kafka_commit()
 * waits for the coordinator for as long as it takes. Offsets it could not commit are
 * behind, never ahead: the next owner redelivers them and the dedup table absorbs it. */
void worker_final_commit(worker_t *w)
{
	rd_kafka_queue_t *q;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__IN_PROGRESS;

	if (!w->commit_dirty || w->fatal || !(q = rd_kafka_queue_new(w->rk)))
		return;
	if (!rd_kafka_commit_queue(w->rk, NULL, q, final_commit_cb, &err))
		while (err == RD_KAFKA_RESP_ERR__IN_PROGRESS && worker_shutdown_left_ms(w) > 0)
			rd_kafka_queue_poll_callback(q, worker_shutdown_left_ms(w) < 100
								? worker_shutdown_left_ms(w)
								: 100);
	else
		err = RD_KAFKA_RESP_ERR__NO_OFFSET;
	if (err == RD_KAFKA_RESP_ERR__IN_PROGRESS)
		log_warn("final offset commit: no answer before the shutdown deadline");
	else if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		log_warn("final offset commit: %s", rd_kafka_err2str(err));
	else
		payq_metrics_set("payq_last_commit_timestamp_seconds", NULL,
				 (double)payq_wall_ms() / 1000.0);
	/* Done or given up: the revoke during close must not commit again, unbounded. */
	w->commit_dirty = false;
	rd_kafka_queue_destroy(q);
}
