#!/bin/bash
# Partition leaders go down. (a) The broker leading two partitions is down for a few seconds
# without failover, then back; (b) it goes down again and its partitions fail over to the
# other brokers, then it comes back and takes them back. The worker keeps its assignment
# throughout, and every command is applied exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --brokers 3 --partitions 4
for p in 0 1 2 3; do
	broker_ctl leader "$DLQ_TOPIC" "$p" 1
done
broker_ctl leader "$TOPIC" 0 1
broker_ctl leader "$TOPIC" 1 2
broker_ctl leader "$TOPIC" 2 3
broker_ctl leader "$TOPIC" 3 2
broker_ctl coordinator group "$GROUP" 3
db_create
monitor_start
worker_start w1
worker_wait_assigned w1

produce_orders 1 10
wait_processed
wait_until 20 committed_at_end || die "offsets not committed before any fault"

# (a) Broker 2, leader of partitions 1 and 3, down for 5 s; the producer waits for it.
broker_ctl broker down 2
produce_orders_bg 11 30
sleep 5
broker_ctl broker up 2
wait "$PRODUCER_PID" || die "producing orders 11..30 failed: $(tail -n 3 "$WORK/producer.log")"
wait_processed
expect check_committed_end 20

# (b) Broker 2 down again; its partitions fail over to brokers 3 and 1, then move back.
broker_ctl broker down 2
broker_ctl leader "$TOPIC" 1 3
broker_ctl leader "$TOPIC" 3 1
produce_orders 31 50
wait_processed
broker_ctl broker up 2
broker_ctl leader "$TOPIC" 1 2
broker_ctl leader "$TOPIC" 3 2
produce_orders 51 70
wait_processed

expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_assignment_kept w1
expect check_alive w1
expect check_clean_stop w1
finish
