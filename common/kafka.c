/* kafka.c - librdkafka helpers shared by the programs. */
#include "kafka.h"

#include <string.h>

#include "util.h"

const char *payq_kafka_header(const rd_kafka_message_t *msg, const char *name, size_t *lenp)
{
	rd_kafka_headers_t *hdrs;
	const void *val;
	size_t len;

	if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return NULL;
	if (rd_kafka_header_get_last(hdrs, name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR || !val)
		return NULL;
	if (lenp)
		*lenp = len;
	return val;
}

int payq_kafka_header_str(const rd_kafka_message_t *msg, const char *name, char *buf, size_t size)
{
	size_t len;
	const char *v = payq_kafka_header(msg, name, &len);

	if (!v || size == 0)
		return -1;
	if (len >= size)
		len = size - 1;
	memcpy(buf, v, len);
	buf[len] = '\0';
	return 0;
}

int payq_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errstr,
			       size_t errstr_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t err;
	int cnt = -1;

	err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	rd_kafka_topic_destroy(rkt);
	if (err) {
		payq_err(errstr, errstr_size, "metadata for %s: %s", topic, rd_kafka_err2str(err));
		return -1;
	}
	if (md->topic_cnt == 1 && !md->topics[0].err)
		cnt = md->topics[0].partition_cnt;
	else
		payq_err(errstr, errstr_size, "topic %s: %s", topic,
			 rd_kafka_err2str(md->topic_cnt ? md->topics[0].err
							: RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
	rd_kafka_metadata_destroy(md);
	return cnt;
}

rd_kafka_t *payq_kafka_consumer_new(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);

	/* rd_kafka_new() owns conf only when it succeeds. */
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	return rk;
}
