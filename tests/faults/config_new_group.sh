#!/bin/bash
# A new consumer group with no committed offsets starts at the earliest offset
# (auto.offset.reset=earliest) and skips nothing: commands produced before the first
# worker of the group ever started are all applied, exactly once, and so are the ones
# produced while it runs.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 4
db_create
produce_orders 1 25
[[ $(committed_offsets | awk '$2 >= 0' | wc -l) == 0 ]] || die "scenario error: group $GROUP already has offsets"
monitor_start
worker_start w1
worker_wait_assigned w1
wait_processed
first=$(sql "SELECT string_agg(partition || ':' || min, ' ' ORDER BY partition) FROM
             (SELECT kafka_partition AS partition, min(kafka_offset) FROM payq.processed_commands
              GROUP BY kafka_partition) x")
if [[ $first == *:[1-9]* ]]; then
	expect violation "the first applied offset per partition is not 0: $first"
else
	pass "applied from offset 0 on every partition ($first)"
fi
produce_orders 26 40
wait_processed

expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_clean_stop w1
finish
