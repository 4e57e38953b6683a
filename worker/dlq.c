/* dlq.c - dead-letters malformed commands, storing nothing until they are PERSISTED. */
#include "dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "delivery.h"
#include "log.h"
#include "util.h"

/* A copy cut because the full one was too large for the DLQ keeps at most this much of
 * the original key and value, and drops the original headers: the payq-dlq-* headers
 * and these fit within librdkafka's smallest message.max.bytes (1000). */
#define TRUNC_KEY_MAX 64
#define TRUNC_VALUE_MAX 256
#define TRUNC_ERROR_MAX 200

struct payq_dlq {
	payq_delivery_t *producer;
	char *topic;
	char *group;
	char failed[512]; /* a copy that can never be delivered: as fatal as a fatal error */
};

/* What rd_kafka_producev() said about one copy. */
typedef enum {
	PRODUCE_QUEUED,	    /* a delivery report will follow */
	PRODUCE_QUEUE_FULL, /* still full when the producer could not go on (fatal) */
	PRODUCE_TOO_LARGE,  /* over message.max.bytes: send the truncated copy */
	PRODUCE_FAILED,	    /* try again after a backoff, unless the producer is fatal */
} produce_result_t;

static bool too_large(rd_kafka_resp_err_t err)
{
	/* rd_kafka_producev() and the broker use the same code. */
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
}

/* The DLQ refused even the truncated copy of e: nothing more may be stored. */
static void set_failed(payq_dlq_t *d, const payq_dlq_entry_t *e, rd_kafka_resp_err_t err)
{
	snprintf(d->failed, sizeof(d->failed),
		 "the truncated DLQ copy of %s/%" PRId32 "/%" PRId64 " (%zu bytes) is still too "
		 "large for %s: %s",
		 rd_kafka_topic_name(e->msg->rkt), e->msg->partition, e->msg->offset, e->msg->len,
		 d->topic, rd_kafka_err2str(err));
}

/* A copy not PERSISTED (POSSIBLY_PERSISTED included) is sent again: the idempotent
 * producer and the consumer's tolerance of DLQ duplicates cope with one that did land. */
static void on_report(void *opaque, const rd_kafka_message_t *m, bool persisted)
{
	payq_dlq_t *d = opaque;
	payq_dlq_entry_t *e = m->_private;

	if (!e)
		return;
	e->persisted = persisted;
	if (e->persisted)
		return;
	char order_id[PAYQ_ID_MAX + 1];
	payq_log_ctx_t ctx = {.partition = -1, .offset = -1};
	ctx.order_id = payq_codec_key_order_id(m->key, m->key_len, order_id);
	payq_log(PAYQ_LOG_WARN, &ctx, "DLQ delivery failed: %s", rd_kafka_err2str(m->err));
	/* The broker refused the copy as too large (the DLQ topic's max.message.bytes):
	 * sending it again cannot help, the truncated copy can. */
	if (too_large(m->err)) {
		if (e->truncated)
			set_failed(d, e, m->err);
		e->truncated = true;
	}
}

static void on_error(void *opaque, rd_kafka_t *rk, int err, const char *reason)
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
	payq_delivery_opts_t o = {.client = PAYQ_KAFKA_WORKER_DLQ,
				  .on_report = on_report,
				  .on_error = on_error,
				  .opaque = d};

	if (!d) {
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	/* Consumer-only -X properties would not apply here; they were checked already. */
	d->producer = payq_delivery_new(cfg, &o, errstr, errstr_size);
	if (!d->producer)
		goto fail;
	d->topic = strdup(cfg->dlq_topic);
	d->group = strdup(cfg->group);
	if (!d->topic || !d->group)
		goto fail;
	return d;
fail:
	payq_dlq_destroy(d, 0);
	return NULL;
}

/* While the local queue is full: go on until the producer cannot (fatal error, or a
 * truncated copy still too large). */
static bool keep_producing(void *opaque, int64_t *deadline_ms)
{
	(void)deadline_ms;
	return !payq_dlq_fatal(opaque, NULL, 0);
}

/* Copies s into buf (size bytes), cut to at most max bytes on a UTF-8 boundary. */
static void cut_utf8(char *buf, size_t size, const char *s, size_t max)
{
	size_t len = strlen(s);

	if (len > max)
		len = max;
	if (len >= size)
		len = size - 1;
	if (len < strlen(s))
		while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
			len--;
	memcpy(buf, s, len);
	buf[len] = '\0';
}

/* The payq-dlq-* headers that say where the copy came from and why it is here. */
static void add_dlq_headers(payq_dlq_t *d, rd_kafka_headers_t *hdrs, const rd_kafka_message_t *m,
			    const char *reason, const char *error)
{
	char part[16], off[32], ts[32];
	rd_kafka_timestamp_type_t tstype;
	int64_t tsv = rd_kafka_message_timestamp(m, &tstype);

	snprintf(part, sizeof(part), "%" PRId32, m->partition);
	snprintf(off, sizeof(off), "%" PRId64, m->offset);
	snprintf(ts, sizeof(ts), "%" PRId64, tsv);
	rd_kafka_header_add(hdrs, "payq-dlq-reason", -1, reason, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-error", -1, error, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-topic", -1, rd_kafka_topic_name(m->rkt), -1);
	rd_kafka_header_add(hdrs, "payq-dlq-partition", -1, part, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-offset", -1, off, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-timestamp", -1, ts, -1);
	rd_kafka_header_add(hdrs, "payq-dlq-group", -1, d->group, -1);
}

/* Produces the copy of e: the full one (original key, value and headers), or, once that
 * was too large for the DLQ, the truncated one (reason too_large_for_dlq, the original
 * reason in payq-dlq-error, payq-dlq-original-size, the start of the key and value). */
static produce_result_t produce_one(payq_dlq_t *d, payq_dlq_entry_t *e)
{
	const rd_kafka_message_t *m = e->msg;
	rd_kafka_headers_t *orig = NULL, *hdrs;
	rd_kafka_resp_err_t err;
	size_t key_len = m->key_len, len = m->len;

	if (e->truncated) {
		char error[TRUNC_ERROR_MAX + 1], full[320], size[32];

		snprintf(full, sizeof(full), "%s: %s", e->reason, e->error);
		cut_utf8(error, sizeof(error), full, TRUNC_ERROR_MAX);
		snprintf(size, sizeof(size), "%zu", m->len);
		hdrs = rd_kafka_headers_new(8);
		add_dlq_headers(d, hdrs, m, "too_large_for_dlq", error);
		rd_kafka_header_add(hdrs, "payq-dlq-original-size", -1, size, -1);
		key_len = key_len > TRUNC_KEY_MAX ? TRUNC_KEY_MAX : key_len;
		len = len > TRUNC_VALUE_MAX ? TRUNC_VALUE_MAX : len;
	} else {
		if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
			hdrs = rd_kafka_headers_copy(orig);
		else
			hdrs = rd_kafka_headers_new(8);
		add_dlq_headers(d, hdrs, m, e->reason, e->error);
	}

	payq_delivery_msg_t out = {.topic = d->topic,
				   .key = m->key,
				   .key_len = key_len,
				   .value = m->payload,
				   .value_len = len,
				   .headers = hdrs,
				   .msg_opaque = e};
	/* A full queue is served here until it drains, or the producer cannot go on. */
	err = payq_delivery_produce(d->producer, &out, keep_producing, d);
	if (!err)
		return PRODUCE_QUEUED;
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return PRODUCE_QUEUE_FULL;
	if (too_large(err)) {
		if (e->truncated)
			set_failed(d, e, err);
		return PRODUCE_TOO_LARGE;
	}
	log_warn("DLQ produce failed: %s", rd_kafka_err2str(err));
	return PRODUCE_FAILED;
}

/* Produces every copy not yet persisted. Returns false when the producer cannot go on
 * (fatal error, or a copy that can never fit); *pending counts the copies in flight or
 * to send again. */
static bool produce_pending(payq_dlq_t *d, payq_dlq_entry_t *entries, size_t n, size_t *pending)
{
	*pending = 0;
	for (size_t i = 0; i < n; i++) {
		produce_result_t r;

		if (entries[i].persisted)
			continue;
		r = produce_one(d, &entries[i]);
		if (r == PRODUCE_TOO_LARGE && !entries[i].truncated) {
			entries[i].truncated = true;
			r = produce_one(d, &entries[i]);
		}
		/* A fatal producer fails every produce at once and never reports again:
		 * producing again would loop for ever. */
		if (payq_dlq_fatal(d, NULL, 0))
			return false;
		(*pending)++;
	}
	return true;
}

/* The wait for delivery reports in payq_dlq_deliver(). */
typedef struct waiting {
	payq_dlq_t *d;
	int64_t t0;
	payq_dlq_tick_fn tick;
	void *opaque;
} waiting_t;

/* Between polls of the wait for reports: stop on a copy that can never fit, and tick the
 * consumer only once the wait is slow. No deadline: the tick gives up at shutdown. */
static bool keep_waiting(void *opaque, int64_t *deadline_ms)
{
	waiting_t *w = opaque;

	(void)deadline_ms;
	if (payq_dlq_fatal(w->d, NULL, 0))
		return false;
	return payq_now_ms() - w->t0 <= 1000 || w->tick(w->opaque, 0);
}

int payq_dlq_deliver(payq_dlq_t *d, payq_dlq_entry_t *entries, size_t n, payq_dlq_tick_fn tick,
		     void *opaque)
{
	int backoff = 100;

	for (size_t i = 0; i < n; i++) {
		entries[i].persisted = false;
		entries[i].truncated = false;
	}
	for (;;) {
		size_t pending = 0;

		if (!produce_pending(d, entries, n, &pending))
			return -1;
		if (!pending)
			return 0;
#ifdef PAYQ_MUTATION_DLQ_STORE_EARLY
		/* Deliberately broken build: carries on before any delivery report. */
		return 0;
#endif
		/* A delivery report normally takes a few milliseconds: wait for it here. Only a
		 * slow one makes the consumer tick, because a tick pauses the partitions and
		 * so throws away what the consumer has fetched ahead. */
		waiting_t w = {.d = d, .t0 = payq_now_ms(), .tick = tick, .opaque = opaque};
		if (payq_delivery_wait(d->producer, INT64_MAX, 10, keep_waiting, &w) !=
		    PAYQ_DELIVERY_DONE)
			return -1;
		if (payq_dlq_fatal(d, NULL, 0))
			return -1;
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

	if (!d || !d->producer)
		return false;
	if (d->failed[0]) {
		if (errstr)
			payq_err(errstr, errstr_size, "%s", d->failed);
		return true;
	}
	if (!payq_delivery_fatal(d->producer, buf, sizeof(buf)))
		return false;
	if (errstr)
		payq_err(errstr, errstr_size, "%s", buf);
	return true;
}

#ifdef PAYQ_CRASH_POINTS
void payq_dlq_test_fatal(payq_dlq_t *d)
{
	rd_kafka_test_fatal_error(payq_delivery_rk(d->producer),
				  RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
				  "payq fault injection");
	payq_delivery_poll(d->producer, 0);
}
#endif

void payq_dlq_destroy(payq_dlq_t *d, int timeout_ms)
{
	if (!d)
		return;
	if (d->producer) {
		int left = payq_delivery_destroy(d->producer, timeout_ms);
		if (left)
			log_warn("DLQ producer: %d messages not flushed", left);
	}
	free(d->topic);
	free(d->group);
	free(d);
}
