#!/bin/bash
# From a gap to its repair in one step. republish accepts an open end (--to-* left out:
# the log end, fixed at the start); audit prints under each gap the exact command line
# that republishes its records; `audit --repair` republishes exactly the gaps' records,
# a dry run unless --execute, refused past the dedup horizon unless --force.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

# repair_line NAME PATTERN: the command (without "payq-replay ") printed under the gap
# line that matches PATTERN.
repair_line() {
	grep -A 1 -- "$2" "$WL_DIR/$1.out" | sed -n 's/^  repair: payq-replay //p' | head -n 1
}

wl_init rrepair 3
wl_gen_orders RP 6
wl_produce <"$WL_DIR/cmds.RP"
wl_worker_start w1
wl_wait_assigned w1
wl_wait_drained 60
wl_worker_stop w1 TERM
rp_wait_group_empty

# The issue's first step: an open end.
n_rp2=$(grep -c '^RP-2|' "$WL_DIR/cmds.RP")
total=$(rp_count "$WL_TOPIC")
rp_expect 0 open republish --order RP-2 --from-offset 0
rp_assert_fields open "matched=$n_rp2" "delivered=$n_rp2" failed=0
assert_eq $((total + n_rp2)) "$(rp_count "$WL_TOPIC")" \
	"republish --order RP-2 --from-offset 0 (no --to-*): the $n_rp2 records of RP-2 copied once"

# Three gaps in partition 1, skipped by a reset: two valid commands and a malformed one.
h=$(wl_offsets | awk '$1 == 1 { print $4 }')
{
	wl_cmd_create RP-S1 RP-S1:c 700
	echo 'RP-S2|not json at all'
	wl_cmd_create RP-S3 RP-S3:c 900
} | wl_produce -p 1
rp_expect 0 skip reset-offsets --to-latest --execute
rp_expect 1 gaps audit
rp_assert_fields gaps gaps=3
for o in $h $((h + 1)) $((h + 2)); do
	assert_eq "republish --from-topic $WL_TOPIC --partition 1 --from-offset $o --to-offset $((o + 1))" \
		"$(repair_line gaps "^gap [a-z_]* $WL_TOPIC/1/$o ")" "audit prints the repair of the gap at $WL_TOPIC/1/$o"
done

# The printed line, run as it is, repairs its gap.
total=$(rp_count "$WL_TOPIC")
# shellcheck disable=SC2046 # the printed command line, split into words as a shell would
rp_expect 0 one $(repair_line gaps "^gap missing_row $WL_TOPIC/1/$h ")
rp_assert_fields one matched=1 delivered=1
assert_eq $((total + 1)) "$(rp_count "$WL_TOPIC")" "the printed repair command copied exactly one record"

# audit --repair: a dry run lists the gaps' records and sends nothing.
total=$(rp_count "$WL_TOPIC")
rp_expect 1 dry audit --repair
grep -q "^repair: dry run: would republish 3 records" "$WL_DIR/dry.out" ||
	die "no dry-run summary: $(cat "$WL_DIR/dry.out")"
assert_eq "$total" "$(rp_count "$WL_TOPIC")" "audit --repair without --execute sends nothing"

# audit --repair --execute: exactly the three records.
rp_expect 1 exec audit --repair --execute
grep -q "^repair: republished=3 delivered=3 failed=0" "$WL_DIR/exec.out" ||
	die "no repair summary: $(cat "$WL_DIR/exec.out")"
assert_eq $((total + 3)) "$(rp_count "$WL_TOPIC")" "audit --repair --execute copied exactly the 3 gap records"
# Copies go to the partition their key maps to (murmur2), wherever the original was.
assert_eq "2 $WL_TOPIC/1/$h 1 $WL_TOPIC/1/$((h + 1)) 1 $WL_TOPIC/1/$((h + 2))" \
	"$(kcat -C -b "$PAYQ_TEST_BROKERS" -t "$WL_TOPIC" -e -q -f '%h\n' |
		grep -o "payq-replay-of=$WL_TOPIC/1/[^,]*" | cut -d = -f 2 | sort | uniq -c |
		awk '{ printf "%s%s %s", (NR > 1 ? " " : ""), $1, $2 }')" \
	"the copies name the gap records (payq-replay-of): the first gap twice, once by its printed command"

wl_worker_start w2
wl_wait_assigned w2
wl_wait_drained 60
wl_worker_stop w2 TERM
rp_wait_group_empty
rp_expect 0 repaired audit
rp_assert_fields repaired gaps=0
assert_eq "applied 1 applied 0" "$(wl_sql "SELECT string_agg(outcome || ' ' || duplicates, ' ' ORDER BY command_id)
                                         FROM payq.processed_commands WHERE order_id IN ('RP-S1', 'RP-S3')")" \
	"RP-S1 applied once (its second copy a duplicate), RP-S3 applied once"
pass "after the repairs the audit finds no gap: the malformed one is dead-lettered under its payq-replay-of"

# Refused past the dedup horizon: every row pruned (older than 1 ms), then consumer_progress lowered below
# the committed offset, so offsets [c - 1, c) of partition 0 may have been skipped; their
# records are older than the horizon and a copy could be applied a second time.
rc=0
PAYQ_DB=$WL_WORKER_DB PAYQ_LOG_LEVEL=warn "$PAYQ_WORKER_EXE" prune --older-than 1ms >/dev/null 2>"$WL_DIR/prune.err" || rc=$?
[[ $rc == 0 ]] || die "prune exited $rc: $(cat "$WL_DIR/prune.err")"
c=$(wl_offsets | awk '$1 == 0 { print $2 }')
wl_sql "UPDATE payq.consumer_progress SET next_offset = next_offset - 1
        WHERE group_id = '$WL_GROUP' AND topic = '$WL_TOPIC' AND partition = 0" >/dev/null
total=$(rp_count "$WL_TOPIC")
rp_expect 2 refused audit --repair --execute
grep -q "^gap offset_ahead $WL_TOPIC/0 " "$WL_DIR/refused.out" || die "no offset_ahead gap: $(cat "$WL_DIR/refused.out")"
assert_eq "republish --from-topic $WL_TOPIC --partition 0 --from-offset $((c - 1)) --to-offset $c" \
	"$(repair_line refused "^gap offset_ahead $WL_TOPIC/0 ")" "the offset_ahead gap's repair is its offset range"
grep -q 'refused: .* older than the dedup retention horizon' "$WL_DIR/refused.err" ||
	die "no refusal message: $(cat "$WL_DIR/refused.err")"
assert_eq "$total" "$(rp_count "$WL_TOPIC")" "refused: nothing sent"
