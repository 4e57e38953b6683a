/* sink.c - copies records through an idempotent producer and confirms every delivery. */
#include "sink.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "delivery.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

struct payq_sink {
	payq_delivery_t *producer;
	double rate;
	int64_t t0_us;
	payq_sink_stats_t st;
};

/* A copy not PERSISTED (POSSIBLY_PERSISTED included) is a failure that the operator
 * retries; the worker's dedup absorbs a copy that did land. */
static void on_report(void *opaque, const rd_kafka_message_t *m, bool persisted)
{
	payq_sink_t *s = opaque;
	char src[160] = "?";

	if (persisted) {
		s->st.delivered++;
		return;
	}
	s->st.failed++;
	payq_kafka_header_str(m, PAYQ_REPLAY_OF, src, sizeof(src));
	log_error("copy of %s to %s not delivered: %s", src, rd_kafka_topic_name(m->rkt),
		  m->err ? rd_kafka_err2str(m->err) : "possibly persisted only");
}

payq_sink_t *payq_sink_new(const payq_config_t *cfg, double rate, char *errstr, size_t errstr_size)
{
	payq_sink_t *s = calloc(1, sizeof(*s));
	payq_delivery_opts_t o = {
		.client = PAYQ_KAFKA_REPLAY_SINK, .on_report = on_report, .opaque = s};

	if (!s) {
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	s->producer = payq_delivery_new(cfg, &o, errstr, errstr_size);
	if (!s->producer) {
		free(s);
		return NULL;
	}
	s->rate = rate;
	s->t0_us = payq_now_us();
	return s;
}

static bool fatal(payq_sink_t *s, char *errstr, size_t errstr_size)
{
	char buf[512];

	if (!payq_delivery_fatal(s->producer, buf, sizeof(buf)))
		return false;
	payq_err(errstr, errstr_size, "fatal producer error: %s", buf);
	return true;
}

/* Sleeps until the next message is due, serving delivery reports meanwhile. */
static void pace(payq_sink_t *s)
{
	int64_t due;

	if (s->rate <= 0)
		return;
	due = s->t0_us + (int64_t)((double)s->st.queued * 1e6 / s->rate);
	while (replay_run) {
		int64_t wait = due - payq_now_us();
		if (wait <= 0)
			break;
		payq_delivery_poll(s->producer, (int)(wait > 100000 ? 100 : (wait + 999) / 1000));
	}
}

static rd_kafka_headers_t *copy_headers(const rd_kafka_message_t *m, const char *strip_prefix)
{
	rd_kafka_headers_t *orig = NULL, *hdrs;
	size_t plen = strip_prefix ? strlen(strip_prefix) : 0;
	char src[160];
	const char *name;
	const void *val;
	size_t size;

	if (rd_kafka_message_headers(m, &orig) != RD_KAFKA_RESP_ERR_NO_ERROR)
		orig = NULL;
	hdrs = rd_kafka_headers_new(orig ? rd_kafka_header_cnt(orig) + 1 : 4);
	for (size_t i = 0; orig && !rd_kafka_header_get_all(orig, i, &name, &val, &size); i++) {
		if ((plen && !strncmp(name, strip_prefix, plen)) || !strcmp(name, PAYQ_REPLAY_OF))
			continue;
		rd_kafka_header_add(hdrs, name, -1, val, val ? (ssize_t)size : 0);
	}
	snprintf(src, sizeof(src), "%s/%" PRId32 "/%" PRId64, rd_kafka_topic_name(m->rkt),
		 m->partition, m->offset);
	rd_kafka_header_add(hdrs, PAYQ_REPLAY_OF, -1, src, -1);
	return hdrs;
}

static bool keep_producing(void *opaque, int64_t *deadline_ms)
{
	(void)opaque;
	(void)deadline_ms;
	return replay_run;
}

int payq_sink_copy(payq_sink_t *s, const char *topic, const rd_kafka_message_t *m,
		   const char *strip_prefix, char *errstr, size_t errstr_size)
{
	payq_delivery_msg_t out = {.topic = topic,
				   .key = m->key,
				   .key_len = m->key_len,
				   .value = m->payload,
				   .value_len = m->len};
	rd_kafka_resp_err_t err;

	pace(s);
	if (!replay_run)
		return payq_err(errstr, errstr_size, "interrupted");
	if (fatal(s, errstr, errstr_size))
		return -1;
	out.headers = copy_headers(m, strip_prefix);
	/* A full queue is served until it drains, a signal arrives or the producer is fatal. */
	err = payq_delivery_produce(s->producer, &out, keep_producing, NULL);
	if (err) {
		if (!replay_run)
			return payq_err(errstr, errstr_size, "interrupted");
		if (fatal(s, errstr, errstr_size))
			return -1;
		return payq_err(errstr, errstr_size, "producing to %s: %s", topic,
				rd_kafka_err2str(err));
	}
	s->st.queued++;
	payq_delivery_poll(s->producer, 0);
	return 0;
}

payq_sink_stats_t payq_sink_stats(const payq_sink_t *s)
{
	return s->st;
}

void payq_sink_poll(payq_sink_t *s)
{
	payq_delivery_poll(s->producer, 0);
}

typedef struct finishing {
	payq_sink_t *s;
	int grace_ms;
	bool interrupted;
} finishing_t;

/* The wait for reports stops on a fatal error, and once replay_run is cleared it gets
 * grace_ms at the most. */
static bool keep_finishing(void *opaque, int64_t *deadline_ms)
{
	finishing_t *f = opaque;

	if (!replay_run && !f->interrupted) {
		f->interrupted = true;
		if (payq_now_ms() + f->grace_ms < *deadline_ms)
			*deadline_ms = payq_now_ms() + f->grace_ms;
	}
	return !fatal(f->s, NULL, 0);
}

int payq_sink_finish(payq_sink_t *s, int timeout_ms, int grace_ms, char *errstr, size_t errstr_size)
{
	finishing_t f = {.s = s, .grace_ms = grace_ms};
	int64_t outstanding;

	/* Short polls, so a signal can cut the wait short. */
	payq_delivery_wait(s->producer, payq_now_ms() + timeout_ms, 200, keep_finishing, &f);
	outstanding = s->st.queued - s->st.delivered - s->st.failed;
	if (!s->st.failed && !outstanding)
		return 0;
	return payq_err(errstr, errstr_size,
			"%" PRId64 " of %" PRId64 " copies not confirmed (%" PRId64
			" failed, %" PRId64 " without a delivery report)",
			s->st.failed + outstanding, s->st.queued, s->st.failed, outstanding);
}

payq_range_read_t payq_sink_finish_read(payq_sink_t *s, const payq_config_t *cfg,
					payq_range_read_t rd, char *errstr, size_t errstr_size)
{
	char ferr[512];

	if (payq_sink_finish(s, 330000, (int)cfg->shutdown_timeout_ms, ferr, sizeof(ferr)) &&
	    rd == PAYQ_RANGE_DONE) {
		snprintf(errstr, errstr_size, "%s", ferr);
		return replay_run ? PAYQ_RANGE_FAILED : PAYQ_RANGE_INTERRUPTED;
	}
	return rd;
}

void payq_sink_destroy(payq_sink_t *s)
{
	if (!s)
		return;
	payq_delivery_destroy(s->producer, 0);
	free(s);
}
