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
	spec->npartitions = spec->partitions_cap = 0;
}

rd_kafka_t *payq_range_client_new(const payq_config_t *cfg, char *errstr, size_t errstr_size)
{
	/* A group.id that is no worker's, partition EOF, auto.offset.reset=error: see
	 * common/kafka_clients.c. */
	rd_kafka_conf_t *conf =
		payq_kafka_conf_new(cfg, PAYQ_KAFKA_REPLAY_READER, errstr, errstr_size);

	return conf ? payq_kafka_consumer_new(conf, errstr, errstr_size) : NULL;
}

void payq_range_client_destroy(rd_kafka_t *rk)
{
	if (!rk)
		return;
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
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

/* Fills r->parts with the partitions spec selects of a topic with cnt partitions: every
 * one, or the listed ones, sorted and without repeats. Returns 0, or -1 with errstr. */
static int select_partitions(const payq_range_spec_t *spec, int cnt, payq_range_t *r, char *errstr,
			     size_t errstr_size)
{
	if (!spec->npartitions) {
		for (int p = 0; p < cnt; p++)
			r->parts[r->cnt++].partition = p;
		return 0;
	}
	qsort(spec->partitions, spec->npartitions, sizeof(int32_t), cmp_i32);
	for (size_t i = 0; i < spec->npartitions; i++) {
		if (spec->partitions[i] >= cnt)
			return payq_err(errstr, errstr_size,
					"topic %s has no partition %" PRId32 " (it has %d)",
					r->topic, spec->partitions[i], cnt);
		if (i && spec->partitions[i] == spec->partitions[i - 1])
			continue;
		r->parts[r->cnt++].partition = spec->partitions[i];
	}
	return 0;
}

static int read_watermarks(rd_kafka_t *rk, payq_range_t *r, char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < r->cnt; i++) {
		payq_range_part_t *p = &r->parts[i];
		rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
			rk, r->topic, p->partition, &p->low, &p->high, RANGE_TIMEOUT_MS);
		if (err)
			return payq_err(errstr, errstr_size, "watermarks of %s/%" PRId32 ": %s",
					r->topic, p->partition, rd_kafka_err2str(err));
	}
	return 0;
}

/* Sets [start, end) of each partition from spec; from_t and to_t are the offsets of the
 * spec's times, when it has them. */
static void set_bounds(payq_range_t *r, const payq_range_spec_t *spec, const int64_t *from_t,
		       const int64_t *to_t)
{
	for (size_t i = 0; i < r->cnt; i++) {
		payq_range_part_t *p = &r->parts[i];

		if (spec->from_offset >= 0) {
			if (spec->from_offset < p->low)
				log_warn("%s/%" PRId32 ": offsets below %" PRId64
					 " were deleted by "
					 "retention; starting there",
					 r->topic, p->partition, p->low);
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
	if (select_partitions(spec, cnt, r, errstr, errstr_size) ||
	    read_watermarks(rk, r, errstr, errstr_size))
		goto fail;
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
	set_bounds(r, spec, from_t, to_t);
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

/* A read in progress: which partitions are done, and how many are not. */
typedef struct range_read {
	rd_kafka_t *rk;
	const payq_range_t *r;
	bool *done;
	size_t remaining;
	payq_range_cb cb;
	void *opaque;
} range_read_t;

/* Marks partition i finished and pauses it, so no more of it is fetched. */
static void part_done(range_read_t *rr, size_t i)
{
	rd_kafka_topic_partition_list_t *l;

	if (rr->done[i])
		return;
	rr->done[i] = true;
	rr->remaining--;
	l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, rr->r->topic, rr->r->parts[i].partition);
	rd_kafka_pause_partitions(rr->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
}

/* Serves one polled message or event. Returns PAYQ_RANGE_DONE to go on. */
static payq_range_read_t on_polled(range_read_t *rr, const rd_kafka_message_t *m, char *errstr,
				   size_t errstr_size)
{
	const payq_range_t *r = rr->r;
	ssize_t i = m->rkt && !strcmp(rd_kafka_topic_name(m->rkt), r->topic)
			    ? find_part(r, m->partition)
			    : -1;

	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		if (i >= 0 && m->offset >= r->parts[i].end)
			part_done(rr, (size_t)i);
	} else if (m->err) {
		if (m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE ||
		    m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
		    m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
		    m->err == RD_KAFKA_RESP_ERR__FATAL) {
			payq_err(errstr, errstr_size, "reading %s/%" PRId32 ": %s", r->topic,
				 m->partition, rd_kafka_message_errstr(m));
			return PAYQ_RANGE_FAILED;
		}
		log_warn("reading %s: %s", r->topic, rd_kafka_message_errstr(m));
	} else if (i >= 0 && !rr->done[i]) {
		if (m->offset >= r->parts[i].end) {
			part_done(rr, (size_t)i);
		} else if (m->offset >= r->parts[i].start) {
			if (rr->cb(rr->opaque, m)) {
				payq_err(errstr, errstr_size, "stopped at %s/%" PRId32 "/%" PRId64,
					 r->topic, m->partition, m->offset);
				return PAYQ_RANGE_FAILED;
			}
			if (m->offset + 1 >= r->parts[i].end)
				part_done(rr, (size_t)i);
		}
	}
	return PAYQ_RANGE_DONE;
}

payq_range_read_t payq_range_read(rd_kafka_t *rk, const payq_range_t *r, payq_range_cb cb,
				  void *opaque, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new((int)r->cnt);
	range_read_t rr = {.rk = rk, .r = r, .cb = cb, .opaque = opaque};
	payq_range_read_t ret = PAYQ_RANGE_FAILED;
	rd_kafka_resp_err_t err;

	rr.done = calloc(r->cnt + 1, sizeof(*rr.done));
	if (!rr.done) {
		payq_err(errstr, errstr_size, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->cnt; i++) {
		if (r->parts[i].end <= r->parts[i].start) {
			rr.done[i] = true;
			continue;
		}
		rd_kafka_topic_partition_list_add(assign, r->topic, r->parts[i].partition)->offset =
			r->parts[i].start;
		rr.remaining++;
	}
	if (!rr.remaining) {
		ret = PAYQ_RANGE_DONE;
		goto out;
	}
	err = rd_kafka_assign(rk, assign);
	if (err) {
		payq_err(errstr, errstr_size, "assign %s: %s", r->topic, rd_kafka_err2str(err));
		goto out;
	}
	ret = PAYQ_RANGE_DONE;
	while (rr.remaining > 0 && ret == PAYQ_RANGE_DONE) {
		rd_kafka_message_t *m;

		if (!replay_run) {
			ret = PAYQ_RANGE_INTERRUPTED;
			break;
		}
		m = rd_kafka_consumer_poll(rk, 200);
		if (!m)
			continue;
		ret = on_polled(&rr, m, errstr, errstr_size);
		rd_kafka_message_destroy(m);
	}
	/* A pause outlives the assignment; the next read of the same partitions must not
	 * start paused. */
	rd_kafka_resume_partitions(rk, assign);
	rd_kafka_assign(rk, NULL);
out:
	free(rr.done);
	rd_kafka_topic_partition_list_destroy(assign);
	return ret;
}
