#!/bin/bash
# statement_timeout and lock_timeout, set through PAYQ_DB_STATEMENT_TIMEOUT_MS and
# PAYQ_DB_LOCK_TIMEOUT_MS (which win over the same settings in the conninfo's options).
# (a) A trigger sleeps 3 s in the first two batch inserts, past statement_timeout (1.5 s):
# 57014. (b) Another session holds an order FOR UPDATE for 4 s while the pay for it
# arrives, past lock_timeout (0.5 s): 55P03. Both are transient: the worker retries the
# batch until it goes through, and everything is applied exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 4
db_create
sql "CREATE SEQUENCE faults.attempts;
     CREATE FUNCTION faults.slow() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN
         IF nextval('faults.attempts') <= 2 THEN
             PERFORM pg_sleep(3);
         END IF;
         RETURN NULL;
     END \$\$;
     CREATE TRIGGER slow BEFORE INSERT ON payq.processed_commands
         FOR EACH STATEMENT EXECUTE FUNCTION faults.slow()"
monitor_start
worker_start w1 PAYQ_DB_STATEMENT_TIMEOUT_MS=1500 PAYQ_DB_LOCK_TIMEOUT_MS=500
worker_wait_assigned w1

# (a) statement_timeout.
produce_half create_order 1 20
wait_processed
if grep -q 'SQLSTATE 57014), retrying' "$WORK/w1.log"; then
	pass "worker retried the batch on 57014"
else
	expect violation "no retry on SQLSTATE 57014 in the worker log"
fi

# (b) lock_timeout: hold ORD-...-1 for 4 s while its pay arrives.
order=$(sql "SELECT order_id FROM payq.orders ORDER BY order_id LIMIT 1")
psql "$DB" -XAtq -v ON_ERROR_STOP=1 >"$WORK/locker.log" 2>&1 <<SQL &
BEGIN;
SELECT order_id FROM payq.orders WHERE order_id = '$order' FOR UPDATE;
SELECT pg_sleep(4);
COMMIT;
SQL
locker=$!
on_exit "proc_stop $locker"
locker_sleeping() {
	[[ $(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
	          AND query LIKE 'SELECT pg_sleep(4)%'") == 1 ]]
}
wait_until 10 locker_sleeping || die "the locking session did not start"
produce_half pay 1 20
wait "$locker" || die "the locking session failed: $(cat "$WORK/locker.log")"
wait_processed
if grep -q 'SQLSTATE 55P03), retrying' "$WORK/w1.log"; then
	pass "worker retried the batch on 55P03"
else
	expect violation "no retry on SQLSTATE 55P03 in the worker log"
fi

expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_assignment_kept w1
expect check_clean_stop w1
finish
