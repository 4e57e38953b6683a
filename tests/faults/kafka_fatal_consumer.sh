#!/bin/bash
# A fatal consumer error (as a fenced static member gets) arriving while a batch is being
# collected. PAYQ_FAULT_AT=consumer_fatal makes the worker raise it with
# rd_kafka_test_fatal_error on its consumer right after the first message of its first
# batch; the batch (PAYQ_BATCH_MAX=1000, PAYQ_BATCH_WAIT_MS=3000) is still open. The worker
# must exit non-zero and apply nothing more: the partial batch in hand is not applied
# (not a processed_commands row), and nothing is committed. A restarted worker then
# applies everything exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 1
db_create
produce_orders 1 10
worker_start w1 PAYQ_BATCH_MAX=1000 PAYQ_BATCH_WAIT_MS=3000 PAYQ_FAULT_AT=consumer_fatal

worker_wait_exit w1 60
if [[ $WORKER_RC == timeout ]]; then
	expect violation "worker did not exit within 60 s of the fatal consumer error"
elif [[ $WORKER_RC == 0 ]]; then
	expect violation "worker exited 0 after a fatal consumer error"
else
	pass "worker exited $WORKER_RC after the fatal consumer error"
fi
proc_stop "$(worker_pid w1)"
grep -q 'fault point consumer_fatal reached' "$WORK/w1.log" || die "scenario error: the fault point was not reached"
grep -q 'fatal Kafka error' "$WORK/w1.log" || die "scenario error: the worker never saw the fatal error"
applied=$(processed_count)
if ((applied > 0)); then
	expect violation "$applied commands applied after the fatal consumer error (the partial batch in hand)"
else
	pass "nothing applied after the fatal consumer error"
fi
committed=$(committed_offsets | awk '{ print $2 }')
if ((committed > 0)); then
	expect violation "committed offset $committed after the fatal consumer error"
else
	pass "nothing committed after the fatal consumer error"
fi

worker_start w2
worker_wait_assigned w2 30
wait_processed
expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_clean_stop w2
finish
