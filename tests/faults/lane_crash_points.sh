#!/bin/bash
# The windows the apply lane opens (worker/lane.c): while batch N is in flight, the loop
# already holds batch N+1. A SIGKILL in either window must lose nothing and pay nothing
# twice after a restart:
#   after_commit_before_next_send  N committed (its offsets stored or not), N+1 collected,
#                                  killed before N+1 is sent;
#   collected_unsent               N in flight, N+1's messages being collected, killed.
# After each crash Kafka's committed offsets are never ahead of consumer_progress; after
# the restart every command has one row and one effect, and consumer_progress and the
# committed offsets reach the log-end offsets.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 4
db_create

# Kafka's committed offset of no partition is past consumer_progress: nothing is marked
# done in Kafka that the database has not committed.
check_kafka_not_ahead() {
	local bad
	bad=$(committed_offsets | while read -r p c; do
		d=$(sql "SELECT next_offset FROM payq.consumer_progress WHERE group_id = '$GROUP'
		         AND topic = '$TOPIC' AND partition = $p")
		((c >= 0 && c > ${d:-0})) && printf '%s:%s>%s ' "$p" "$c" "${d:-none}"
	done)
	if [[ -n $bad ]]; then
		violation "committed offsets ahead of consumer_progress: $bad"
		return 1
	fi
	pass "committed offsets never ahead of consumer_progress"
}

# crash_scenario POINT:N FROM TO: a backlog of orders FROM..TO, a worker killed at POINT's
# Nth pass, then a second worker that drains everything.
crash_scenario() {
	local point=$1 from=$2 to=$3 name=${1%%:*} applied w
	w=${name//[^a-z]/}
	produce_orders "$from" "$to"
	worker_start "c$w" PAYQ_CRASH_AT="$point" PAYQ_BATCH_MAX=20
	worker_wait_exit "c$w" 60
	[[ $WORKER_RC == 137 ]] || die "worker with PAYQ_CRASH_AT=$point exited $WORKER_RC, expected 137 (SIGKILL)"
	grep -q "crash point $name reached" "$WORK/c$w.log" || die "no crash point log line for $point"
	applied=$(processed_count)
	((applied < $(expected_count))) ||
		die "scenario error: everything was applied before the crash at $point"
	log "$point: killed with $applied of $(expected_count) commands applied"
	expect check_kafka_not_ahead
	worker_start "r$w" PAYQ_BATCH_MAX=20
	expect check_processed 60
	expect check_exactly_once
	expect check_progress
	expect check_committed_end 20
	expect check_clean_stop "r$w"
}

crash_scenario after_commit_before_next_send:3 1 200
crash_scenario collected_unsent:100 201 400
finish
