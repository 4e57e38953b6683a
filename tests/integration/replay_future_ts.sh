#!/bin/bash
# payq-replay audit and the dedup horizon, when a record's CreateTime lies: the horizon
# protects processed_commands rows by first_seen_at, that is by when the worker consumed
# a record, not by the time its producer wrote in it. A command with a CreateTime one day
# ahead, applied and then pruned with its neighbours, is older than the horizon (no
# false missing_row gap, and republishing it is refused); commands skipped after the
# horizon are gaps whatever their CreateTime, also one stamped in 2001.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

gap_lines() { grep '^gap ' "$WL_DIR/$1.out" || true; }

# Kafka 4 refuses by default a CreateTime more than an hour ahead
# (log.message.timestamp.after.max.ms); a topic may allow it, and this one does.
PAYQ_PROBE_TOPIC_CONFIG=message.timestamp.after.max.ms=9223372036854775807 wl_init rfuture 1
wl_gen_orders FA 4
wl_produce <"$WL_DIR/cmds.FA"
a_valid=$(wc -l <"$WL_DIR/cmds.FA")
future=$(($(rp_now_ms) + 86400000))
read -r _ f_off <<<"$(rp_probe_produce 0 "$future" FT-1 \
	'{"v":1,"type":"create_order","command_id":"FT-1:c","order_id":"FT-1","amount_minor":500,"currency":"EUR"}')"
wl_worker_start w1
wl_wait_assigned w1
wl_wait_drained 60
assert_eq applied "$(wl_sql "SELECT outcome FROM payq.processed_commands WHERE command_id = 'FT-1:c'")" \
	"the command stamped a day ahead (offset $f_off) was applied"
sleep 1.2
T_ms=$(rp_now_ms)
sleep 1.2
wl_gen_orders FB 3
wl_produce <"$WL_DIR/cmds.FB"
b_valid=$(wc -l <"$WL_DIR/cmds.FB")
wl_wait_drained 60
wl_worker_stop w1 TERM
rp_wait_group_empty

rc=0
PAYQ_DB=$WL_WORKER_DB PAYQ_LOG_LEVEL=warn "$PAYQ_WORKER_EXE" prune --older-than "$(($(rp_now_ms) - T_ms))ms" \
	>"$WL_DIR/prune.out" 2>"$WL_DIR/prune.err" || rc=$?
[[ $rc == 0 ]] || die "prune exited $rc: $(cat "$WL_DIR/prune.err")"
assert_eq "pruned $((a_valid + 1)) processed_commands rows" "$(cat "$WL_DIR/prune.out")" \
	"prune deleted batch A and FT-1:c (first seen before the horizon), kept batch B"

rp_expect 0 audit audit
rp_assert_fields audit gaps=0 "older_than_horizon=$((a_valid + 1))" "valid=$b_valid"
pass "a pruned command with a CreateTime a day ahead counts as older than the horizon, not as a gap"

# The guard agrees: FT-1's row is gone, so a copy of it would be applied a second time.
total=$(rp_count "$WL_TOPIC")
rp_expect 2 guard republish --from-offset "$f_off" --to-offset $((f_off + 1))
grep -q 'refused: 1 messages are older than the dedup retention horizon' "$WL_DIR/guard.err" ||
	die "no refusal message: $(cat "$WL_DIR/guard.err")"
assert_eq "$total" "$(rp_count "$WL_TOPIC")" \
	"republish of the pruned command stamped a day ahead: refused (exit 2), nothing sent"

# After the horizon, with the worker stopped: one command stamped now and one stamped in
# 2001, both skipped by an offset reset. Both are gaps: they were never applied.
h=$(wl_offsets | awk '$1 == 0 { print $4 }')
wl_cmd_create FS-1 FS-1:c 700 | wl_produce -p 0
rp_probe_produce 0 978307200000 FS-2 \
	'{"v":1,"type":"create_order","command_id":"FS-2:c","order_id":"FS-2","amount_minor":800,"currency":"EUR"}' >/dev/null
rp_expect 0 skip reset-offsets --to-latest --execute
rp_expect 1 skipped audit
rp_assert_fields skipped gaps=2 "older_than_horizon=$((a_valid + 1))"
gap_lines skipped | grep -q "^gap missing_row $WL_TOPIC/0/$h type=create_order order_id=FS-1 " ||
	die "no missing_row gap for FS-1: $(cat "$WL_DIR/skipped.out")"
gap_lines skipped | grep -q "^gap missing_row $WL_TOPIC/0/$((h + 1)) type=create_order order_id=FS-2 " ||
	die "no missing_row gap for FS-2 (CreateTime 2001): $(cat "$WL_DIR/skipped.out")"
pass "skipped after the horizon: gaps at $WL_TOPIC/0/$h and /$((h + 1)), the one stamped in 2001 included"
