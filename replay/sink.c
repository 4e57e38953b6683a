/* sink.c - copies records through an idempotent producer and confirms every delivery. */
#include "sink.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

struct payq_sink {
	rd_kafka_t *rk;
	double rate;
	int64_t t0_us;
	payq_sink_stats_t st;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	payq_sink_t *s = opaque;
	char src[160] = "?";

	(void)rk;
	/* Only PERSISTED counts: POSSIBLY_PERSISTED may be lost, so it is a failure that the
	 * operator retries, and the worker's dedup absorbs a copy that did land. */
	if (!m->err && rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_PERSISTED) {
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
	rd_kafka_conf_t *conf;

	if (!s) {
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	conf = payq_kafka_conf_new(cfg, PAYQ_KAFKA_REPLAY_SINK, errstr, errstr_size);
	if (!conf) {
		free(s);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_opaque(conf, s);
	s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (!s->rk) {
		rd_kafka_conf_destroy(conf);
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

	if (rd_kafka_fatal_error(s->rk, buf, sizeof(buf)) == RD_KAFKA_RESP_ERR_NO_ERROR)
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
		rd_kafka_poll(s->rk, (int)(wait > 100000 ? 100 : (wait + 999) / 1000));
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

int payq_sink_copy(payq_sink_t *s, const char *topic, const rd_kafka_message_t *m,
		   const char *strip_prefix, char *errstr, size_t errstr_size)
{
	rd_kafka_headers_t *hdrs;
	rd_kafka_resp_err_t err;

	pace(s);
	hdrs = copy_headers(m, strip_prefix);
	for (;;) {
		if (!replay_run) {
			rd_kafka_headers_destroy(hdrs);
			return payq_err(errstr, errstr_size, "interrupted");
		}
		if (fatal(s, errstr, errstr_size)) {
			rd_kafka_headers_destroy(hdrs);
			return -1;
		}
		err = rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(topic),
					RD_KAFKA_V_KEY(m->key, m->key_len),
					RD_KAFKA_V_VALUE(m->payload, m->len),
					RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
					RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
		if (!err)
			break;
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			rd_kafka_headers_destroy(hdrs); /* ownership passes only on success */
			return payq_err(errstr, errstr_size, "producing to %s: %s", topic,
					rd_kafka_err2str(err));
		}
		rd_kafka_poll(s->rk, 50);
	}
	s->st.queued++;
	rd_kafka_poll(s->rk, 0);
	return 0;
}

void payq_sink_poll(payq_sink_t *s)
{
	rd_kafka_poll(s->rk, 0);
}

int payq_sink_finish(payq_sink_t *s, int timeout_ms, int grace_ms, char *errstr, size_t errstr_size)
{
	int64_t deadline = payq_now_ms() + timeout_ms;
	bool interrupted = false;
	int64_t outstanding;

	/* flush() with a short timeout in a loop, so a signal can cut the wait short. */
	while (rd_kafka_outq_len(s->rk) > 0 && payq_now_ms() < deadline && !fatal(s, NULL, 0)) {
		if (!replay_run && !interrupted) {
			interrupted = true;
			if (payq_now_ms() + grace_ms < deadline)
				deadline = payq_now_ms() + grace_ms;
		}
		rd_kafka_flush(s->rk, 200);
	}
	outstanding = s->st.queued - s->st.delivered - s->st.failed;
	if (!s->st.failed && !outstanding)
		return 0;
	return payq_err(errstr, errstr_size,
			"%" PRId64 " of %" PRId64 " copies not confirmed (%" PRId64
			" failed, %" PRId64 " without a delivery report)",
			s->st.failed + outstanding, s->st.queued, s->st.failed, outstanding);
}

payq_sink_stats_t payq_sink_stats(const payq_sink_t *s)
{
	return s->st;
}

void payq_sink_destroy(payq_sink_t *s)
{
	if (!s)
		return;
	if (s->rk) {
		rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_poll(s->rk, 0);
		rd_kafka_destroy(s->rk);
	}
	free(s);
}
