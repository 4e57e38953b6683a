# Helpers for the payq-replay integration tests (replay_*.sh); source after tests/lib/common.sh
# and worker_lib.sh, whose wl_init gives each test its own topics, group and database.
# shellcheck shell=bash

require_env PAYQ_REPLAY_EXE PAYQ_REPLAY_PROBE_EXE
RP_EXE=$PAYQ_REPLAY_EXE

# rp NAME ARGS...: runs payq-replay against this test's topics, group and database.
# It connects as payq_replay (WL_REPLAY_DB), which may read everything and move
# consumer_progress, nothing more.
# stdout goes to $WL_DIR/NAME.out, stderr to $WL_DIR/NAME.err; RP_RC gets the exit code.
rp() {
	local name=$1
	shift
	RP_RC=0
	env PAYQ_BROKERS="$PAYQ_TEST_BROKERS" PAYQ_TOPIC="$WL_TOPIC" PAYQ_DLQ_TOPIC="$WL_DLQ" \
		PAYQ_GROUP="$WL_GROUP" PAYQ_DB="$WL_REPLAY_DB" PAYQ_LOG_LEVEL=warn \
		"$RP_EXE" "$@" </dev/null >"$WL_DIR/$name.out" 2>"$WL_DIR/$name.err" || RP_RC=$?
	echo "payq-replay $* -> $RP_RC" >>"$WL_DIR/events"
}

# rp_expect RC NAME ARGS...: rp, and dies unless the exit code is RC.
rp_expect() {
	local want=$1
	shift
	rp "$@"
	[[ $RP_RC == "$want" ]] ||
		die "payq-replay ${*:2} exited $RP_RC, expected $want; stdout: $(cat "$WL_DIR/$1.out"); stderr: $(cat "$WL_DIR/$1.err")"
}

# rp_field NAME KEY: the value of KEY=VALUE in the last line of NAME.out that has it.
rp_field() {
	grep -o "[[:space:]]$2=[^[:space:]]*" "$WL_DIR/$1.out" | tail -n 1 | cut -d = -f 2
}

# rp_assert_fields NAME KEY=VALUE...: each summary field has the value.
rp_assert_fields() {
	local name=$1 kv
	shift
	for kv in "$@"; do
		[[ $(rp_field "$name" "${kv%%=*}") == "${kv#*=}" ]] ||
			die "$name: expected ${kv%%=*}=${kv#*=} in: $(cat "$WL_DIR/$name.out")"
	done
}

# The current time as ISO 8601 UTC with milliseconds, and in ms since the epoch.
rp_now_iso() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
rp_now_ms() { date +%s%3N; }

rp_dups() { wl_sql "SELECT coalesce(sum(duplicates), 0) FROM payq.processed_commands"; }

# A digest of everything a command can change, except the duplicate counters: orders
# (with updated_at), payments, outcomes with their Kafka coordinates, anomalies.
rp_state() {
	wl_sql "SELECT count(*) || ':' || md5(coalesce(string_agg(x, ';' ORDER BY x), '')) FROM (
	  SELECT 'o:' || order_id || ':' || status || ':' || version || ':' ||
	         coalesce(paid_command_id, '') || ':' || updated_at AS x FROM payq.orders
	  UNION ALL SELECT 'p:' || payment_id || ':' || order_id || ':' || command_id || ':' || status
	  FROM payq.payments
	  UNION ALL SELECT 'c:' || order_id || ':' || command_id || ':' || outcome || ':' ||
	         encode(payload_sha256, 'hex') || ':' || kafka_partition || ':' || kafka_offset
	  FROM payq.processed_commands
	  UNION ALL SELECT 'a:' || id || ':' || kind FROM payq.anomalies) s"
}

# Messages in a topic of this test (sum of high - low watermarks).
rp_count() {
	"$WL_PROBE" offsets "$PAYQ_TEST_BROKERS" "$WL_GROUP" "$1" | awk '{ n += $4 - $3 } END { print n + 0 }' ||
		die "offsets_probe failed on $1"
}

# Waits until the group has no members (a stopped worker leaves it within a moment).
rp_wait_group_empty() {
	wait_for "\"\$WL_PROBE\" group \"\$PAYQ_TEST_BROKERS\" \"\$WL_GROUP\" | grep -Eq '^(Empty|Dead) 0\$'" 30 ||
		die "group $WL_GROUP still has members: $("$WL_PROBE" group "$PAYQ_TEST_BROKERS" "$WL_GROUP")"
}

# rp_table NAME: the reset-offsets table rows of NAME.out as "PARTITION LOW HIGH CURRENT NEW
# PROGRESS" lines.
rp_table() {
	awk -v t="$WL_TOPIC" '$1 == t && NF == 7 { print $2, $3, $4, $5, $6, $7 }' "$WL_DIR/$1.out"
}

# rp_probe_produce PARTITION TIMESTAMP_MS KEY VALUE [NAME=VALUE...]: one record on this
# test's commands topic with that CreateTime; prints "PARTITION OFFSET".
rp_probe_produce() {
	"$PAYQ_REPLAY_PROBE_EXE" produce "$PAYQ_TEST_BROKERS" "$WL_TOPIC" "$@" ||
		die "replay_probe could not produce to $WL_TOPIC"
}

# A reset racing a worker that is still finishing a batch. w1 freezes inside a batch
# transaction (PAYQ_STALL_AT) until max.poll.interval.ms puts it out of the group; the
# group is then empty, so `reset-offsets --to-earliest --execute` rewinds it to offset 0,
# Kafka and consumer_progress; then w1 wakes and commits its batch. Its progress write
# must not raise consumer_progress past the reset (the next worker's drift check would
# then seek forward and undo the rewind), and w1 must neither store nor commit offsets:
# it exits. The rewound group then re-consumes everything once, as duplicates.
rp_scenario_reset_race() {
	local total n_b applied
	wl_init rrace 1
	# The stall ends when the test creates rrace.wake, after the reset; 40 s is its bound.
	wl_worker_start w1 PAYQ_STALL_AT=before_db_commit:2 PAYQ_STALL_MS=40000 \
		PAYQ_STALL_UNTIL="$WL_DIR/rrace.wake" PAYQ_BATCH_WAIT_MS=500 -- \
		-X max.poll.interval.ms=7000
	wl_wait_assigned w1
	wl_cmd_create RR-0 RR-0:c 100 | wl_produce
	wl_wait_applied 1 30
	wl_gen_orders RR 3
	wl_produce <"$WL_DIR/cmds.RR"
	n_b=$(wc -l <"$WL_DIR/cmds.RR")
	total=$((n_b + 1))
	wl_expect_cmd RR-0 RR-0:c applied
	wl_expect_order RR-0 unpaid 1 '' 0
	wl_wait_log w1 'stall point before_db_commit reached' 30
	rp_wait_group_empty
	rp_expect 0 reset reset-offsets --to-earliest --execute
	assert_eq "0 0" "$(wl_progress)" "reset-offsets moved consumer_progress to 0"
	((! $(wl_log_count w1 'stall point before_db_commit: awake'))) ||
		die "test timing: w1 woke before the reset finished; raise PAYQ_STALL_MS"
	pass "the reset landed while w1 was frozen in its batch and out of the group"
	touch "$WL_DIR/rrace.wake"

	wl_wait_log w1 'stall point before_db_commit: awake' 60
	# shellcheck disable=SC2016 # wait_for evaluates it
	wait_for '(($(wl_applied) > 1)) || ! proc_alive '"${WL_PID[w1]}" 60 ||
		die "w1's batch was not committed: $(wl_applied) rows"
	# w1's commit and a worker that went on would both show here within a few seconds.
	sleep 3
	[[ $(wl_progress) == "0 0" ]] ||
		wl_violation "consumer_progress is '$(wl_progress)' after w1's late commit: the reset to 0 was undone"
	applied=$(wl_applied)
	pass "w1's late batch ($applied rows in all) left consumer_progress at the reset offset 0"
	wl_worker_wait_exit w1 30 ||
		wl_violation "w1 still runs 30 s after its stale batch; it should exit without storing offsets"
	[[ $WL_RC != 0 ]] || wl_violation "w1 exited 0 after a stale batch"
	grep -q 'reset' "$WL_DIR/w1.log" || wl_violation "w1 did not log why it stopped"
	[[ $(wl_offsets | awk '{ print $2 }') == 0 ]] ||
		wl_violation "committed offset is $(wl_offsets | awk '{ print $2 }'), w1 committed past the reset"
	pass "w1 noticed its stale position and exited ($WL_RC) without committing offsets"

	wl_worker_start w2
	wl_wait_assigned w2
	wl_wait_drained 60
	(($(wl_log_count w2 'behind consumer_progress|offset_gap') == 0)) ||
		wl_violation "w2's drift check moved or questioned the rewound offset"
	[[ $(rp_dups) == "$applied" ]] ||
		wl_violation "duplicates: $(rp_dups), expected $applied (each command applied before the reset, again once)"
	[[ $(wl_progress) == "0 $total" ]] || wl_violation "consumer_progress is '$(wl_progress)', expected '0 $total'"
	wl_check_state
	pass "the rewind held: w2 consumed all $total messages again, as duplicates"
	wl_worker_stop w2 TERM
}
