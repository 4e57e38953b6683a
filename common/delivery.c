/* delivery.c - the one confirmed-delivery producer: produce, count the delivery reports,
 * judge each by its PERSISTED status, and wait for them with a bound. */
#include "delivery.h"

#include <stdlib.h>

#include "util.h"

#define QUEUE_FULL_POLL_MS 50

struct payq_delivery {
	rd_kafka_t *rk;
	payq_delivery_report_fn on_report;
	payq_delivery_error_fn on_error;
	void *opaque;
	int64_t outstanding; /* produced, delivery report not served yet */
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	payq_delivery_t *d = opaque;
	/* Only PERSISTED counts: POSSIBLY_PERSISTED might be lost, so every caller treats it
	 * as a failure (and sends again, or reports it), and the consumers' dedup absorbs a
	 * copy that did land. */
	bool persisted = !m->err && rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_PERSISTED;

	(void)rk;
	d->outstanding--;
	if (d->on_report)
		d->on_report(d->opaque, m, persisted);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	payq_delivery_t *d = opaque;

	d->on_error(d->opaque, rk, err, reason);
}

payq_delivery_t *payq_delivery_new(const payq_config_t *cfg, const payq_delivery_opts_t *o,
				   char *errstr, size_t errstr_size)
{
	payq_delivery_t *d = calloc(1, sizeof(*d));
	rd_kafka_conf_t *conf;

	if (!d) {
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	d->on_report = o->on_report;
	d->on_error = o->on_error;
	d->opaque = o->opaque;
	conf = payq_kafka_conf_new(cfg, o->client, errstr, errstr_size);
	if (!conf) {
		free(d);
		return NULL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	if (d->on_error)
		rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_opaque(conf, d);
	d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (!d->rk) {
		rd_kafka_conf_destroy(conf);
		free(d);
		return NULL;
	}
	return d;
}

rd_kafka_t *payq_delivery_rk(const payq_delivery_t *d)
{
	return d->rk;
}

rd_kafka_resp_err_t payq_delivery_produce(payq_delivery_t *d, const payq_delivery_msg_t *m,
					  payq_delivery_keep_fn keep, void *opaque)
{
	int64_t no_deadline = INT64_MAX;

	for (;;) {
		rd_kafka_resp_err_t err = rd_kafka_producev(
			d->rk, RD_KAFKA_V_TOPIC(m->topic),
			RD_KAFKA_V_KEY(m->key, m->key ? m->key_len : 0),
			RD_KAFKA_V_VALUE((void *)m->value, m->value ? m->value_len : 0),
			RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(m->headers),
			RD_KAFKA_V_OPAQUE(m->msg_opaque), RD_KAFKA_V_END);

		if (!err) {
			d->outstanding++;
			return err;
		}
		/* A fatal producer fails every produce at once and never reports again:
		 * trying again would loop for ever. */
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && payq_delivery_fatal(d, NULL, 0))
			err = RD_KAFKA_RESP_ERR__FATAL;
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || (keep && !keep(opaque, &no_deadline))) {
			if (m->headers) /* ownership passes only on success */
				rd_kafka_headers_destroy(m->headers);
			return err;
		}
		rd_kafka_poll(d->rk, QUEUE_FULL_POLL_MS);
	}
}

void payq_delivery_poll(payq_delivery_t *d, int timeout_ms)
{
	rd_kafka_poll(d->rk, timeout_ms);
}

int64_t payq_delivery_outstanding(const payq_delivery_t *d)
{
	return d->outstanding;
}

payq_delivery_wait_t payq_delivery_wait(payq_delivery_t *d, int64_t deadline_ms, int poll_ms,
					payq_delivery_keep_fn keep, void *opaque)
{
	while (d->outstanding > 0) {
		if (keep && !keep(opaque, &deadline_ms))
			return PAYQ_DELIVERY_STOPPED;
		if (payq_now_ms() >= deadline_ms)
			return PAYQ_DELIVERY_TIMEOUT;
		rd_kafka_poll(d->rk, poll_ms);
	}
	return PAYQ_DELIVERY_DONE;
}

void payq_delivery_purge(payq_delivery_t *d)
{
	rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(d->rk, 100);
	rd_kafka_flush(d->rk, 100);
}

bool payq_delivery_fatal(const payq_delivery_t *d, char *buf, size_t size)
{
	char tmp[512];

	if (!buf) {
		buf = tmp;
		size = sizeof(tmp);
	}
	return rd_kafka_fatal_error(d->rk, buf, size) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

int payq_delivery_destroy(payq_delivery_t *d, int flush_ms)
{
	int left = 0;

	if (!d)
		return 0;
	if (flush_ms > 0)
		rd_kafka_flush(d->rk, flush_ms);
	left = rd_kafka_outq_len(d->rk);
	/* The callers' message opaques may be freed by now: drop the reports unseen. */
	d->on_report = NULL;
	rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(d->rk, 0);
	rd_kafka_destroy(d->rk);
	free(d);
	return left;
}
