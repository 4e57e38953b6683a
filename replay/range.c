/* range.c - resolves a topic slice to offsets per partition and reads it exactly once. */
#include "range.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cli.h"
#include "kafka.h"
#include "log.h"
#include "util.h"

#define RANGE_TIMEOUT_MS 15000

void payq_range_spec_init(payq_range_spec_t *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->from_offset = spec->from_time_ms = -1;
	spec->to_offset = spec->to_time_ms = -1;
}

void payq_range_spec_free(payq_range_spec_t *spec)
{
	free(spec->partitions);
	spec->partitions = NULL;
	spec->npartitions = 0;
}

rd_kafka_t *payq_range_client_new(const payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	/* A group.id that is no worker's, partition EOF, auto.offset.reset=error: see
	 * common/kafka_clients.c. */
	rd_kafka_conf_t *conf =
		payq_kafka_conf_new(cfg, PAYQ_KAFKA_REPLAY_READER, errstr, errstr_size);
	rd_kafka_t *rk;

	if (!conf)
		return NULL;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

int payq_range_offsets_for_time(rd_kafka_t *rk, const payq_range_t *r, int64_t ts_ms, int64_t *out,
				char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)r->cnt);
	rd_kafka_resp_err_t err;
	int ret = 0;

	for (size_t i = 0; i < r->cnt; i++)
		rd_kafka_topic_partition_list_add(l, r->topic, r->parts[i].partition)->offset =
			ts_ms;
	err = rd_kafka_offsets_for_times(rk, l, RANGE_TIMEOUT_MS);
	if (err) {
		ret = payq_err(errstr, errstr_size, "offsets for time on %s: %s", r->topic,
			       rd_kafka_err2str(err));
		goto out;
	}
	for (size_t i = 0; i < r->cnt; i++) {
		rd_kafka_topic_partition_t *e = &l->elems[i];
		if (e->err) {
			ret = payq_err(errstr, errstr_size,
				       "offsets for time on %s/%" PRId32 ": %s", r->topic,
				       e->partition, rd_kafka_err2str(e->err));
			goto out;
		}
		/* No message at or after the time: the end, as kafka-consumer-groups does. */
		out[i] = e->offset < 0 ? r->parts[i].high
				       : clamp(e->offset, r->parts[i].low, r->parts[i].high);
	}
out:
	rd_kafka_topic_partition_list_destroy(l);
	return ret;
}

int payq_range_resolve(rd_kafka_t *rk, const char *topic, const payq_range_spec_t *spec,
		       payq_range_t *r, char *errstr, size_t errstr_size)
{
	int64_t *from_t = NULL, *to_t = NULL;
	int cnt;

	memset(r, 0, sizeof(*r));
	cnt = payq_kafka_partition_count(rk, topic, RANGE_TIMEOUT_MS, errstr, errstr_size);
	if (cnt < 0)
		return -1;
	r->topic = strdup(topic);
	r->parts =
		calloc(spec->npartitions ? spec->npartitions : (size_t)cnt + 1, sizeof(*r->parts));
	if (!r->topic || !r->parts)
		goto oom;

	if (spec->npartitions) {
		qsort(spec->partitions, spec->npartitions, sizeof(int32_t), cmp_i32);
		for (size_t i = 0; i < spec->npartitions; i++) {
			if (spec->partitions[i] >= cnt) {
				payq_err(errstr, errstr_size,
					 "topic %s has no partition %" PRId32 " (it has %d)", topic,
					 spec->partitions[i], cnt);
				goto fail;
			}
			if (i && spec->partitions[i] == spec->partitions[i - 1])
				continue;
			r->parts[r->cnt++].partition = spec->partitions[i];
		}
	} else {
		for (int p = 0; p < cnt; p++)
			r->parts[r->cnt++].partition = p;
	}

	for (size_t i = 0; i < r->cnt; i++) {
		payq_range_part_t *p = &r->parts[i];
		rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
			rk, topic, p->partition, &p->low, &p->high, RANGE_TIMEOUT_MS);
		if (err) {
			payq_err(errstr, errstr_size, "watermarks of %s/%" PRId32 ": %s", topic,
				 p->partition, rd_kafka_err2str(err));
			goto fail;
		}
	}

	from_t = calloc(r->cnt + 1, sizeof(*from_t));
	to_t = calloc(r->cnt + 1, sizeof(*to_t));
	if (!from_t || !to_t)
		goto oom;
	if (spec->from_time_ms >= 0 &&
	    payq_range_offsets_for_time(rk, r, spec->from_time_ms, from_t, errstr, errstr_size))
		goto fail;
	if (spec->to_time_ms >= 0 &&
	    payq_range_offsets_for_time(rk, r, spec->to_time_ms, to_t, errstr, errstr_size))
		goto fail;

	for (size_t i = 0; i < r->cnt; i++) {
		payq_range_part_t *p = &r->parts[i];

		if (spec->from_offset >= 0) {
			if (spec->from_offset < p->low)
				log_warn("%s/%" PRId32 ": offsets below %" PRId64
					 " were deleted by "
					 "retention; starting there",
					 topic, p->partition, p->low);
			p->start = clamp(spec->from_offset, p->low, p->high);
		} else {
			p->start = spec->from_time_ms >= 0 ? from_t[i] : p->low;
		}
		if (spec->to_offset >= 0)
			p->end = clamp(spec->to_offset, p->low, p->high);
		else
			p->end = spec->to_time_ms >= 0 ? to_t[i] : p->high;
		if (p->end < p->start)
			p->end = p->start;
	}
	free(from_t);
	free(to_t);
	return 0;
oom:
	payq_err(errstr, errstr_size, "out of memory");
fail:
	free(from_t);
	free(to_t);
	payq_range_free(r);
	return -1;
}

int64_t payq_range_total(const payq_range_t *r)
{
	int64_t n = 0;

	for (size_t i = 0; i < r->cnt; i++)
		n += r->parts[i].end - r->parts[i].start;
	return n;
}

void payq_range_print(const payq_range_t *r, const char *prefix)
{
	for (size_t i = 0; i < r->cnt; i++) {
		const payq_range_part_t *p = &r->parts[i];
		if (p->end > p->start)
			printf("%s%s/%" PRId32 " [%" PRId64 ", %" PRId64 ") %" PRId64 " messages\n",
			       prefix, r->topic, p->partition, p->start, p->end, p->end - p->start);
	}
}

void payq_range_free(payq_range_t *r)
{
	free(r->topic);
	free(r->parts);
	memset(r, 0, sizeof(*r));
}

/* Marks a partition finished and pauses it, so no more of it is fetched. */
static void part_done(rd_kafka_t *rk, const payq_range_t *r, size_t i, bool *done,
		      size_t *remaining)
{
	rd_kafka_topic_partition_list_t *l;

	if (done[i])
		return;
	done[i] = true;
	(*remaining)--;
	l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, r->topic, r->parts[i].partition);
	rd_kafka_pause_partitions(rk, l);
	rd_kafka_topic_partition_list_destroy(l);
}

static ssize_t find_part(const payq_range_t *r, int32_t partition)
{
	size_t lo = 0, hi = r->cnt;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (r->parts[mid].partition == partition)
			return (ssize_t)mid;
		if (r->parts[mid].partition < partition)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int payq_range_read(rd_kafka_t *rk, const payq_range_t *r, payq_range_cb cb, void *opaque,
		    char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new((int)r->cnt);
	bool *done = calloc(r->cnt + 1, sizeof(*done));
	size_t remaining = 0;
	rd_kafka_resp_err_t err;
	int ret = -1;

	if (!done) {
		payq_err(errstr, errstr_size, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->cnt; i++) {
		if (r->parts[i].end <= r->parts[i].start) {
			done[i] = true;
			continue;
		}
		rd_kafka_topic_partition_list_add(assign, r->topic, r->parts[i].partition)->offset =
			r->parts[i].start;
		remaining++;
	}
	if (!remaining) {
		ret = 0;
		goto out;
	}
	err = rd_kafka_assign(rk, assign);
	if (err) {
		payq_err(errstr, errstr_size, "assign %s: %s", r->topic, rd_kafka_err2str(err));
		goto out;
	}

	while (remaining > 0) {
		rd_kafka_message_t *m;
		ssize_t i;

		if (!replay_run) {
			ret = 1;
			goto unassign;
		}
		m = rd_kafka_consumer_poll(rk, 200);
		if (!m)
			continue;
		i = m->rkt && !strcmp(rd_kafka_topic_name(m->rkt), r->topic)
			    ? find_part(r, m->partition)
			    : -1;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (i >= 0 && m->offset >= r->parts[i].end)
				part_done(rk, r, (size_t)i, done, &remaining);
		} else if (m->err) {
			if (m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE ||
			    m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
			    m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
			    m->err == RD_KAFKA_RESP_ERR__FATAL) {
				payq_err(errstr, errstr_size, "reading %s/%" PRId32 ": %s",
					 r->topic, m->partition, rd_kafka_message_errstr(m));
				rd_kafka_message_destroy(m);
				goto unassign;
			}
			log_warn("reading %s: %s", r->topic, rd_kafka_message_errstr(m));
		} else if (i >= 0 && !done[i]) {
			if (m->offset >= r->parts[i].end) {
				part_done(rk, r, (size_t)i, done, &remaining);
			} else if (m->offset >= r->parts[i].start) {
				if (cb(opaque, m)) {
					payq_err(errstr, errstr_size,
						 "stopped at %s/%" PRId32 "/%" PRId64, r->topic,
						 m->partition, m->offset);
					rd_kafka_message_destroy(m);
					goto unassign;
				}
				if (m->offset + 1 >= r->parts[i].end)
					part_done(rk, r, (size_t)i, done, &remaining);
			}
		}
		rd_kafka_message_destroy(m);
	}
	ret = 0;
unassign:
	/* A pause outlives the assignment; the next read of the same partitions must not
	 * start paused. */
	rd_kafka_resume_partitions(rk, assign);
	rd_kafka_assign(rk, NULL);
out:
	free(done);
	rd_kafka_topic_partition_list_destroy(assign);
	return ret;
}
