/* dlq.c - dead-letters malformed commands, storing nothing until they are PERSISTED. */
#include "dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"
#include "util.h"

struct payq_dlq {
	rd_kafka_t *rk;
	char *topic;
	char *group;
	int outstanding;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	payq_dlq_t *d = opaque;
	payq_dlq_entry_t *e = m->_private;

	(void)rk;
	d->outstanding--;
	if (!e)
		return;
	/* Only PERSISTED counts: POSSIBLY_PERSISTED might be lost, so we send again and let
	 * the idempotent producer and the consumer's tolerance of DLQ duplicates cope. */
	e->persisted = !m->err && rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_PERSISTED;
	if (!e->persisted)
		log_warn("DLQ delivery failed: %s", rd_kafka_err2str(m->err));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	char buf[512];

	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_fatal_error(rk, buf, sizeof(buf));
		log_error("fatal DLQ producer error: %s", buf);
		return;
	}
	log_warn("DLQ producer: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

payq_dlq_t *payq_dlq_new(const payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	payq_dlq_t *d = calloc(1, sizeof(*d));
	rd_kafka_conf_t *conf;

	if (!d) {
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	conf = payq_kafka_conf_new(cfg, PAYQ_KAFKA_WORKER_DLQ, errstr, errstr_size);
	if (!conf)
		goto fail;
	/* Consumer-only -X properties would not apply here; they were checked already. */
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_opaque(conf, d);
	d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (!d->rk) {
		rd_kafka_conf_destroy(conf);
		goto fail;
	}
	d->topic = strdup(cfg->dlq_topic);
	d->group = strdup(cfg->group);
	if (!d->topic || !d->group)
		goto fail;
	return d;
fail:
	payq_dlq_destroy(d, 0);
	return NULL;
}

static int produce_one(payq_dlq_t *d, payq_dlq_entry_t *e)
{
	const rd_kafka_message_t *m = e->msg;
	rd_kafka_headers_t *orig = NULL, *hdrs;
	char part[16], off[32], ts[32];
	rd_kafka_resp_err_t err;
	rd_kafka_timestamp_type_t tstype;
	int64_t tsv = rd_kafka_message_timestamp(m, &tstype);

	if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
		hdrs = rd_kafka_headers_copy(orig);
	else
		hdrs = rd_kafka_headers_new(8);
	snprintf(part, sizeof(part), "%" PRId32, m->partition);
	snprintf(off, sizeof(off), "%" PRId64, m->offset);
	snprintf(ts, sizeof(ts), "%" PRId64, tsv);
	rd_kafka_header_add(hdrs, "payq-dlq-reason", -1, e->reason, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-error", -1, e->error, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-topic", -1, rd_kafka_topic_name(m->rkt), -1);
	rd_kafka_header_add(hdrs, "payq-dlq-partition", -1, part, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-offset", -1, off, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-timestamp", -1, ts, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-group", -1, d->group, -1);

	err = rd_kafka_producev(d->rk, RD_KAFKA_V_TOPIC(d->topic),
				RD_KAFKA_V_KEY(m->key, m->key_len),
				RD_KAFKA_V_VALUE(m->payload, m->len),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
				RD_KAFKA_V_OPAQUE(e), RD_KAFKA_V_END);
	if (err) {
		rd_kafka_headers_destroy(hdrs); /* ownership passes only on success */
		return err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? 1 : -1;
	}
	d->outstanding++;
	return 0;
}

int payq_dlq_deliver(payq_dlq_t *d, payq_dlq_entry_t *entries, size_t n, payq_dlq_tick_fn tick,
		     void *opaque)
{
	int backoff = 100;

	for (size_t i = 0; i < n; i++)
		entries[i].persisted = false;
	for (;;) {
		size_t pending = 0;

		for (size_t i = 0; i < n; i++) {
			if (entries[i].persisted)
				continue;
			while (produce_one(d, &entries[i]) == 1)
				rd_kafka_poll(d->rk, 50);
			pending++;
		}
		if (!pending)
			return 0;
#ifdef PAYQ_MUTATION_DLQ_STORE_EARLY
		/* Deliberately broken build: carries on before any delivery report. */
		return 0;
#endif
		/* A delivery report normally takes a few milliseconds: wait for it here. Only a
		 * slow one makes the consumer tick, because a tick pauses the partitions and
		 * so throws away what the consumer has fetched ahead. */
		for (int64_t t0 = payq_now_ms(); d->outstanding > 0;) {
			rd_kafka_poll(d->rk, 10);
			if (payq_dlq_fatal(d, NULL, 0))
				return -1;
			if (payq_now_ms() - t0 > 1000 && !tick(opaque, 0))
				return -1;
		}
		pending = 0;
		for (size_t i = 0; i < n; i++)
			pending += !entries[i].persisted;
		if (!pending)
			return 0;
		log_warn("%zu DLQ copies not persisted; retrying in %d ms", pending, backoff);
		if (!tick(opaque, backoff))
			return -1;
		backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
	}
}

bool payq_dlq_fatal(payq_dlq_t *d, char *errstr, size_t errstr_size)
{
	char buf[512];

	if (!d || !d->rk)
		return false;
	if (rd_kafka_fatal_error(d->rk, buf, sizeof(buf)) == RD_KAFKA_RESP_ERR_NO_ERROR)
		return false;
	if (errstr)
		payq_err(errstr, errstr_size, "%s", buf);
	return true;
}

#ifdef PAYQ_CRASH_POINTS
void payq_dlq_test_fatal(payq_dlq_t *d)
{
	rd_kafka_test_fatal_error(d->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
				  "payq fault injection");
	rd_kafka_poll(d->rk, 0);
}
#endif

void payq_dlq_destroy(payq_dlq_t *d, int timeout_ms)
{
	if (!d)
		return;
	if (d->rk) {
		if (rd_kafka_flush(d->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_warn("DLQ producer: %d messages not flushed", rd_kafka_outq_len(d->rk));
		rd_kafka_destroy(d->rk);
	}
	free(d->topic);
	free(d->group);
	free(d);
}
