#!/bin/bash
# The database is the truth for progress (DESIGN.md, "Worker behaviour"): with the workers
# stopped, `payq-replay reset-offsets --to-latest --execute --force` without a database
# moves Kafka alone past commands never applied. The next worker's drift check finds Kafka
# ahead of consumer_progress, seeks back, raises progress_rewind with both offsets (one per
# partition that had unapplied messages), counts payq_offset_rewinds_total{direction="back"},
# and applies every command exactly once. Against the old rule (trust Kafka when ahead) the
# skipped commands stay unapplied.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

wl_init ptruth 4
wl_gen_orders PA 40
wl_produce <"$WL_DIR/cmds.PA"
wl_worker_start w1
wl_wait_assigned w1
wl_wait_drained 60
wl_worker_stop w1 TERM
rp_wait_group_empty
progress_a=$(wl_progress)
# A partition without a progress row would be trusted to Kafka (no_progress), by design.
assert_eq 4 "$(wc -l <<<"$progress_a")" "batch A left a consumer_progress row on every partition"

# Batch B arrives while no worker runs; Kafka alone is moved past it.
wl_gen_orders PB 10
wl_produce <"$WL_DIR/cmds.PB"
ends=$(wl_offsets | awk '{ print $1, $4 }')
behind=$(paste -d ' ' <(echo "$progress_a") <(echo "$ends") | awk '$4 > $2 { n++ } END { print n + 0 }')
((behind > 0)) || die "scenario error: batch B landed on no partition"
rc=0
env PAYQ_BROKERS="$PAYQ_TEST_BROKERS" PAYQ_TOPIC="$WL_TOPIC" PAYQ_GROUP="$WL_GROUP" PAYQ_DB= \
	PAYQ_LOG_LEVEL=warn "$RP_EXE" reset-offsets --to-latest --execute --force \
	</dev/null >"$WL_DIR/force.out" 2>"$WL_DIR/force.err" || rc=$?
assert_eq 0 "$rc" "reset-offsets --force without a database succeeds ($(cat "$WL_DIR/force.err"))"
assert_eq "$ends" "$(wl_offsets | awk '{ print $1, $2 }')" "--force moved Kafka's committed offsets to the end"
assert_eq "$progress_a" "$(wl_progress)" "--force left consumer_progress alone"

wl_worker_start w2
wl_wait_assigned w2
wl_wait_drained 60
assert_eq "$behind" "$(wl_sql "SELECT count(*) FROM payq.anomalies WHERE kind = 'progress_rewind'")" \
	"progress_rewind raised once per partition that Kafka had moved past unapplied commands"
want=$(paste -d ' ' <(echo "$progress_a") <(echo "$ends") | awk '$4 > $2 { print $1, $4, $2 }')
got=$(wl_sql "SELECT kafka_partition, kafka_offset, substring(detail FROM 'consumer_progress ([0-9]+)')
              FROM payq.anomalies WHERE kind = 'progress_rewind' ORDER BY kafka_partition")
assert_eq "$want" "$got" "each progress_rewind names the partition, Kafka's offset and consumer_progress"
assert_eq "$behind" "$(wl_metrics w2 | awk '$1 == "payq_offset_rewinds_total{direction=\"back\"}" { print $2 }')" \
	"payq_offset_rewinds_total{direction=\"back\"} counts them"
# The rest of the state is the usual one: every command of A and B applied exactly once.
wl_sql "DELETE FROM payq.anomalies WHERE kind = 'progress_rewind'" >/dev/null
wl_check_state
wl_flush_violations
assert_eq "$ends" "$(wl_progress)" "consumer_progress reached the end"
wl_worker_stop w2 TERM
pass "reset-offsets --force undone by the worker: batch B applied after a rewind on $behind partitions"
