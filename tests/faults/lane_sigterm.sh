#!/bin/bash
# SIGTERM stops the fetch for every lane, also while one lane waits on the synchronous
# path. With PAYQ_APPLY_LANES=2, a malformed message sends its lane into the DLQ delivery
# wait (worker_tick) while the DLQ's broker is down. The worker gets SIGTERM in that wait,
# and orders produced a second later must not be fetched: the worker finishes what it had
# polled before the signal and stops. A worker that paused only the waiting lane would
# go on fetching the other lane's partitions for the rest of the wait and apply those
# orders on its way out (the sigterm-one-lane mutant does). Once the DLQ's broker is back,
# the worker stops cleanly, and a second worker applies the rest exactly once.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --brokers 3 --partitions 4
place_leaders 4 1 2 1
db_create
WORKER_X+=(-X message.timeout.ms=3000)
worker_start w1 PAYQ_APPLY_LANES=2 PAYQ_SHUTDOWN_TIMEOUT_MS=30000
worker_wait_assigned w1

produce_orders 1 10
wait_processed

# The DLQ's broker goes down, and a malformed message puts its lane in the DLQ wait.
broker_ctl broker down 2
produce_malformed 1 1
read -r mal_part _ < <(malformed_positions_range 1 1)
[[ -n $mal_part ]] || die "scenario error: the malformed message is not on the topic"
wait_until 20 grep -q -e 'DLQ delivery failed' -e 'DLQ copies not persisted' "$WORK/w1.log" ||
	die "scenario error: w1 never waited for the DLQ copy: $(tail -n 3 "$WORK/w1.log")"
log "malformed message on partition $mal_part: its lane waits for the DLQ copy"

kill -TERM "$(worker_pid w1)"
log "SIGTERM sent to w1"
sleep 1
# Orders produced after the signal (the stopping worker must leave them alone).
produce_orders 11 60
late=$(sql "SELECT string_agg(quote_literal('ORD-$$-' || i), ',') FROM generate_series(11, 60) AS i")
# Long enough for a worker still fetching to take them and hold them for its other lane.
sleep 3
broker_ctl broker up 2
worker_wait_exit w1 40
log "w1 exited $WORKER_RC"

check_nothing_late() {
	local n
	n=$(sql "SELECT count(*) FROM payq.processed_commands WHERE order_id IN ($late)")
	if ((n > 0)); then
		violation "w1 applied $n commands produced after its SIGTERM (partitions $(sql "SELECT string_agg(DISTINCT kafka_partition::text, ',') FROM payq.processed_commands WHERE order_id IN ($late)"); the malformed message's was $mal_part)"
		return 1
	fi
	pass "w1 applied none of the $((50 * 2)) commands produced after its SIGTERM"
}
expect check_nothing_late
if [[ $WORKER_RC == 0 ]]; then
	pass "w1 stopped cleanly once the DLQ copy was persisted"
else
	expect violation "w1 exited $WORKER_RC after SIGTERM: $(tail -n 3 "$WORK/w1.log")"
fi

# A second worker applies the rest.
worker_start w2 PAYQ_APPLY_LANES=2
worker_wait_assigned w2
expect check_processed 60
expect check_dlq_copies
expect check_exactly_once
expect check_progress
expect check_committed_end 20
expect check_clean_stop w2
finish
