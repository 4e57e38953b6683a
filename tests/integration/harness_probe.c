/* harness_probe.c - proves the harness runs a real Kafka and PostgreSQL by round-tripping data. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#define TIMEOUT_MS 30000

/* What the delivery report callback saw for the one probe message. */
struct delivery {
	bool done;
	rd_kafka_resp_err_t err;
	rd_kafka_msg_status_t status;
	int32_t partition;
	int64_t offset;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	struct delivery *d = msg->_private;

	d->done = true;
	d->err = msg->err;
	d->status = rd_kafka_message_status(msg);
	d->partition = msg->partition;
	d->offset = msg->offset;
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
		    size_t errstr_size)
{
	return rd_kafka_conf_set(conf, name, value, errstr, errstr_size) == RD_KAFKA_CONF_OK ? 0
											     : -1;
}

/* Fails fast on a missing topic: with auto-creation off, a produce would only time out. */
static int topic_exists(rd_kafka_t *rk, const char *topic, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;
	int rc = -1;

	if (!rkt) {
		snprintf(errstr, errstr_size, "topic %s: %s", topic,
			 rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	err = rd_kafka_metadata(rk, 0, rkt, &md, TIMEOUT_MS);
	if (err) {
		snprintf(errstr, errstr_size, "metadata: %s", rd_kafka_err2str(err));
		goto fail;
	}
	if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
		snprintf(errstr, errstr_size, "topic %s: %s", topic,
			 rd_kafka_err2str(md->topic_cnt == 1 ? md->topics[0].err
							     : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
		goto fail;
	}
	rc = 0;
fail:
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return rc;
}

/* Frees what a client function leaves (a conf not yet handed to rd_kafka_new, the
 * handle) and returns rc. */
static int client_done(int rc, rd_kafka_conf_t *conf, rd_kafka_t *rk)
{
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (rk)
		rd_kafka_destroy(rk);
	return rc;
}

/* Produces value with an idempotent producer and waits for a persisted delivery report.
 * Returns 0 and fills *d, or -1 with errstr. */
static int produce_one(const char *brokers, const char *topic, const char *value,
		       struct delivery *d, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk = NULL;
	rd_kafka_resp_err_t err;
	int rc = -1;

	if (conf_set(conf, "bootstrap.servers", brokers, errstr, errstr_size) ||
	    conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) ||
	    conf_set(conf, "message.timeout.ms", "30000", errstr, errstr_size))
		goto fail;
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
	if (!rk)
		goto fail;
	conf = NULL;
	if (topic_exists(rk, topic, errstr, errstr_size))
		goto fail;

	err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("harness-probe", 13),
				RD_KAFKA_V_VALUE((void *)value, strlen(value)),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(d),
				RD_KAFKA_V_END);
	if (err) {
		snprintf(errstr, errstr_size, "produce: %s", rd_kafka_err2str(err));
		goto fail;
	}
	err = rd_kafka_flush(rk, TIMEOUT_MS);
	if (err || !d->done) {
		snprintf(errstr, errstr_size, "no delivery report within %d ms: %s", TIMEOUT_MS,
			 rd_kafka_err2str(err));
		goto fail;
	}
	if (d->err || d->status != RD_KAFKA_MSG_STATUS_PERSISTED) {
		snprintf(errstr, errstr_size, "delivery failed: %s (status %d)",
			 rd_kafka_err2str(d->err), (int)d->status);
		goto fail;
	}
	rc = 0;
fail:
	return client_done(rc, conf, rk);
}

/* Reads the message at partition/offset with an assigned (not subscribed) consumer and
 * compares its value with want. Returns 0 on a byte-exact match, or -1 with errstr. */
static int consume_one(const char *brokers, const char *topic, int32_t partition, int64_t offset,
		       const char *want, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk = NULL;
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_resp_err_t err;
	struct timespec start, now;
	int rc = -1;

	if (conf_set(conf, "bootstrap.servers", brokers, errstr, errstr_size) ||
	    conf_set(conf, "group.id", "payq-harness-probe", errstr, errstr_size) ||
	    conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
	    conf_set(conf, "enable.partition.eof", "false", errstr, errstr_size))
		goto fail;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	if (!rk)
		goto fail;
	conf = NULL;

	parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = offset;
	err = rd_kafka_assign(rk, parts);
	if (err) {
		snprintf(errstr, errstr_size, "assign: %s", rd_kafka_err2str(err));
		goto fail;
	}

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, 500);

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!msg) {
			if ((now.tv_sec - start.tv_sec) * 1000 > TIMEOUT_MS) {
				snprintf(errstr, errstr_size,
					 "nothing consumed from %s [%" PRId32 "] @ %" PRId64
					 " within %d ms",
					 topic, partition, offset, TIMEOUT_MS);
				goto fail;
			}
			continue;
		}
		if (msg->err) {
			snprintf(errstr, errstr_size, "consume: %s", rd_kafka_message_errstr(msg));
			rd_kafka_message_destroy(msg);
			goto fail;
		}
		if (msg->offset != offset) {
			snprintf(errstr, errstr_size, "got offset %" PRId64 ", wanted %" PRId64,
				 msg->offset, offset);
			rd_kafka_message_destroy(msg);
			goto fail;
		}
		if (msg->len != strlen(want) || memcmp(msg->payload, want, msg->len) != 0) {
			snprintf(errstr, errstr_size, "value differs: got %zu bytes '%.*s'",
				 msg->len, (int)(msg->len > 200 ? 200 : msg->len),
				 (const char *)msg->payload);
			rd_kafka_message_destroy(msg);
			goto fail;
		}
		rd_kafka_message_destroy(msg);
		break;
	}
	rc = 0;
fail:
	if (parts)
		rd_kafka_topic_partition_list_destroy(parts);
	if (rk)
		rd_kafka_consumer_close(rk);
	return client_done(rc, conf, rk);
}

static int probe_kafka(const char *brokers, const char *topic)
{
	char value[128], errstr[512];
	struct delivery d = {0};
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(value, sizeof(value), "payq-harness-probe pid=%ld t=%lld.%09ld", (long)getpid(),
		 (long long)ts.tv_sec, ts.tv_nsec);

	if (produce_one(brokers, topic, value, &d, errstr, sizeof(errstr))) {
		fprintf(stderr, "harness_probe kafka: %s: %s\n", brokers, errstr);
		return 1;
	}
	printf("kafka: produced %zu bytes to %s [%" PRId32 "] @ %" PRId64 " (persisted)\n",
	       strlen(value), topic, d.partition, d.offset);
	if (consume_one(brokers, topic, d.partition, d.offset, value, errstr, sizeof(errstr))) {
		fprintf(stderr, "harness_probe kafka: %s: %s\n", brokers, errstr);
		return 1;
	}
	printf("kafka: consumed the same bytes back from %s [%" PRId32 "] @ %" PRId64 "\n", topic,
	       d.partition, d.offset);
	return 0;
}

/* Runs sql and returns the single value of its one row, copied into buf. */
static int pg_value(PGconn *conn, const char *sql, char *buf, size_t size, char *errstr,
		    size_t errstr_size)
{
	PGresult *res = PQexec(conn, sql);
	int rc = -1;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		snprintf(errstr, errstr_size, "%s: %s", sql, PQerrorMessage(conn));
		goto fail;
	}
	snprintf(buf, size, "%s", PQgetvalue(res, 0, 0));
	rc = 0;
fail:
	PQclear(res);
	return rc;
}

static int pg_command(PGconn *conn, const char *sql, char *errstr, size_t errstr_size)
{
	PGresult *res = PQexec(conn, sql);
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -1;

	if (rc)
		snprintf(errstr, errstr_size, "%s: %s", sql, PQerrorMessage(conn));
	PQclear(res);
	return rc;
}

static int probe_pg(const char *conninfo)
{
	PGconn *conn = PQconnectdb(conninfo);
	PGresult *res = NULL;
	char value[128], got[128], errstr[1024];
	const char *params[1] = {value};
	long version;
	int rc = 1;

	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(errstr, sizeof(errstr), "connect: %s", PQerrorMessage(conn));
		goto fail;
	}
	if (pg_value(conn, "SHOW server_version_num", got, sizeof(got), errstr, sizeof(errstr)))
		goto fail;
	version = strtol(got, NULL, 10);
	if (version < 150000 || version >= 160000) {
		snprintf(errstr, sizeof(errstr), "server_version_num is %s, want 15xxxx", got);
		goto fail;
	}
	printf("pg: server_version_num %ld\n", version);
	if (pg_value(conn, "SHOW synchronous_commit", got, sizeof(got), errstr, sizeof(errstr)))
		goto fail;
	if (strcmp(got, "on") != 0) {
		snprintf(errstr, sizeof(errstr), "synchronous_commit is '%s', want 'on'", got);
		goto fail;
	}
	printf("pg: synchronous_commit on\n");

	if (pg_command(conn,
		       "CREATE TEMP TABLE harness_probe (id int PRIMARY KEY, v text NOT NULL)",
		       errstr, sizeof(errstr)))
		goto fail;
	snprintf(value, sizeof(value), "payq-harness-probe pid=%ld", (long)getpid());
	res = PQexecParams(conn, "INSERT INTO harness_probe VALUES (1, $1)", 1, NULL, params, NULL,
			   NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(res), "1") != 0) {
		snprintf(errstr, sizeof(errstr), "insert: %s", PQerrorMessage(conn));
		goto fail;
	}
	if (pg_value(conn, "SELECT v FROM harness_probe WHERE id = 1", got, sizeof(got), errstr,
		     sizeof(errstr)))
		goto fail;
	if (strcmp(got, value) != 0) {
		snprintf(errstr, sizeof(errstr), "read back '%s', wrote '%s'", got, value);
		goto fail;
	}
	printf("pg: temp table row written and read back\n");
	rc = 0;
fail:
	if (rc)
		fprintf(stderr, "harness_probe pg: %s", errstr);
	if (rc && errstr[0] && errstr[strlen(errstr) - 1] != '\n')
		fputc('\n', stderr);
	PQclear(res);
	PQfinish(conn);
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: harness_probe kafka BROKERS TOPIC\n"
			"       harness_probe pg CONNINFO\n");
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "kafka") == 0)
		return probe_kafka(argv[2], argv[3]);
	if (argc == 3 && strcmp(argv[1], "pg") == 0)
		return probe_pg(argv[2]);
	usage();
	return 2;
}
