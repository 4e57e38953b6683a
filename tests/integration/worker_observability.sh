#!/bin/bash
# What an operator sees of the worker: payq_consumer_lag{group,topic,partition} for the
# partitions a worker owns, and no longer for those revoked from it (each partition reported by
# exactly one worker of the group); order_id in every log line about a command; and the W3C
# trace context from the message headers in the worker's log lines.
# shellcheck source=tests/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

wl_init observability 12

# Prints "PARTITION" for each payq_consumer_lag series of worker NAME (checking its labels).
lag_partitions() {
	wl_metrics "$1" | awk -v g="$WL_GROUP" -v t="$WL_TOPIC" '
		index($1, "payq_consumer_lag{") == 1 {
			if (index($1, "group=\"" g "\",topic=\"" t "\",partition=\"") == 0) { print "BAD " $1; next }
			p = $1; sub(/.*partition="/, "", p); sub(/".*/, "", p); print p
		}'
}

# ---- lag: one series per owned partition, removed on revoke ----
wl_worker_start w1
wl_wait_log w1 '"msg":"assigned 12 partitions' 60
for i in $(seq 1 48); do
	printf 'OBS-%d|{"v":1,"type":"create_order","command_id":"c-%d","order_id":"OBS-%d","amount_minor":100,"currency":"EUR"}\n' "$i" "$i" "$i"
done | wl_produce -H content-type=application/json
wl_wait_applied 48
nonempty=$(wl_offsets | awk '$4 > 0 { n++ } END { print n + 0 }')
all_lag() { [[ $(lag_partitions w1 | grep -vc BAD) -ge $nonempty ]]; }
wait_for all_lag 60 || die "w1 reports lag for $(lag_partitions w1 | wc -l) partitions, want $nonempty: $(lag_partitions w1 | tr '\n' ' ')"
! lag_partitions w1 | grep -q BAD || die "a lag series without group, topic and partition: $(lag_partitions w1 | grep BAD)"
pass "w1 reports payq_consumer_lag{group,topic,partition} for the $nonempty partitions with messages"

wl_worker_start w2
wl_wait_log w2 '"msg":"assigned [1-9][0-9]* partitions' 60
# Settled: both workers report lag, each partition by exactly one of them, together all of them.
split_ok() {
	lag_partitions w1 >"$WL_DIR/lag.w1" && lag_partitions w2 >"$WL_DIR/lag.w2" &&
		[[ -s $WL_DIR/lag.w1 && -s $WL_DIR/lag.w2 ]] &&
		[[ -z $(sort "$WL_DIR/lag.w1" "$WL_DIR/lag.w2" | uniq -d) ]] &&
		(($(sort -u "$WL_DIR/lag.w1" "$WL_DIR/lag.w2" | wc -l) >= nonempty))
}
wait_for split_ok 90 || wl_violation "after w2 joined, lag series overlap or miss partitions: w1 {$(tr '\n' ' ' <"$WL_DIR/lag.w1")} w2 {$(tr '\n' ' ' <"$WL_DIR/lag.w2")}"
pass "after a rebalance each partition's lag comes from one worker only: w1 {$(sort -n "$WL_DIR/lag.w1" | tr '\n' ' ')} w2 {$(sort -n "$WL_DIR/lag.w2" | tr '\n' ' ')}"
wl_worker_stop w2 TERM
wl_worker_stop w1 TERM
