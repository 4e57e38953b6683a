#!/bin/bash
# Slow OffsetCommit responses (rd_kafka_mock_broker_push_request_error_rtts) make the
# commit outcome ambiguous: the broker applies the commit, the client times it out
# (socket.timeout.ms 2000 against a 4 s response). (a) The worker carries on and the
# offsets end committed; (b) the worker is SIGKILLed while a slow commit is in flight and a
# new worker takes over: nothing is lost, nothing is applied twice, no offset gap.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 4
db_create
monitor_start
WORKER_X+=(-X socket.timeout.ms=2000)
worker_start w1
worker_wait_assigned w1

produce_orders 1 10
wait_processed
wait_until 20 committed_at_end || die "offsets not committed before any fault"

# (a) The next two OffsetCommit responses take 4 s.
broker_ctl rtt_errors 1 OffsetCommit 2 NO_ERROR:4000
produce_orders 11 30
wait_processed
wait_until 20 grep -q 'Timed out OffsetCommitRequest' "$WORK/w1.log" ||
	die "scenario error: no OffsetCommit timed out"
log "an OffsetCommit timed out at the client"
produce_orders 31 40
wait_processed
expect check_committed_end 20

# (b) A slow commit in flight, then SIGKILL; a second worker takes over.
broker_ctl rtt_errors 1 OffsetCommit 1 NO_ERROR:5000
produce_orders 41 60
wait_processed
sleep 0.5
kill -KILL "$(worker_pid w1)"
log "w1 killed with a slow commit in flight; committed now: $(committed_offsets | tr '\n' ' ')"
worker_start w2
worker_wait_assigned w2 30
produce_orders 61 70
wait_processed

expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_alive w2
expect check_clean_stop w2
finish
