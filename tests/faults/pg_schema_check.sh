#!/bin/bash
# A transient error while the worker reads payq.schema_migrations is not "schema too old".
# Another session holds payq.schema_migrations ACCESS EXCLUSIVE for 8 s, so the worker's
# schema-version check runs past statement_timeout (1 s, set in its conninfo): 57014.
# (a) At start: the worker must not exit 3; it retries and applies everything once the
#     lock is gone.
# (b) Mid-run: the worker's connection is terminated while the lock is held and a batch
#     arrives; the reconnect's check times out. The worker must not exit 1; it retries.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

HOLD_S=8
broker_start --partitions 2
db_create

# Holds payq.schema_migrations for HOLD_S seconds in the background; returns once held.
lock_schema() {
	psql "$DB" -XAtq -v ON_ERROR_STOP=1 >>"$WORK/locker.log" 2>&1 <<SQL &
BEGIN;
LOCK TABLE payq.schema_migrations IN ACCESS EXCLUSIVE MODE;
SELECT pg_sleep($HOLD_S);
COMMIT;
SQL
	LOCKER=$!
	on_exit "proc_stop $LOCKER"
	wait_until 10 locker_sleeping || die "the locking session did not start"
	log "payq.schema_migrations locked for $HOLD_S s"
}
locker_sleeping() {
	[[ $(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
	          AND query LIKE 'SELECT pg_sleep($HOLD_S)%'") == 1 ]]
}
# The worker stayed alive through the lock: no exit 3 (or 1) on a transient error.
check_survived() {
	if ! worker_alive w1; then
		worker_wait_exit w1 1
		violation "$1: worker exited $WORKER_RC on a transient error during the schema check: $(grep -m1 -o '"msg":"[^"]*schema[^"]*"' "$WORK/w1.log" || true)"
		return 1
	fi
	pass "$1: worker kept running through the schema-check timeout"
}

# (a) At start.
lock_schema
produce_orders 1 5
worker_start w1 "PAYQ_DB=$DB options='-c statement_timeout=1000'"
wait_until $((HOLD_S + 5)) bash -c "! kill -0 $LOCKER" || true
if ! check_survived "at start"; then
	VIOLATIONS=$((VIOLATIONS + 1))
	worker_start w1 "PAYQ_DB=$DB options='-c statement_timeout=1000'"
fi
worker_wait_assigned w1 30
expect check_processed 60
grep -q 'reading payq.schema_migrations' "$WORK/w1.log" ||
	die "scenario error: the schema check never failed at start"
failed_checks=$(grep -c 'reading payq.schema_migrations' "$WORK/w1.log")

# (b) Mid-run.
lock_schema
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = 'payq-worker'" >/dev/null
produce_orders 6 10
wait_until $((HOLD_S + 5)) bash -c "! kill -0 $LOCKER" || true
expect check_survived "mid-run"
(($(grep -c 'reading payq.schema_migrations' "$WORK/w1.log") > failed_checks)) ||
	die "scenario error: the schema check never failed mid-run"
expect check_processed 60
expect check_exactly_once
expect check_progress
if worker_alive w1; then
	expect check_clean_stop w1
fi
finish
