#!/bin/bash
# A fatal idempotent-producer error met by a DLQ produce. PAYQ_FAULT_AT=kafka_fatal:N raises
# the fatal error on the DLQ producer at the start of batch N; with one partition and one
# message per batch, batch N is the message at offset N-1, and here that message is
# malformed. rd_kafka_producev then fails at once with _FATAL (no delivery report ever
# comes). The worker must exit non-zero, not produce again for ever, and commit nothing
# past the malformed message. A restarted worker dead-letters it and applies the rest
# exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 1
db_create
produce_orders 1 3      # offsets 0..5
produce_malformed 1 1   # offset 6
produce_orders 4 5      # offsets 7..10
N=7
worker_start w1 PAYQ_BATCH_MAX=1 PAYQ_FAULT_AT=kafka_fatal:$N

worker_wait_exit w1 60
if [[ $WORKER_RC == timeout ]]; then
	expect violation "worker did not exit within 60 s of the fatal error met by a DLQ produce ($(grep -c 'not persisted; retrying' "$WORK/w1.log" || true) DLQ retries logged)"
elif [[ $WORKER_RC == 0 ]]; then
	expect violation "worker exited 0 after a fatal DLQ producer error"
else
	pass "worker exited $WORKER_RC after the fatal DLQ producer error"
fi
grep -q 'fault point kafka_fatal reached' "$WORK/w1.log" || die "scenario error: the fault point was not reached"
proc_stop "$(worker_pid w1)"
committed=$(committed_offsets | awk '{ print $2 }')
if ((committed > N - 1)); then
	expect violation "committed offset $committed is past the malformed message at offset $((N - 1))"
else
	pass "committed offset $committed is not past the malformed message at offset $((N - 1))"
fi

worker_start w2
worker_wait_assigned w2 30
wait_processed
expect check_dlq_copies
expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_clean_stop w2
finish
