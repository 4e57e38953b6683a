#!/bin/bash
# A lock held by another session bounds nothing but the worker's patience: with
# PAYQ_DB_LOCK_TIMEOUT_MS the worker's statement gives up (55P03), and the worker retries
# the same batch until the lock is gone; nothing is skipped. The worker runs as
# payq_worker over TLS (sslmode=verify-full).
# (a) A session holds ACCESS EXCLUSIVE on payq.orders for 4 s while pay commands arrive.
# (b) A migration's ALTER TABLE payq.orders waits behind a reader for 4 s; every statement
#     on payq.orders queues behind the waiting ALTER, the worker's included.
# Then every command is applied exactly once, and the ALTER went through.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"
require_env PAYQ_TEST_WORKER_DB

broker_start --partitions 4
db_create
# This tree's schema and grants (007_roles) even when WORKER_EXE is another build (an older
# worker, for a comparison, knows fewer migrations).
PAYQ_DB=$DB "$PAYQ_WORKER_EXE" migrate >>"$WORK/migrate.log" 2>&1 || die "migrate failed: $(cat "$WORK/migrate.log")"
monitor_start
worker_start w1 "PAYQ_DB=$PAYQ_TEST_WORKER_DB dbname=$DBNAME" PAYQ_DB_LOCK_TIMEOUT_MS=500
worker_wait_assigned w1
produce_half create_order 1 20
wait_processed

retries() { grep -c 'SQLSTATE 55P03), retrying' "$WORK/w1.log" || true; }

# Runs SQL as the superuser in the background, its output in WORK/NAME.log; sets BG_PID.
bg_sql() {
	psql "$DB" -XAtq -v ON_ERROR_STOP=1 >"$WORK/$1.log" 2>&1 <<<"$2" &
	BG_PID=$!
	on_exit "proc_stop $BG_PID"
}
session_in() {
	[[ $(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
	          AND query LIKE '$1%' AND ${2:-true}") == 1 ]]
}
# Seconds (with milliseconds) since the epoch.
now() { date +%s.%3N; }

# (a) ACCESS EXCLUSIVE held for 4 s.
before=$(retries)
bg_sql lock_a "BEGIN;
LOCK TABLE payq.orders IN ACCESS EXCLUSIVE MODE;
SELECT pg_sleep(4);
COMMIT;"
locker=$BG_PID
wait_until 10 session_in 'SELECT pg_sleep(4)' || die "the locking session did not start"
produce_half pay 1 20
wait "$locker" || die "the locking session failed: $(cat "$WORK/lock_a.log")"
released=$(now)
# A command skipped (sent to the DLQ) instead of retried never gets its row: a violation.
expect check_processed 60
log "(a) applied $(awk -v a="$released" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s after the lock was released"
if (($(retries) > before)); then
	pass "(a) the worker timed out on the lock ($(($(retries) - before)) x 55P03) and retried"
else
	expect violation "(a) no retry on SQLSTATE 55P03 in the worker log"
fi

# (b) ALTER TABLE waiting behind a reader; the worker's INSERTs queue behind it.
before=$(retries)
bg_sql reader "BEGIN;
SELECT count(*) FROM payq.orders;
SELECT pg_sleep(4);
COMMIT;"
reader=$BG_PID
wait_until 10 session_in 'SELECT pg_sleep(4)' || die "the reading session did not start"
bg_sql alter "ALTER TABLE payq.orders ADD COLUMN note text;"
alter=$BG_PID
wait_until 10 session_in 'ALTER TABLE' "wait_event_type = 'Lock'" || die "the ALTER TABLE is not waiting"
produce_half create_order 21 40
wait "$reader" || die "the reading session failed: $(cat "$WORK/reader.log")"
wait "$alter" || die "the ALTER TABLE failed: $(cat "$WORK/alter.log")"
released=$(now)
produce_half pay 21 40
expect check_processed 60
log "(b) applied $(awk -v a="$released" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s after the ALTER went through"
if (($(retries) > before)); then
	pass "(b) the worker timed out behind the waiting ALTER ($(($(retries) - before)) x 55P03) and retried"
else
	expect violation "(b) no retry on SQLSTATE 55P03 in the worker log"
fi
[[ $(sql "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'payq'
          AND table_name = 'orders' AND column_name = 'note'") == 1 ]] ||
	die "the ALTER TABLE did not add its column"

expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_assignment_kept w1
expect check_clean_stop w1
finish
