/* horizon.h - refuses a replay that reaches past the dedup retention horizon. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "cli.h"
#include "range.h"

/* Checks r against the horizon recorded by `payq-worker prune`. In each partition, the
 * messages of [start, end) before the first offset whose timestamp is at or after the
 * horizon, or at or below the highest offset whose row prune deleted
 * (payq.dedup_pruned_offsets), may have lost their processed_commands rows, so the
 * worker could apply them a second time. Prints every such partition on stderr. what
 * names the action ("republish", "reset-offsets"). With force a breach is only a
 * warning; with dry_run it is reported as what a real run would refuse.
 * Returns REPLAY_EXIT_OK to go on, REPLAY_EXIT_USAGE to refuse, or REPLAY_EXIT_FAILED
 * when the horizon or the offsets could not be read. */
replay_exit_t replay_horizon_guard(rd_kafka_t *rk, PGconn *conn, const payq_range_t *r, bool force,
				   bool dry_run, const char *what);
