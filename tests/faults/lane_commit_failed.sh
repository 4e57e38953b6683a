#!/bin/bash
# The apply lane sends batch N+1 only after batch N's COMMIT result has arrived
# (worker/lane.c). Here one transaction fails just before its COMMIT
# (PAYQ_FAULT_AT=fail_before_commit:3, SQLSTATE 40001, so its COMMIT answers ROLLBACK):
# the batch must be settled again (the synchronous path retries it) before anything
# after it moves consumer_progress. A worker that went on before the COMMIT result
# (the early-send mutant, tests/faults/mutant_early_send.sh) loses that batch.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 2
db_create
produce_orders 1 150
worker_start w1 PAYQ_FAULT_AT=fail_before_commit:3 PAYQ_BATCH_MAX=20
wait_until 60 progress_at_end || die "consumer_progress did not reach the log-end offsets in 60 s"
grep -q 'fault point fail_before_commit reached' "$WORK/w1.log" ||
	die "scenario error: no transaction failed before its COMMIT"
expect check_exactly_once
expect check_progress
expect check_committed_end 20
expect check_clean_stop w1
finish
