#!/bin/bash
# Dedup retention: `payq-worker prune` deletes old processed_commands rows in batches and
# records the horizon; payq-replay then refuses (exit 2) a republish, a dead-letter
# re-drive or a rewinding reset-offsets that reaches past it, unless --force; ranges after
# the horizon still work; audit counts the older messages instead of reporting gaps.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

wl_init rhor 3
wl_gen_orders HA 6
{
	cat "$WL_DIR/cmds.HA"
	echo 'HA-X|not json'
} | wl_produce
a_valid=$(wc -l <"$WL_DIR/cmds.HA")
wl_worker_start w1
wl_wait_assigned w1
wl_wait_drained 60
sleep 1.2
T=$(rp_now_iso)
T_ms=$(rp_now_ms)
sleep 1.2
wl_gen_orders HB 6
wl_produce <"$WL_DIR/cmds.HB"
b_valid=$(wc -l <"$WL_DIR/cmds.HB")
wl_wait_drained 60
wl_worker_stop w1 TERM
rp_wait_group_empty
a_rows=$(wl_sql "SELECT count(*) FROM payq.processed_commands WHERE order_id LIKE 'HA-%'")
b_rows=$(wl_sql "SELECT count(*) FROM payq.processed_commands WHERE order_id LIKE 'HB-%'")
ends=$(wl_offsets | awk '{ print $1, $2 }')

# Prune what the worker saw before T, two rows per transaction.
rc=0
PAYQ_DB=$WL_WORKER_DB PAYQ_LOG_LEVEL=warn "$PAYQ_WORKER_EXE" prune --older-than "$(($(rp_now_ms) - T_ms))ms" \
	--batch 2 >"$WL_DIR/prune.out" 2>"$WL_DIR/prune.err" || rc=$?
[[ $rc == 0 ]] || die "prune exited $rc: $(cat "$WL_DIR/prune.err")"
assert_eq "pruned $a_rows processed_commands rows" "$(cat "$WL_DIR/prune.out")" "prune reports the rows it deleted"
assert_eq "0 $b_rows" "$(wl_sql "SELECT count(*) FILTER (WHERE order_id LIKE 'HA-%'),
                                 count(*) FILTER (WHERE order_id LIKE 'HB-%') FROM payq.processed_commands")" \
	"batch A's rows are gone, batch B's kept"
assert_eq "t $a_rows" "$(wl_sql "SELECT abs(extract(epoch FROM horizon) * 1000 - $T_ms) < 300, pruned_rows
                             FROM payq.dedup_horizon")" "payq.dedup_horizon records T and the pruned rows"
rc=0
PAYQ_DB=$WL_WORKER_DB PAYQ_LOG_LEVEL=warn "$PAYQ_WORKER_EXE" prune --older-than 30d >/dev/null 2>&1 || rc=$?
[[ $rc == 0 ]] || die "a second prune exited $rc"
assert_eq t "$(wl_sql "SELECT abs(extract(epoch FROM horizon) * 1000 - $T_ms) < 300 FROM payq.dedup_horizon")" \
	"a prune with a longer retention does not move the horizon back"

total=$(rp_count "$WL_TOPIC")
NOW=$(rp_now_iso)
rp_expect 2 refused republish --from-time 2000-01-01T00:00:00Z --to-time "$NOW"
grep -q 'refused: .* older than the dedup retention horizon' "$WL_DIR/refused.err" ||
	die "no refusal message: $(cat "$WL_DIR/refused.err")"
assert_eq "$total" "$(rp_count "$WL_TOPIC")" "refused republish sent nothing"
pass "republish reaching before the horizon: exit 2, nothing sent"

rp_expect 0 dry republish --from-time 2000-01-01T00:00:00Z --to-time "$NOW" --dry-run
rp_assert_fields dry "new=$a_valid" "already_processed=$b_valid" malformed=1
grep -q 'a real run would be refused' "$WL_DIR/dry.err" || die "dry run does not warn: $(cat "$WL_DIR/dry.err")"
pass "--dry-run shows the danger: batch A's $a_valid commands would be new to the dedup table"

rp_expect 0 after republish --from-time "$T" --to-time "$NOW"
rp_assert_fields after "delivered=$b_valid" failed=0
pass "republish from the horizon on: allowed, $b_valid copies"

rp_expect 2 dlq dlq
grep -q 'refused: .* older than the dedup retention horizon' "$WL_DIR/dlq.err" ||
	die "dlq: no refusal message: $(cat "$WL_DIR/dlq.err")"
pass "dlq re-drive of a dead letter older than the horizon: exit 2"

rp_expect 2 rewind reset-offsets --to-earliest --execute
assert_eq "$ends" "$(wl_offsets | awk '{ print $1, $2 }')" "refused rewind: committed offsets unchanged"
rp_expect 0 rewind_ok reset-offsets --to-time "$T"
pass "reset-offsets rewinding past the horizon: exit 2; --to-time T passes the check"

rp_expect 0 forced republish --from-time 2000-01-01T00:00:00Z --to-time "$NOW" --order HA-1 --force
rp_assert_fields forced delivered=3
pass "--force overrides the refusal"

rp_expect 0 audit audit
rp_assert_fields audit gaps=0 "older_than_horizon=$((a_valid + 1))"
pass "audit: batch A counted as older than the horizon, not as gaps"
