# Shared helpers for the fault-injection scenarios; source it, do not run it.
# shellcheck shell=bash
#
# Every scenario is isolated: its own database (CREATE DATABASE + payq-worker migrate), its
# own payq-devbroker (librdkafka's mock cluster, driven through --control), its own
# consumer group and work folder. Everything started here is stopped by the EXIT trap of
# tests/lib/common.sh, also on failure.
#
# Checks are functions that print "ok ..." or "VIOLATION ..." and return non-zero on a
# violation, so the same check runs against the real worker (must pass) and a mutant
# (must fail). Settings, all optional:
#   PAYQ_FAULTS_KEEP=1               keep the work folder (logs, dumps)
#   PAYQ_FAULTS_WORKER_EXE           run this worker instead of PAYQ_WORKER_EXE
#   PAYQ_FAULTS_ONLY="check_x ..."   judge the run by these checks alone
#   PAYQ_FAULTS_EXPECT_VIOLATION=1   succeed only if some check reports a violation
#   PAYQ_FAULTS_ASAN_EXE             AddressSanitizer worker (else built in
#                                    $PAYQ_BUILD_ROOT/../build-faults-asan)
#   PAYQ_MUTANT_<NAME>_EXE           mutant worker (else built in
#                                    $PAYQ_BUILD_ROOT/../build-mut-<name>)

# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "${BASH_SOURCE[0]}")/../..}/tests/lib/common.sh"
# shellcheck source=tests/lib/mutant.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/mutant.sh"
# shellcheck source=tests/lib/worker.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/worker.sh"

require_env PAYQ_TEST_DB PAYQ_WORKER_EXE PAYQ_DEVBROKER_EXE PAYQ_PRODUCER_EXE \
	PAYQ_OFFSETS_PROBE_EXE PAYQ_SOURCE_ROOT PAYQ_BUILD_ROOT

TOPIC=payq.commands
DLQ_TOPIC=payq.commands.dlq
WORKER_EXE=${PAYQ_FAULTS_WORKER_EXE:-$PAYQ_WORKER_EXE}
VIOLATIONS=0

WORK=$(mktemp -d -t "payq-faults-$TEST_NAME.XXXXXX")
if [[ ${PAYQ_FAULTS_KEEP:-0} == 1 ]]; then
	on_exit "echo 'kept $WORK'"
else
	on_exit "rm -rf '$WORK'"
fi
: >"$WORK/expected.tsv"
# cleanup() in tests/lib/common.sh holds the exit status in rc while it runs these.
# shellcheck disable=SC2016
on_exit '((rc == 0)) || dump_logs'
: >"$WORK/malformed.tsv"

# Database and group names: unique per run, safe as identifiers.
RUN_ID=$(tr -c 'a-z0-9\n' _ <<<"${TEST_NAME,,}")_$$
GROUP=faults-$RUN_ID

# ---- PostgreSQL ----

# Creates this scenario's database and migrates it; sets DB (its conninfo).
db_create() {
	DBNAME=faults_$RUN_ID
	psql "$PAYQ_TEST_DB" -XAtq -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DBNAME" >/dev/null ||
		die "cannot create database $DBNAME"
	on_exit "db_drop"
	# In a conninfo string a repeated keyword takes its last value.
	DB="$PAYQ_TEST_DB dbname=$DBNAME"
	PAYQ_DB=$DB "$WORKER_EXE" migrate >"$WORK/migrate.log" 2>&1 || {
		cat "$WORK/migrate.log" >&2
		die "payq-worker migrate failed"
	}
	sql "CREATE SCHEMA faults;
	     CREATE TABLE faults.expected (order_id text, command_id text, command_type text,
	                                   PRIMARY KEY (order_id, command_id))"
}

db_drop() {
	# The database may be down in a failed PostgreSQL scenario: bring it back to drop.
	if [[ -n ${PAYQ_TEST_PG_DIR:-} ]] && ! psql "$PAYQ_TEST_DB" -XAtqc 'SELECT 1' >/dev/null 2>&1; then
		"$PAYQ_SOURCE_ROOT/deploy/local/pg" start "$PAYQ_TEST_PG_DIR" >/dev/null 2>&1 || true
	fi
	psql "$PAYQ_TEST_DB" -XAtq -c "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1 || true
}

# Runs SQL in this scenario's database; prints unaligned tuples.
sql() { psql "$DB" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# Starts tests/faults/pgproxy.py in front of PostgreSQL, dropping the answer of the first
# PROXY_DROPS (default 1) COMMITs (its log, $WORK/proxy.out, says "dropped COMMIT answer
# 1"), and sets PROXY_DB to this scenario's database through it. In plain text: the proxy
# reads the statements to find the COMMIT (the test cluster has TLS on). Its mode
# (pgproxy.py: forward, hole, hole-all, refuse) is the first word of $WORK/proxy.ctl.
commit_proxy_start() {
	local host port pid
	host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$PAYQ_TEST_DB")
	port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$PAYQ_TEST_DB")
	echo forward >"$WORK/proxy.ctl"
	PGPROXY_CONTROL=$WORK/proxy.ctl python3 "$PAYQ_SOURCE_ROOT/tests/faults/pgproxy.py" \
		"$WORK/proxy.port" "${host:-127.0.0.1}" "${port:-5432}" "${PROXY_DROPS:-1}" \
		>"$WORK/proxy.out" 2>&1 &
	pid=$!
	on_exit "proc_stop $pid"
	wait_until 10 test -s "$WORK/proxy.port" || die "pgproxy.py did not start: $(cat "$WORK/proxy.out")"
	# shellcheck disable=SC2034 # for the scenarios that source this file
	PROXY_DB="$DB host=127.0.0.1 port=$(cat "$WORK/proxy.port") sslmode=disable"
}

# ---- the mock cluster ----

# Starts payq-devbroker with a control FIFO: broker_start [--brokers N] [--partitions N].
# Sets BROKERS.
broker_start() {
	local i
	BROKER_OUT=$WORK/devbroker.out
	BROKER_FIFO=$WORK/devbroker.ctl
	mkfifo "$BROKER_FIFO"
	"$PAYQ_DEVBROKER_EXE" "$@" --control "$BROKER_FIFO" >"$BROKER_OUT" 2>"$WORK/devbroker.err" &
	BROKER_PID=$!
	on_exit "proc_stop $BROKER_PID"
	for ((i = 0; i < 100; i++)); do
		[[ -s $BROKER_OUT ]] && break
		sleep 0.1
	done
	BROKERS=$(head -n 1 "$BROKER_OUT")
	[[ $BROKERS == *:* ]] || die "payq-devbroker did not start: $(cat "$WORK/devbroker.err")"
	# Keep the FIFO open for writing, so each command is one write on an open descriptor.
	exec {BROKER_FD}>"$BROKER_FIFO"
	log "mock cluster at $BROKERS ($*)"
}

# Places every leader on the mock cluster: the commands topic's N partitions on broker
# TOPIC_B, the DLQ's on DLQ_B, and the group's coordinator on COORD_B:
# place_leaders N TOPIC_B DLQ_B COORD_B
place_leaders() {
	local n=$1 topic_b=$2 dlq_b=$3 coord_b=$4 p
	for ((p = 0; p < n; p++)); do
		broker_ctl leader "$TOPIC" "$p" "$topic_b"
		broker_ctl leader "$DLQ_TOPIC" "$p" "$dlq_b"
	done
	broker_ctl coordinator group "$GROUP" "$coord_b"
}

# Sends one control command and fails unless the answer is ok.
broker_ctl() {
	local before after i answer
	before=$(wc -l <"$BROKER_OUT")
	printf '%s\n' "$*" >&"$BROKER_FD"
	for ((i = 0; i < 100; i++)); do
		after=$(wc -l <"$BROKER_OUT")
		((after > before)) && break
		sleep 0.05
	done
	answer=$(sed -n "$((before + 1))p" "$BROKER_OUT")
	[[ $answer == ok* ]] || die "devbroker: '$*': ${answer:-no answer}"
	log "devbroker: $* -> $answer"
}

# ---- Kafka state ----

probe() { "$PAYQ_OFFSETS_PROBE_EXE" "$@"; }

# "partition high" for every partition of the commands topic.
end_offsets() { probe end "$BROKERS" "$TOPIC" | awk '{ print $1, $3 }'; }

# "partition committed" for GROUP (-1: none).
committed_offsets() { probe committed "$BROKERS" "$GROUP" "$TOPIC"; }

# Committed offsets equal the log-end offsets (an empty partition needs no commit).
committed_at_end() {
	[[ $(committed_offsets | awk '{ print $1, ($2 < 0 ? 0 : $2) }') == "$(end_offsets)" ]]
}

# Starts sampling GROUP's committed offsets in the background, to catch one moving back.
monitor_start() {
	"$PAYQ_OFFSETS_PROBE_EXE" monitor "$BROKERS" "$GROUP" "$TOPIC" 200 >"$WORK/monitor.out" 2>"$WORK/monitor.err" &
	MONITOR_PID=$!
	on_exit "proc_stop $MONITOR_PID"
}

monitor_stop() { proc_stop "$MONITOR_PID"; }

# ---- traffic ----

# Writes create_order and pay for orders FROM..TO (IDs ORD-<PID>-N) to a JSONL file,
# records them as expected, and prints the file name.
orders_file() {
	local from=$1 to=$2 i o file=$WORK/orders-$1-$2.jsonl
	: >"$file"
	for ((i = from; i <= to; i++)); do
		o=ORD-$$-$i
		printf '{"v":1,"type":"create_order","command_id":"c-%s-1","order_id":"%s","amount_minor":%d,"currency":"CNY","customer_id":"u-%d"}\n' \
			"$i" "$o" $((1000 + i)) "$i" >>"$file"
		printf '{"v":1,"type":"pay","command_id":"c-%s-2","order_id":"%s","amount_minor":%d,"currency":"CNY","payer_id":"u-%d"}\n' \
			"$i" "$o" $((1000 + i)) "$i" >>"$file"
		printf '%s\tc-%s-1\tcreate_order\n%s\tc-%s-2\tpay\n' "$o" "$i" "$o" "$i" >>"$WORK/expected.tsv"
	done
	printf '%s' "$file"
}

# Produces create_order and pay for orders FROM..TO: produce_orders FROM TO
produce_orders() {
	local file
	file=$(orders_file "$1" "$2")
	PAYQ_LOG_LEVEL=warn "$PAYQ_PRODUCER_EXE" --brokers "$BROKERS" -X reconnect.backoff.max.ms=1000 send "$file" \
		>>"$WORK/producer.log" 2>&1 || die "payq-producer send failed: $(tail -n 3 "$WORK/producer.log")"
	log "produced orders $1..$2 ($((($2 - $1 + 1) * 2)) commands)"
}

# The same in the background; sets PRODUCER_PID (wait for it).
produce_orders_bg() {
	local file
	file=$(orders_file "$1" "$2")
	PAYQ_LOG_LEVEL=warn "$PAYQ_PRODUCER_EXE" --brokers "$BROKERS" -X reconnect.backoff.max.ms=1000 send "$file" \
		>>"$WORK/producer.log" 2>&1 &
	PRODUCER_PID=$!
	on_exit "proc_stop $PRODUCER_PID"
	log "producing orders $1..$2 in the background"
}

# Produces only create_order, or only pay, for FROM..TO: produce_half create_order|pay FROM TO
produce_half() {
	local type=$1 from=$2 to=$3 i o k file=$WORK/$1-$2-$3.jsonl
	: >"$file"
	for ((i = from; i <= to; i++)); do
		o=ORD-$$-$i
		if [[ $type == create_order ]]; then
			k=1
			printf '{"v":1,"type":"create_order","command_id":"c-%s-1","order_id":"%s","amount_minor":%d,"currency":"CNY"}\n' \
				"$i" "$o" $((1000 + i)) >>"$file"
		else
			k=2
			printf '{"v":1,"type":"pay","command_id":"c-%s-2","order_id":"%s","amount_minor":%d,"currency":"CNY"}\n' \
				"$i" "$o" $((1000 + i)) >>"$file"
		fi
		printf '%s\tc-%s-%s\t%s\n' "$o" "$i" "$k" "$type" >>"$WORK/expected.tsv"
	done
	PAYQ_LOG_LEVEL=warn "$PAYQ_PRODUCER_EXE" --brokers "$BROKERS" -X reconnect.backoff.max.ms=1000 send "$file" \
		>>"$WORK/producer.log" 2>&1 || die "payq-producer send failed: $(tail -n 3 "$WORK/producer.log")"
	log "produced $type for orders $from..$to"
}

# Produces N malformed messages (not JSON), keys MAL-<RUN>-FROM..: produce_malformed FROM TO
produce_malformed() {
	local from=$1 to=$2 i
	for ((i = from; i <= to; i++)); do
		printf 'MAL-%s-%d\tnot json %d\n' "$$" "$i" "$i"
	done | probe produce "$BROKERS" "$TOPIC" 2>>"$WORK/producer.log" ||
		die "producing malformed messages failed"
	log "produced malformed messages $from..$to"
}

# Prints "partition offset" of the malformed messages FROM..TO.
malformed_positions_range() {
	probe dump-text "$BROKERS" "$TOPIC" >"$WORK/positions.dump" || die "cannot read $TOPIC"
	awk -v pid="$$" -v from="$1" -v to="$2" '
		split($3, k, "-") == 3 && k[1] == "MAL" && k[2] == pid && k[3] >= from && k[3] <= to {
			print $1, $2
		}' "$WORK/positions.dump" | sort -n
}

# Prints "partition offset" of every malformed message produced.
malformed_positions() { malformed_positions_range 0 1000000000; }

# ---- the worker ----

# Common settings: quick timeouts so faults show within seconds. WORKER_ENV holds
# VAR=VALUE settings a scenario adds for every worker it starts.
WORKER_X=(-X session.timeout.ms=6000 -X heartbeat.interval.ms=500 -X reconnect.backoff.max.ms=1000)
WORKER_ENV=()

# Starts a worker in the background: worker_start NAME [VAR=VALUE]... [-- ARGS...]
# Environment overrides come before "--", worker arguments after it. Sets WPID_<NAME>.
worker_start() {
	local name=$1 envs=() args=() pid
	shift
	while (($#)); do
		if [[ $1 == -- ]]; then
			shift
			args=("$@")
			break
		fi
		envs+=("$1")
		shift
	done
	worker_spawn "$WORK/$name.log" \
		env PAYQ_BROKERS="$BROKERS" PAYQ_DB="$DB" PAYQ_GROUP="$GROUP" PAYQ_HTTP_ADDR= \
		PAYQ_BATCH_WAIT_MS=20 PAYQ_RETRY_MAX_MS=1000 PAYQ_STATS_INTERVAL_MS=0 \
		PAYQ_SHUTDOWN_TIMEOUT_MS=10000 PAYQ_LOG_LEVEL=info "${WORKER_ENV[@]}" "${envs[@]}" \
		"$WORKER_EXE" "${WORKER_X[@]}" "${args[@]}"
	pid=$WORKER_SPAWN_PID
	printf -v "WPID_$name" '%s' "$pid"
	on_exit "proc_stop $pid"
	log "worker $name started (pid $pid)"
}

worker_pid() {
	local v=WPID_$1
	printf '%s' "${!v}"
}

worker_alive() { proc_alive "$(worker_pid "$1")"; }

# Counts the worker's assignments so far.
assigned_count() { grep -c '"assigned [0-9]* partitions' "$WORK/$1.log" || true; }

assigned_at_least() { (($(assigned_count "$1") >= $2)); }

# Waits until the worker has been assigned partitions (TIMEOUT_S, default 20).
worker_wait_assigned() {
	wait_until "${2:-20}" grep -q '"assigned [0-9]* partitions' "$WORK/$1.log" ||
		die "worker $1 was not assigned partitions: $(tail -n 5 "$WORK/$1.log")"
}

# Sends SIGTERM and waits for the worker; sets WORKER_RC to its exit code. (Not in a
# command substitution: only this shell can wait for its children.)
worker_stop() {
	local pid
	pid=$(worker_pid "$1")
	kill -TERM "$pid" 2>/dev/null || true
	proc_reap "$pid"
	WORKER_RC=$PROC_RC
}

# Waits up to TIMEOUT_S for a worker to exit by itself; sets WORKER_RC to its exit code,
# or to "timeout".
worker_wait_exit() {
	local pid
	pid=$(worker_pid "$1")
	if ! proc_wait_gone "$pid" "${2:-30}"; then
		WORKER_RC=timeout
		return 0
	fi
	proc_reap "$pid"
	WORKER_RC=$PROC_RC
}

# ---- waiting for progress ----

expected_count() { wc -l <"$WORK/expected.tsv"; }

processed_count() { sql "SELECT count(*) FROM payq.processed_commands"; }

# consumer_progress has reached the log-end offset of every non-empty partition: every
# message is settled, malformed ones included (their batch commits after their DLQ copies).
progress_at_end() {
	[[ $(sql "SELECT partition || ' ' || next_offset FROM payq.consumer_progress
	          WHERE group_id = '$GROUP' AND topic = '$TOPIC' ORDER BY partition") == \
		"$(end_offsets | awk '$2 > 0')" ]]
}

all_processed() { [[ $(processed_count) -ge $(expected_count) ]] && progress_at_end; }

# Waits up to 60 s until every produced command has its processed_commands row and every
# message, valid or not, is settled in consumer_progress.
wait_processed() {
	wait_until 60 all_processed ||
		die "only $(processed_count) of $(expected_count) commands processed in 60 s"
	log "all $(expected_count) commands processed"
}

# ---- checks: print ok/VIOLATION, return non-zero on violation ----

# Every produced command processed and every message settled within TIMEOUT_S: a stall
# (a partition never fetched again) is a violation, not a test error. A mutation check
# whose mutant stalls for good may wait less in the mutant's run: PAYQ_FAULTS_STALL_S, when
# set and smaller, replaces TIMEOUT_S under PAYQ_FAULTS_EXPECT_VIOLATION=1 only (the real
# worker's run, the control, keeps TIMEOUT_S).
check_processed() {
	local t=$1
	if [[ ${PAYQ_FAULTS_EXPECT_VIOLATION:-0} == 1 && -n ${PAYQ_FAULTS_STALL_S:-} ]] &&
		((PAYQ_FAULTS_STALL_S < t)); then
		t=$PAYQ_FAULTS_STALL_S
	fi
	if ! wait_until "$t" all_processed; then
		violation "only $(processed_count) of $(expected_count) commands processed, consumer_progress [$(sql "SELECT string_agg(partition || ':' || next_offset, ' ' ORDER BY partition) FROM payq.consumer_progress WHERE group_id = '$GROUP'")] against log-end offsets [$(end_offsets | tr '\n' ' ')], after $t s"
		return 1
	fi
	pass "all $(expected_count) commands processed"
}

violation() {
	printf 'VIOLATION %s: %s\n' "$TEST_NAME" "$*"
	return 1
}

load_expected() {
	sql "TRUNCATE faults.expected"
	psql "$DB" -XAtq -v ON_ERROR_STOP=1 -c "\\copy faults.expected FROM '$WORK/expected.tsv'"
}

# Exactly once: one processed_commands row per produced command, no other rows, every
# outcome applied, one succeeded payment per paid order (none twice), orders paid at
# version 2 (a second effect would bump it), no offset_gap or key_reuse anomaly.
check_exactly_once() {
	local missing extra notapplied payments badorders anomalies rc=0
	load_expected
	missing=$(sql "SELECT count(*) FROM faults.expected e WHERE NOT EXISTS (SELECT 1 FROM
	               payq.processed_commands p WHERE p.order_id = e.order_id AND p.command_id = e.command_id)")
	extra=$(sql "SELECT count(*) FROM payq.processed_commands p WHERE NOT EXISTS (SELECT 1 FROM
	             faults.expected e WHERE p.order_id = e.order_id AND p.command_id = e.command_id)")
	notapplied=$(sql "SELECT count(*) FROM payq.processed_commands WHERE outcome <> 'applied'")
	payments=$(sql "SELECT count(*) FROM (SELECT e.order_id FROM faults.expected e
	                LEFT JOIN payq.payments p ON p.order_id = e.order_id
	                WHERE e.command_type = 'pay' GROUP BY e.order_id
	                HAVING count(p.payment_id) <> 1 OR bool_or(p.status <> 'succeeded')) x")
	badorders=$(sql "SELECT count(*) FROM (SELECT DISTINCT order_id FROM faults.expected
	                 WHERE command_type = 'pay') e LEFT JOIN payq.orders o USING (order_id)
	                 WHERE o.status IS DISTINCT FROM 'paid' OR o.version <> 2")
	anomalies=$(sql "SELECT count(*) FROM payq.anomalies WHERE kind IN ('offset_gap', 'key_reuse')")
	[[ $missing == 0 ]] || { violation "$missing of $(expected_count) commands have no processed_commands row (lost)" || rc=1; }
	[[ $extra == 0 ]] || { violation "$extra processed_commands rows for commands never produced" || rc=1; }
	[[ $notapplied == 0 ]] || { violation "$notapplied commands not 'applied': $(sql "SELECT string_agg(DISTINCT outcome, ',') FROM payq.processed_commands WHERE outcome <> 'applied'")" || rc=1; }
	[[ $payments == 0 ]] || { violation "$payments paid orders without exactly one succeeded payment" || rc=1; }
	[[ $badorders == 0 ]] || { violation "$badorders orders not paid at version 2 (missing or double effect)" || rc=1; }
	[[ $anomalies == 0 ]] || { violation "$anomalies offset_gap/key_reuse anomalies: $(sql "SELECT string_agg(kind || ': ' || coalesce(detail, ''), '; ') FROM payq.anomalies")" || rc=1; }
	((rc)) || pass "exactly once: $(expected_count) commands, one row and one effect each"
	return "$rc"
}

# consumer_progress equals the log-end offset of every non-empty partition.
check_progress() {
	local want got
	want=$(end_offsets | awk '$2 > 0')
	got=$(sql "SELECT partition || ' ' || next_offset FROM payq.consumer_progress
	           WHERE group_id = '$GROUP' AND topic = '$TOPIC' ORDER BY partition")
	if [[ $want != "$got" ]]; then
		violation "consumer_progress [$(tr '\n' ' ' <<<"$got")] differs from log-end offsets [$(tr '\n' ' ' <<<"$want")]"
		return 1
	fi
	pass "consumer_progress equals the log-end offsets"
}

# Committed offsets reach the log-end offsets within TIMEOUT_S (default 20) with no new
# traffic: a commit that failed is retried, not taken for done.
check_committed_end() {
	local timeout_s=${1:-20}
	if ! wait_until "$timeout_s" committed_at_end; then
		violation "committed offsets [$(committed_offsets | tr '\n' ' ')] did not reach the log-end offsets [$(end_offsets | tr '\n' ' ')] within $timeout_s s"
		return 1
	fi
	pass "committed offsets equal the log-end offsets"
}

# The committed offset of each given "PARTITION OFFSET" is not past OFFSET: the message
# there is not settled yet (its DLQ copy is not persisted).
check_committed_not_past() {
	local pos p o c rc=0
	for pos in "$@"; do
		read -r p o <<<"$pos"
		c=$(committed_offsets | awk -v p="$p" '$1 == p { print $2 }')
		if ((c > o)); then
			violation "partition $p committed at $c, past the malformed message at offset $o whose DLQ copy cannot be persisted yet" || rc=1
		fi
	done
	((rc)) || pass "committed offsets held before the unsettled malformed messages ($(printf '%s; ' "$@"))"
	return "$rc"
}

# Every malformed message of the commands topic has a copy in the DLQ, found by its
# payq-dlq-partition and payq-dlq-offset headers, and every DLQ copy carries the key of the
# message it names (a copy built from freed memory would not).
check_dlq_copies() {
	local want have missing bad rc=0
	probe dump-text "$BROKERS" "$TOPIC" >"$WORK/topic.dump" || die "cannot read $TOPIC"
	probe dump-text "$BROKERS" "$DLQ_TOPIC" >"$WORK/dlq.dump" || die "cannot read $DLQ_TOPIC"
	want=$(malformed_positions)
	have=$(awk '{ print $4, $5 }' "$WORK/dlq.dump" | sort -u)
	missing=$(comm -23 <(sort <<<"$want") <(sort <<<"$have") | tr '\n' ';')
	bad=$(awk 'NR == FNR { key[$1 " " $2] = $3; next }
		   key[$4 " " $5] != $3 { print "dlq " $1 "/" $2 " names " $4 "/" $5 " with key " $3 }' \
		"$WORK/topic.dump" "$WORK/dlq.dump" | head -n 5 | tr '\n' ';')
	if [[ -n $missing ]]; then
		violation "malformed messages without a DLQ copy (partition offset): $missing" || rc=1
	fi
	if [[ -n $bad ]]; then
		violation "DLQ copies that do not match the message they name: $bad" || rc=1
	fi
	((rc)) || pass "all $(wc -l <<<"$want") malformed messages have a matching DLQ copy"
	return "$rc"
}

# No AddressSanitizer report in any worker log (for ASan builds).
check_no_asan_report() {
	local hits
	hits=$(grep -h -A4 'ERROR: AddressSanitizer' "$WORK"/*.log | cut -c1-160 | head -n 5 | tr '\n' ' ' || true)
	if [[ -n $hits ]]; then
		violation "AddressSanitizer: $hits"
		return 1
	fi
	pass "no AddressSanitizer report"
}

# Committed offsets never moved backwards while the monitor sampled them.
check_monotonic() {
	monitor_stop
	if grep -q BACKWARDS "$WORK/monitor.out"; then
		violation "committed offsets moved backwards: $(grep BACKWARDS "$WORK/monitor.out" | tr '\n' ';')"
		return 1
	fi
	pass "committed offsets never moved backwards ($(grep samples "$WORK/monitor.out" || echo 'no samples'))"
}

# The worker never asked to commit while its assignment was lost. librdkafka 2.0.2 refuses
# such a commit of the current assignment (_ASSIGNMENT_LOST), so the attempt shows only in
# the worker's own log; a worker that got it through would overwrite the new owner's
# progress (check_monotonic catches that).
check_no_commit_after_lost() {
	local hits
	grep -q 'revoked [0-9]* partitions (assignment lost)' "$WORK/$1.log" ||
		die "scenario error: worker $1 never lost its assignment"
	hits=$(grep -E 'commit on revoke failed|Group partition assignment lost' "$WORK/$1.log" | cut -c1-200 || true)
	if [[ -n $hits ]]; then
		violation "worker $1 committed on a lost assignment: $(head -n 2 <<<"$hits" | tr '\n' ' ')"
		return 1
	fi
	pass "worker $1 did not commit when its assignment was lost"
}

# The worker kept its first assignment: no revoke, no second assignment.
check_assignment_kept() {
	local revokes
	revokes=$(grep -c '"revoked [0-9]* partitions' "$WORK/$1.log" || true)
	if ((revokes > 0 || $(assigned_count "$1") != 1)); then
		violation "worker $1 lost or gave up its partitions ($revokes revokes, $(assigned_count "$1") assignments)"
		return 1
	fi
	pass "worker $1 kept its assignment throughout"
}

# The worker is alive (not crashed).
check_alive() {
	if ! worker_alive "$1"; then
		violation "worker $1 died: $(tail -n 3 "$WORK/$1.log")"
		return 1
	fi
	pass "worker $1 is still running"
}

# Stops a worker with SIGTERM and checks it exits 0.
check_clean_stop() {
	worker_stop "$1"
	if [[ $WORKER_RC != 0 ]]; then
		violation "worker $1 exited $WORKER_RC on SIGTERM"
		return 1
	fi
	pass "worker $1 stopped cleanly on SIGTERM"
}

# Runs a check and counts its violation instead of stopping: expect CHECK [ARGS...]
# PAYQ_FAULTS_ONLY (check names, space-separated) restricts a run to those checks: the
# mutation checks use it to judge a mutant, and the real worker, by the checks that
# concern the mutation alone.
expect() {
	if [[ -n ${PAYQ_FAULTS_ONLY:-} && " $PAYQ_FAULTS_ONLY " != *" $1 "* ]]; then
		return 0
	fi
	"$@" || VIOLATIONS=$((VIOLATIONS + 1))
}

# Ends the test: exit 1 on any violation. With PAYQ_FAULTS_EXPECT_VIOLATION=1 (mutation
# checks), a run without violation is the failure.
finish() {
	if [[ ${PAYQ_FAULTS_EXPECT_VIOLATION:-0} == 1 ]]; then
		if ((VIOLATIONS)); then
			pass "mutant detected: $VIOLATIONS violations reported"
			exit 0
		fi
		die "mutant NOT detected: every check passed against $WORKER_EXE"
	fi
	((VIOLATIONS == 0)) || die "$VIOLATIONS violations (logs: $WORK, set PAYQ_FAULTS_KEEP=1 to keep)"
	pass "no violations"
}

# On failure, show the tail of every log to help diagnosis.
dump_logs() {
	local f
	for f in "$WORK"/*.log "$WORK"/devbroker.err; do
		[[ -s $f ]] || continue
		printf -- '--- %s (last 25 lines)\n' "$f"
		tail -n 25 "$f" | cut -c1-400
	done
}

# ---- other builds (tests/lib/mutant.sh builds them; mutant_exe comes from there) ----

# Prints the path of a worker built with AddressSanitizer, building it in
# $PAYQ_BUILD_ROOT/../build-faults-asan when PAYQ_FAULTS_ASAN_EXE is not set.
asan_exe() {
	local dir
	if [[ -n ${PAYQ_FAULTS_ASAN_EXE:-} ]]; then
		printf '%s' "$PAYQ_FAULTS_ASAN_EXE"
		return 0
	fi
	dir=$(realpath -m "$PAYQ_BUILD_ROOT/../build-faults-asan")
	cached_build "$dir" worker/payq-worker -Db_sanitize=address -Db_lundef=false ||
		die "cannot build the AddressSanitizer worker in $dir"
	printf '%s' "$dir/worker/payq-worker"
}

# mutant_scenario_check NAME SCENARIO CHECKS: the mutation check of one scenario (a script
# path): judged by CHECKS alone (PAYQ_FAULTS_ONLY), it reports a violation against the NAME
# mutant. Settings of the scenario go in the caller's environment (VAR=VALUE
# mutant_scenario_check ...). The control, the same scenario against the real worker, is
# the scenario's own test in this suite, with every check; a caller whose settings differ
# from that test's sets PAYQ_MUTANT_CONTROL=1, which runs the control here first (and so
# does anyone running a mutation check alone).
mutant_scenario_check() {
	local name=$1 scenario=$2 checks=$3 base mutant
	base=$(basename "$scenario" .sh)
	mutant=$(mutant_exe "$name")
	if [[ ${PAYQ_MUTANT_CONTROL:-0} == 1 ]]; then
		log "real worker: $WORKER_EXE"
		PAYQ_FAULTS_ONLY=$checks TEST_NAME=$base-real "$scenario" ||
			die "the scenario's checks fail against the real worker"
	fi
	log "mutant: $mutant"
	PAYQ_FAULTS_ONLY=$checks PAYQ_FAULTS_EXPECT_VIOLATION=1 PAYQ_FAULTS_WORKER_EXE=$mutant \
		TEST_NAME=$base-mutant "$scenario" ||
		die "the scenario did not detect the $name mutant"
	pass "$name mutant detected (the real worker passes the same scenario: $base)"
}
