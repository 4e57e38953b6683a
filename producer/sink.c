/* sink.c - payq-producer's Kafka side: produce with headers, count delivery reports, flush. */
#include "sink.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "delivery.h"
#include "kafka.h"
#include "log.h"
#include "signals.h"
#include "trace.h"
#include "util.h"

#define FAILURES_LOGGED 5 /* each failed delivery is counted; only the first few are logged */

struct payq_producer {
	const payq_config_t *cfg;
	payq_producer_opts_t opts;
	payq_delivery_t *producer;
	rd_kafka_topic_t *rkt; /* held so that the topic's metadata stays known */
	int partitions;	       /* dry run only */
	int64_t message_timeout_ms;
	bool fatal;
	bool interrupted;
	int64_t queued, delivered, failed, possibly_persisted;
	int64_t *per_partition;
	int per_partition_cnt;
	char first_error[512];	/* the first failed delivery or produce() error */
	char broker_error[512]; /* the last error_cb text, e.g. connection refused */
	rd_kafka_resp_err_t last_logged_err;
	int64_t start_us;
	bool progress;
	int64_t progress_ms;
	double tokens;
	int64_t bucket_us;
};

static void count_partition(payq_producer_t *s, int32_t partition)
{
	if (partition < 0)
		return;
	if (partition >= s->per_partition_cnt) {
		int n = partition + 1 > 2 * s->per_partition_cnt ? partition + 1
								 : 2 * s->per_partition_cnt;
		int64_t *grown = realloc(s->per_partition, (size_t)n * sizeof(*grown));
		if (!grown)
			return;
		memset(grown + s->per_partition_cnt, 0,
		       (size_t)(n - s->per_partition_cnt) * sizeof(*grown));
		s->per_partition = grown;
		s->per_partition_cnt = n;
	}
	s->per_partition[partition]++;
}

static void print_msg(int32_t partition, const void *key, size_t key_len, const void *value,
		      size_t value_len)
{
	printf("%d\t", (int)partition);
	fwrite(key, 1, key_len, stdout);
	putchar('\t');
	if (value)
		fwrite(value, 1, value_len, stdout);
	putchar('\n');
}

static void note_failure(payq_producer_t *s, const char *key, size_t key_len, const char *what)
{
	if (!s->first_error[0])
		snprintf(s->first_error, sizeof(s->first_error), "%s", what);
	if (s->failed <= FAILURES_LOGGED)
		log_error("not delivered: key %.*s: %s%s", (int)key_len, key, what,
			  s->failed == FAILURES_LOGGED ? " (further failures are only counted)"
						       : "");
}

/* A debug line per persisted message: where it went, its order, command and trace. */
static void log_persisted(const payq_producer_t *s, const rd_kafka_message_t *m)
{
	char order_id[PAYQ_ID_MAX + 1], command_id[PAYQ_ID_MAX + 1] = "";
	rd_kafka_headers_t *h = NULL;
	const void *v;
	size_t len;
	payq_trace_t trace;
	payq_log_ctx_t ctx = {
		.topic = s->cfg->topic, .partition = m->partition, .offset = m->offset};

	ctx.order_id = payq_codec_key_order_id(m->key, m->key_len, order_id);
	if (!rd_kafka_message_headers(m, &h) &&
	    !rd_kafka_header_get(h, 0, "payq-command-id", &v, &len) && len <= PAYQ_ID_MAX) {
		memcpy(command_id, v, len);
		command_id[len] = '\0';
		ctx.command_id = command_id;
	}
	payq_trace_from_message(m, &trace);
	ctx.trace_id = trace.valid ? trace.trace_id : NULL;
	payq_log(PAYQ_LOG_DEBUG, &ctx, "persisted");
}

static void on_report(void *opaque, const rd_kafka_message_t *m, bool persisted)
{
	payq_producer_t *s = opaque;

	if (persisted) {
		s->delivered++;
		count_partition(s, m->partition);
		if (payq_log_level >= PAYQ_LOG_DEBUG)
			log_persisted(s, m);
		if (s->opts.print)
			print_msg(m->partition, m->key, m->key_len, m->payload, m->len);
		return;
	}
	s->failed++;
	if (rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED)
		s->possibly_persisted++;
	note_failure(s, m->key, m->key_len, rd_kafka_err2str(m->err));
}

static void on_error(void *opaque, rd_kafka_t *rk, int err, const char *reason)
{
	payq_producer_t *s = opaque;
	char buf[256];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
		log_error("fatal Kafka error, stopping: %s: %s", rd_kafka_err2name(orig), buf);
		snprintf(s->broker_error, sizeof(s->broker_error), "fatal: %s", buf);
		s->fatal = true;
		return;
	}
	snprintf(s->broker_error, sizeof(s->broker_error), "%s", reason);
	/* librdkafka logs transport failures itself and repeats them every retry; say each
	 * other kind once. */
	if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != (int)s->last_logged_err) {
		log_error("kafka: %s: %s", rd_kafka_err2name(err), reason);
		s->last_logged_err = err;
	}
}

/* Looks the topic up before the first message. A message produced after the client's first
 * metadata request (the brokers only) waits for librdkafka's next topic scan, up to a
 * second, and the --rate clock, which starts at the first message, then runs up to a second
 * ahead of what is sent: tests/bench's (f) showed it as a second of latency at the start
 * of one step in two. A broker that does not answer within a second (or half of
 * message.timeout.ms, if less) is not an error here: the messages then wait for it as they
 * would anyway, and a run against a dead broker fails at most that much later. */
static void warm_up(payq_producer_t *s)
{
	rd_kafka_t *rk = payq_delivery_rk(s->producer);
	const struct rd_kafka_metadata *md = NULL;
	int64_t timeout = s->message_timeout_ms / 2 < 1000 ? s->message_timeout_ms / 2 : 1000;
	rd_kafka_resp_err_t err;

	s->rkt = rd_kafka_topic_new(rk, s->cfg->topic, NULL);
	if (!s->rkt)
		return;
	err = rd_kafka_metadata(rk, 0, s->rkt, &md, (int)timeout);
	if (err)
		log_debug("metadata for %s not there yet (%s): producing anyway", s->cfg->topic,
			  rd_kafka_err2str(err));
	else
		rd_kafka_metadata_destroy(md);
}

payq_producer_t *payq_producer_new(const payq_config_t *cfg, const payq_producer_opts_t *opts,
				   char *errstr, size_t errstr_size)
{
	payq_producer_t *s = calloc(1, sizeof(*s));
	payq_delivery_opts_t o = {.client = PAYQ_KAFKA_PRODUCER,
				  .on_report = on_report,
				  .on_error = on_error,
				  .opaque = s};
	char buf[64];
	size_t sz = sizeof(buf);

	if (!s) {
		payq_err(errstr, errstr_size, "out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->opts = *opts;
	s->partitions = opts->partitions;
	s->last_logged_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (opts->dry_run && opts->partitions > 0)
		return s;

	s->producer = payq_delivery_new(cfg, &o, errstr, errstr_size);
	if (!s->producer)
		goto fail;
	if (rd_kafka_conf_get(rd_kafka_conf(payq_delivery_rk(s->producer)), "message.timeout.ms",
			      buf, &sz) != RD_KAFKA_CONF_OK ||
	    payq_parse_int64(buf, 0, INT32_MAX, &s->message_timeout_ms))
		s->message_timeout_ms = 30000;
	if (opts->dry_run) {
		/* Only the partition count is needed; a dry run sends nothing. */
		int timeout = s->message_timeout_ms < 10000 ? (int)s->message_timeout_ms : 10000;
		s->partitions = payq_kafka_partition_count(
			payq_delivery_rk(s->producer), cfg->topic, timeout, errstr, errstr_size);
		payq_delivery_destroy(s->producer, 0);
		s->producer = NULL;
		if (s->partitions <= 0) {
			size_t n = strlen(errstr);
			snprintf(errstr + n, errstr_size - n,
				 "; --dry-run --partitions N works without a broker");
			goto fail;
		}
		return s;
	}
	warm_up(s);
	s->progress = isatty(STDERR_FILENO);
	return s;
fail:
	payq_producer_destroy(s);
	return NULL;
}

bool payq_producer_running(const payq_producer_t *s)
{
	return !payq_signals_stopped() && !s->fatal;
}

/* Token bucket: waits (serving delivery reports) until one message may go out. */
static void throttle(payq_producer_t *s)
{
	double burst = s->opts.rate / 20 > 1 ? s->opts.rate / 20 : 1;
	int64_t now = payq_now_us();

	if (!s->bucket_us) {
		s->bucket_us = now;
		s->tokens = 1;
	}
	for (;;) {
		s->tokens += (double)(now - s->bucket_us) * s->opts.rate / 1e6;
		s->bucket_us = now;
		if (s->tokens > burst)
			s->tokens = burst;
		if (s->tokens >= 1 || !payq_producer_running(s))
			break;
		int wait_ms = (int)ceil((1 - s->tokens) * 1000 / s->opts.rate);
		wait_ms = wait_ms < 1 ? 1 : wait_ms > 100 ? 100 : wait_ms;
		if (s->producer) {
			payq_delivery_poll(s->producer, wait_ms);
		} else {
			struct timespec ts = {0, (long)wait_ms * 1000000};
			nanosleep(&ts, NULL);
		}
		now = payq_now_us();
	}
	s->tokens -= 1;
}

static void show_progress(payq_producer_t *s, bool force)
{
	int64_t now = payq_now_ms();
	double secs;

	if (!s->progress || (!force && now - s->progress_ms < 500))
		return;
	s->progress_ms = now;
	secs = (double)(payq_now_us() - s->start_us) / 1e6;
	fprintf(stderr, "\rsent %lld, delivered %lld, failed %lld (%.0f msgs/s)  ",
		(long long)s->queued, (long long)s->delivered, (long long)s->failed,
		secs > 0 ? (double)s->delivered / secs : 0.0);
}

static int dry_send(payq_producer_t *s, const payq_producer_msg_t *m)
{
	/* librdkafka's own partitioner function; with a key it never looks at the topic. */
	int32_t p = rd_kafka_msg_partitioner_murmur2_random(NULL, m->key, m->key_len, s->partitions,
							    NULL, NULL);

	if (s->opts.print)
		print_msg(p, m->key, m->key_len, m->value, m->value_len);
	else
		printf("%d %.*s %s %s\n", (int)p, (int)m->key_len, m->key,
		       m->command_id ? m->command_id : "-", m->type ? m->type : "-");
	s->queued++;
	s->delivered++;
	count_partition(s, p);
	return 0;
}

/* True while the run may go on; notes a signal as an interruption. */
static bool keep_sending(void *opaque, int64_t *deadline_ms)
{
	payq_producer_t *s = opaque;

	(void)deadline_ms;
	if (payq_signals_stopped())
		s->interrupted = true;
	return payq_producer_running(s);
}

static rd_kafka_headers_t *message_headers(const payq_producer_msg_t *m)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
	char traceparent[PAYQ_TRACEPARENT_LEN + 1];

	rd_kafka_header_add(hdrs, "content-type", -1, "application/json", -1);
	if (m->type)
		rd_kafka_header_add(hdrs, "payq-type", -1, m->type, -1);
	if (m->command_id)
		rd_kafka_header_add(hdrs, "payq-command-id", -1, m->command_id, -1);
	/* Each command starts a trace of its own; the worker logs its trace_id and passes it
	 * on to the payment channel. */
	if (!payq_trace_child(NULL, traceparent, sizeof(traceparent)))
		rd_kafka_header_add(hdrs, "traceparent", -1, traceparent, -1);
	return hdrs;
}

int payq_producer_send(payq_producer_t *s, const payq_producer_msg_t *m)
{
	payq_delivery_msg_t out = {.topic = s->cfg->topic,
				   .key = m->key,
				   .key_len = m->key_len,
				   .value = m->value,
				   .value_len = m->value_len};
	rd_kafka_resp_err_t err;

	if (!s->start_us)
		s->start_us = payq_now_us();
	if (!keep_sending(s, NULL))
		return -1;
	if (s->opts.rate > 0)
		throttle(s);
	if (!s->producer)
		return dry_send(s, m);

	out.headers = message_headers(m);
	err = payq_delivery_produce(s->producer, &out, keep_sending, s);
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) /* keep_sending() said stop */
		return -1;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		s->fatal = true;
		return -1;
	}
	if (err) {
		s->failed++;
		note_failure(s, m->key, m->key_len, rd_kafka_err2str(err));
		return 0;
	}
	s->queued++;
	payq_delivery_poll(s->producer, 0);
	show_progress(s, false);
	return 0;
}

typedef struct flushing {
	payq_producer_t *s;
	bool stopping;
} flushing_t;

/* Between polls of the flush: shows progress, and once a signal or fatal error stops the
 * run, gives the flush the shutdown budget, no more. */
static bool keep_flushing(void *opaque, int64_t *deadline_ms)
{
	flushing_t *f = opaque;
	int64_t now = payq_now_ms();

	show_progress(f->s, false);
	if (!f->stopping && !keep_sending(f->s, NULL)) {
		int64_t budget = f->s->fatal ? 1000 : f->s->cfg->shutdown_timeout_ms;
		f->stopping = true;
		if (now + budget < *deadline_ms)
			*deadline_ms = now + budget;
	}
	return true;
}

/* Waits for the outstanding delivery reports until the deadline, then purges the rest
 * so that every message queued has been counted as delivered or failed. */
static void flush(payq_producer_t *s)
{
	flushing_t f = {.s = s};

	payq_delivery_wait(s->producer, payq_now_ms() + s->message_timeout_ms + 5000, 100,
			   keep_flushing, &f);
	if (payq_delivery_outstanding(s->producer) > 0) {
		log_error("flush deadline passed with %lld message(s) outstanding; purging",
			  (long long)payq_delivery_outstanding(s->producer));
		payq_delivery_purge(s->producer);
	}
}

int payq_producer_finish(payq_producer_t *s)
{
	char parts[4096];
	size_t n = 0;
	double secs;
	int64_t undelivered;
	int rc;

	if (payq_signals_stopped())
		s->interrupted = true;
	if (s->producer)
		flush(s);
	if (s->progress && s->progress_ms) {
		show_progress(s, true);
		fputc('\n', stderr);
	}
	parts[0] = '\0';
	for (int p = 0; p < s->per_partition_cnt && n < sizeof(parts) - 32; p++)
		if (s->per_partition[p])
			n += (size_t)snprintf(parts + n, sizeof(parts) - n, "%s%d:%lld",
					      n ? " " : "", p, (long long)s->per_partition[p]);
	secs = s->start_us ? (double)(payq_now_us() - s->start_us) / 1e6 : 0;
	undelivered = s->queued - s->delivered - s->failed;
	if (undelivered < 0)
		undelivered = 0;

	if (!s->producer) {
		log_info("dry run: %lld message(s), nothing sent; per partition: %s",
			 (long long)s->queued, n ? parts : "-");
		return s->interrupted ? PAYQ_PRODUCER_EXIT_INTERRUPTED : PAYQ_PRODUCER_EXIT_OK;
	}

	rc = s->interrupted			    ? PAYQ_PRODUCER_EXIT_INTERRUPTED
	     : s->fatal || s->failed || undelivered ? PAYQ_PRODUCER_EXIT_UNDELIVERED
						    : PAYQ_PRODUCER_EXIT_OK;
	payq_log(rc == PAYQ_PRODUCER_EXIT_OK ? PAYQ_LOG_INFO : PAYQ_LOG_ERROR, NULL,
		 "sent %lld, delivered %lld, failed %lld, undelivered %lld%s in %.2f s "
		 "(%.0f msgs/s delivered); per partition: %s",
		 (long long)s->queued, (long long)s->delivered, (long long)s->failed,
		 (long long)undelivered, s->interrupted ? " (interrupted)" : "", secs,
		 secs > 0 ? (double)s->delivered / secs : 0.0, n ? parts : "-");
	if (s->failed || undelivered)
		log_error("%lld message(s) not persisted%s: first error: %s%s%s",
			  (long long)(s->failed + undelivered),
			  s->possibly_persisted ? " (some possibly persisted)" : "",
			  s->first_error[0] ? s->first_error : "none reported",
			  s->broker_error[0] ? "; last broker error: " : "", s->broker_error);
	return rc;
}

int64_t payq_producer_delivered(const payq_producer_t *s)
{
	return s->delivered;
}

void payq_producer_destroy(payq_producer_t *s)
{
	if (!s)
		return;
	if (s->rkt)
		rd_kafka_topic_destroy(s->rkt);
	payq_delivery_destroy(s->producer, 0);
	free(s->per_partition);
	free(s);
}
