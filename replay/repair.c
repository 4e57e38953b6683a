/* repair.c - payq-replay audit's gaps as offset ranges, and their repair by republishing. */
#include "repair.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "copy.h"
#include "horizon.h"
#include "sink.h"
#include "util.h"

int replay_gaps_add(replay_gaps_t *g, const char *topic, int32_t partition, int64_t start,
		    int64_t end)
{
	/* Topic names are [a-zA-Z0-9._-]: the line can be pasted into a shell as it is. */
	printf("  repair: payq-replay republish --from-topic %s --partition %" PRId32
	       " --from-offset %" PRId64 " --to-offset %" PRId64 "\n",
	       topic, partition, start, end);
	if (g->n == g->cap &&
	    payq_grow((void **)&g->v, &g->cap, g->cap ? g->cap * 2 : 64, sizeof(*g->v)))
		return -1;
	g->v[g->n++] = (replay_gap_t){partition, start, end};
	return 0;
}

void replay_gaps_free(replay_gaps_t *g)
{
	free(g->v);
	memset(g, 0, sizeof(*g));
}

static int cmp_gap(const void *a, const void *b)
{
	const replay_gap_t *x = a, *y = b;

	if (x->partition != y->partition)
		return (x->partition > y->partition) - (x->partition < y->partition);
	return (x->start > y->start) - (x->start < y->start);
}

typedef struct repair {
	const replay_gaps_t *gaps;
	const char *topic;
	replay_copy_t copy;
} repair_t;

/* True when (partition, offset) lies in a gap; the gaps are sorted and do not overlap. */
static bool in_gap(const replay_gaps_t *g, int32_t partition, int64_t offset)
{
	size_t lo = 0, hi = g->n;

	/* The last gap that starts at or before (partition, offset). */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const replay_gap_t *x = &g->v[mid];
		if (x->partition < partition || (x->partition == partition && x->start <= offset))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && g->v[lo - 1].partition == partition && offset < g->v[lo - 1].end;
}

static int on_record(void *opaque, const rd_kafka_message_t *m)
{
	repair_t *r = opaque;

	if (!in_gap(r->gaps, m->partition, m->offset))
		return 0;
	if (replay_copy_one(&r->copy, r->topic, m, NULL))
		return -1;
	payq_sink_poll(r->copy.sink);
	return 0;
}

/* Per partition of range, the span [first gap start, last gap end), clamped to the
 * watermarks; partitions without gaps are left empty. */
static int gap_spans(const replay_gaps_t *g, const payq_range_t *range, payq_range_t *spans)
{
	memset(spans, 0, sizeof(*spans));
	spans->topic = strdup(range->topic);
	spans->parts = calloc(range->cnt + 1, sizeof(*spans->parts));
	if (!spans->topic || !spans->parts)
		return -1;
	for (size_t i = 0; i < range->cnt; i++) {
		payq_range_part_t *s = &spans->parts[spans->cnt];
		*s = range->parts[i];
		s->start = s->end = -1;
		for (size_t k = 0; k < g->n; k++) {
			if (g->v[k].partition != s->partition)
				continue;
			if (s->start < 0 || g->v[k].start < s->start)
				s->start = g->v[k].start;
			if (g->v[k].end > s->end)
				s->end = g->v[k].end;
		}
		if (s->start < 0)
			continue;
		s->start = s->start < s->low ? s->low : s->start > s->high ? s->high : s->start;
		s->end = s->end < s->start ? s->start : s->end > s->high ? s->high : s->end;
		spans->cnt++;
	}
	return 0;
}

/* Dry run: what a repair would send. */
static void print_would_repair(const replay_gaps_t *g, const char *topic)
{
	int64_t records = 0;

	for (size_t k = 0; k < g->n; k++) {
		records += g->v[k].end - g->v[k].start;
		printf("repair: would republish %s/%" PRId32 " [%" PRId64 ", %" PRId64 ")\n", topic,
		       g->v[k].partition, g->v[k].start, g->v[k].end);
	}
	printf("repair: dry run: would republish %" PRId64 " records; add --execute to "
	       "send them\n",
	       records);
}

/* Copies the gaps' records of spans, then prints what landed. */
static replay_exit_t copy_gaps(const payq_config_t *cfg, rd_kafka_t *rk, const payq_range_t *spans,
			       repair_t *r)
{
	const replay_env_t env = {.cfg = cfg, .rk = rk};
	char errstr[512];
	payq_range_read_t rd;
	payq_sink_stats_t st;

	if (replay_copy_start(&r->copy, "audit --repair", cfg, 0, false, 0, errstr,
			      sizeof(errstr))) {
		replay_error("audit --repair", errstr);
		return REPLAY_EXIT_FAILED;
	}
	rd = replay_copy_read(&r->copy, &env, spans, on_record, r, errstr, sizeof(errstr));
	st = payq_sink_stats(r->copy.sink);
	printf("repair: republished=%" PRId64 " delivered=%" PRId64 " failed=%" PRId64 "\n",
	       st.queued, st.delivered, st.queued - st.delivered);
	return replay_read_exit("audit --repair", replay_run ? rd : PAYQ_RANGE_INTERRUPTED, errstr);
}

replay_exit_t replay_gaps_repair(const payq_config_t *cfg, rd_kafka_t *rk, PGconn *conn,
				 const char *topic, const payq_range_t *range, replay_gaps_t *g,
				 bool execute, bool force)
{
	payq_range_t spans = {0};
	repair_t r = {.gaps = g, .topic = topic};
	replay_exit_t rc = REPLAY_EXIT_FAILED;

	if (!g->n) {
		printf("repair: no gap has records to republish\n");
		return REPLAY_EXIT_OK;
	}
	qsort(g->v, g->n, sizeof(*g->v), cmp_gap);
	if (gap_spans(g, range, &spans)) {
		replay_error("audit --repair", "out of memory");
		goto out;
	}
	rc = replay_horizon_guard(rk, conn, &spans, force, !execute, "audit --repair");
	if (rc != REPLAY_EXIT_OK)
		goto out;
	if (execute)
		rc = copy_gaps(cfg, rk, &spans, &r);
	else
		print_would_repair(g, topic);
out:
	replay_copy_free(&r.copy);
	payq_range_free(&spans);
	return rc;
}
