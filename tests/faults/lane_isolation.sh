#!/bin/bash
# A failing apply lane pauses only its own partitions. A row trigger on
# payq.processed_commands raises a serialization failure (40001) for every command of
# the even partitions while faults.blocked is set. With PAYQ_APPLY_LANES=2 the even
# partitions are lane 0's and the odd ones lane 1's: lane 0 backs off and retries its
# batch, and lane 1 must apply all of its partitions meanwhile. Then the block is lifted
# and everything must be applied exactly once, with progress and committed offsets at
# the end. The same scenario with one lane is the control: there the failing batch holds
# every partition, so the check that lane 1 went on would fail, as it must.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 4
db_create
sql "CREATE TABLE faults.ctl (blocked boolean NOT NULL);
     INSERT INTO faults.ctl VALUES (true);
     CREATE FUNCTION faults.inject() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN
         IF NEW.kafka_partition % 2 = 0 AND (SELECT blocked FROM faults.ctl) THEN
             RAISE EXCEPTION 'faults: partition % is blocked', NEW.kafka_partition
                 USING ERRCODE = '40001';
         END IF;
         RETURN NEW;
     END \$\$;
     CREATE TRIGGER inject BEFORE INSERT ON payq.processed_commands
         FOR EACH ROW EXECUTE FUNCTION faults.inject()"

# The odd partitions' messages are at their log-end offsets in consumer_progress, and no
# command of an even partition has a row.
odd_at_end() {
	local want got
	want=$(end_offsets | awk '$1 % 2 == 1 && $2 > 0')
	got=$(sql "SELECT partition || ' ' || next_offset FROM payq.consumer_progress
	           WHERE group_id = '$GROUP' AND topic = '$TOPIC' AND partition % 2 = 1
	           ORDER BY partition")
	[[ -n $want && $want == "$got" ]]
}
even_rows() { sql "SELECT count(*) FROM payq.processed_commands WHERE kafka_partition % 2 = 0"; }

monitor_start
produce_orders 1 200
end_offsets | awk '$1 % 2 == 0 && $2 > 0' | grep -q . ||
	die "scenario error: no order landed in an even partition"
end_offsets | awk '$1 % 2 == 1 && $2 > 0' | grep -q . ||
	die "scenario error: no order landed in an odd partition"

# --- control: one lane. The blocked batch holds the odd partitions as well. ---------------
worker_start w0 PAYQ_APPLY_LANES=1
worker_wait_assigned w0
wait_until 20 grep -q 'SQLSTATE 40001), retrying' "$WORK/w0.log" ||
	die "scenario error: the one-lane worker did not meet the injected error"
sleep 3
if odd_at_end; then
	die "control: with one lane the odd partitions were applied past a failing batch; the check below could not tell lanes apart"
fi
pass "control: with one lane, the failing batch holds every partition"
# Its batch never commits: it gives it up at the shutdown deadline, storing nothing.
worker_stop w0
log "control worker exited $WORKER_RC"

# --- two lanes: lane 0 retries, lane 1 goes on. -------------------------------------------
worker_start w1 PAYQ_APPLY_LANES=2
worker_wait_assigned w1
if wait_until 30 odd_at_end; then
	pass "lane 1 applied every odd partition while lane 0 retried"
else
	expect violation "lane 1's partitions did not reach their ends while lane 0 was failing"
fi
n=$(even_rows)
if ((n == 0)); then
	pass "no command of lane 0's partitions was applied while it was blocked"
else
	expect violation "$n commands of the blocked partitions have rows"
fi
grep -q 'SQLSTATE 40001), retrying the batch in' "$WORK/w1.log" ||
	expect violation "lane 0 did not back off and retry its batch"
expect check_assignment_kept w1

sql "UPDATE faults.ctl SET blocked = false"
wait_processed
expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_clean_stop w1
finish
