#!/bin/bash
# Injected serialization failures (40001) and deadlocks (40P01): a statement trigger on
# payq.processed_commands raises them, alternately, on the first six batch inserts. A
# sequence counts the attempts, because nextval is not rolled back with the batch. The
# worker must roll back, back off, retry the same batch, and apply everything exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

K=6
broker_start --partitions 4
db_create
sql "CREATE SEQUENCE faults.attempts;
     CREATE FUNCTION faults.inject() RETURNS trigger LANGUAGE plpgsql AS \$\$
     DECLARE n bigint := nextval('faults.attempts');
     BEGIN
         IF n <= $K THEN
             IF n % 2 = 1 THEN
                 RAISE EXCEPTION 'faults: injected serialization failure %', n USING ERRCODE = '40001';
             END IF;
             RAISE EXCEPTION 'faults: injected deadlock %', n USING ERRCODE = '40P01';
         END IF;
         RETURN NULL;
     END \$\$;
     CREATE TRIGGER inject BEFORE INSERT ON payq.processed_commands
         FOR EACH STATEMENT EXECUTE FUNCTION faults.inject()"
monitor_start
worker_start w1
worker_wait_assigned w1
produce_orders 1 30
wait_processed

attempts=$(sql "SELECT last_value FROM faults.attempts")
((attempts > K)) || die "scenario error: only $attempts inserts attempted"
for st in 40001 40P01; do
	if grep -q "SQLSTATE $st), retrying" "$WORK/w1.log"; then
		pass "worker retried the batch on $st"
	else
		expect violation "no retry on SQLSTATE $st in the worker log"
	fi
done
expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_assignment_kept w1
expect check_clean_stop w1
finish
