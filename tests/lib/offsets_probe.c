/* offsets_probe.c - Kafka state for every test suite (integration, faults, chaos,
 * security): topics, committed offsets, watermarks, group membership, dumps of a topic, raw
 * produce, and monitors of the committed offsets.
 *
 *   offsets_probe create-topics BROKERS PARTITIONS TOPIC...
 *       PAYQ_PROBE_TOPIC_CONFIG=NAME=VALUE sets one topic config on each, for example
 *       max.message.bytes=2000
 *   offsets_probe delete-topics BROKERS TOPIC...
 *   offsets_probe offsets BROKERS GROUP TOPIC
 *       one line per partition: "PARTITION COMMITTED LOW HIGH" (COMMITTED -1: none)
 *   offsets_probe committed BROKERS GROUP TOPIC
 *       one line per partition: "PARTITION COMMITTED" (-1: none)
 *   offsets_probe end BROKERS TOPIC
 *       one line per partition: "PARTITION LOW HIGH"
 *   offsets_probe watch BROKERS GROUP TOPIC INTERVAL_MS STOPFILE
 *       samples the committed offsets until STOPFILE exists (no time limit; a failed
 *       sample is skipped with a note on stderr):
 *       "MS PARTITION COMMITTED" per sample and partition that has a committed offset
 *   offsets_probe monitor BROKERS GROUP TOPIC INTERVAL_MS
 *       samples committed offsets until SIGTERM; prints "BACKWARDS PARTITION FROM TO"
 *       whenever one moves back, and "samples N" at the end
 *   offsets_probe group BROKERS GROUP
 *       "STATE MEMBERS" ("Dead 0" when the group is unknown)
 *   offsets_probe dump BROKERS TOPIC
 *       every message from the low to the high watermark, one JSON object a line:
 *       {"partition":P,"offset":O,"timestamp":T,"key":HEX|null,"value":HEX|null,
 *        "headers":[[NAME,HEX|null],...]}
 *   offsets_probe dump-text BROKERS TOPIC
 *       the same messages as text, one line each: "PARTITION OFFSET KEY DLQ_PARTITION
 *       DLQ_OFFSET DLQ_REASON DLQ_ORIGINAL_SIZE VALUE_BYTES" ('-' for an absent header)
 *   offsets_probe produce BROKERS TOPIC [PARTITION] < LINES
 *       KEY<TAB>VALUE per line, murmur2 partitioning as the Java client (or every line to
 *       PARTITION), idempotent, acks=all; exit 1 unless every message is persisted
 *   offsets_probe commit BROKERS GROUP TOPIC PARTITION:OFFSET...
 *       commits these offsets for a group that has no members (an offset reset)
 *
 * Reading committed offsets never joins the group: the consumer handle only asks the
 * group coordinator (OffsetFetch). Exit status 0, or 1 with a message on stderr.
 * PAYQ_PROBE_KAFKA_CONFIG names a librdkafka key=value file (the secure broker's
 * client-admin.conf) applied to every client: '#' comments and blank lines are skipped.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define TIMEOUT_MS 15000
/* committed, end, dump-text: the fault scenarios poll these while they break the broker,
 * and their deadlines are timed for this shorter wait. */
#define FAULTS_TIMEOUT_MS 10000

/* librdkafka's own log on stderr: errors, or nothing for the fault scenarios' commands
 * (they break the broker on purpose, and some capture stderr). */
static const char *log_level = "3";

static void die(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "offsets_probe: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	exit(1);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Applies the key=value lines of the file PAYQ_PROBE_KAFKA_CONFIG names, if set. */
static void apply_config_file(rd_kafka_conf_t *conf)
{
	const char *path = getenv("PAYQ_PROBE_KAFKA_CONFIG");
	char line[4096], errstr[512];
	FILE *fp;

	if (!path || !*path)
		return;
	fp = fopen(path, "r");
	if (!fp)
		die("cannot open %s%s", path, "");
	while (fgets(line, sizeof(line), fp)) {
		char *eq;

		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		eq = strchr(line, '=');
		if (!eq)
			die("%s: a line is not key=value%s", path, "");
		*eq = '\0';
		if (rd_kafka_conf_set(conf, line, eq + 1, errstr, sizeof(errstr)))
			die("%s: %s", path, errstr);
	}
	fclose(fp);
}

/* The settings every client has: the brokers, a client.id, the log level and the
 * PAYQ_PROBE_KAFKA_CONFIG file. */
static rd_kafka_conf_t *base_conf(const char *brokers)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char errstr[512];

	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "client.id", "payq-offsets-probe", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "log_level", log_level, errstr, sizeof(errstr)))
		die("%s%s", errstr, "");
	apply_config_file(conf);
	return conf;
}

static rd_kafka_t *client_new(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
	char errstr[512];
	rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));

	if (!rk)
		die("%s%s", errstr, "");
	return rk;
}

/* A consumer that never commits by itself, or a producer handle for the admin API. */
static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers, const char *group)
{
	rd_kafka_conf_t *conf = base_conf(brokers);
	char errstr[512];

	if (type == RD_KAFKA_CONSUMER &&
	    (rd_kafka_conf_set(conf, "group.id", group ? group : "payq-offsets-probe", errstr,
			       sizeof(errstr)) ||
	     rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) ||
	     rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr)) ||
	     rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr))))
		die("%s%s", errstr, "");
	return client_new(type, conf);
}

/* Partition count of topic, or -1 when it does not exist. */
static int partition_count(rd_kafka_t *rk, const char *topic, int *with_leader)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS);
	int cnt = -1;

	rd_kafka_topic_destroy(rkt);
	if (err)
		die("metadata for %s: %s", topic, rd_kafka_err2str(err));
	*with_leader = 0;
	if (md->topic_cnt == 1 && !md->topics[0].err) {
		cnt = md->topics[0].partition_cnt;
		for (int i = 0; i < cnt; i++)
			*with_leader += md->topics[0].partitions[i].leader >= 0 &&
					!md->topics[0].partitions[i].err;
	}
	rd_kafka_metadata_destroy(md);
	return cnt;
}

static void admin_wait(rd_kafka_t *rk, rd_kafka_queue_t *q, bool create)
{
	rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 5000);
	const rd_kafka_topic_result_t **res;
	size_t n;

	(void)rk;
	if (!ev)
		die("no admin result within %s ms%s", "20000", "");
	if (rd_kafka_event_error(ev))
		die("admin request: %s%s", rd_kafka_event_error_string(ev), "");
	res = create ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev),
							   &n)
		     : rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev),
							   &n);
	for (size_t i = 0; i < n; i++) {
		rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
		if (e && !(create && e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) &&
		    !(!create && e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART))
			die("topic %s: %s", rd_kafka_topic_result_name(res[i]),
			    rd_kafka_topic_result_error_string(res[i])
				    ? rd_kafka_topic_result_error_string(res[i])
				    : rd_kafka_err2str(e));
	}
	rd_kafka_event_destroy(ev);
}

static int cmd_topics(const char *brokers, int partitions, char **topics, int ntopics, bool create)
{
	rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	char errstr[512];
	int64_t deadline;

	if (create) {
		rd_kafka_NewTopic_t **nt = calloc((size_t)ntopics, sizeof(*nt));
		for (int i = 0; i < ntopics; i++) {
			const char *tc = getenv("PAYQ_PROBE_TOPIC_CONFIG");
			char name[128];
			/* -1: the broker's default.replication.factor (1 on the single test
			 * broker, 3 on a deploy/local/kafka --brokers 3 cluster). */
			nt[i] = rd_kafka_NewTopic_new(topics[i], partitions, -1, errstr,
						      sizeof(errstr));
			if (!nt[i])
				die("topic %s: %s", topics[i], errstr);
			if (tc && strchr(tc, '=')) {
				snprintf(name, sizeof(name), "%.*s", (int)(strchr(tc, '=') - tc),
					 tc);
				if (rd_kafka_NewTopic_set_config(nt[i], name, strchr(tc, '=') + 1))
					die("topic %s: bad config %s", topics[i], tc);
			}
		}
		rd_kafka_CreateTopics(rk, nt, (size_t)ntopics, NULL, q);
		admin_wait(rk, q, true);
		rd_kafka_NewTopic_destroy_array(nt, (size_t)ntopics);
		free(nt);
	} else {
		rd_kafka_DeleteTopic_t **dt = calloc((size_t)ntopics, sizeof(*dt));
		for (int i = 0; i < ntopics; i++)
			dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
		rd_kafka_DeleteTopics(rk, dt, (size_t)ntopics, NULL, q);
		admin_wait(rk, q, false);
		rd_kafka_DeleteTopic_destroy_array(dt, (size_t)ntopics);
		free(dt);
	}
	/* Wait until metadata agrees, so the next client sees every partition led. */
	deadline = now_ms() + 30000;
	for (int i = 0; i < ntopics; i++) {
		for (;;) {
			int led, cnt = partition_count(rk, topics[i], &led);
			if (create ? cnt == partitions && led == partitions : cnt < 0)
				break;
			if (now_ms() > deadline)
				die("topic %s: metadata did not settle within 30 s%s", topics[i],
				    "");
			usleep(100 * 1000);
		}
	}
	rd_kafka_queue_destroy(q);
	rd_kafka_destroy(rk);
	return 0;
}

static rd_kafka_topic_partition_list_t *all_partitions(rd_kafka_t *rk, const char *topic)
{
	int led, cnt = partition_count(rk, topic, &led);
	rd_kafka_topic_partition_list_t *parts;

	if (cnt < 0)
		die("topic %s does not exist%s", topic, "");
	parts = rd_kafka_topic_partition_list_new(cnt);
	for (int p = 0; p < cnt; p++)
		rd_kafka_topic_partition_list_add(parts, topic, p);
	return parts;
}

/* Fetches committed offsets; returns an error instead of exiting (watch skips a failed
 * sample). */
static rd_kafka_resp_err_t try_committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
					 int timeout_ms)
{
	rd_kafka_resp_err_t err;

	for (int i = 0; i < parts->cnt; i++)
		parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
	err = rd_kafka_committed(rk, parts, timeout_ms);
	if (err)
		return err;
	for (int i = 0; i < parts->cnt; i++)
		if (parts->elems[i].err)
			return parts->elems[i].err;
	return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static void committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_resp_err_t err = try_committed(rk, parts, TIMEOUT_MS);

	if (err)
		die("committed offsets: %s%s", rd_kafka_err2str(err), "");
}

static int cmd_offsets(const char *brokers, const char *group, const char *topic)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
	rd_kafka_topic_partition_list_t *parts = all_partitions(rk, topic);

	committed(rk, parts);
	for (int i = 0; i < parts->cnt; i++) {
		int64_t lo, hi, c = parts->elems[i].offset;
		rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
			rk, topic, parts->elems[i].partition, &lo, &hi, TIMEOUT_MS);
		if (err)
			die("watermarks: %s%s", rd_kafka_err2str(err), "");
		printf("%" PRId32 " %" PRId64 " %" PRId64 " %" PRId64 "\n",
		       parts->elems[i].partition, c < 0 ? -1 : c, lo, hi);
	}
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return 0;
}

static int cmd_watch(const char *brokers, const char *group, const char *topic, int interval_ms,
		     const char *stopfile)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
	rd_kafka_topic_partition_list_t *parts = all_partitions(rk, topic);
	int64_t t0 = now_ms();

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* No time limit: the soak stops it (STOPFILE, or a signal). A failed sample, as
	 * during a broker restart, is skipped and reported on stderr. */
	while (access(stopfile, F_OK) != 0) {
		rd_kafka_resp_err_t err = try_committed(rk, parts, TIMEOUT_MS);
		if (err) {
			fprintf(stderr, "offsets_probe: watch: %s (sample skipped)\n",
				rd_kafka_err2str(err));
			usleep((useconds_t)interval_ms * 1000);
			continue;
		}
		for (int i = 0; i < parts->cnt; i++)
			if (parts->elems[i].offset >= 0)
				printf("%" PRId64 " %" PRId32 " %" PRId64 "\n", now_ms() - t0,
				       parts->elems[i].partition, parts->elems[i].offset);
		usleep((useconds_t)interval_ms * 1000);
	}
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return 0;
}

static int cmd_group(const char *brokers, const char *group)
{
	rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
	const struct rd_kafka_group_list *gl = NULL;
	rd_kafka_resp_err_t err = rd_kafka_list_groups(rk, group, &gl, TIMEOUT_MS);

	if (err)
		die("list groups: %s%s", rd_kafka_err2str(err), "");
	if (gl->group_cnt == 0 || gl->groups[0].err == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND)
		printf("Dead 0\n");
	else if (gl->groups[0].err)
		die("group %s: %s", group, rd_kafka_err2str(gl->groups[0].err));
	else
		printf("%s %d\n", gl->groups[0].state, gl->groups[0].member_cnt);
	rd_kafka_group_list_destroy(gl);
	rd_kafka_destroy(rk);
	return 0;
}

static void print_hex(const void *p, size_t len)
{
	const unsigned char *s = p;

	if (!p) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (size_t i = 0; i < len; i++)
		printf("%02x", s[i]);
	putchar('"');
}

static int cmd_dump(const char *brokers, const char *topic)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, NULL);
	rd_kafka_topic_partition_list_t *parts = all_partitions(rk, topic);
	int remaining = 0;
	int64_t deadline = now_ms() + 30000;
	int64_t *hi = calloc((size_t)parts->cnt, sizeof(*hi));

	for (int i = 0; i < parts->cnt; i++) {
		int64_t lo;
		if (rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi[i], TIMEOUT_MS))
			die("watermarks of %s%s", topic, "");
		parts->elems[i].offset = lo;
		remaining += hi[i] > lo;
		if (hi[i] <= lo)
			hi[i] = -1; /* empty: nothing to wait for */
	}
	if (rd_kafka_assign(rk, parts))
		die("assign %s%s", topic, "");
	while (remaining > 0) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
		rd_kafka_headers_t *h = NULL;
		rd_kafka_timestamp_type_t tst;

		if (now_ms() > deadline)
			die("dump of %s did not reach the high watermarks in 30 s%s", topic, "");
		if (!m)
			continue;
		if (m->err) {
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				die("consume: %s%s", rd_kafka_message_errstr(m), "");
			rd_kafka_message_destroy(m);
			continue;
		}
		printf("{\"partition\":%" PRId32 ",\"offset\":%" PRId64 ",\"timestamp\":%" PRId64
		       ",\"key\":",
		       m->partition, m->offset, rd_kafka_message_timestamp(m, &tst));
		print_hex(m->key, m->key_len);
		fputs(",\"value\":", stdout);
		print_hex(m->payload, m->len);
		fputs(",\"headers\":[", stdout);
		if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h) {
			const char *name;
			const void *val;
			size_t len;
			for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &val, &len); i++) {
				fputs(i ? ",[" : "[", stdout);
				print_hex(name, strlen(name));
				putchar(',');
				print_hex(val, len);
				putchar(']');
			}
		}
		puts("]}");
		if (m->offset + 1 >= hi[m->partition]) {
			hi[m->partition] = INT64_MAX;
			remaining--;
		}
		rd_kafka_message_destroy(m);
	}
	free(hi);
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return 0;
}

static int cmd_commit(const char *brokers, const char *group, const char *topic, char **specs,
		      int n)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
	rd_kafka_resp_err_t err;

	for (int i = 0; i < n; i++) {
		int32_t p;
		int64_t off;
		if (sscanf(specs[i], "%" SCNd32 ":%" SCNd64, &p, &off) != 2)
			die("bad PARTITION:OFFSET \"%s\"%s", specs[i], "");
		rd_kafka_topic_partition_list_add(parts, topic, p)->offset = off;
	}
	err = rd_kafka_commit(rk, parts, 0);
	if (err)
		die("commit: %s%s", rd_kafka_err2str(err), "");
	for (int i = 0; i < parts->cnt; i++)
		if (parts->elems[i].err)
			die("commit: %s%s", rd_kafka_err2str(parts->elems[i].err), "");
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return 0;
}

/* ---- the fault scenarios' commands ---- */

static volatile sig_atomic_t run = 1;

/* SIGTERM and SIGINT end the monitor, which then prints its sample count. */
static void stop(int sig)
{
	(void)sig;
	run = 0;
}

/* committed: as offsets without the watermarks. */
static int cmd_committed(const char *brokers, const char *group, const char *topic)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
	rd_kafka_topic_partition_list_t *parts = all_partitions(rk, topic);
	rd_kafka_resp_err_t err = try_committed(rk, parts, FAULTS_TIMEOUT_MS);

	if (err)
		die("committed: %s%s", rd_kafka_err2str(err), "");
	for (int i = 0; i < parts->cnt; i++)
		printf("%" PRId32 " %" PRId64 "\n", parts->elems[i].partition,
		       parts->elems[i].offset < 0 ? (int64_t)-1 : parts->elems[i].offset);
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return 0;
}

/* Reads the watermarks of every partition into lo and hi (indexed as parts). */
static void watermarks(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *parts, int64_t *lo,
		       int64_t *hi)
{
	for (int i = 0; i < parts->cnt; i++) {
		rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
			rk, parts->elems[i].topic, parts->elems[i].partition, &lo[i], &hi[i],
			FAULTS_TIMEOUT_MS);
		if (err)
			die("watermarks: %s%s", rd_kafka_err2str(err), "");
	}
}

static int cmd_end(const char *brokers, const char *topic)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, NULL);
	rd_kafka_topic_partition_list_t *parts = all_partitions(rk, topic);
	int64_t *lo = calloc((size_t)parts->cnt, sizeof(*lo));
	int64_t *hi = calloc((size_t)parts->cnt, sizeof(*hi));

	if (!lo || !hi)
		die("out of memory%s%s", "", "");
	watermarks(rk, parts, lo, hi);
	for (int i = 0; i < parts->cnt; i++)
		printf("%" PRId32 " %" PRId64 " %" PRId64 "\n", parts->elems[i].partition, lo[i],
		       hi[i]);
	free(lo);
	free(hi);
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_destroy(rk);
	return 0;
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

static int cmd_dump_text(const char *brokers, const char *topic)
{
	rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, "payq-faults-dump");
	rd_kafka_topic_partition_list_t *parts = all_partitions(rk, topic);
	int64_t *lo = NULL, *hi = NULL, left = 0;
	time_t deadline = time(NULL) + 30;
	int rc = 1;

	lo = calloc((size_t)parts->cnt, sizeof(*lo));
	hi = calloc((size_t)parts->cnt, sizeof(*hi));
	if (!lo || !hi)
		goto out;
	watermarks(rk, parts, lo, hi);
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
			       m->key ? (const char *)m->key : "-", part, off, reason, size,
			       m->len);
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

/* A partition number argument: 0 or more, digits only. */
static int32_t partition_arg(const char *arg)
{
	char *end;
	long v = strtol(arg, &end, 10);

	if (!*arg || *end || v < 0 || v > INT32_MAX)
		die("not a partition number: %s%s", arg, "");
	return (int32_t)v;
}

static int cmd_produce(const char *brokers, const char *topic, int32_t partition)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	rd_kafka_conf_t *conf = base_conf(brokers);
	char errstr[512];
	rd_kafka_t *rk;
	int sent = 0;

	if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, sizeof(errstr)))
		die("%s%s", errstr, "");
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rk = client_new(RD_KAFKA_PRODUCER, conf);
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
				rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
				RD_KAFKA_V_KEY(line, strlen(line)),
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

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	parts = all_partitions(rk, topic);
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

static void usage(void)
{
	fprintf(stderr, "usage: offsets_probe create-topics BROKERS PARTITIONS TOPIC...\n"
			"       offsets_probe delete-topics BROKERS TOPIC...\n"
			"       offsets_probe offsets BROKERS GROUP TOPIC\n"
			"       offsets_probe committed BROKERS GROUP TOPIC\n"
			"       offsets_probe end BROKERS TOPIC\n"
			"       offsets_probe watch BROKERS GROUP TOPIC INTERVAL_MS STOPFILE\n"
			"       offsets_probe monitor BROKERS GROUP TOPIC INTERVAL_MS\n"
			"       offsets_probe group BROKERS GROUP\n"
			"       offsets_probe dump BROKERS TOPIC\n"
			"       offsets_probe dump-text BROKERS TOPIC\n"
			"       offsets_probe produce BROKERS TOPIC [PARTITION] < LINES\n"
			"       offsets_probe commit BROKERS GROUP TOPIC PARTITION:OFFSET...\n"
			"(the header of tests/lib/offsets_probe.c says what each prints)\n");
	exit(2);
}

/* The commands the fault scenarios use while they break the broker: librdkafka quiet. */
static int faults_command(int argc, char **argv)
{
	log_level = "0";
	if (argc == 5 && !strcmp(argv[1], "committed"))
		return cmd_committed(argv[2], argv[3], argv[4]);
	if (argc == 4 && !strcmp(argv[1], "end"))
		return cmd_end(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "dump-text"))
		return cmd_dump_text(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "produce"))
		return cmd_produce(argv[2], argv[3], RD_KAFKA_PARTITION_UA);
	if (argc == 5 && !strcmp(argv[1], "produce"))
		return cmd_produce(argv[2], argv[3], partition_arg(argv[4]));
	if (argc == 6 && !strcmp(argv[1], "monitor"))
		return cmd_monitor(argv[2], argv[3], argv[4], argv[5]);
	usage();
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	if (!strcmp(argv[1], "create-topics") && argc >= 5)
		return cmd_topics(argv[2], atoi(argv[3]), argv + 4, argc - 4, true);
	if (!strcmp(argv[1], "delete-topics") && argc >= 4)
		return cmd_topics(argv[2], 0, argv + 3, argc - 3, false);
	if (!strcmp(argv[1], "offsets") && argc == 5)
		return cmd_offsets(argv[2], argv[3], argv[4]);
	if (!strcmp(argv[1], "watch") && argc == 7)
		return cmd_watch(argv[2], argv[3], argv[4], atoi(argv[5]), argv[6]);
	if (!strcmp(argv[1], "group") && argc == 4)
		return cmd_group(argv[2], argv[3]);
	if (!strcmp(argv[1], "dump") && argc == 4)
		return cmd_dump(argv[2], argv[3]);
	if (!strcmp(argv[1], "commit") && argc >= 6)
		return cmd_commit(argv[2], argv[3], argv[4], argv + 5, argc - 5);
	return faults_command(argc, argv);
}
