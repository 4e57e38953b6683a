/* horizon.c - refuses a replay that reaches past the dedup retention horizon. */
#include "horizon.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "db.h"
#include "log.h"
#include "util.h"

/* For each partition of r, the first offset from which the dedup table still protects
 * every record: past both the first record stamped at or after the horizon and the
 * highest offset whose row prune deleted (a record stamped in the future may have been
 * consumed, and its row pruned, before the horizon). first[i] belongs to r->parts[i]. */
static int protected_from(rd_kafka_t *rk, PGconn *conn, const payq_range_t *r, int64_t horizon,
			  int64_t *first, char *errstr, size_t errstr_size)
{
	int64_t *pruned = NULL, *after = NULL;
	int nparts = 0, ret = -1;

	for (size_t i = 0; i < r->cnt; i++)
		if (r->parts[i].partition + 1 > nparts)
			nparts = r->parts[i].partition + 1;
	pruned = calloc((size_t)nparts + 1, sizeof(*pruned));
	after = calloc((size_t)nparts + 1, sizeof(*after));
	if (!pruned || !after) {
		payq_err(errstr, errstr_size, "out of memory");
		goto out;
	}
	if (payq_range_offsets_for_time(rk, r, horizon, first, errstr, errstr_size) ||
	    replay_db_horizon_offsets(conn, r->topic, pruned, after, nparts, errstr, errstr_size))
		goto out;
	for (size_t i = 0; i < r->cnt; i++) {
		int64_t p = pruned[r->parts[i].partition];
		if (p >= 0 && p + 1 > first[i])
			first[i] = p + 1;
	}
	ret = 0;
out:
	free(pruned);
	free(after);
	return ret;
}

replay_exit_t replay_horizon_guard(rd_kafka_t *rk, PGconn *conn, const payq_range_t *r, bool force,
				   bool dry_run, const char *what)
{
	char errstr[512], when[40];
	int64_t horizon, *first = NULL, breach = 0;

	if (replay_db_horizon(conn, &horizon, errstr, sizeof(errstr))) {
		fprintf(stderr, "payq-replay %s: %s\n", what, errstr);
		return REPLAY_EXIT_FAILED;
	}
	if (horizon < 0)
		return REPLAY_EXIT_OK; /* nothing was ever pruned */
	first = calloc(r->cnt + 1, sizeof(*first));
	if (!first || protected_from(rk, conn, r, horizon, first, errstr, sizeof(errstr))) {
		fprintf(stderr, "payq-replay %s: %s\n", what, first ? errstr : "out of memory");
		free(first);
		return REPLAY_EXIT_FAILED;
	}
	replay_fmt_time(horizon, when, sizeof(when));
	for (size_t i = 0; i < r->cnt; i++) {
		const payq_range_part_t *p = &r->parts[i];
		int64_t stop = p->end < first[i] ? p->end : first[i];

		if (stop <= p->start)
			continue;
		breach += stop - p->start;
		fprintf(stderr,
			"payq-replay %s: %s/%" PRId32 ": %" PRId64 " messages in [%" PRId64
			", %" PRId64 ") are older than the dedup retention horizon %s\n",
			what, r->topic, p->partition, stop - p->start, p->start, stop, when);
	}
	free(first);
	if (!breach)
		return REPLAY_EXIT_OK;
	if (dry_run && !force) {
		fprintf(stderr,
			"payq-replay %s: dry run: a real run would be refused: %" PRId64
			" messages are older than the dedup retention horizon %s "
			"(--force overrides)\n",
			what, breach, when);
		return REPLAY_EXIT_OK;
	}
	if (force) {
		log_warn("%s: --force: %" PRId64 " messages older than the dedup horizon %s are "
			 "not protected by processed_commands and may be applied again",
			 what, breach, when);
		return REPLAY_EXIT_OK;
	}
	fprintf(stderr,
		"payq-replay %s: refused: %" PRId64 " messages are older than the dedup retention "
		"horizon %s. Their processed_commands rows may have been pruned, so the worker "
		"could apply them a second time. Start at %s or later, or pass --force if you "
		"are sure.\n",
		what, breach, when, when);
	return REPLAY_EXIT_USAGE;
}
