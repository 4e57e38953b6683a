/* repair.c - payq-replay audit's gaps as offset ranges, and their repair by republishing. */
#include "repair.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "horizon.h"
#include "log.h"
#include "sink.h"
#include "util.h"

int replay_gaps_add(replay_gaps_t *g, const char *topic, int32_t partition, int64_t start,
		    int64_t end)
{
	/* Topic names are [a-zA-Z0-9._-]: the line can be pasted into a shell as it is. */
	printf("  repair: payq-replay republish --from-topic %s --partition %" PRId32
	       " --from-offset %" PRId64 " --to-offset %" PRId64 "\n",
	       topic, partition, start, end);
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		replay_gap_t *grown = realloc(g->v, cap * sizeof(*grown));
		if (!grown)
			return -1;
		g->v = grown;
		g->cap = cap;
	}
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
	payq_sink_t *sink;
	int64_t copied;
	char errstr[512];
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
	if (payq_sink_copy(r->sink, r->topic, m, NULL, r->errstr, sizeof(r->errstr))) {
		if (replay_run)
			log_error("%s", r->errstr);
		return -1;
	}
	r->copied++;
	payq_sink_poll(r->sink);
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

int replay_gaps_repair(const payq_config_t *cfg, rd_kafka_t *rk, PGconn *conn, const char *topic,
		       const payq_range_t *range, replay_gaps_t *g, bool execute, bool force)
{
	payq_range_t spans = {0};
	repair_t r = {.gaps = g, .topic = topic};
	payq_sink_stats_t st;
	char errstr[512], ferr[512];
	int64_t records = 0;
	int rc = REPLAY_EXIT_FAILED, rd;

	if (!g->n) {
		printf("repair: no gap has records to republish\n");
		return REPLAY_EXIT_OK;
	}
	qsort(g->v, g->n, sizeof(*g->v), cmp_gap);
	if (gap_spans(g, range, &spans)) {
		fprintf(stderr, "payq-replay audit --repair: out of memory\n");
		goto out;
	}
	rc = replay_horizon_guard(rk, conn, &spans, force, !execute, "audit --repair");
	if (rc != REPLAY_EXIT_OK)
		goto out;
	for (size_t k = 0; k < g->n; k++)
		records += g->v[k].end - g->v[k].start;
	if (!execute) {
		for (size_t k = 0; k < g->n; k++)
			printf("repair: would republish %s/%" PRId32 " [%" PRId64 ", %" PRId64
			       ")\n",
			       topic, g->v[k].partition, g->v[k].start, g->v[k].end);
		printf("repair: dry run: would republish %" PRId64 " records; add --execute to "
		       "send them\n",
		       records);
		goto out;
	}

	rc = REPLAY_EXIT_FAILED;
	r.sink = payq_sink_new(cfg, 0, errstr, sizeof(errstr));
	if (!r.sink) {
		fprintf(stderr, "payq-replay audit --repair: %s\n", errstr);
		goto out;
	}
	rd = payq_range_read(rk, &spans, on_record, &r, errstr, sizeof(errstr));
	/* Also after an interruption, so that the summary says what landed. */
	if (payq_sink_finish(r.sink, 330000, (int)cfg->shutdown_timeout_ms, ferr, sizeof(ferr)) &&
	    rd == 0) {
		snprintf(errstr, sizeof(errstr), "%s", ferr);
		rd = replay_run ? -1 : 1;
	}
	st = payq_sink_stats(r.sink);
	printf("repair: republished=%" PRId64 " delivered=%" PRId64 " failed=%" PRId64 "\n",
	       st.queued, st.delivered, st.queued - st.delivered);
	if (rd == 1 || !replay_run) {
		fprintf(stderr, "payq-replay audit --repair: interrupted\n");
		rc = REPLAY_EXIT_INTERRUPTED;
	} else if (rd < 0) {
		fprintf(stderr, "payq-replay audit --repair: %s\n", errstr);
	} else {
		rc = REPLAY_EXIT_OK;
	}
out:
	payq_sink_destroy(r.sink);
	payq_range_free(&spans);
	return rc;
}
