# Helpers for the payq-replay integration tests (replay_*.sh); source after tests/lib.sh
# and worker_lib.sh, whose wl_init gives each test its own topics, group and database.
# shellcheck shell=bash

require_env PAYQ_REPLAY_EXE
RP_EXE=$PAYQ_REPLAY_EXE

# rp NAME ARGS...: runs payq-replay against this test's topics, group and database.
# stdout goes to $WL_DIR/NAME.out, stderr to $WL_DIR/NAME.err; RP_RC gets the exit code.
rp() {
	local name=$1
	shift
	RP_RC=0
	env PAYQ_BROKERS="$PAYQ_TEST_BROKERS" PAYQ_TOPIC="$WL_TOPIC" PAYQ_DLQ_TOPIC="$WL_DLQ" \
		PAYQ_GROUP="$WL_GROUP" PAYQ_DB="$WL_DB" PAYQ_LOG_LEVEL=warn \
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
