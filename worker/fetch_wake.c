/* fetch_wake.c - keeps librdkafka fetching while the worker drains its queue.
 *
 * librdkafka stops fetching once the consumer queue holds queued.max.messages.kbytes (or
 * queued.min.messages), and decides to fetch again only when a broker thread wakes up: on
 * a response, on an operation queued to it, or after up to a second. Taking messages off
 * the queue does not wake it (librdkafka 2.2 added fetch.queue.backoff.ms for this; Debian
 * 12 has 2.0.2). A worker that drains the queue in less than that second then waits for
 * the rest of it with nothing to apply. The bench saw exactly that: one full queue, 7 MiB
 * or about 40k commands, per second, whatever the database could do.
 *
 * The cure: once the queue holds less than half of either threshold, a helper thread asks
 * the leaders of the assigned partitions for their end offsets (rd_kafka_offsets_for_times
 * with "latest": a read-only ListOffsets, which a consumer may send). Queuing that request
 * wakes each leader's broker thread, which then finds the queue under its threshold and
 * fetches. The request blocks the helper only, never the loop; one is under way at a time,
 * at most ten a second. */
#include "fetch_wake.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define WAKE_MIN_INTERVAL_MS 100
#define WAKE_TIMEOUT_MS 1000

struct payq_fetch_wake {
	rd_kafka_t *rk;
	rd_kafka_queue_t *cq;
	double max_bytes;    /* queued.max.messages.kbytes, in bytes */
	double max_msgs;     /* queued.min.messages */
	double avg_len;	     /* running average of the payloads taken (loop thread only) */
	int64_t last_ask_ms; /* loop thread only */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool asked, stop; /* under lock */
	atomic_bool busy; /* asked, or the request is under way */
};

static double conf_number(rd_kafka_t *rk, const char *name, double fallback)
{
	char buf[64];
	size_t size = sizeof(buf);

	if (rd_kafka_conf_get(rd_kafka_conf(rk), name, buf, &size) != RD_KAFKA_CONF_OK)
		return fallback;
	return strtod(buf, NULL);
}

/* One wake: the end offsets of every assigned partition, from their leaders. */
static void wake_leaders(payq_fetch_wake_t *fw)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_resp_err_t err;

	if (rd_kafka_assignment(fw->rk, &parts) || !parts)
		return;
	if (parts->cnt) {
		for (int i = 0; i < parts->cnt; i++)
			parts->elems[i].offset = RD_KAFKA_OFFSET_END;
		err = rd_kafka_offsets_for_times(fw->rk, parts, WAKE_TIMEOUT_MS);
		if (err)
			log_debug("fetch wake: end offsets: %s", rd_kafka_err2str(err));
		payq_metrics_add("payq_fetch_wakes_total", NULL, 1);
	}
	rd_kafka_topic_partition_list_destroy(parts);
}

static void *wake_thread(void *arg)
{
	payq_fetch_wake_t *fw = arg;

	pthread_mutex_lock(&fw->lock);
	for (;;) {
		while (!fw->asked && !fw->stop)
			pthread_cond_wait(&fw->cond, &fw->lock);
		if (fw->stop)
			break;
		fw->asked = false;
		pthread_mutex_unlock(&fw->lock);
		wake_leaders(fw);
		atomic_store(&fw->busy, false);
		pthread_mutex_lock(&fw->lock);
	}
	pthread_mutex_unlock(&fw->lock);
	return NULL;
}

payq_fetch_wake_t *payq_fetch_wake_start(rd_kafka_t *rk, rd_kafka_queue_t *cq)
{
	payq_fetch_wake_t *fw;

	if (!cq || !(fw = calloc(1, sizeof(*fw))))
		return NULL;
	fw->rk = rk;
	fw->cq = cq;
	fw->max_bytes = conf_number(rk, "queued.max.messages.kbytes", 65536) * 1024;
	fw->max_msgs = conf_number(rk, "queued.min.messages", 100000);
	fw->avg_len = 256;
	pthread_mutex_init(&fw->lock, NULL);
	pthread_cond_init(&fw->cond, NULL);
	if (pthread_create(&fw->thread, NULL, wake_thread, fw)) {
		log_warn("no fetch wake thread: librdkafka fetches again after its own wakeup");
		pthread_cond_destroy(&fw->cond);
		pthread_mutex_destroy(&fw->lock);
		free(fw);
		return NULL;
	}
	return fw;
}

void payq_fetch_wake_taken(payq_fetch_wake_t *fw, size_t len)
{
	if (fw)
		fw->avg_len += ((double)len - fw->avg_len) / 64;
}

void payq_fetch_wake_check(payq_fetch_wake_t *fw)
{
	double queued;
	int64_t now;

	if (!fw || atomic_load(&fw->busy))
		return;
	queued = (double)rd_kafka_queue_length(fw->cq);
	if (queued * 2 >= fw->max_msgs || queued * fw->avg_len * 2 >= fw->max_bytes)
		return;
	now = payq_now_ms();
	if (now - fw->last_ask_ms < WAKE_MIN_INTERVAL_MS)
		return;
	fw->last_ask_ms = now;
	atomic_store(&fw->busy, true);
	pthread_mutex_lock(&fw->lock);
	fw->asked = true;
	pthread_cond_signal(&fw->cond);
	pthread_mutex_unlock(&fw->lock);
}

void payq_fetch_wake_stop(payq_fetch_wake_t *fw)
{
	if (!fw)
		return;
	pthread_mutex_lock(&fw->lock);
	fw->stop = true;
	pthread_cond_signal(&fw->cond);
	pthread_mutex_unlock(&fw->lock);
	pthread_join(fw->thread, NULL);
	pthread_cond_destroy(&fw->cond);
	pthread_mutex_destroy(&fw->lock);
	free(fw);
}
