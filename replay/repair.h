/* repair.h - payq-replay audit's gaps as offset ranges, and their repair by republishing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "config.h"
#include "range.h"

/* The records of one gap: [start, end) of a partition of the audited topic. */
typedef struct replay_gap {
	int32_t partition;
	int64_t start, end;
} replay_gap_t;

typedef struct replay_gaps {
	replay_gap_t *v;
	size_t n, cap;
} replay_gaps_t;

/* Records a gap and prints, under its gap line, the command line that republishes
 * exactly its records. Returns 0, or -1 out of memory. */
int replay_gaps_add(replay_gaps_t *g, const char *topic, int32_t partition, int64_t start,
		    int64_t end);

void replay_gaps_free(replay_gaps_t *g);

/* `audit --repair`: republishes exactly the gaps' records of topic onto topic, with the
 * republish guard: refused when a record is past the dedup retention horizon unless
 * force. A dry run (prints what it would send) unless execute. range gives the
 * partitions' watermarks. Returns REPLAY_EXIT_OK, REPLAY_EXIT_USAGE (refused),
 * REPLAY_EXIT_FAILED or REPLAY_EXIT_INTERRUPTED. */
replay_exit_t replay_gaps_repair(const payq_config_t *cfg, rd_kafka_t *rk, PGconn *conn,
				 const char *topic, const payq_range_t *range, replay_gaps_t *g,
				 bool execute, bool force);
