#!/bin/bash
# A lane paused while another lane is on the synchronous path, whose held messages a
# revoke then drops, must be resumed once nothing keeps it paused. Four partitions, two
# lanes (p0 and p2 on lane 0, p1 and p3 on lane 1), batches of 4. The broker hosting the
# DLQ is down and a malformed message on p0 sends lane 0 to the synchronous path (waiting
# for its DLQ copy); meanwhile lane 1's next batch becomes whole and the loop pauses it
# (tick_others). A second worker joins, so worker w1's partitions are revoked inside that
# window and lane 1's held messages are dropped; the range assignor gives w1 two adjacent
# partitions back, one of them lane 1's. Once the DLQ broker is back, every command must
# still be applied: a lane left paused would never fetch its partition again (the
# idle-lane-paused mutant, tests/faults/mutant_idle_lane_paused.sh).
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --brokers 3 --partitions 4
place_leaders 4 1 2 1
db_create
worker_start w1 PAYQ_BATCH_MAX=4
worker_wait_assigned w1
produce_orders 1 5
wait_processed

broker_ctl broker down 2
printf 'MAL-%s-1\tnot json\n' "$$" | probe produce "$BROKERS" "$TOPIC" 0 2>>"$WORK/producer.log" ||
	die "producing the malformed message to partition 0 failed"
# Lane 0 now waits for the DLQ copy, on the synchronous path. What arrives for lane 1
# meanwhile is held and not sent: once its next batch is whole, the loop pauses it.
sleep 1
produce_orders 6 20
sleep 2
broker_ctl rtt_errors 1 SyncGroup 2 NO_ERROR:3000
worker_start w2 PAYQ_BATCH_MAX=4
wait_until 30 grep -q '"revoked [0-9]* partitions' "$WORK/w1.log" ||
	die "scenario error: w1's partitions were not revoked"
grep -q 'dropped [0-9]* uncommitted messages of revoked partitions' "$WORK/w1.log" ||
	die "scenario error: the revoke dropped no held messages"
sleep 0.5
broker_ctl broker up 2
produce_orders 21 40
expect check_processed 20

expect check_alive w1
expect check_alive w2
expect check_dlq_copies
expect check_exactly_once
expect check_progress
expect check_committed_end 20
expect check_clean_stop w2
expect check_clean_stop w1
finish
