#!/bin/bash
# A partition must be fetched after its assign however the threads are scheduled.
# librdkafka 2.0.2 drops a partition's fetch start as outdated when a pause or resume of
# that partition takes its version barrier after the start's barrier but is queued
# first; the partition is then never fetched, and nothing says so. The worker used to
# resume each assigned partition right after the assign, which raced with the fetch start
# (CI saw partition 3 of 6 stay unfetched for a minute). PAYQ_FAULT_AT=assign_race widens
# both sides of that race: librdkafka's main thread is held 300 ms between partition 0's
# barrier and queuing its start (the log line between them, with -X debug=topic), and the
# worker's thread 100 ms after the assign. The worker sets its pauses before the assign,
# so nothing of it is queued after the start; every command is applied within 20 s.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 6
db_create
produce_orders 1 60
worker_start w1 PAYQ_FAULT_AT=assign_race -- -X debug=topic
worker_wait_assigned w1
expect check_processed 20
grep -q 'fault assign_race: holding' "$WORK/w1.log" ||
	die "scenario error: the fetch start of partition 0 was not held"
expect check_exactly_once
expect check_progress
expect check_committed_end 20
expect check_clean_stop w1
finish
