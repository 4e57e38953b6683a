#!/bin/bash
# PostgreSQL restarts (deploy/local/pg restart, a fast shutdown) while the worker applies
# small batches. Its connection dies (57P01 or a broken connection); it reconnects,
# re-prepares and retries the batch, and every command is applied exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

if [[ -z ${PAYQ_TEST_PG_DIR:-} ]]; then
	echo "PAYQ_TEST_PG_DIR is not set: skipped (run through tests/run)"
	exit 77
fi
pg_ctl_local() { "$PAYQ_SOURCE_ROOT/deploy/local/pg" "$1" "$PAYQ_TEST_PG_DIR" >>"$WORK/pg.log" 2>&1; }
# Whatever happens, leave PostgreSQL running for the next test.
on_exit "pg_ctl_local start"

broker_start --partitions 4
db_create
# Slow batches (50 ms each, 5 commands), so that the restart finds work in flight.
sql "CREATE FUNCTION faults.slow() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END \$\$;
     CREATE TRIGGER slow BEFORE INSERT ON payq.processed_commands
         FOR EACH STATEMENT EXECUTE FUNCTION faults.slow()"
monitor_start
worker_start w1 PAYQ_BATCH_MAX=5
worker_wait_assigned w1
produce_orders 1 10
wait_processed

produce_orders 11 110
sleep 0.5
done_before=$(processed_count)
((done_before < $(expected_count))) || die "scenario error: all work done before the restart"
log "restarting PostgreSQL with $done_before of $(expected_count) commands processed"
pg_ctl_local restart || die "pg restart failed: $(tail -n 5 "$WORK/pg.log")"
log "PostgreSQL is back"
wait_processed
if grep -Eq 'SQLSTATE (57P01|08[0-9A-Z]{3}|none)\), retrying' "$WORK/w1.log"; then
	pass "worker retried after losing its connection"
else
	expect violation "no retry after the restart in the worker log"
fi

expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_assignment_kept w1
expect check_alive w1
expect check_clean_stop w1
finish
