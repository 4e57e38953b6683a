/* replay_probe.c - produces one record with a chosen partition, timestamp and headers, for
 * the payq-replay tests (kcat cannot set a record's CreateTime).
 *
 *   replay_probe produce BROKERS TOPIC PARTITION TIMESTAMP_MS KEY VALUE [NAME=VALUE...]
 *       one record; TIMESTAMP_MS 0 lets the client stamp it. Prints "PARTITION OFFSET"
 *       of the PERSISTED record.
 *
 * Exit status 0, or 1 with a message on stderr.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

static rd_kafka_resp_err_t dr_err = RD_KAFKA_RESP_ERR__IN_PROGRESS;
static int32_t dr_partition = -1;
static int64_t dr_offset = -1;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	dr_err = m->err ? m->err
		 : rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_PERSISTED
			 ? RD_KAFKA_RESP_ERR_NO_ERROR
			 : RD_KAFKA_RESP_ERR__MSG_TIMED_OUT;
	dr_partition = m->partition;
	dr_offset = m->offset;
}

static int fail(const char *what, const char *detail)
{
	fprintf(stderr, "replay_probe: %s: %s\n", what, detail);
	return 1;
}

static int produce(int argc, char **argv)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(argc > 8 ? (size_t)(argc - 8) : 1);
	char errstr[512];
	rd_kafka_t *rk;
	rd_kafka_resp_err_t err;
	long partition = strtol(argv[4], NULL, 10);
	long long ts = strtoll(argv[5], NULL, 10);

	for (int i = 8; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		if (!eq)
			return fail("header without '='", argv[i]);
		rd_kafka_header_add(hdrs, argv[i], eq - argv[i], eq + 1, -1);
	}
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[2], errstr, sizeof(errstr)) ||
	    rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)))
		return fail("configuration", errstr);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk)
		return fail("producer", errstr);
	err = rd_kafka_producev(
		rk, RD_KAFKA_V_TOPIC(argv[3]), RD_KAFKA_V_PARTITION((int32_t)partition),
		RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_KEY(argv[6], strlen(argv[6])),
		RD_KAFKA_V_VALUE(argv[7], strlen(argv[7])),
		RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
	if (err) {
		rd_kafka_headers_destroy(hdrs);
		rd_kafka_destroy(rk);
		return fail("produce", rd_kafka_err2str(err));
	}
	rd_kafka_flush(rk, 30000);
	rd_kafka_destroy(rk);
	if (dr_err)
		return fail("delivery", rd_kafka_err2str(dr_err));
	printf("%" PRId32 " %" PRId64 "\n", dr_partition, dr_offset);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 8 && !strcmp(argv[1], "produce"))
		return produce(argc, argv);
	fprintf(stderr, "usage: replay_probe produce BROKERS TOPIC PARTITION TIMESTAMP_MS KEY "
			"VALUE [NAME=VALUE...]\n");
	return 1;
}
