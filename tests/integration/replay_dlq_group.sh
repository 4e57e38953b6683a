#!/bin/bash
# payq-replay audit counts only the audited group's dead letters: a DLQ record is the
# group's only if its payq-dlq-group header names it. Another group reading the same
# topic into the same DLQ topic (a shadow consumer) dead-letters the same malformed
# messages; its copies must not hide a message that the audited group skipped.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

gap_lines() { grep '^gap ' "$WL_DIR/$1.out" || true; }

wl_init rdlqg 1
{
	wl_cmd_create DG-1 DG-1:c 100
	echo 'DG-M1|not json at all'
} | wl_produce -p 0
wl_worker_start w1
wl_wait_assigned w1
wl_wait_drained 60
wl_worker_stop w1 TERM
rp_wait_group_empty
rp_expect 0 clean audit
rp_assert_fields clean malformed=1 gaps=0
pass "group $WL_GROUP: one malformed message, dead-lettered by its worker: no gap"

# A second malformed message, consumed by a shadow group only.
m2=$(wl_offsets | awk '$1 == 0 { print $4 }')
echo 'DG-M2|also not json' | wl_produce -p 0
wl_worker_start shadow PAYQ_GROUP="$WL_GROUP-shadow"
# shellcheck disable=SC2016 # wait_for evaluates it
wait_for '[[ $(rp_count "$WL_DLQ") == 3 ]]' 60 ||
	die "the shadow group did not dead-letter both messages: $(rp_count "$WL_DLQ") DLQ records"
wl_worker_stop shadow TERM
assert_eq "$WL_GROUP $WL_GROUP-shadow" \
	"$(kcat -C -b "$PAYQ_TEST_BROKERS" -t "$WL_DLQ" -e -q -f '%h\n' | grep -o 'payq-dlq-group=[^,]*' |
		cut -d = -f 2 | sort -u | tr '\n' ' ' | sed 's/ $//')" \
	"the DLQ topic holds dead letters of both groups (payq-dlq-group)"

# Our group skips DG-M2: its only DLQ record is the shadow group's.
rp_expect 0 skip reset-offsets --to-latest --execute
rp_expect 1 skipped audit
rp_assert_fields skipped malformed=2 gaps=1
gap_lines skipped | grep -q "^gap missing_dlq $WL_TOPIC/0/$m2 reason=not_json" ||
	die "no missing_dlq gap for $WL_TOPIC/0/$m2: $(cat "$WL_DIR/skipped.out")"
pass "skipped by group $WL_GROUP, dead-lettered only by $WL_GROUP-shadow: gap missing_dlq $WL_TOPIC/0/$m2"
