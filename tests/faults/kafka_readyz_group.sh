#!/bin/bash
# /readyz follows group membership. The group coordinator (broker 2) goes down long enough
# for the session to time out: the worker's assignment is lost and it holds none, so
# /readyz must answer 503. Once the coordinator moves to a live broker and the worker
# rejoins (assigned again), /readyz must answer 200 again. The database answers
# throughout, so only membership can make it unready.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --brokers 3 --partitions 4
place_leaders 4 1 1 2
db_create
PORT=$(free_port)
worker_start w1 PAYQ_HTTP_ADDR="127.0.0.1:$PORT"
worker_wait_assigned w1

readyz_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/readyz" || true; }
readyz_is() { [[ $(readyz_code) == "$1" ]]; }

produce_orders 1 5
wait_processed
if wait_until 20 readyz_is 200; then
	pass "/readyz 200 while assigned"
else
	expect violation "/readyz answers $(readyz_code) while assigned and the database answers"
fi

broker_ctl broker down 2
wait_until 30 grep -q 'assignment lost' "$WORK/w1.log" ||
	die "the assignment was not lost within 30 s of the coordinator going down"
log "assignment lost"
if wait_until 5 readyz_is 503; then
	pass "/readyz 503 after the assignment was lost"
else
	expect violation "/readyz answers $(readyz_code) with the assignment lost (the worker holds no partitions)"
fi

broker_ctl coordinator group "$GROUP" 3
wait_until 30 assigned_at_least w1 2 || die "worker did not rejoin within 30 s"
broker_ctl broker up 2
log "rejoined"
if wait_until 10 readyz_is 200; then
	pass "/readyz 200 again after rejoining"
else
	expect violation "/readyz answers $(readyz_code) after the worker rejoined"
fi

produce_orders 6 10
wait_processed
expect check_exactly_once
expect check_progress
expect check_clean_stop w1
finish
