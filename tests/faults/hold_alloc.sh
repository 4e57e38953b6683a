#!/bin/bash
# A message polled while the partitions are paused (the batch in hand is being retried)
# is held for the next batch; if holding it fails for want of memory
# (PAYQ_FAULT_AT=hold_alloc), the message must not be skipped: the offsets of the later
# messages of its partition must not be stored past it. A statement trigger fails the
# first batch inserts with 40001, so the worker keeps retrying (paused, polling) while
# more commands arrive. In the end every command is applied exactly once, and
# consumer_progress and the committed offsets reach the log-end offsets.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

K=12
broker_start --partitions 1
db_create
sql "CREATE SEQUENCE faults.attempts;
     CREATE FUNCTION faults.inject() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN
         IF nextval('faults.attempts') <= $K THEN
             RAISE EXCEPTION 'faults: injected serialization failure' USING ERRCODE = '40001';
         END IF;
         RETURN NULL;
     END \$\$;
     CREATE TRIGGER inject BEFORE INSERT ON payq.processed_commands
         FOR EACH STATEMENT EXECUTE FUNCTION faults.inject()"
worker_start w1 PAYQ_FAULT_AT=hold_alloc PAYQ_RETRY_MAX_MS=400 PAYQ_BATCH_MAX=4
worker_wait_assigned w1
produce_orders 1 2
for i in 1 2 3 4 5; do
	produce_orders $((i * 4 - 1)) $((i * 4 + 2))
	sleep 0.5
done
expect check_processed 60
grep -q 'fault point hold_alloc reached' "$WORK/w1.log" || die "scenario error: no message was held while paused"
expect check_exactly_once
expect check_progress
expect check_committed_end 20
expect check_clean_stop w1
finish
