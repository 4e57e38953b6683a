#!/bin/bash
# payq-replay audit: exit 0 on a clean run; exit 1 naming the Kafka coordinates of each
# gap made on purpose: a deleted processed_commands row, messages skipped by an offset
# reset (a valid one without a row, a malformed one without a DLQ record), and a committed
# offset ahead of consumer_progress. Republishing the missing command repairs its gap.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

# gap_lines NAME: the gap lines of an audit's output.
gap_lines() { grep '^gap ' "$WL_DIR/$1.out" || true; }

wl_init raudit 3
wl_gen_orders RA 12
wl_produce -H content-type=application/json <"$WL_DIR/cmds.RA"
printf 'RA-Z1|{"v":1,"type":"refund","command_id":"z","order_id":"RA-Z1"}\n' | wl_produce
valid=$(wc -l <"$WL_DIR/cmds.RA")
wl_worker_start w1
wl_wait_assigned w1
wl_wait_drained 60

rp_expect 0 clean audit
rp_assert_fields clean "read=$((valid + 1))" "valid=$valid" malformed=1 not_consumed=0 gaps=0
[[ -z $(gap_lines clean) ]] || die "clean audit printed gaps: $(gap_lines clean)"
pass "clean run, worker still in the group: $valid rows and 1 DLQ record found, exit 0"

# Gap 1: a processed_commands row deleted.
read -r gp go <<<"$(wl_sql "SELECT kafka_partition, kafka_offset FROM payq.processed_commands
                            WHERE command_id = 'RA-3:p'")"
[[ -n $go ]] || die "no row for RA-3:p"
wl_sql "DELETE FROM payq.processed_commands WHERE command_id = 'RA-3:p'" >/dev/null
rp_expect 1 deleted audit
rp_assert_fields deleted gaps=1
gap_lines deleted | grep -q "^gap missing_row $WL_TOPIC/$gp/$go type=pay order_id=RA-3 command_id=RA-3:p" ||
	die "audit did not name $WL_TOPIC/$gp/$go: $(cat "$WL_DIR/deleted.out")"
pass "deleted row: exit 1, gap missing_row $WL_TOPIC/$gp/$go (RA-3:p)"

# Repair: republish that command; the worker records it again (the order is paid already).
rp_expect 0 repair republish --order RA-3 --from-time 2000-01-01T00:00:00Z --to-time "$(rp_now_iso)"
wl_wait_drained 60
assert_eq rejected_already_paid "$(wl_sql "SELECT outcome FROM payq.processed_commands WHERE command_id = 'RA-3:p'")" \
	"the republished pay got its row back (rejected_already_paid: the order was paid once)"
assert_eq 1 "$(wl_sql "SELECT count(*) FROM payq.payments WHERE order_id = 'RA-3'")" "RA-3 still has one payment"
rp_expect 0 repaired audit
rp_assert_fields repaired gaps=0
pass "after the repair: exit 0"

# Gaps 2 and 3: with the worker stopped, a valid and a malformed message are skipped by an
# offset reset, as an operator's mistake would.
wl_worker_stop w1 TERM
rp_wait_group_empty
h=$(wl_offsets | awk '$1 == 1 { print $4 }')
{
	wl_cmd_create RA-S1 RA-S1:c 700
	echo 'RA-S2|not json at all'
} | wl_produce -p 1
rp_expect 0 skip reset-offsets --to-latest --execute
rp_expect 1 skipped audit
rp_assert_fields skipped gaps=2
gap_lines skipped | grep -q "^gap missing_row $WL_TOPIC/1/$h type=create_order order_id=RA-S1 " ||
	die "no missing_row gap for RA-S1: $(cat "$WL_DIR/skipped.out")"
gap_lines skipped | grep -q "^gap missing_dlq $WL_TOPIC/1/$((h + 1)) reason=not_json" ||
	die "no missing_dlq gap for RA-S2: $(cat "$WL_DIR/skipped.out")"
pass "skipped by a reset: exit 1, gaps missing_row $WL_TOPIC/1/$h (RA-S1) and missing_dlq $WL_TOPIC/1/$((h + 1))"

# Gap 4: Kafka's committed offset ahead of consumer_progress on partition 0.
read -r committed <<<"$(wl_offsets | awk '$1 == 0 { print $2 }')"
((committed > 0)) || die "partition 0 has committed offset $committed"
wl_sql "UPDATE payq.consumer_progress SET next_offset = next_offset - 1
        WHERE group_id = '$WL_GROUP' AND topic = '$WL_TOPIC' AND partition = 0" >/dev/null
rp_expect 1 ahead audit
gap_lines ahead | grep -q "^gap offset_ahead $WL_TOPIC/0 committed=$committed consumer_progress=$((committed - 1))" ||
	die "no offset_ahead gap for partition 0: $(cat "$WL_DIR/ahead.out")"
rp_assert_fields ahead gaps=3
pass "committed offset ahead of consumer_progress: gap offset_ahead $WL_TOPIC/0 committed=$committed"
