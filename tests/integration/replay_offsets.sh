#!/bin/bash
# payq-replay reset-offsets: --to-time and --shift-by give the expected offset on every
# partition, in Kafka and in consumer_progress (so the worker's drift check keeps a rewind);
# a dry run changes nothing; --execute is refused (exit 3) while the group has members;
# the restarted worker re-consumes exactly the rewound messages as duplicates.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

# Prints "PARTITION COMMITTED" lines, and "PARTITION NEXT_OFFSET" for consumer_progress.
committed() { wl_offsets | awk '{ print $1, $2 }'; }

wl_init roff 4
wl_gen_orders OA 10
wl_produce <"$WL_DIR/cmds.OA"
ends_a=$(wl_offsets | awk '{ print $1, $4 }') # the first offset of batch B, per partition
sleep 1
T=$(rp_now_iso)
sleep 1
wl_gen_orders OB 10
wl_produce <"$WL_DIR/cmds.OB"
total=$(rp_count "$WL_TOPIC")

wl_worker_start w1
wl_wait_assigned w1
wl_wait_drained 60
wl_check_state
ends=$(wl_offsets | awk '{ print $1, $4 }')
pass "applied batch A, then at $T batch B: $total messages on 4 partitions"

rp_expect 3 active reset-offsets --to-time "$T" --execute
grep -q "refused: group $WL_GROUP has 1 active members" "$WL_DIR/active.err" ||
	die "no refusal message: $(cat "$WL_DIR/active.err")"
assert_eq "$ends" "$(committed)" "refused while the worker is in the group: committed offsets unchanged"

wl_worker_stop w1 TERM
rp_wait_group_empty
dups0=$(rp_dups)
state0=$(rp_state)

rp_expect 0 dry reset-offsets --to-time "$T"
assert_eq "$ends_a" "$(rp_table dry | awk '{ print $1, $5 }')" \
	"--to-time dry run: NEW is the first offset of batch B on every partition"
assert_eq "$ends" "$(rp_table dry | awk '{ print $1, $4 }')" "dry run: CURRENT is the committed offset"
assert_eq "$ends" "$(committed)" "dry run: committed offsets unchanged"
assert_eq "$ends" "$(wl_progress)" "dry run: consumer_progress unchanged"

rp_expect 0 totime reset-offsets --to-time "$T" --execute
assert_eq "$ends_a" "$(committed)" "--to-time --execute: committed offsets moved to batch B's start"
assert_eq "$ends_a" "$(wl_progress)" "--to-time --execute: consumer_progress moved with them"
grep -q 'consumer_progress of group .* set to the same offsets' "$WL_DIR/totime.out" ||
	die "the output does not say consumer_progress was set: $(cat "$WL_DIR/totime.out")"

# --shift-by -3: three further back, clamped at the low watermark (0).
want=$(awk '{ v = $2 - 3; print $1, (v < 0 ? 0 : v) }' <<<"$ends_a")
rp_expect 0 shift reset-offsets --shift-by -3 --execute
assert_eq "$want" "$(rp_table shift | awk '{ print $1, $5 }')" "--shift-by -3: NEW is CURRENT - 3, at least 0"
assert_eq "$want" "$(committed)" "--shift-by -3 --execute: committed offsets"
assert_eq "$want" "$(wl_progress)" "--shift-by -3 --execute: consumer_progress"

# --shift-by on some partitions only.
want=$(awk '{ v = ($1 == 1 || $1 == 3) ? $2 + 1 : $2; print $1, v }' <<<"$want")
rp_expect 0 shift1 reset-offsets --shift-by 1 --topic "$WL_TOPIC:1,3" --execute
assert_eq 2 "$(rp_table shift1 | wc -l)" "--topic T:1,3 lists partitions 1 and 3 only"
assert_eq "$want" "$(committed)" "--shift-by 1 on partitions 1 and 3 only"
assert_eq "$want" "$(wl_progress)" "consumer_progress of partitions 1 and 3 only"

rewound=$(paste -d ' ' <(echo "$want") <(echo "$ends") | awk '{ n += $4 - $2 } END { print n }')
wl_worker_start w2
wl_wait_assigned w2
wl_wait_drained 60
assert_eq "$ends" "$(committed)" "the restarted worker consumed to the end again"
assert_eq 0 "$(wl_log_count w2 'behind consumer_progress|offset_gap')" \
	"the worker's drift check neither undid the rewind nor saw a gap"
assert_eq "$state0" "$(rp_state)" "re-consumed commands changed nothing in the database"
assert_eq $((dups0 + rewound)) "$(rp_dups)" "duplicates rose by the $rewound rewound messages"
wl_worker_stop w2 TERM
