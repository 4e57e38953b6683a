#!/bin/bash
# A lane that has lost its connection and cannot get another must hold only its own
# partitions: the other lane goes on applying. Two lanes through tests/faults/pgproxy.py,
# batches of 4, four partitions (p0 and p2 on lane 0, p1 and p3 on lane 1). The proxy
# refuses new connections and one of the worker's two sessions is terminated; the idle
# ping finds it dead. New commands then arrive on every partition: within 10 s every
# partition of one lane must be at its log-end offset, while the other lane backs off.
# The proxy forwards again, and every command is applied exactly once. The connect-sync
# mutant (a lane that cannot connect settles on the synchronous path, which holds every
# lane) is caught by tests/faults/mutant_connect_sync.sh.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

# True when every partition of lane $1 (p % 2) has consumer_progress at its log-end offset.
lane_at_end() {
	local lane=$1 p end next
	while read -r p end; do
		((p % 2 == lane)) || continue
		next=$(sql "SELECT next_offset FROM payq.consumer_progress
			WHERE group_id = '$GROUP' AND partition = $p")
		((${next:-0} >= end)) || return 1
	done < <(end_offsets)
}

one_lane_at_end() { lane_at_end 0 || lane_at_end 1; }

# Within 10 s, every partition of one lane is at its log-end offset.
check_one_lane_on() {
	if ! wait_until 10 one_lane_at_end; then
		violation "no lane reached the log-end offsets of its partitions in 10 s with one lane unable to connect: consumer_progress [$(sql "SELECT string_agg(partition || ':' || next_offset, ' ' ORDER BY partition) FROM payq.consumer_progress WHERE group_id = '$GROUP'")] against log-end offsets [$(end_offsets | tr '\n' ' ')]"
		return 1
	fi
	pass "one lane applied all of its partitions while the other could not connect"
}

broker_start --partitions 4
db_create
PROXY_DROPS=0 commit_proxy_start
worker_start w1 PAYQ_DB="$PROXY_DB" PAYQ_BATCH_MAX=4 PAYQ_RETRY_MAX_MS=500
worker_wait_assigned w1
produce_orders 1 10
wait_processed

echo refuse >"$WORK/proxy.ctl"
wait_until 5 grep -q 'mode refuse' "$WORK/proxy.out" || die "scenario error: the proxy did not switch"
killed=$(sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE datname = current_database() AND application_name = 'payq-worker'
	ORDER BY pid LIMIT 1")
[[ $killed == t ]] || die "scenario error: no worker session to terminate"
log "one worker session terminated; new connections refused"
# The idle ping (every 5 s) finds the session dead and cannot connect again.
sleep 6
produce_orders 11 60
expect check_one_lane_on
echo forward >"$WORK/proxy.ctl"
expect check_processed 30
expect check_exactly_once
expect check_progress
expect check_committed_end 20
expect check_clean_stop w1
finish
