/* offsets_probe.c - Kafka state for the fault tests: committed offsets, watermarks, topic
 * contents, raw produce, and a monitor that catches committed offsets moving backwards. */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define TIMEOUT_MS 10000

static volatile sig_atomic_t run = 1;

static void stop(int sig)
{
	(void)sig;
	run = 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: offsets_probe committed BROKERS GROUP TOPIC\n"
		"           one line per partition: PARTITION OFFSET (-1: none committed)\n"
		"       offsets_probe end BROKERS TOPIC\n"
		"           one line per partition: PARTITION LOW HIGH\n"
		"       offsets_probe dump BROKERS TOPIC\n"
		"           every message up to the high watermarks, one line each:\n"
		"           PARTITION OFFSET KEY DLQ_PARTITION DLQ_OFFSET DLQ_REASON\n"
		"           DLQ_ORIGINAL_SIZE ('-' if absent) VALUE_BYTES\n"
		"       offsets_probe produce BROKERS TOPIC < LINES\n"
		"           KEY<TAB>VALUE per line, murmur2 partitioning as the Java client,\n"
		"           idempotent, acks=all; exit 1 unless every message is persisted\n"
		"       offsets_probe monitor BROKERS GROUP TOPIC INTERVAL_MS\n"
		"           samples committed offsets until SIGTERM; prints\n"
		"           \"BACKWARDS PARTITION FROM TO\" whenever one moves back, and\n"
		"           \"samples N\" at the end\n");
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers, const char *group)
{
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr)) ||
	    (group && rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr))) ||
	    (type == RD_KAFKA_CONSUMER &&
	     (rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
	      rd_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, sizeof(errstr)))) ||
	    (type == RD_KAFKA_PRODUCER &&
	     (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) ||
	      rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof(errstr)) ||
	      rd_kafka_conf_set(conf, "message.timeout.ms", "30000", errstr, sizeof(errstr))))) {
		fprintf(stderr, "offsets_probe: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "offsets_probe: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
	}
	return rk;
}

/* Lists the topic's partitions, or NULL. */
static rd_kafka_topic_partition_list_t *partitions(rd_kafka_t *rk, const char *topic)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_resp_err_t err;

	err = rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS);
	rd_kafka_topic_destroy(rkt);
	if (err || md->topic_cnt != 1 || md->topics[0].err) {
		fprintf(stderr, "offsets_probe: metadata for %s: %s\n", topic,
			rd_kafka_err2str(err		 ? err
					 : md->topic_cnt ? md->topics[0].err
							 : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
		goto out;
	}
	parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
	for (int i = 0; i < md->topics[0].partition_cnt; i++)
		rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id);
	rd_kafka_topic_partition_list_sort(parts, NULL, NULL);
out:
	if (md)
		rd_kafka_metadata_destroy(md);
	return parts;
}

static int committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, TIMEOUT_MS);

	if (err) {
		fprintf(stderr, "offsets_probe: committed: %s\n", rd_kafka_err2str(err));
		return -1;
	}
	for (int i = 0; i < parts->cnt; i++) {
		if (parts->elems[i].err) {
			fprintf(stderr, "offsets_probe: committed [%" PRId32 "]: %s\n",
				parts->elems[i].partition, rd_kafka_err2str(parts->elems[i].err));
			return -1;
		}
	}
	return 0;
}

static int cmd_committed(const char *brokers, const char *group, const char *topic)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
	rd_kafka_topic_partition_list_t *parts;
	int rc = 1;

	if (!rk)
		return 1;
	parts = partitions(rk, topic);
	if (parts && !committed(rk, parts)) {
		for (int i = 0; i < parts->cnt; i++)
			printf("%" PRId32 " %" PRId64 "\n", parts->elems[i].partition,
			       parts->elems[i].offset < 0 ? (int64_t)-1 : parts->elems[i].offset);
		rc = 0;
	}
	if (parts)
		rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return rc;
}

static int watermarks(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *parts, int64_t *lo,
		      int64_t *hi)
{
	for (int i = 0; i < parts->cnt; i++) {
		rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
			rk, parts->elems[i].topic, parts->elems[i].partition, &lo[i], &hi[i],
			TIMEOUT_MS);
		if (err) {
			fprintf(stderr, "offsets_probe: watermarks [%" PRId32 "]: %s\n",
				parts->elems[i].partition, rd_kafka_err2str(err));
			return -1;
		}
	}
	return 0;
}

static int cmd_end(const char *brokers, const char *topic)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, NULL);
	rd_kafka_topic_partition_list_t *parts;
	int64_t *lo = NULL, *hi = NULL;
	int rc = 1;

	if (!rk)
		return 1;
	parts = partitions(rk, topic);
	if (parts) {
		lo = calloc((size_t)parts->cnt, sizeof(*lo));
		hi = calloc((size_t)parts->cnt, sizeof(*hi));
	}
	if (lo && hi && !watermarks(rk, parts, lo, hi)) {
		for (int i = 0; i < parts->cnt; i++)
			printf("%" PRId32 " %" PRId64 " %" PRId64 "\n", parts->elems[i].partition,
			       lo[i], hi[i]);
		rc = 0;
	}
	free(lo);
	free(hi);
	if (parts)
		rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return rc;
}

static void header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size)
{
	rd_kafka_headers_t *hdrs;
	const void *val;
	size_t len;

	snprintf(buf, size, "-");
	if (rd_kafka_message_headers(m, &hdrs) ||
	    rd_kafka_header_get_last(hdrs, name, &val, &len) || !val)
		return;
	if (len >= size)
		len = size - 1;
	memcpy(buf, val, len);
	buf[len] = '\0';
}

static int cmd_dump(const char *brokers, const char *topic)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, "payq-faults-dump");
	rd_kafka_topic_partition_list_t *parts;
	int64_t *lo = NULL, *hi = NULL, left = 0;
	time_t deadline = time(NULL) + 30;
	int rc = 1;

	if (!rk)
		return 1;
	parts = partitions(rk, topic);
	if (!parts)
		goto out;
	lo = calloc((size_t)parts->cnt, sizeof(*lo));
	hi = calloc((size_t)parts->cnt, sizeof(*hi));
	if (!lo || !hi || watermarks(rk, parts, lo, hi))
		goto out;
	for (int i = 0; i < parts->cnt; i++) {
		parts->elems[i].offset = lo[i];
		left += hi[i] - lo[i];
	}
	if (rd_kafka_assign(rk, parts))
		goto out;
	while (left > 0 && time(NULL) < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
		char part[32], off[32], reason[64], size[32];
		int i;

		if (!m)
			continue;
		if (m->err) {
			rd_kafka_message_destroy(m);
			continue;
		}
		for (i = 0; i < parts->cnt && parts->elems[i].partition != m->partition; i++)
			;
		if (i < parts->cnt && m->offset < hi[i]) {
			header(m, "payq-dlq-partition", part, sizeof(part));
			header(m, "payq-dlq-offset", off, sizeof(off));
			header(m, "payq-dlq-reason", reason, sizeof(reason));
			header(m, "payq-dlq-original-size", size, sizeof(size));
			printf("%" PRId32 " %" PRId64 " %.*s %s %s %s %s %zu\n", m->partition,
			       m->offset, m->key ? (int)m->key_len : 1,
			       m->key ? (const char *)m->key : "-", part, off, reason, size, m->len);
			left--;
		}
		rd_kafka_message_destroy(m);
	}
	if (left > 0)
		fprintf(stderr, "offsets_probe: dump: %" PRId64 " messages not read\n", left);
	else
		rc = 0;
	rd_kafka_assign(rk, NULL);
out:
	free(lo);
	free(hi);
	if (parts)
		rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return rc;
}

static int failed;

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err || rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_PERSISTED) {
		fprintf(stderr, "offsets_probe: delivery failed: %s\n", rd_kafka_err2str(m->err));
		failed++;
	}
}

static int cmd_produce(const char *brokers, const char *topic)
{
	char errstr[512], *line = NULL;
	size_t cap = 0;
	ssize_t len;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	int sent = 0;

	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr))) {
		fprintf(stderr, "offsets_probe: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "offsets_probe: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	while ((len = getline(&line, &cap, stdin)) > 0) {
		char *tab, *value;
		rd_kafka_resp_err_t err;

		if (line[len - 1] == '\n')
			line[--len] = '\0';
		tab = strchr(line, '\t');
		if (!tab) {
			fprintf(stderr, "offsets_probe: produce: no TAB in \"%s\"\n", line);
			failed++;
			continue;
		}
		*tab = '\0';
		value = tab + 1;
		do {
			err = rd_kafka_producev(
				rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(line, strlen(line)),
				RD_KAFKA_V_VALUE(value, strlen(value)),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
			if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
				rd_kafka_poll(rk, 100);
		} while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
		if (err) {
			fprintf(stderr, "offsets_probe: produce: %s\n", rd_kafka_err2str(err));
			failed++;
		} else {
			sent++;
		}
		rd_kafka_poll(rk, 0);
	}
	free(line);
	if (rd_kafka_flush(rk, 60000)) {
		fprintf(stderr, "offsets_probe: produce: flush timed out\n");
		failed++;
	}
	rd_kafka_destroy(rk);
	fprintf(stderr, "offsets_probe: produced %d, %d failed\n", sent, failed);
	return failed ? 1 : 0;
}

static int cmd_monitor(const char *brokers, const char *group, const char *topic,
		       const char *interval)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
	rd_kafka_topic_partition_list_t *parts;
	int64_t *last = NULL;
	long samples = 0, ms = strtol(interval, NULL, 10);
	struct sigaction sa;

	if (!rk)
		return 1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	parts = partitions(rk, topic);
	if (!parts) {
		rd_kafka_destroy(rk);
		return 1;
	}
	last = calloc((size_t)parts->cnt, sizeof(*last));
	for (int i = 0; last && i < parts->cnt; i++)
		last[i] = -1;
	while (run && last) {
		rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
		/* A failed sample (coordinator down) is simply skipped. */
		if (!rd_kafka_committed(rk, c, 2000)) {
			for (int i = 0; i < c->cnt; i++) {
				int64_t o = c->elems[i].err ? -1 : c->elems[i].offset;
				if (o < 0)
					continue;
				if (o < last[i])
					printf("BACKWARDS %" PRId32 " %" PRId64 " %" PRId64 "\n",
					       c->elems[i].partition, last[i], o);
				last[i] = o;
			}
			samples++;
			fflush(stdout);
		}
		rd_kafka_topic_partition_list_destroy(c);
		usleep((useconds_t)(ms > 0 ? ms : 200) * 1000);
	}
	printf("samples %ld\n", samples);
	free(last);
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "committed"))
		return cmd_committed(argv[2], argv[3], argv[4]);
	if (argc == 4 && !strcmp(argv[1], "end"))
		return cmd_end(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "dump"))
		return cmd_dump(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "produce"))
		return cmd_produce(argv[2], argv[3]);
	if (argc == 6 && !strcmp(argv[1], "monitor"))
		return cmd_monitor(argv[2], argv[3], argv[4], argv[5]);
	usage();
	return 2;
}
