/* delivery.h - the one confirmed-delivery Kafka producer: idempotent, and a message counts
 * as delivered only with a PERSISTED delivery report. payq-producer, payq-replay's sink and
 * the worker's DLQ all produce through it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "kafka_clients.h"

typedef struct payq_delivery payq_delivery_t;

/* Called once per delivery report, from payq_delivery_poll()/wait(). persisted is true only
 * for no error and status PERSISTED: POSSIBLY_PERSISTED may be lost, so it is a failure. */
typedef void (*payq_delivery_report_fn)(void *opaque, const rd_kafka_message_t *m, bool persisted);

/* librdkafka's error_cb, with the opaque given to payq_delivery_new(). */
typedef void (*payq_delivery_error_fn)(void *opaque, rd_kafka_t *rk, int err, const char *reason);

/* Asked between polls while waiting. Returns false to stop waiting; may shorten
 * *deadline_ms (payq_now_ms() time). */
typedef bool (*payq_delivery_keep_fn)(void *opaque, int64_t *deadline_ms);

typedef struct payq_delivery_opts {
	payq_kafka_client_t client;	   /* which row of the client table in kafka_clients.c */
	payq_delivery_report_fn on_report; /* NULL: reports are only counted */
	payq_delivery_error_fn on_error;   /* NULL: librdkafka's default (it logs) */
	void *opaque;
} payq_delivery_opts_t;

/* One message to produce. The key, value and topic are copied; headers pass to the
 * producer (see payq_delivery_produce()). msg_opaque comes back as m->_private. */
typedef struct payq_delivery_msg {
	const char *topic;
	const void *key;
	size_t key_len;
	const void *value;
	size_t value_len;
	rd_kafka_headers_t *headers; /* may be NULL */
	void *msg_opaque;
} payq_delivery_msg_t;

typedef enum {
	PAYQ_DELIVERY_DONE,    /* no message is waiting for its delivery report */
	PAYQ_DELIVERY_TIMEOUT, /* the deadline passed first */
	PAYQ_DELIVERY_STOPPED, /* keep() returned false */
} payq_delivery_wait_t;

/* Creates the idempotent producer from the client table (enable.idempotence, acks=all, the
 * -X overrides), with the delivery-report and error callbacks. Returns NULL with errstr. */
payq_delivery_t *payq_delivery_new(const payq_config_t *cfg, const payq_delivery_opts_t *o,
				   char *errstr, size_t errstr_size);

/* The librdkafka handle, for metadata requests and fault injection. */
rd_kafka_t *payq_delivery_rk(const payq_delivery_t *d);

/* Produces m once. While the local queue is full it serves delivery reports for 50 ms and
 * tries again, unless the producer turned fatal or keep() (may be NULL) says stop; then it
 * returns RD_KAFKA_RESP_ERR__FATAL or RD_KAFKA_RESP_ERR__QUEUE_FULL. On success the
 * producer owns m->headers and a delivery report will follow; on any error the headers
 * are destroyed here. */
rd_kafka_resp_err_t payq_delivery_produce(payq_delivery_t *d, const payq_delivery_msg_t *m,
					  payq_delivery_keep_fn keep, void *opaque);

/* Serves delivery reports for up to timeout_ms. */
void payq_delivery_poll(payq_delivery_t *d, int timeout_ms);

/* Messages produced whose delivery report has not been served yet. */
int64_t payq_delivery_outstanding(const payq_delivery_t *d);

/* Polls every poll_ms until every report is in, deadline_ms (payq_now_ms() time; INT64_MAX
 * for none) passes, or keep() (may be NULL) says stop. A fatal producer may still report
 * for a while (the messages it fails), so whether to stop on one is keep()'s choice. */
payq_delivery_wait_t payq_delivery_wait(payq_delivery_t *d, int64_t deadline_ms, int poll_ms,
					payq_delivery_keep_fn keep, void *opaque);

/* Purges what is still queued or in flight and serves the purge reports (the report
 * callback sees them as failures). */
void payq_delivery_purge(payq_delivery_t *d);

/* True after a fatal idempotent-producer error; buf (may be NULL) gets librdkafka's text. */
bool payq_delivery_fatal(const payq_delivery_t *d, char *buf, size_t size);

/* Flushes for up to flush_ms (0: none), then drops what is left without calling the report
 * callback (its opaques may be gone) and destroys the producer. Returns the number of
 * messages dropped. NULL is ignored. */
int payq_delivery_destroy(payq_delivery_t *d, int flush_ms);
