#!/bin/bash
# Only one async commit in flight, even across a revoke's synchronous commit.
# The mock coordinator refuses the worker's next OffsetCommit (async commit A) at once
# with the retriable COORDINATOR_LOAD_IN_PROGRESS; librdkafka sends it again after
# retry.backoff.ms (8 s here, less than the 10 s after which the worker stops waiting for a
# lost callback), so A stays in flight for 8 s while the connection stays
# free. Meanwhile a second worker joins: with cooperative-sticky the first worker gives
# up some partitions, and the revoke commits synchronously (S), then it keeps consuming
# the others under steady traffic. Until A is answered, no other async commit may be
# sent: within the 8 s after A was refused, the worker's OffsetCommit requests must be S
# alone. (S's callback cleared A's in-flight mark, which let the next batches commit
# at once, overlapping A.) The worker's librdkafka protocol log (debug=protocol) shows
# every OffsetCommit sent.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

BACKOFF_MS=8000
broker_start --partitions 4
db_create
WORKER_X+=(-X partition.assignment.strategy=cooperative-sticky -X "retry.backoff.ms=$BACKOFF_MS")
worker_start w1 PAYQ_LOG_LEVEL=debug -- -X debug=protocol
worker_wait_assigned w1
produce_orders 1 8
wait_processed
wait_until 20 committed_at_end || die "offsets not committed before the fault"
sleep 1

broker_ctl errors OffsetCommit 1 COORDINATOR_LOAD_IN_PROGRESS
produce_orders 9 10
wait_until 10 grep -q 'Retrying OffsetCommitRequest' "$WORK/w1.log" ||
	die "scenario error: no OffsetCommit was retried"
worker_start w2
for i in $(seq 11 40); do
	produce_orders "$i" "$i"
	sleep 0.3
done
wait_processed

# Seconds of the day of a log line's "ts".
read -r verdict detail < <(awk -v backoff="$BACKOFF_MS" '
	function t(line,   a) {
		match(line, /"ts":"[^"]*T[0-9:.]*/)
		split(substr(line, RSTART + 16, RLENGTH - 16), a, ":")
		return a[1] * 3600 + a[2] * 60 + a[3]
	}
	/Retrying OffsetCommitRequest/ && !from { from = t($0); to = from + (backoff - 300) / 1000; next }
	from && t($0) <= to && /Sent OffsetCommitRequest/ { n++ }
	from && t($0) <= to && /"revoked [0-9]* partitions"/ { revoked = 1 }
	END {
		if (!revoked || n < 1) print "scenario", "revoked=" revoked + 0 ", " n + 0 " commits sent"
		else print (n == 1 ? "ok" : "overlap"), n
	}' "$WORK/w1.log")
case $verdict in
ok) pass "only the revoke's synchronous OffsetCommit was sent while the async commit waited for its retry" ;;
overlap) expect violation "$detail OffsetCommit requests sent while the async commit waited for its retry (only the revoke's synchronous one may be)" ;;
*) die "scenario error: no revoke commit while the async commit waited for its retry ($detail)" ;;
esac

expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_clean_stop w1
expect check_clean_stop w2
finish
