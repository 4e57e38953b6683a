#!/bin/bash
# OffsetCommit fails with REBALANCE_IN_PROGRESS six times, then REQUEST_TIMED_OUT, then
# ILLEGAL_GENERATION (librdkafka's mock cluster): nothing is lost, nothing takes effect
# twice, and the offsets are committed in the end without new traffic, because a failed
# commit is retried rather than taken for done.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 4
db_create
monitor_start
worker_start w1
worker_wait_assigned w1

produce_orders 1 10
wait_processed
wait_until 20 committed_at_end || die "offsets not committed before any fault"
log "baseline committed: $(committed_offsets | tr '\n' ' ')"

broker_ctl errors OffsetCommit 8 REBALANCE_IN_PROGRESS REBALANCE_IN_PROGRESS \
	REBALANCE_IN_PROGRESS REBALANCE_IN_PROGRESS REBALANCE_IN_PROGRESS REBALANCE_IN_PROGRESS \
	REQUEST_TIMED_OUT ILLEGAL_GENERATION
# One burst: a few batches, so failed commits are left with no later batch to carry them.
produce_orders 11 40
wait_processed

expect check_committed_end 30
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_alive w1
expect check_clean_stop w1
finish
