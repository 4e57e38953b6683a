#!/bin/bash
# The connection drops at COMMIT, so the worker cannot know the outcome. (a) The commit
# went through: a proxy (pgproxy.py) forwards the COMMIT and closes the connection
# before its answer gets back. The retry finds the batch's dedup rows and changes
# nothing. (b) The commit did not go through: a deferred constraint trigger terminates its
# own backend at COMMIT, once. The retry applies the batch. Either way every command
# takes effect exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 4
db_create
commit_proxy_start

monitor_start
worker_start w1 "PAYQ_DB=$PROXY_DB"
worker_wait_assigned w1

# (a) The first COMMIT's answer is lost; the transaction is committed.
produce_orders 1 20
wait_processed
wait_until 10 grep -q 'dropped COMMIT answer 1' "$WORK/proxy.out" ||
	die "scenario error: the proxy dropped no COMMIT answer"
wait_until 20 grep -q 'retrying the batch' "$WORK/w1.log" ||
	expect violation "the worker did not retry the batch whose COMMIT answer was lost"
dups=$(sql "SELECT coalesce(sum(duplicates), 0) FROM payq.processed_commands")
if ((dups > 0)); then
	pass "the retried batch found its own committed rows ($dups duplicates counted)"
else
	log "(the retried batch found no committed rows: the COMMIT had not run)"
fi

# (b) The backend dies inside COMMIT: the transaction is rolled back.
sql "CREATE SEQUENCE faults.commits;
     CREATE FUNCTION faults.die_at_commit() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN
         IF nextval('faults.commits') = 1 THEN
             PERFORM pg_terminate_backend(pg_backend_pid());
         END IF;
         RETURN NULL;
     END \$\$;
     CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON payq.processed_commands
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION faults.die_at_commit()"
retries=$(grep -c 'retrying the batch' "$WORK/w1.log" || true)
produce_orders 21 40
wait_processed
(($(sql "SELECT last_value FROM faults.commits") >= 1)) || die "scenario error: the trigger never ran"
if (($(grep -c 'retrying the batch' "$WORK/w1.log" || true) > retries)); then
	pass "the worker retried the batch whose backend died at COMMIT"
else
	expect violation "the worker did not retry the batch whose backend died at COMMIT"
fi

expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_assignment_kept w1
expect check_clean_stop w1
finish
