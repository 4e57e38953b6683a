#!/bin/bash
# The group coordinator goes down long enough for the session to time out, so the worker's
# assignment is lost. Commits fail meanwhile and must not be taken for done; the worker
# must not commit on the lost revoke; it rejoins once the coordinator moves to a live
# broker, and nothing is lost or applied twice. Committed offsets never move backwards
# and end at the log-end offsets.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"
# PAYQ_FAULTS_COMMIT_MODE=sync runs the worker in sync commit mode (the mutation check).
if [[ -n ${PAYQ_FAULTS_COMMIT_MODE:-} ]]; then
	WORKER_ENV+=(PAYQ_COMMIT_MODE="$PAYQ_FAULTS_COMMIT_MODE")
fi

broker_start --brokers 3 --partitions 4
place_leaders 4 1 1 2
db_create
monitor_start
worker_start w1
worker_wait_assigned w1

produce_orders 1 10
wait_processed
wait_until 20 committed_at_end || die "offsets not committed before any fault"

broker_ctl broker down 2
produce_orders 11 30
wait_processed
wait_until 30 grep -q 'assignment lost' "$WORK/w1.log" ||
	die "the assignment was not lost within 30 s of the coordinator going down"
log "assignment lost; moving the coordinator to broker 3"
broker_ctl coordinator group "$GROUP" 3
wait_until 30 assigned_at_least w1 2 ||
	die "worker did not rejoin within 30 s"
broker_ctl broker up 2
log "rejoined"

expect check_committed_end 20
# Then normal traffic: batches commit again.
produce_orders 31 40
wait_processed

expect check_committed_end 20
expect check_no_commit_after_lost w1
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_alive w1
expect check_clean_stop w1
finish
