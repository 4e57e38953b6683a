#!/bin/bash
# DLQ produce faults. A malformed command's offset must not be stored before its copy in
# payq.commands.dlq has a PERSISTED delivery report:
#  (a) the broker hosting the DLQ partitions is down for 7 s, longer than the DLQ
#      producer's message.timeout.ms (3 s): deliveries fail and the copies are produced
#      again until it is back;
#  (b) the DLQ leader answers a Produce request after 2.5 s with the retriable
#      NOT_ENOUGH_REPLICAS;
#  (c) the DLQ leader refuses three Produce requests with the permanent
#      TOPIC_AUTHORIZATION_FAILED: delivery reports fail, the worker produces again.
# In (a) and (b) the committed offset must not pass an unsettled malformed message. In the end
# every malformed message has a matching DLQ copy and every valid command is applied
# exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --brokers 3 --partitions 4
place_leaders 4 1 2 1
db_create
monitor_start
WORKER_X+=(-X message.timeout.ms=3000)
worker_start w1
worker_wait_assigned w1

produce_orders 1 5
produce_malformed 1 2
wait_processed
wait_until 20 committed_at_end || die "offsets not committed before any fault"

# (a) The DLQ's broker is down for 7 s.
broker_ctl broker down 2
produce_orders 6 10
produce_malformed 3 4
mapfile -t held < <(malformed_positions_range 3 4)
# Past message.timeout.ms: the first copies have timed out, the broker is still down.
sleep 5
expect check_committed_not_past "${held[@]}"
broker_ctl broker up 2
wait_processed

# (b) A slow, failed Produce request on the DLQ leader: no copy can be persisted within
# 2.5 s of the malformed messages' arrival, so the check runs before that.
broker_ctl rtt_errors 2 Produce 1 NOT_ENOUGH_REPLICAS:2500
produce_orders 11 15
t0=$EPOCHREALTIME
produce_malformed 5 6
mapfile -t held < <(malformed_positions_range 5 6)
if awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a < 2.0) }'; then
	expect check_committed_not_past "${held[@]}"
else
	log "(too slow to check the committed offsets within 2.5 s)"
fi
wait_processed

# (c) Three Produce requests refused with a permanent error.
broker_ctl rtt_errors 2 Produce 3 TOPIC_AUTHORIZATION_FAILED:0
produce_orders 16 20
produce_malformed 7 8
wait_processed
# (A mutant that does not wait for delivery reports never logs these.)
for what in 'Local: Message timed out' 'Broker: Topic authorization failed'; do
	grep -q "DLQ delivery failed: $what" "$WORK/w1.log" || log "(no DLQ delivery failed with '$what')"
done

expect check_dlq_copies
expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_alive w1
expect check_clean_stop w1
finish
