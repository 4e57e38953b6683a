/* horizon.c - refuses a replay that reaches past the dedup retention horizon. */
#include "horizon.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "db.h"
#include "log.h"

int replay_horizon_guard(rd_kafka_t *rk, PGconn *conn, const payq_range_t *r, bool force,
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
	if (!first || payq_range_offsets_for_time(rk, r, horizon, first, errstr, sizeof(errstr))) {
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
