#!/bin/bash
# A rebalance while DLQ copies cannot be delivered. The broker hosting the DLQ is down
# while worker w1 holds a batch with malformed messages (its partitions paused); a second
# worker joins, so w1's partitions are revoked (eager protocol) in the middle of the
# delivery retries; the broker comes back and w1 settles the batch; then the new
# assignment arrives (SyncGroup answered after 4 s) and w1 gets some of its partitions
# back. Runs an AddressSanitizer build of the worker: the revoke must not free messages
# the retries still use. Every malformed message gets a matching DLQ copy, every valid
# command is applied exactly once (nothing stays stuck on a partition left paused), and
# neither worker dies.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

if [[ -z ${PAYQ_FAULTS_WORKER_EXE:-} ]]; then
	WORKER_EXE=$(asan_exe)
fi
WORKER_ENV+=(ASAN_OPTIONS=detect_leaks=0)
broker_start --brokers 3 --partitions 4
place_leaders 4 1 2 1
db_create
monitor_start
worker_start w1
worker_wait_assigned w1
produce_orders 1 5
wait_processed

broker_ctl broker down 2
produce_malformed 1 4
produce_orders 6 10
# w1 polls the malformed messages and waits for their delivery reports, paused.
sleep 3
broker_ctl rtt_errors 1 SyncGroup 2 NO_ERROR:4000
worker_start w2
wait_until 30 grep -q '"revoked [0-9]* partitions' "$WORK/w1.log" ||
	die "scenario error: w1's partitions were not revoked"
log "w1's partitions revoked while its DLQ copies are undeliverable"
sleep 0.5
broker_ctl broker up 2
# New traffic on every partition, before the new assignment arrives.
produce_orders 11 30
expect check_processed 30

expect check_no_asan_report
expect check_alive w1
expect check_alive w2
expect check_dlq_copies
expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_clean_stop w2
expect check_clean_stop w1
finish
