#!/bin/bash
# A fatal idempotent-producer error (PAYQ_FAULT_AT=kafka_fatal:N makes the worker call
# rd_kafka_test_fatal_error on its DLQ producer at the start of its Nth batch). With one
# partition and one message per batch, batch N is the message at offset N-1. The worker
# must exit non-zero and commit nothing more: the committed offset stays at or before N-1.
# A restarted worker then applies everything exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

N=7
broker_start --partitions 1
db_create
produce_orders 1 10
worker_start w1 PAYQ_BATCH_MAX=1 PAYQ_FAULT_AT=kafka_fatal:$N

worker_wait_exit w1 60
if [[ $WORKER_RC == timeout ]]; then
	expect violation "worker did not exit within 60 s of the fatal error"
elif [[ $WORKER_RC == 0 ]]; then
	expect violation "worker exited 0 after a fatal Kafka error"
else
	pass "worker exited $WORKER_RC after the fatal error"
fi
grep -q 'fault point kafka_fatal reached' "$WORK/w1.log" || die "scenario error: the fault point was not reached"
sleep 2
committed=$(committed_offsets | awk '{ print $2 }')
if ((committed > N - 1)); then
	expect violation "committed offset $committed is past the batch of the fatal error (offset $((N - 1)))"
else
	pass "committed offset $committed is not past the batch of the fatal error (offset $((N - 1)))"
fi

worker_start w2
worker_wait_assigned w2 30
wait_processed
expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_clean_stop w2
finish
