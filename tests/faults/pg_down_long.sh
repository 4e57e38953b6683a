#!/bin/bash
# PostgreSQL is down for 20 s, twice max.poll.interval.ms (10 s) and more than
# session.timeout.ms (6 s). The worker must keep polling with its partitions paused, so it
# neither leaves nor is kicked out of the group, nor crashes; once PostgreSQL is back it
# applies everything exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

if [[ -z ${PAYQ_TEST_PG_DIR:-} ]]; then
	echo "PAYQ_TEST_PG_DIR is not set: skipped (run through tests/run)"
	exit 77
fi
pg_ctl_local() { "$PAYQ_SOURCE_ROOT/deploy/local/pg" "$1" "$PAYQ_TEST_PG_DIR" >>"$WORK/pg.log" 2>&1; }
on_exit "pg_ctl_local start"

broker_start --partitions 4
db_create
monitor_start
WORKER_X+=(-X max.poll.interval.ms=10000)
worker_start w1
worker_wait_assigned w1
produce_orders 1 10
wait_processed

pg_ctl_local stop || die "pg stop failed: $(tail -n 5 "$WORK/pg.log")"
log "PostgreSQL stopped"
produce_orders 11 40
sleep 20
expect check_alive w1
expect check_assignment_kept w1
pg_ctl_local start || die "pg start failed: $(tail -n 5 "$WORK/pg.log")"
log "PostgreSQL started again"
wait_processed

expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_assignment_kept w1
expect check_alive w1
expect check_clean_stop w1
finish
