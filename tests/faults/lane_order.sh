#!/bin/bash
# One order's commands stay on one lane: partition p goes to lane p % PAYQ_APPLY_LANES,
# and an order maps to one partition. 300 orders, each a create_order followed by its
# pay, go through a worker with two lanes; every command must have its row and its
# effect (the pay applied, not rejected as an unknown order). The lane-by-message mutant
# (tests/faults/mutant_lane_by_message.sh) sends the messages to the lanes in turn, so a
# pay runs on one connection while its create is still uncommitted on the other.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 4
db_create
monitor_start
produce_orders 1 300
worker_start w1 PAYQ_APPLY_LANES=2
worker_wait_assigned w1
wait_processed
expect check_exactly_once
expect check_progress
expect check_committed_end 20
expect check_monotonic
expect check_clean_stop w1
finish
