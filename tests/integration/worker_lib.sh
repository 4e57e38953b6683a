# Helpers for the payq-worker integration tests (worker_*.sh); source after tests/lib/common.sh.
# shellcheck shell=bash
#
# Isolation: wl_init gives the caller its own commands and DLQ topics, consumer group and
# database (migrated by payq-worker migrate), and registers their removal on exit, with
# every worker started through wl_worker_start.
#
# Two kinds of failure:
#   die           the test could not run (setup, timeouts of the harness): exit 1
#   wl_violation  a payq guarantee was broken: exit 3 (WL_VIOLATION)
# Each scenario (wl_scenario_*) is one reusable check: worker_mutation.sh runs the same
# scenario against a deliberately broken worker and requires exit 3, where the other
# tests require 0 from the real worker.

# PAYQ_TEST_OWNER_DB and PAYQ_TEST_WORKER_DB (tests/pg_roles, which tests/run runs):
# every database is migrated as payq_owner and every worker runs as payq_worker, over
# TLS with sslmode=verify-full. PAYQ_TEST_DB, the superuser, only sets up and checks.
require_env PAYQ_TEST_DB PAYQ_TEST_BROKERS PAYQ_WORKER_EXE PAYQ_OFFSETS_PROBE_EXE PAYQ_SOURCE_ROOT \
	PAYQ_TEST_OWNER_DB PAYQ_TEST_WORKER_DB PAYQ_TEST_REPLAY_DB
command -v kcat >/dev/null || die "kcat not found"
# shellcheck source=tests/lib/worker.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/worker.sh"

WL_EXE=${WL_EXE:-$PAYQ_WORKER_EXE}
WL_LIB=$(realpath "${BASH_SOURCE[0]}")
WL_PROBE=$PAYQ_OFFSETS_PROBE_EXE
WL_VIOLATION=3
declare -gA WL_PID=() WL_WRAP=()
WL_DIR=
WL_WATCH_PID=

# ---- failure reporting ----

# With WL_DEFER=1 a violation is recorded and the scenario goes on, so that one run
# shows every guarantee it breaks; wl_flush_violations then exits 3 if any was recorded.
wl_violation() {
	printf 'VIOLATION %s: %s\n' "$TEST_NAME" "$*" >&2
	if [[ ${WL_DEFER:-} == 1 && -n $WL_DIR ]]; then
		printf '%s\n' "${*%%$'\n'*}" >>"$WL_DIR/violations"
		return 0
	fi
	exit "$WL_VIOLATION"
}

wl_flush_violations() {
	if [[ -s $WL_DIR/violations ]]; then
		WL_DEFER=0 wl_violation "$(wc -l <"$WL_DIR/violations") guarantees broken (listed above)"
	fi
}

# ---- setup and teardown ----

# wl_init NAME [PARTITIONS]: topics, group and database for one test or scenario.
wl_init() {
	local name=$1 partitions=${2:-6}
	WL_ID=$(printf '%s-%d-%05d' "$name" "$BASHPID" "$RANDOM")
	WL_TOPIC=wt.$WL_ID.commands
	WL_DLQ=wt.$WL_ID.dlq
	WL_GROUP=wt-$WL_ID
	WL_DBNAME=wt_${WL_ID//-/_}
	WL_DB="$PAYQ_TEST_DB dbname=$WL_DBNAME"
	WL_OWNER_DB="$PAYQ_TEST_OWNER_DB dbname=$WL_DBNAME"
	WL_WORKER_DB="$PAYQ_TEST_WORKER_DB dbname=$WL_DBNAME"
	# shellcheck disable=SC2034 # for replay_lib.sh
	WL_REPLAY_DB="$PAYQ_TEST_REPLAY_DB dbname=$WL_DBNAME"
	# shellcheck disable=SC2034 # for the tests that source this file
	WL_PARTITIONS=$partitions
	WL_DIR=$(mktemp -d "${PAYQ_TEST_STATE_DIR:-${TMPDIR:-/tmp}}/wt-$name.XXXXXX")
	: >"$WL_DIR/expected"
	on_exit wl_teardown
	"$WL_PROBE" create-topics "$PAYQ_TEST_BROKERS" "$partitions" "$WL_TOPIC" "$WL_DLQ" ||
		die "cannot create topics $WL_TOPIC and $WL_DLQ"
	psql_q "CREATE DATABASE $WL_DBNAME" || die "cannot create database $WL_DBNAME"
	psql_q "GRANT CREATE ON DATABASE $WL_DBNAME TO payq_owner" ||
		die "cannot let payq_owner create the schema in $WL_DBNAME"
	PAYQ_DB=$WL_OWNER_DB PAYQ_LOG_LEVEL=warn "$WL_EXE" migrate 2>>"$WL_DIR/migrate.log" ||
		die "payq-worker migrate failed: $(cat "$WL_DIR/migrate.log")"
	printf 'setup %s: topic %s (%d partitions), dlq %s, group %s, database %s, dir %s\n' \
		"$name" "$WL_TOPIC" "$partitions" "$WL_DLQ" "$WL_GROUP" "$WL_DBNAME" "$WL_DIR"
}

# Runs from the EXIT trap (lib.sh's cleanup, whose local rc is the exit status).
wl_teardown() {
	local status=${rc:-0} n f
	for n in "${!WL_PID[@]}"; do
		kill -KILL "${WL_PID[$n]}" 2>/dev/null || true
		wait "${WL_WRAP[$n]}" 2>/dev/null || true
	done
	WL_PID=()
	WL_WRAP=()
	if [[ -n $WL_WATCH_PID ]]; then
		kill "$WL_WATCH_PID" 2>/dev/null || true
		wait "$WL_WATCH_PID" 2>/dev/null || true
	fi
	if ((status != 0)) && [[ -d $WL_DIR ]]; then
		for f in "$WL_DIR"/*.log; do
			[[ -s $f ]] || continue
			printf -- '--- last lines of %s\n' "$f" >&2
			grep -v '"level":"debug"\|CONFWARN' "$f" | tail -n 25 >&2 || true
		done
		printf -- '--- kept %s\n' "$WL_DIR" >&2
	fi
	psql_q "DROP DATABASE IF EXISTS $WL_DBNAME WITH (FORCE)" >/dev/null 2>&1 || true
	"$WL_PROBE" delete-topics "$PAYQ_TEST_BROKERS" "$WL_TOPIC" "$WL_DLQ" >/dev/null 2>&1 || true
	if ((status == 0)) && [[ -d $WL_DIR && -z ${PAYQ_TEST_KEEP:-} ]]; then
		rm -rf "$WL_DIR"
	fi
}

# wl_scenario FUNC [ARGS...]: runs one scenario in a bash process of its own (so that
# errexit holds inside it whatever the caller's context) with its own cleanups, and
# returns its exit status: 0 (guarantee held), 3 (violation) or 1 (could not run).
wl_scenario() {
	local rc=0
	# shellcheck disable=SC2016 # expanded by the inner bash
	# Gateway scenarios (gw_*) also need gateway_lib.sh, replay ones (rp_*) replay_lib.sh.
	env TEST_NAME="$TEST_NAME" WL_EXE="$WL_EXE" bash -c 'source "$1"; source "$2"
		[[ $3 != gw_* ]] || source "${2%/*}/gateway_lib.sh"
		[[ $3 != rp_* ]] || source "${2%/*}/replay_lib.sh"; shift 2; "$@"' \
		"$TEST_NAME" "$PAYQ_SOURCE_ROOT/tests/lib/common.sh" "$WL_LIB" "$@" || rc=$?
	return "$rc"
}

# ---- SQL ----

wl_sql() { psql "$WL_DB" -XAtq -v ON_ERROR_STOP=1 -F ' ' -c "$1"; }

# ---- workers ----

# wl_worker_start NAME [VAR=VALUE...] [-- ARGS...]: starts payq-worker run in the
# background against this test's topic, group and database; stderr goes to NAME.log.
wl_worker_start() {
	local name=$1
	shift
	local envs=()
	while (($#)) && [[ $1 == *=* ]]; do
		envs+=("$1")
		shift
	done
	if (($#)) && [[ $1 == -- ]]; then
		shift
	fi
	echo "start worker $name ${envs[*]} $*" >>"$WL_DIR/events"
	rm -f "$WL_DIR/$name.pid"
	# A wrapper waits for the worker, so that a worker killed by a signal is not reported
	# by this shell ("Killed"); WL_PID is the worker itself, WL_WRAP the wrapper.
	(
		worker_spawn "$WL_DIR/$name.log" \
			env -u PAYQ_CRASH_AT -u PAYQ_FAULT_AT -u PAYQ_INSTANCE_ID -u PAYQ_BATCH_MAX -u PAYQ_BATCH_WAIT_MS \
			-u PAYQ_COMMIT_MODE -u PAYQ_PAYMENT_MODE \
			PAYQ_BROKERS="$PAYQ_TEST_BROKERS" PAYQ_DB="$WL_WORKER_DB" PAYQ_TOPIC="$WL_TOPIC" \
			PAYQ_DLQ_TOPIC="$WL_DLQ" PAYQ_GROUP="$WL_GROUP" PAYQ_HTTP_ADDR=127.0.0.1:0 \
			PAYQ_LOG_LEVEL=info PAYQ_SHUTDOWN_TIMEOUT_MS=10000 PAYQ_STATS_INTERVAL_MS=1000 \
			PAYQ_RETRY_MAX_MS=1000 "${envs[@]}" \
			"$WL_EXE" run -X session.timeout.ms=6000 -X heartbeat.interval.ms=500 "$@"
		echo "$WORKER_SPAWN_PID" >"$WL_DIR/$name.pid"
		wait "$WORKER_SPAWN_PID"
	) 2>/dev/null &
	WL_WRAP[$name]=$!
	until [[ -s $WL_DIR/$name.pid ]]; do
		sleep 0.01
	done
	WL_PID[$name]=$(cat "$WL_DIR/$name.pid")
}

# wl_worker_crash NAME POINT[:HIT] [VAR=VALUE...]: starts a worker with
# PAYQ_CRASH_AT=POINT[:HIT] and waits up to 60 s for it to die by SIGKILL there.
wl_worker_crash() {
	local name=$1 at=$2
	shift 2
	wl_worker_start "$name" "PAYQ_CRASH_AT=$at" "$@"
	wl_worker_wait_exit "$name" 60 || die "worker with PAYQ_CRASH_AT=$at did not crash"
	[[ $WL_RC == 137 ]] || die "crashing worker exited $WL_RC, expected 137 (SIGKILL)"
}

# wl_worker_wait_exit NAME TIMEOUT_S: waits for the worker to end; sets WL_RC to its
# exit status (137 after SIGKILL). Returns 1, WL_RC=timeout, if it still runs.
wl_worker_wait_exit() {
	local name=$1 pid=${WL_PID[$1]}
	if ! proc_wait_gone "$pid" "$2"; then
		WL_RC=timeout
		return 1
	fi
	WL_RC=0
	wait "${WL_WRAP[$name]}" || WL_RC=$?
	unset "WL_PID[$name]" "WL_WRAP[$name]"
	echo "worker $name exited with $WL_RC" >>"$WL_DIR/events"
}

# wl_worker_stop NAME [SIGNAL] [TIMEOUT_S]: signals the worker and waits; sets WL_RC.
wl_worker_stop() {
	local name=$1 sig=${2:-TERM} timeout=${3:-20}
	kill -"$sig" "${WL_PID[$name]}" 2>/dev/null || true
	wl_worker_wait_exit "$name" "$timeout" || die "worker $name still runs ${timeout}s after SIG$sig"
}

wl_log() { cat "$WL_DIR/$1.log"; }

wl_log_count() { grep -Ec -- "$2" "$WL_DIR/$1.log" || true; }

# wl_wait_log NAME REGEX [TIMEOUT_S]: waits for a log line; dies if the worker exits first.
wl_wait_log() {
	local name=$1 re=$2 timeout=${3:-30} rc=0
	# PID 0 is never alive: a worker that was never started is "not running".
	log_wait "$WL_DIR/$name.log" "$re" "$timeout" "${WL_PID[$name]:-0}" || rc=$?
	case $rc in
	0) ;;
	2) die "worker $name is not running (waiting for a log line matching /$re/)" ;;
	*) die "worker $name: no log line matching /$re/ within ${timeout}s" ;;
	esac
}

wl_wait_assigned() { wl_wait_log "$1" '"msg":"assigned [1-9][0-9]* partitions' "${2:-30}"; }

wl_http_port() {
	grep -o 'on port [0-9]*' "$WL_DIR/$1.log" | head -n 1 | grep -o '[0-9]*$' ||
		die "worker $1 did not log its HTTP port"
}

wl_metrics() { curl -fsS --max-time 5 "http://127.0.0.1:$(wl_http_port "$1")/metrics"; }

# wl_metric_value FILE SERIES: the value of one exact series (0 when absent).
wl_metric_value() {
	awk -v s="$2" '$1 == s { v = $2 } END { print (v == "" ? 0 : v) + 0 }' "$1"
}

# wl_wait_lag_zero NAME TIMEOUT_S: payq_consumer_lag (from librdkafka's statistics, every
# PAYQ_STATS_INTERVAL_MS) is 0 on every partition of the topic, and present for each one
# that holds messages (librdkafka reports no lag for a partition with no commit).
wl_wait_lag_zero() {
	local deadline=$((SECONDS + $2)) m=$WL_DIR/lag.txt nonempty
	nonempty=$(wl_offsets | awk '$4 > 0 { printf "%s ", $1 }')
	while :; do
		wl_metrics "$1" >"$m" || wl_violation "GET /metrics failed"
		awk -v t="$WL_TOPIC" -v want="$nonempty" '
			index($1, "payq_consumer_lag{") == 1 && index($1, "topic=\"" t "\"") {
				p = $1; sub(/.*partition="/, "", p); sub(/".*/, "", p)
				seen[p] = 1; if ($2 != 0) bad = 1
			}
			END { n = split(want, w, " "); for (i = 1; i <= n; i++) if (!(w[i] in seen)) bad = 1; exit bad }' "$m" &&
			return 0
		((SECONDS < deadline)) ||
			wl_violation "payq_consumer_lag is not 0 on every partition after ${2}s: $(grep '^payq_consumer_lag' "$m" | tr '\n' ';')"
		sleep 0.5
	done
}

# ---- producing ----

# wl_produce [KCAT ARGS...] < KEY|VALUE lines: produces to this test's commands topic with
# the Java client's murmur2 partitioner, as payq-producer does.
wl_produce() {
	kcat -P -b "$PAYQ_TEST_BROKERS" -t "$WL_TOPIC" -K'|' -X partitioner=murmur2_random \
		-X enable.idempotence=true "$@" || die "kcat could not produce to $WL_TOPIC"
}

wl_cmd_create() { # ORDER CMD AMOUNT [CURRENCY]
	printf '%s|{"v":1,"type":"create_order","command_id":"%s","order_id":"%s","amount_minor":%s,"currency":"%s","customer_id":"u-1"}\n' \
		"$1" "$2" "$1" "$3" "${4:-EUR}"
}

wl_cmd_pay() { # ORDER CMD AMOUNT [CURRENCY]
	printf '%s|{"v":1,"type":"pay","command_id":"%s","order_id":"%s","amount_minor":%s,"currency":"%s","payer_id":"u-1"}\n' \
		"$1" "$2" "$1" "$3" "${4:-EUR}"
}

wl_cmd_cancel() { # ORDER CMD
	printf '%s|{"v":1,"type":"cancel_order","command_id":"%s","order_id":"%s","reason":"customer"}\n' \
		"$1" "$2" "$1"
}

# ---- expectations ----
# $WL_DIR/expected holds CSV records that wl_check_state compares with the database:
#   C,order_id,command_id,outcome,duplicates   one processed_commands row (empty
#                                              duplicates: not checked)
#   O,order_id,status,version,paid_command_id,payments
#   A,kind,order_id,command_id                 one anomalies row

wl_expect_cmd() { printf 'C,%s,%s,%s,%s,\n' "$1" "$2" "$3" "${4:-}" >>"$WL_DIR/expected"; }
wl_expect_order() { printf 'O,%s,%s,%s,%s,%s\n' "$1" "$2" "$3" "${4:-}" "$5" >>"$WL_DIR/expected"; }
wl_expect_anomaly() { printf 'A,%s,%s,%s,,\n' "$1" "$2" "$3" >>"$WL_DIR/expected"; }

# wl_gen_orders PREFIX N: N orders, their commands appended to $WL_DIR/cmds.PREFIX and
# their expected outcomes to $WL_DIR/expected. Every 5th order is created, cancelled,
# then paid (rejected); every 5th+1 is paid twice by two commands (one payment, one
# rejected_already_paid); the rest are created and paid.
wl_gen_orders() {
	awk -v p="$1" -v n="$2" -v cmds="$WL_DIR/cmds.$1" -v expf="$WL_DIR/expected" '
	function cmd(o, c, t, extra) {
		printf "%s|{\"v\":1,\"type\":\"%s\",\"command_id\":\"%s\",\"order_id\":\"%s\"%s}\n",
			o, t, c, o, extra >> cmds
	}
	BEGIN {
		for (i = 1; i <= n; i++) {
			o = p "-" i
			money = ",\"amount_minor\":" (100 + i) ",\"currency\":\"EUR\""
			cmd(o, o ":c", "create_order", money ",\"customer_id\":\"u-" i "\"")
			printf "C,%s,%s:c,applied,,\n", o, o >> expf
			if (i % 5 == 0) {
				cmd(o, o ":x", "cancel_order", ",\"reason\":\"test\"")
				cmd(o, o ":p", "pay", money)
				printf "C,%s,%s:x,applied,,\n", o, o >> expf
				printf "C,%s,%s:p,rejected_order_cancelled,,\n", o, o >> expf
				printf "O,%s,cancelled,2,,0\n", o >> expf
				continue
			}
			cmd(o, o ":p", "pay", money ",\"payer_id\":\"u-" i "\"")
			printf "C,%s,%s:p,applied,,\n", o, o >> expf
			if (i % 5 == 1) {
				cmd(o, o ":q", "pay", money)
				printf "C,%s,%s:q,rejected_already_paid,,\n", o, o >> expf
			}
			printf "O,%s,paid,2,%s:p,1\n", o, o >> expf
		}
	}'
}

# ---- Kafka state ----

# Prints "PARTITION COMMITTED LOW HIGH" lines (COMMITTED -1: none).
wl_offsets() {
	"$WL_PROBE" offsets "$PAYQ_TEST_BROKERS" "$WL_GROUP" "$WL_TOPIC" || die "offsets_probe failed"
}

wl_total_messages() { wl_offsets | awk '{ n += $4 - $3 } END { print n + 0 }'; }

# Prints "PARTITION NEXT_OFFSET" from consumer_progress.
wl_progress() {
	wl_sql "SELECT partition, next_offset FROM payq.consumer_progress
	        WHERE group_id = '$WL_GROUP' AND topic = '$WL_TOPIC' ORDER BY partition"
}

# True when every partition's committed offset is its log-end offset.
wl_drained() {
	wl_offsets | awk '$2 != $4 && !($4 == 0 && $2 == -1) { bad = 1 } END { exit bad }'
}

# A worker that ends by itself while a test waits on it is a violation (it should run
# until it is stopped); its exit status and last log lines are reported.
wl_check_workers_alive() {
	local n
	for n in "${!WL_PID[@]}"; do
		proc_alive "${WL_PID[$n]}" && continue
		wl_worker_wait_exit "$n" 1 || true
		wl_violation "worker $n exited by itself with status $WL_RC: $(grep -v CONFWARN "$WL_DIR/$n.log" | tail -n 3)"
		WL_DEFER=0 wl_flush_violations # with WL_DEFER=1: it cannot go on without the worker
	done
}

# wl_wait_drained TIMEOUT_S: committed offsets reach the log-end offsets, or a violation.
wl_wait_drained() {
	local timeout=${1:-60} deadline
	deadline=$((SECONDS + timeout))
	until wl_drained; do
		wl_check_workers_alive
		if ((SECONDS >= deadline)); then
			wl_violation "committed offsets did not reach the log-end offsets within ${timeout}s" \
				"(partition committed low high): $(wl_offsets | tr '\n' ';')"
			return 0 # only reached with WL_DEFER=1
		fi
		sleep 0.3
	done
}

# wl_offsets_judge OUT RULE: reads Kafka's offsets first ("PARTITION COMMITTED LOW HIGH"),
# consumer_progress after, and runs the awk RULE over the offsets with p[PARTITION] = the
# partition's consumer_progress; RULE prints what is wrong and sets bad = 1. What it
# printed goes to OUT; returns 1 if anything is wrong.
wl_offsets_judge() {
	local kafka db
	kafka=$(wl_offsets)
	db=$(wl_progress)
	awk -v db="$db" '
	BEGIN { n = split(db, l, "\n"); for (i = 1; i <= n; i++) { split(l[i], f, " "); if (f[1] != "") p[f[1]] = f[2] } }
	'"$2"'
	END { exit bad }' <<<"$kafka" >"$1"
}

# The offset rule, checked at one instant: Kafka's committed offset (read first) is never
# ahead of consumer_progress (read after), which only grows.
wl_check_kafka_not_ahead() {
	# shellcheck disable=SC2016 # an awk program
	wl_offsets_judge "$WL_DIR/ahead" '$2 >= 0 && (!($1 in p) || $2 > p[$1]) {
		printf "partition %s: Kafka committed %s, consumer_progress %s; ", $1, $2, ($1 in p) ? p[$1] : "none"
		bad = 1
	}' || wl_violation "Kafka committed offsets ahead of the database: $(cat "$WL_DIR/ahead")"
}

# After a drain or a clean stop: committed == consumer_progress == log-end, per partition
# that has messages.
wl_check_offsets_final() {
	# shellcheck disable=SC2016 # an awk program
	wl_offsets_judge "$WL_DIR/final" '$4 > 0 && ($2 != $4 || p[$1] != $4) {
		printf "partition %s: committed %s, consumer_progress %s, log-end %s; ", $1, $2, ($1 in p) ? p[$1] : "none", $4
		bad = 1
	}' || wl_violation "committed offsets, consumer_progress and log-end offsets differ: $(cat "$WL_DIR/final")"
}

# Samples the committed offsets every INTERVAL_MS in the background until wl_watch_stop.
wl_watch_start() {
	rm -f "$WL_DIR/watch.stop"
	"$WL_PROBE" watch "$PAYQ_TEST_BROKERS" "$WL_GROUP" "$WL_TOPIC" "${1:-200}" \
		"$WL_DIR/watch.stop" >"$WL_DIR/watch.out" 2>"$WL_DIR/watch.err" &
	WL_WATCH_PID=$!
}

# Stops the sampler and checks that no partition's committed offset ever moved back.
wl_watch_stop() {
	touch "$WL_DIR/watch.stop"
	wait "$WL_WATCH_PID" || die "offsets_probe watch failed: $(cat "$WL_DIR/watch.err")"
	WL_WATCH_PID=
	# shellcheck disable=SC2034 # for the tests that source this file
	WL_WATCH_SAMPLES=$(awk '{ t[$1] = 1 } END { print length(t) }' "$WL_DIR/watch.out")
	awk '($2 in last) && $3 < last[$2] {
		printf "partition %s went from %s back to %s at %s ms; ", $2, last[$2], $3, $1; bad = 1 }
	{ last[$2] = $3 } END { exit bad }' "$WL_DIR/watch.out" >"$WL_DIR/backwards" ||
		wl_violation "a committed offset moved backwards: $(cat "$WL_DIR/backwards")"
}

# ---- the database against the expectations ----

# Every expected command has exactly one processed_commands row with the expected outcome
# (and duplicates when given); no other rows; orders, payments and anomalies as expected;
# one live payment per paid order, made by its paid_command_id; no offset_gap anomaly.
wl_check_state() {
	local problems
	problems=$(psql "$WL_DB" -XAtq -v ON_ERROR_STOP=1 <<SQL
CREATE TEMP TABLE e (rec text, a text, b text, c text, d text, f text);
\\copy e FROM '$WL_DIR/expected' WITH (FORMAT csv)
CREATE TEMP VIEW ec AS SELECT a AS order_id, b AS command_id, c AS outcome, d::int AS dups FROM e WHERE rec = 'C';
CREATE TEMP VIEW eo AS SELECT a AS order_id, b AS status, c::int AS version, d AS paid, f::int AS payments FROM e WHERE rec = 'O';
SELECT 'lost command ' || ec.order_id || '/' || ec.command_id || ': no processed_commands row'
  FROM ec LEFT JOIN payq.processed_commands p USING (order_id, command_id) WHERE p.order_id IS NULL
UNION ALL
SELECT 'unexpected processed_commands row ' || p.order_id || '/' || p.command_id || ' (' || p.outcome || ')'
  FROM payq.processed_commands p LEFT JOIN ec USING (order_id, command_id) WHERE ec.order_id IS NULL
UNION ALL
SELECT 'command ' || ec.order_id || '/' || ec.command_id || ': outcome ' || p.outcome || ', expected ' || ec.outcome
  FROM ec JOIN payq.processed_commands p USING (order_id, command_id) WHERE p.outcome <> ec.outcome
UNION ALL
SELECT 'command ' || ec.order_id || '/' || ec.command_id || ': duplicates ' || p.duplicates || ', expected ' || ec.dups
  FROM ec JOIN payq.processed_commands p USING (order_id, command_id) WHERE ec.dups IS NOT NULL AND p.duplicates <> ec.dups
UNION ALL
SELECT 'order ' || eo.order_id || ': missing' FROM eo LEFT JOIN payq.orders o USING (order_id) WHERE o.order_id IS NULL
UNION ALL
SELECT 'unexpected order ' || o.order_id FROM payq.orders o LEFT JOIN eo USING (order_id) WHERE eo.order_id IS NULL
UNION ALL
SELECT 'order ' || eo.order_id || ': ' || o.status || ' v' || o.version || ' paid_by ' || coalesce(o.paid_command_id, '-')
       || ', expected ' || eo.status || ' v' || eo.version || ' paid_by ' || coalesce(eo.paid, '-')
  FROM eo JOIN payq.orders o USING (order_id)
 WHERE o.status <> eo.status OR o.version <> eo.version OR o.paid_command_id IS DISTINCT FROM eo.paid
UNION ALL
SELECT 'order ' || eo.order_id || ': ' || count(p.payment_id) || ' payments, expected ' || eo.payments
  FROM eo LEFT JOIN payq.payments p USING (order_id) GROUP BY eo.order_id, eo.payments
HAVING count(p.payment_id) <> eo.payments
UNION ALL
SELECT 'payment ' || p.payment_id || ' of order ' || p.order_id || ': status ' || p.status
       || ', command ' || p.command_id || ', order paid by ' || coalesce(o.paid_command_id, '-')
  FROM payq.payments p JOIN payq.orders o USING (order_id)
 WHERE p.status <> 'succeeded' OR p.command_id IS DISTINCT FROM o.paid_command_id
UNION ALL
SELECT 'anomaly ' || kind || ' ' || coalesce(order_id, '-') || '/' || coalesce(command_id, '-') || ': '
       || got || ' rows, expected ' || want
  FROM (SELECT kind, order_id, command_id, count(*) AS got FROM payq.anomalies GROUP BY 1, 2, 3) g
  FULL JOIN (SELECT a AS kind, b AS order_id, c AS command_id, count(*) AS want FROM e WHERE rec = 'A' GROUP BY 1, 2, 3) w
 USING (kind, order_id, command_id)
 WHERE coalesce(got, 0) <> coalesce(want, 0);
SQL
	) || die "wl_check_state: query failed"
	if [[ -n $problems ]]; then
		wl_violation "database differs from the expected state ($(wc -l <<<"$problems") problems):
$(head -n 20 <<<"$problems")"
	fi
}

# ---- scenarios (reusable checks; run through wl_scenario) ----

# Redelivery: every command delivered twice (once in the first wave, again after the
# first wave was applied and committed) and one pay 50 times in all. The dedup table
# must absorb the repeats: one effect, the first outcome kept, duplicates counted.
wl_scenario_redelivery() {
	wl_init redeliver 4
	wl_gen_orders r 40
	awk -F, -v OFS=, '$1 == "C" { $5 = 1 } { print }' "$WL_DIR/expected" >"$WL_DIR/expected.new"
	mv "$WL_DIR/expected.new" "$WL_DIR/expected"
	wl_produce <"$WL_DIR/cmds.r"
	wl_worker_start w1 PAYQ_BATCH_MAX=25
	wl_wait_assigned w1
	wl_wait_drained 60
	# The second wave: the same bytes again, and one pay 48 more times (50 in all).
	{
		cat "$WL_DIR/cmds.r"
		for _ in $(seq 48); do
			grep -F '"command_id":"r-2:p"' "$WL_DIR/cmds.r"
		done
	} | wl_produce
	sed -i 's/^C,r-2,r-2:p,applied,1,$/C,r-2,r-2:p,applied,49,/' "$WL_DIR/expected"
	wl_wait_drained 60
	wl_check_state
	wl_check_offsets_final
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
	pass "redelivery: $(wc -l <"$WL_DIR/cmds.r") commands each delivered twice and one 50 times: one effect each, duplicates 1 and 49"
}

# A replay, then new commands next to duplicates. After a batch of duplicates only, the
# fast path sends the dedup read alone and locks only the orders with a command it did not
# find (worker/apply_async.c). The third wave gives each order its recorded pay (or
# cancel) again next to a pay it has never seen, one pair after the other on its
# partition, so each lane's first batch after the replay holds such pairs: the new pay
# must be judged against the order as it is (rejected_already_paid,
# rejected_order_cancelled), not against no order (rejected_unknown_order), which is what
# skipping the lock of an order with any command found does (the lock-skip-any mutant).
wl_scenario_replay_mixed() {
	local i o
	wl_init replaymix 4
	wl_gen_orders m 40
	wl_produce <"$WL_DIR/cmds.m"
	wl_worker_start w1 PAYQ_BATCH_WAIT_MS=200
	wl_wait_assigned w1
	wl_wait_drained 60
	wl_produce <"$WL_DIR/cmds.m"
	wl_wait_drained 60
	for ((i = 1; i <= 40; i++)); do
		o=m-$i
		if ((i % 5 == 0)); then
			grep -F "\"command_id\":\"$o:x\"" "$WL_DIR/cmds.m"
			wl_cmd_pay "$o" "$o:r" $((100 + i))
			wl_expect_cmd "$o" "$o:r" rejected_order_cancelled
		else
			grep -F "\"command_id\":\"$o:p\"" "$WL_DIR/cmds.m"
			wl_cmd_pay "$o" "$o:r" $((100 + i))
			wl_expect_cmd "$o" "$o:r" rejected_already_paid
		fi
	done | wl_produce
	wl_wait_drained 60
	wl_check_state
	wl_check_offsets_final
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
	pass "replay, then a new pay next to each order's duplicate: judged against the order ($(wl_sql "SELECT count(*) FROM payq.processed_commands WHERE command_id LIKE '%:r'") new pays, none rejected_unknown_order)"
}

# Crash before the database COMMIT: the batch is rolled back; on restart it is applied,
# so nothing is lost. Kafka must never be ahead of the database.
wl_scenario_crash_before_commit() {
	local WL_DEFER=1
	wl_init crashb 6
	wl_gen_orders b 150
	wl_produce <"$WL_DIR/cmds.b"
	wl_worker_crash w1 before_db_commit:3 PAYQ_BATCH_MAX=40
	grep -q 'crash point before_db_commit reached (hit 3)' "$WL_DIR/w1.log" ||
		die "no crash point log line"
	local applied
	applied=$(wl_sql 'SELECT count(*) FROM payq.processed_commands')
	wl_check_kafka_not_ahead
	wl_worker_start w2
	wl_wait_assigned w2
	wl_wait_drained 60
	wl_check_state
	wl_check_offsets_final
	wl_worker_stop w2 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
	wl_flush_violations
	pass "crash before COMMIT (after $applied commands applied): nothing lost after restart, Kafka never ahead"
}

# Crash after the database COMMIT, before the Kafka commit. Two restarts:
#  1. with the database up: the drift check sees Kafka behind consumer_progress and seeks
#     forward; no second effect, and the committed offsets still reach the log end;
#  2. crash again, then restart while PostgreSQL is down: the drift check cannot read
#     consumer_progress, so the crashed batch is redelivered from Kafka's committed
#     offset and the dedup table absorbs it (duplicates count, one payment).
wl_scenario_crash_after_commit() {
	require_env PAYQ_TEST_PG_DIR
	wl_init crasha 6
	wl_gen_orders a 150
	wl_produce <"$WL_DIR/cmds.a"
	wl_worker_crash w1 after_db_commit:3 PAYQ_BATCH_MAX=40
	grep -q 'crash point after_db_commit reached (hit 3)' "$WL_DIR/w1.log" ||
		die "no crash point log line"
	wl_check_kafka_not_ahead
	# The precondition: some partition is in the database but not in Kafka's commit.
	local behind
	behind=$(wl_offsets | awk -v db="$(wl_progress)" '
		BEGIN { n = split(db, l, "\n"); for (i = 1; i <= n; i++) { split(l[i], f, " "); p[f[1]] = f[2] } }
		($1 in p) && $2 < p[$1] { c++ } END { print c + 0 }')
	((behind > 0)) || die "after the crash no partition has Kafka behind consumer_progress"

	wl_worker_start w2
	wl_wait_assigned w2
	wl_wait_drained 60
	grep -q 'is behind consumer_progress .*: seeking forward' "$WL_DIR/w2.log" ||
		wl_violation "restart did not seek forward past the batch committed to the database"
	wl_check_state
	wl_check_offsets_final
	wl_worker_stop w2 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
	pass "crash after COMMIT, restart: seeks forward on $behind partitions, no second effect, offsets reach the log end"

	# 2. Redelivery through the dedup table.
	wl_gen_orders a2 150
	wl_produce <"$WL_DIR/cmds.a2"
	wl_worker_crash w3 after_db_commit:2 PAYQ_BATCH_MAX=40
	local before_dups
	before_dups=$(wl_sql 'SELECT coalesce(sum(duplicates), 0) FROM payq.processed_commands')
	"$PAYQ_SOURCE_ROOT/deploy/local/pg" stop "$PAYQ_TEST_PG_DIR" >>"$WL_DIR/pg.log" 2>&1 ||
		die "cannot stop PostgreSQL"
	on_exit "\"$PAYQ_SOURCE_ROOT/deploy/local/pg\" start \"$PAYQ_TEST_PG_DIR\" >/dev/null 2>&1"
	wl_worker_start w4
	wl_wait_log w4 'drift check skipped' 30
	"$PAYQ_SOURCE_ROOT/deploy/local/pg" start "$PAYQ_TEST_PG_DIR" >>"$WL_DIR/pg.log" 2>&1 ||
		die "cannot start PostgreSQL again"
	wl_wait_drained 90
	local after_dups
	after_dups=$(wl_sql 'SELECT coalesce(sum(duplicates), 0) FROM payq.processed_commands')
	((after_dups > before_dups)) ||
		wl_violation "the redelivered batch did not count as duplicates ($before_dups before, $after_dups after)"
	wl_check_state
	wl_check_offsets_final
	wl_worker_stop w4 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
	pass "crash after COMMIT, restart with the drift check blind: batch redelivered, $((after_dups - before_dups)) duplicates counted, no second effect"
}

# DLQ offset rule: while the DLQ topic does not exist, no DLQ copy can be PERSISTED, so
# the committed offset must stop at the malformed message (the valid ones before it,
# in earlier batches, are committed; nothing after it is applied). Once the topic
# exists, the copy is persisted and the offset moves past it.
wl_scenario_dlq_unpersisted() {
	wl_init dlqwait 1
	local dlq=$WL_DLQ.missing
	on_exit "\"$WL_PROBE\" delete-topics \"$PAYQ_TEST_BROKERS\" \"$dlq\" >/dev/null 2>&1"
	{
		wl_cmd_create d-1 d-1:c 500
		wl_cmd_pay d-1 d-1:p 500
	} | wl_produce -p 0
	wl_expect_cmd d-1 d-1:c applied 0
	wl_expect_cmd d-1 d-1:p applied 0
	wl_expect_order d-1 paid 2 d-1:p 1
	wl_worker_start w1 PAYQ_DLQ_TOPIC="$dlq" -- -X message.timeout.ms=2000
	wl_wait_assigned w1
	wl_wait_drained 30
	local bad_offset
	bad_offset=$(wl_total_messages)
	echo 'd-2|this is not json' | wl_produce -p 0
	{
		wl_cmd_create d-3 d-3:c 700
		wl_cmd_pay d-3 d-3:p 700
	} | wl_produce -p 0
	local i committed
	for i in 1 2 3 4 5 6 7 8; do
		sleep 0.5
		committed=$(wl_offsets | awk '$1 == 0 { print $2 }')
		((committed <= bad_offset)) ||
			wl_violation "committed offset $committed moved past the malformed message at offset $bad_offset before its DLQ copy was persisted (sample $i)"
		[[ $(wl_sql "SELECT count(*) FROM payq.processed_commands WHERE order_id = 'd-3'") == 0 ]] ||
			wl_violation "commands after the unpersisted DLQ message were applied"
	done
	((committed == bad_offset)) || die "committed offset $committed, expected $bad_offset (the valid commands before the malformed one)"
	wl_wait_log w1 'DLQ delivery failed|DLQ copies not persisted' 30
	pass "DLQ topic missing: committed offset held at $committed, the malformed message, for 4 s"
	# Let the DLQ copy be persisted: the offset must then move past it.
	"$WL_PROBE" create-topics "$PAYQ_TEST_BROKERS" 1 "$dlq" || die "cannot create $dlq"
	wl_wait_drained 60
	local dumped
	dumped=$("$WL_PROBE" dump "$PAYQ_TEST_BROKERS" "$dlq" | wc -l)
	((dumped >= 1)) || wl_violation "offset committed past the malformed message, but $dlq is empty"
	wl_expect_cmd d-3 d-3:c applied 0
	wl_expect_cmd d-3 d-3:p applied 0
	wl_expect_order d-3 paid 2 d-3:p 1
	wl_check_state
	wl_check_offsets_final
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
	pass "DLQ topic created: the copy persisted ($dumped in $dlq), then the offset moved past it"
}

# Every row of DESIGN.md's outcome table, duplicates (2 and 50 deliveries, in one batch
# and across batches), two different pays, key reuse (across batches and within one),
# then /metrics: promtool check metrics, and the counters against the same expectations.
wl_scenario_outcomes() {
	wl_init outcomes 6
	# Wave 1.
	{
		# A: create; create again; pay; a second, different pay; cancel a paid order.
		wl_cmd_create A A:c1 1000
		wl_cmd_create A A:c2 2000
		wl_cmd_pay A A:p1 1000
		wl_cmd_pay A A:p2 1000
		wl_cmd_cancel A A:x
		# B: pay an unknown order. F: cancel an unknown order.
		wl_cmd_pay B B:p 1000
		wl_cmd_cancel F F:x
		# C: cancel an unpaid order, then pay and cancel the cancelled order.
		wl_cmd_create C C:c 500
		wl_cmd_cancel C C:x1
		wl_cmd_pay C C:p 500
		wl_cmd_cancel C C:x2
		# D: pay with another amount, then with another currency.
		wl_cmd_create D D:c 1000
		wl_cmd_pay D D:p1 999
		wl_cmd_pay D D:p2 1000 USD
		# G: the create delivered twice within the wave; the pay once here, once in wave 2.
		wl_cmd_create G G:c 300
		wl_cmd_create G G:c 300
		wl_cmd_pay G G:p 300
		# H: the pay delivered 50 times: 20 here, 30 in wave 2.
		wl_cmd_create H H:c 400
		for _ in $(seq 20); do wl_cmd_pay H H:p 400; done
		# K: a rejected pay whose key is reused in wave 2 with the amount that would succeed.
		wl_cmd_create K K:c 1000
		wl_cmd_pay K K:p 999
		# L: an applied pay whose key is reused in wave 2 with another amount.
		wl_cmd_create L L:c 100
		wl_cmd_pay L L:p 100
		# M: key reuse within one wave: the same create command_id with another amount.
		wl_cmd_create M M:c 100
		wl_cmd_create M M:c 150
		# N1, N2: one command_id in two orders: idempotency keys are scoped to an order.
		wl_cmd_create N1 same-id 100
		wl_cmd_create N2 same-id 100
	} | wl_produce
	wl_worker_start w1
	wl_wait_assigned w1
	wl_wait_drained 60
	# Wave 2: redeliveries after the first outcomes were committed, and key reuse.
	{
		wl_cmd_pay G G:p 300
		for _ in $(seq 30); do wl_cmd_pay H H:p 400; done
		wl_cmd_pay K K:p 1000
		wl_cmd_pay L L:p 200
	} | wl_produce
	wl_wait_drained 60

	wl_expect_cmd A A:c1 applied 0
	wl_expect_cmd A A:c2 rejected_order_exists 0
	wl_expect_cmd A A:p1 applied 0
	wl_expect_cmd A A:p2 rejected_already_paid 0
	wl_expect_cmd A A:x rejected_already_paid 0
	wl_expect_order A paid 2 A:p1 1
	wl_expect_cmd B B:p rejected_unknown_order 0
	wl_expect_cmd F F:x rejected_unknown_order 0
	wl_expect_cmd C C:c applied 0
	wl_expect_cmd C C:x1 applied 0
	wl_expect_cmd C C:p rejected_order_cancelled 0
	wl_expect_cmd C C:x2 rejected_order_cancelled 0
	wl_expect_order C cancelled 2 '' 0
	wl_expect_cmd D D:c applied 0
	wl_expect_cmd D D:p1 rejected_amount_mismatch 0
	wl_expect_cmd D D:p2 rejected_amount_mismatch 0
	wl_expect_order D unpaid 1 '' 0
	wl_expect_cmd G G:c applied 1
	wl_expect_cmd G G:p applied 1
	wl_expect_order G paid 2 G:p 1
	wl_expect_cmd H H:c applied 0
	wl_expect_cmd H H:p applied 49
	wl_expect_order H paid 2 H:p 1
	wl_expect_cmd K K:c applied 0
	wl_expect_cmd K K:p rejected_amount_mismatch 0
	wl_expect_order K unpaid 1 '' 0
	wl_expect_anomaly key_reuse K K:p
	wl_expect_cmd L L:c applied 0
	wl_expect_cmd L L:p applied 0
	wl_expect_order L paid 2 L:p 1
	wl_expect_anomaly key_reuse L L:p
	wl_expect_cmd M M:c applied 0
	wl_expect_order M unpaid 1 '' 0
	wl_expect_anomaly key_reuse M M:c
	wl_expect_cmd N1 same-id applied 0
	wl_expect_order N1 unpaid 1 '' 0
	wl_expect_cmd N2 same-id applied 0
	wl_expect_order N2 unpaid 1 '' 0
	wl_check_state
	pass "outcome table: every row, each with its order status, version, paid_command_id and payments"
	pass "duplicates: 2 deliveries -> duplicates 1 (in one batch and across batches), 50 -> 49, one effect"
	pass "two different pays: one payment, one rejected_already_paid; key reuse: key_reuse anomaly, no effect"

	local amounts
	amounts=$(wl_sql "SELECT string_agg(order_id || '=' || amount_minor || currency, ' ' ORDER BY order_id) FROM payq.orders")
	[[ $amounts == 'A=1000EUR C=500EUR D=1000EUR G=300EUR H=400EUR K=1000EUR L=100EUR M=100EUR N1=100EUR N2=100EUR' ]] ||
		wl_violation "order amounts: $amounts"
	amounts=$(wl_sql "SELECT string_agg(order_id || '=' || command_id || ':' || amount_minor || currency || ':' || coalesce(payer_id, '-'), ' ' ORDER BY order_id) FROM payq.payments")
	[[ $amounts == 'A=A:p1:1000EUR:u-1 G=G:p:300EUR:u-1 H=H:p:400EUR:u-1 L=L:p:100EUR:u-1' ]] ||
		wl_violation "payments: $amounts"
	pass "order amounts and payment rows carry the first payload's values"
	# Kafka coordinates: each processed_commands row and each key_reuse anomaly points at
	# the message it came from (for a dedup row: the first delivery).
	"$WL_PROBE" dump "$PAYQ_TEST_BROKERS" "$WL_TOPIC" >"$WL_DIR/commands.jsonl" || die "dump failed"
	wl_sql "SELECT 'P', order_id, command_id, kafka_topic, kafka_partition, kafka_offset FROM payq.processed_commands
	        UNION ALL SELECT 'A', order_id, command_id, kafka_topic, kafka_partition, kafka_offset FROM payq.anomalies" \
		>"$WL_DIR/coords.txt"
	python3 - "$WL_DIR/commands.jsonl" "$WL_DIR/coords.txt" "$WL_TOPIC" >"$WL_DIR/coords.out" <<'PY' ||
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
first = {}
for m in sorted(msgs, key=lambda m: (m["partition"], m["offset"])):
    v = json.loads(bytes.fromhex(m["value"]))
    first.setdefault((v["order_id"], v["command_id"]), (m["partition"], m["offset"]))
at = {(m["partition"], m["offset"]): json.loads(bytes.fromhex(m["value"])) for m in msgs}
problems = []
for line in open(sys.argv[2]):
    kind, o, c, topic, p, off = line.split()
    p, off = int(p), int(off)
    v = at.get((p, off))
    if topic != sys.argv[3] or v is None or v["order_id"] != o or v["command_id"] != c:
        problems.append("%s %s/%s points at %s/%s/%s" % (kind, o, c, topic, p, off))
    elif kind == "P" and first[(o, c)] != (p, off):
        problems.append("%s/%s points at %s/%s, first delivered at %s/%s" % ((o, c, p, off) + first[(o, c)]))
print("; ".join(problems)); sys.exit(1 if problems else 0)
PY
		wl_violation "Kafka coordinates: $(cat "$WL_DIR/coords.out")"
	pass "processed_commands and anomalies rows carry the Kafka coordinates of their (first) message"
	wl_check_offsets_final
	pass "committed offsets = consumer_progress = log-end offsets on every partition"

	# Metrics of this worker, which applied everything above.
	local m=$WL_DIR/metrics.txt series want got
	wl_metrics w1 >"$m" || wl_violation "GET /metrics failed"
	promtool check metrics <"$m" >"$WL_DIR/promtool.out" 2>&1 ||
		wl_violation "promtool check metrics: $(cat "$WL_DIR/promtool.out")"
	pass "/metrics passes promtool check metrics"
	for series in payq_commands_total payq_duplicates_total payq_double_payment_attempts_total \
		payq_anomalies_total payq_dlq_total payq_batch_size payq_batch_duration_seconds \
		payq_db_retries_total payq_consumer_lag payq_rebalances_total \
		payq_last_commit_timestamp_seconds payq_build_info; do
		grep -Eq "^# TYPE $series (counter|gauge|histogram)\$" "$m" ||
			wl_violation "/metrics has no '# TYPE $series'"
	done
	while read -r series want; do
		got=$(wl_metric_value "$m" "$series")
		[[ $got == "$want" ]] || wl_violation "/metrics $series is $got, expected $want"
	done <<'EXPECTED'
payq_commands_total{type="create_order",outcome="applied"} 10
payq_commands_total{type="create_order",outcome="rejected_order_exists"} 1
payq_commands_total{type="pay",outcome="applied"} 4
payq_commands_total{type="pay",outcome="rejected_already_paid"} 1
payq_commands_total{type="pay",outcome="rejected_unknown_order"} 1
payq_commands_total{type="pay",outcome="rejected_order_cancelled"} 1
payq_commands_total{type="pay",outcome="rejected_amount_mismatch"} 3
payq_commands_total{type="cancel_order",outcome="applied"} 1
payq_commands_total{type="cancel_order",outcome="rejected_already_paid"} 1
payq_commands_total{type="cancel_order",outcome="rejected_order_cancelled"} 1
payq_commands_total{type="cancel_order",outcome="rejected_unknown_order"} 1
payq_duplicates_total 51
payq_double_payment_attempts_total 1
payq_anomalies_total{kind="key_reuse"} 3
EXPECTED
	pass "/metrics counters match: payq_commands_total by type and outcome, duplicates 51, double payments 1, key_reuse 3"
	wl_wait_lag_zero w1 10
	pass "payq_consumer_lag is 0 on every partition after draining"
	curl -fsS --max-time 5 "http://127.0.0.1:$(wl_http_port w1)/healthz" >/dev/null ||
		wl_violation "/healthz is not 200"
	curl -fsS --max-time 5 "http://127.0.0.1:$(wl_http_port w1)/readyz" >/dev/null ||
		wl_violation "/readyz is not 200 while joined and connected"
	pass "/healthz and /readyz answer 200"
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
}

# wl_check_dlq DLQ_TOPIC N once|atleast: the commands topic holds N messages with an
# x-case header (the reason code the worker must give); each has one DLQ copy (once) or
# at least one (atleast), and every DLQ copy carries the payq-dlq-* headers pointing at
# its original and the original key, value and headers, byte for byte.
wl_check_dlq() {
	"$WL_PROBE" dump "$PAYQ_TEST_BROKERS" "$WL_TOPIC" >"$WL_DIR/commands.jsonl" || die "dump of $WL_TOPIC failed"
	"$WL_PROBE" dump "$PAYQ_TEST_BROKERS" "$1" >"$WL_DIR/dlq.jsonl" || die "dump of $1 failed"
	python3 - "$WL_DIR/commands.jsonl" "$WL_DIR/dlq.jsonl" "$WL_TOPIC" "$WL_GROUP" "$2" "$3" \
		>"$WL_DIR/dlq-check.out" <<'PY' || wl_violation "DLQ contents: $(cat "$WL_DIR/dlq-check.out")"
import json, sys
cmds_f, dlq_f, topic, group, want_n, mode = sys.argv[1:6] + [sys.argv[6]]
want_n = int(want_n)
h = lambda x: None if x is None else bytes.fromhex(x)
def load(f):
    out = []
    for line in open(f):
        m = json.loads(line)
        m["key"], m["value"] = h(m["key"]), h(m["value"])
        m["headers"] = [(bytes.fromhex(k).decode(), h(v)) for k, v in m["headers"]]
        out.append(m)
    return out
orig = {(m["partition"], m["offset"]): m for m in load(cmds_f)}
cases = {k: m for k, m in orig.items() if any(n == "x-case" for n, _ in m["headers"])}
problems, seen = [], {}
for d in load(dlq_f):
    added = [(n, v) for n, v in d["headers"] if n.startswith("payq-dlq-")]
    kept = [(n, v) for n, v in d["headers"] if not n.startswith("payq-dlq-")]
    a = {n: (v or b"").decode("utf-8", "replace") for n, v in added}
    names = [n for n, _ in added]
    need = ["payq-dlq-reason", "payq-dlq-error", "payq-dlq-topic", "payq-dlq-partition",
            "payq-dlq-offset", "payq-dlq-timestamp", "payq-dlq-group"]
    if sorted(names) != sorted(need):
        problems.append("DLQ message %s/%s has headers %s" % (d["partition"], d["offset"], names))
        continue
    key = (int(a["payq-dlq-partition"]), int(a["payq-dlq-offset"]))
    o = orig.get(key)
    if o is None:
        problems.append("DLQ message points at %s/%s, which does not exist" % key)
        continue
    seen[key] = seen.get(key, 0) + 1
    want = dict(o["headers"]).get("x-case", b"(valid)").decode()
    if a["payq-dlq-reason"] != want:
        problems.append("%s/%s: reason %s, expected %s" % (key + (a["payq-dlq-reason"], want)))
    if not a["payq-dlq-error"].strip():
        problems.append("%s/%s: empty payq-dlq-error" % key)
    if a["payq-dlq-topic"] != topic or a["payq-dlq-group"] != group:
        problems.append("%s/%s: topic %s group %s" % (key + (a["payq-dlq-topic"], a["payq-dlq-group"])))
    if a["payq-dlq-timestamp"] != str(o["timestamp"]):
        problems.append("%s/%s: timestamp %s, original %s" % (key + (a["payq-dlq-timestamp"], o["timestamp"])))
    if d["key"] != o["key"]:
        problems.append("%s/%s: key %r, original %r" % (key + (d["key"], o["key"])))
    if (d["value"] or b"") != (o["value"] or b""):
        problems.append("%s/%s: value differs (%d bytes, original %d)" % (key + (len(d["value"] or b""), len(o["value"] or b""))))
    if kept != o["headers"]:
        problems.append("%s/%s: original headers %s, DLQ copy keeps %s" % (key + (o["headers"], kept)))
for key, m in cases.items():
    if seen.get(key, 0) != 1 if mode == "once" else seen.get(key, 0) < 1:
        problems.append("%s/%s (%s): %d DLQ copies" % (key + (dict(m["headers"])["x-case"].decode(), seen.get(key, 0))))
if len(cases) != want_n:
    problems.append("%d malformed messages produced, expected %d" % (len(cases), want_n))
if problems:
    print("; ".join(problems))
    sys.exit(1)
print("%d DLQ copies checked" % len(cases))
PY
}

# Every malformed reason code reaches the DLQ with the payq-dlq-* headers and the
# original key, value and headers, byte for byte; valid commands around them are applied.
wl_scenario_dlq_reasons() {
	wl_init dlq 3
	local big n=0
	big=$(head -c 66000 /dev/zero | tr '\0' 'x')
	# One kcat per message: its headers name the reason the worker must give.
	dlq_case() { # REASON PARTITION [KCAT ARGS...] < KEY|VALUE
		local reason=$1 p=$2
		shift 2
		wl_produce -p "$p" -H "x-case=$reason" -H "content-type=application/json" "$@"
	}
	valid() { # ORDER PARTITION
		{
			wl_cmd_create "$1" "$1:c" 100
			wl_cmd_pay "$1" "$1:p" 100
		} | wl_produce -p "$2" -H "content-type=application/json"
		wl_expect_cmd "$1" "$1:c" applied 0
		wl_expect_cmd "$1" "$1:p" applied 0
		wl_expect_order "$1" paid 2 "$1:p" 1
	}
	valid V0 0
	valid V1 1
	valid V2 2
	echo 'E1|' | dlq_case empty 0
	echo 'E2|' | dlq_case empty 1 -Z
	echo "T1|{\"v\":1,\"type\":\"pay\",\"command_id\":\"t\",\"order_id\":\"T1\",\"amount_minor\":1,\"currency\":\"EUR\",\"pad\":\"$big\"}" |
		dlq_case too_large 2
	printf 'B1|{"v":1,"type":"pay","command_id":"b\xff","order_id":"B1","amount_minor":1,"currency":"EUR"}\n' |
		dlq_case bad_encoding 0
	echo 'N1|this is not json' | dlq_case not_json 1
	echo 'N2|[1,2,3]' | dlq_case not_json 2
	echo 'U1|{"v":1,"type":"pay","command_id":"u","command_id":"u2","order_id":"U1","amount_minor":1,"currency":"EUR"}' |
		dlq_case duplicate_field 0
	echo 'S1|{"v":2,"type":"pay","command_id":"s","order_id":"S1","amount_minor":1,"currency":"EUR"}' |
		dlq_case unsupported_version 1
	echo 'K1|{"v":1,"type":"refund","command_id":"k","order_id":"K1","amount_minor":1,"currency":"EUR"}' |
		dlq_case unknown_type 2
	echo 'M1|{"v":1,"type":"pay","command_id":"m","order_id":"M1","currency":"EUR"}' |
		dlq_case missing_field 0
	echo 'F1|{"v":1,"type":"pay","command_id":"f","order_id":"F1","amount_minor":1,"currency":"eur"}' |
		dlq_case bad_field 1
	echo 'A1|{"v":1,"type":"pay","command_id":"a","order_id":"A1","amount_minor":1.5,"currency":"EUR"}' |
		dlq_case bad_amount 2
	echo 'A2|{"v":1,"type":"pay","command_id":"a","order_id":"A2","amount_minor":"100","currency":"EUR"}' |
		dlq_case bad_amount 0
	echo 'Q1|{"v":1,"type":"pay","command_id":"q","order_id":"Q2","amount_minor":1,"currency":"EUR"}' |
		dlq_case key_mismatch 1
	n=14
	# Valid after the malformed ones, one with a field this version does not know.
	valid W0 0
	valid W1 1
	echo 'W2|{"v":1,"type":"create_order","command_id":"W2:c","order_id":"W2","amount_minor":5,"currency":"EUR","newer_field":{"x":[1]}}' |
		wl_produce -p 2
	wl_expect_cmd W2 W2:c applied 0
	wl_expect_order W2 unpaid 1 '' 0

	wl_worker_start w1
	wl_wait_assigned w1
	wl_wait_drained 60
	wl_check_state
	wl_check_offsets_final
	pass "valid commands around the malformed ones applied; malformed ones have no rows; offsets at the log end"

	wl_check_dlq "$WL_DLQ" "$n" once
	pass "DLQ: every reason code, one copy each, with payq-dlq-reason/-error/-topic/-partition/-offset/-timestamp/-group and the original key, value, headers"

	local m=$WL_DIR/metrics.txt reason want got
	wl_metrics w1 >"$m" || wl_violation "GET /metrics failed"
	for reason in empty:2 too_large:1 bad_encoding:1 not_json:2 duplicate_field:1 \
		unsupported_version:1 unknown_type:1 missing_field:1 bad_field:1 bad_amount:2 key_mismatch:1; do
		want=${reason#*:}
		reason=${reason%:*}
		got=$(wl_metric_value "$m" "payq_dlq_total{reason=\"$reason\"}")
		[[ $got == "$want" ]] || wl_violation "payq_dlq_total{reason=\"$reason\"} is $got, expected $want"
	done
	pass "payq_dlq_total counts every reason"
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
}

# Crash after the database COMMIT of the batch that holds the last messages of the
# partition. The restart seeks forward past them (drift check), and with no newer
# message to apply, the committed offset must still reach the log end: otherwise the
# lag never drains and every restart rewinds again.
wl_scenario_crash_after_commit_tail() {
	wl_init crashtail 1
	local i
	for i in $(seq 15); do
		wl_cmd_create "t-$i" "t-$i:c" 100
		wl_cmd_pay "t-$i" "t-$i:p" 100
		wl_expect_cmd "t-$i" "t-$i:c" applied 0
		wl_expect_cmd "t-$i" "t-$i:p" applied 0
		wl_expect_order "t-$i" paid 2 "t-$i:p" 1
	done | wl_produce
	wl_worker_crash w1 after_db_commit:3 PAYQ_BATCH_MAX=10
	[[ $(wl_progress) == "0 30" ]] || die "consumer_progress after the crash: $(wl_progress), expected '0 30'"
	wl_worker_start w2
	wl_wait_assigned w2
	wl_check_state
	wl_wait_drained 20
	wl_check_offsets_final
	wl_wait_lag_zero w2 10
	wl_worker_stop w2 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
	pass "crash after the COMMIT of a partition's last batch: after the seek forward the committed offset reaches the log end"
}

# wl_stream_start PREFIX ORDERS CHUNKS PAUSE_S: produces wl_gen_orders PREFIX ORDERS in
# the background, in CHUNKS pieces with a pause between; wl_stream_wait waits for it.
wl_stream_start() {
	local prefix=$1 orders=$2 chunks=$3 pause=$4 lines
	wl_gen_orders "$prefix" "$orders"
	lines=$(($(wc -l <"$WL_DIR/cmds.$prefix") / chunks + 1))
	split -l "$lines" -d -a 3 "$WL_DIR/cmds.$prefix" "$WL_DIR/chunk.$prefix."
	(
		for f in "$WL_DIR/chunk.$prefix".*; do
			wl_produce <"$f"
			sleep "$pause"
		done
	) >"$WL_DIR/stream.$prefix.out" 2>&1 &
	WL_STREAM_PID=$!
	on_exit "kill $WL_STREAM_PID 2>/dev/null || true"
}

# Dies unless the background stream still runs: a fault meant for mid-stream came late.
wl_stream_running() {
	proc_alive "$WL_STREAM_PID" || die "the stream had ended before $1; make it longer"
	echo "$1 at $(wl_applied) applied, mid-stream" >>"$WL_DIR/events"
}

wl_stream_wait() {
	wait "$WL_STREAM_PID" || die "the producer stream failed: $(cat "$WL_DIR"/stream.*.out)"
}

wl_applied() { wl_sql 'SELECT count(*) FROM payq.processed_commands'; }

# wl_wait_applied N [TIMEOUT_S]: waits until at least N commands have outcomes.
wl_wait_applied() {
	local deadline=$((SECONDS + ${2:-60}))
	until (($(wl_applied) >= $1)); do
		((SECONDS < deadline)) || die "fewer than $1 commands applied within ${2:-60}s"
		sleep 0.2
	done
}

# Offsets over a stream with a rebalance and a restart: the committed offsets, sampled
# every 100 ms, never move backwards; Kafka's committed offset, sampled during the run,
# is never ahead of consumer_progress; after draining, committed = log-end offsets.
wl_scenario_offsets() {
	local strategy=${1:-range,roundrobin}
	wl_init offsets 12
	wl_watch_start 100
	wl_worker_start w1 PAYQ_BATCH_MAX=50 -- -X partition.assignment.strategy="$strategy"
	wl_wait_assigned w1
	wl_stream_start s 2000 24 0.3
	local i samples=0
	wl_wait_applied 600
	# A second member: every partition is revoked and reassigned (eager) mid-stream.
	wl_stream_running "second worker joins"
	wl_worker_start w2 PAYQ_BATCH_MAX=50 -- -X partition.assignment.strategy="$strategy"
	for i in $(seq 6); do
		wl_check_kafka_not_ahead
		samples=$((samples + 1))
		sleep 0.3
	done
	wl_wait_assigned w2
	wl_wait_applied 2400
	wl_stream_running "SIGTERM w1"
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker w1 exited $WL_RC after SIGTERM"
	for i in $(seq 6); do
		wl_check_kafka_not_ahead
		samples=$((samples + 1))
		sleep 0.3
	done
	wl_stream_wait
	wl_wait_drained 60
	wl_check_kafka_not_ahead
	wl_watch_stop
	((WL_WATCH_SAMPLES >= 20)) || die "only $WL_WATCH_SAMPLES samples of the committed offsets"
	pass "$strategy: committed offsets never moved backwards ($WL_WATCH_SAMPLES samples of 12 partitions, over a rebalance and a stop)"
	pass "Kafka's committed offset never ahead of consumer_progress ($((samples + 1)) samples)"
	wl_check_offsets_final
	pass "after draining: committed offsets = log-end offsets = consumer_progress on all 12 partitions"
	wl_check_state
	pass "$(wc -l <"$WL_DIR/cmds.s") commands applied exactly once"
	wl_worker_stop w2 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker w2 exited $WL_RC after SIGTERM"
}

# A rebalance meets a batch in flight whose answers arrived while the process was not
# running. The crash-point build stops lane_quiesce (worker/lane.c) at quiesce_in_flight
# for 3 s, past the batch's answer bound (PAYQ_DB_STATEMENT_TIMEOUT_MS +
# PAYQ_DB_TCP_USER_TIMEOUT_MS = 1.5 s). The answers that are there must count before the
# deadline does: the batch finishes and its offsets are stored. The quiesce-no-step build
# checks the deadline first and abandons a batch whose answers had arrived ("did not
# finish in time"), leaving it to the synchronous path.
wl_scenario_quiesce_answered() {
	local try rc
	wl_init quiesce 4
	wl_worker_start w1 PAYQ_STALL_AT=quiesce_in_flight PAYQ_STALL_MS=3000 \
		PAYQ_DB_STATEMENT_TIMEOUT_MS=1000 PAYQ_DB_TCP_USER_TIMEOUT_MS=500
	wl_wait_assigned w1
	# A backlog keeps both lanes busy (a batch in flight most of the time).
	wl_gen_orders q 60000
	wl_produce <"$WL_DIR/cmds.q"
	wl_wait_applied 2000
	# A member joins: every partition is revoked (eager) while w1 drains. Most revokes
	# find a lane with a batch in flight; one that does not is tried again.
	for try in 1 2 3 4 5; do
		(($(wl_applied) < $(wc -l <"$WL_DIR/cmds.q"))) ||
			die "scenario error: the backlog was drained before rebalance $try; make it longer"
		wl_worker_start "j$try" PAYQ_BATCH_MAX=50
		rc=0
		log_wait "$WL_DIR/w1.log" 'stall point quiesce_in_flight: awake' 20 "${WL_PID[w1]}" || rc=$?
		((rc == 0)) && break
		((rc == 2)) && die "worker w1 is not running: $(tail -n 3 "$WL_DIR/w1.log")"
		wl_worker_stop "j$try" TERM
	done
	((rc == 0)) || die "scenario error: no rebalance of 5 met a batch in flight"
	log "rebalance $try stopped w1 with a batch in flight, past its answer bound"
	if grep -q 'did not finish in time' "$WL_DIR/w1.log"; then
		wl_violation "w1 abandoned a batch whose answers had arrived: $(grep -m 1 'did not finish in time' "$WL_DIR/w1.log" | cut -c 1-200)"
	fi
	wl_wait_drained 120
	wl_check_state
	wl_check_offsets_final
	pass "a batch in flight across a stall past its answer bound finished from the answers that had arrived"
}

# The last "assigned N partitions" count a worker logged.
wl_last_assigned() {
	grep -o '"msg":"assigned [0-9]* partitions' "$WL_DIR/$1.log" | tail -n 1 | grep -o '[0-9]*' || echo 0
}

# Two workers share the partitions; one is killed (-9) mid-stream, a third joins and the
# second stops with SIGTERM mid-stream: every command is applied exactly once.
wl_scenario_group() {
	wl_init group 12
	wl_worker_start w1 PAYQ_BATCH_MAX=50
	wl_worker_start w2 PAYQ_BATCH_MAX=50
	wl_wait_assigned w1
	wl_wait_assigned w2
	local deadline=$((SECONDS + 30)) a b
	while :; do
		a=$(wl_last_assigned w1)
		b=$(wl_last_assigned w2)
		((a > 0 && b > 0 && a + b == 12)) && break
		((SECONDS < deadline)) || die "the two workers did not share the 12 partitions ($a and $b)"
		sleep 0.2
	done
	pass "two workers in one group share the partitions: $a and $b"
	wl_stream_start g 2400 40 0.3
	wl_wait_applied 800
	local before
	before=$(wl_log_count w2 '"msg":"assigned 12 partitions')
	wl_stream_running "kill -9 w1"
	wl_worker_stop w1 KILL
	deadline=$((SECONDS + 30))
	until (($(wl_log_count w2 '"msg":"assigned 12 partitions') > before)); do
		((SECONDS < deadline)) || die "w2 did not take over all 12 partitions within 30 s"
		sleep 0.2
	done
	wl_worker_start w3 PAYQ_BATCH_MAX=50
	wl_wait_assigned w3
	wl_wait_log w3 '"msg":"assigned [1-9][0-9]* partitions' 30
	wl_stream_running "SIGTERM w2"
	wl_worker_stop w2 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker w2 exited $WL_RC after SIGTERM"
	wl_stream_wait
	wl_wait_drained 90
	wl_check_state
	wl_check_offsets_final
	pass "w1 killed (-9) and w2 stopped (SIGTERM) mid-stream: $(wc -l <"$WL_DIR/cmds.g") commands applied exactly once, one payment per paid order"
	wl_worker_stop w3 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker w3 exited $WL_RC after SIGTERM"
}

# Waits (server side, polling every millisecond) until the worker's connection is inside
# a transaction, terminates it, and prints its pid; fails after TIMEOUT_S.
wl_terminate_worker_backend() {
	psql "$PAYQ_TEST_DB" -XAtq -v ON_ERROR_STOP=1 2>&1 <<SQL
DO \$\$
DECLARE
    victim int;
    started timestamptz := clock_timestamp();
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT pid INTO victim FROM pg_stat_activity
         WHERE application_name = 'payq-worker' AND datname = '$WL_DBNAME'
           AND state IN ('active', 'idle in transaction') AND xact_start IS NOT NULL
         LIMIT 1;
        IF victim IS NOT NULL AND pg_terminate_backend(victim) THEN
            RAISE NOTICE 'terminated %', victim;
            RETURN;
        END IF;
        IF clock_timestamp() - started > interval '${1:-20} seconds' THEN
            RAISE EXCEPTION 'the worker was not inside a transaction within ${1:-20} s';
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
END
\$\$;
SQL
}

# pg_terminate_backend on the worker's connection in the middle of a batch (three times),
# then a full PostgreSQL restart, mid-stream: the worker recovers by itself, with no loss
# and no double effect.
wl_scenario_db_faults() {
	require_env PAYQ_TEST_PG_DIR
	wl_init dbfaults 6
	wl_worker_start w1 PAYQ_BATCH_MAX=200 PAYQ_BATCH_WAIT_MS=50
	wl_wait_assigned w1
	wl_stream_start f 3000 40 0.3
	local i out
	wl_wait_applied 300
	for i in 1 2 3; do
		wl_stream_running "pg_terminate_backend $i"
		out=$(wl_terminate_worker_backend 20) || die "pg_terminate_backend: $out"
		echo "$out at $(wl_applied) applied" >>"$WL_DIR/events"
		sleep 0.7
	done
	wl_wait_log w1 'database error \(SQLSTATE' 30
	pass "pg_terminate_backend hit the worker's connection inside a transaction 3 times"
	wl_stream_running "PostgreSQL restart"
	"$PAYQ_SOURCE_ROOT/deploy/local/pg" restart "$PAYQ_TEST_PG_DIR" >>"$WL_DIR/pg.log" 2>&1 ||
		die "deploy/local/pg restart failed: $(cat "$WL_DIR/pg.log")"
	echo "restarted PostgreSQL at $(wl_applied) applied" >>"$WL_DIR/events"
	wl_wait_applied "$(($(wl_applied) + 200))" 30
	pass "PostgreSQL restarted mid-stream; the worker applies again"
	# An outage longer than session.timeout.ms: the worker keeps polling with its
	# partitions paused, so it stays in the group; /healthz stays 200, /readyz is 503.
	local port revoked state code
	port=$(wl_http_port w1)
	revoked=$(wl_log_count w1 '"msg":"revoked')
	wl_stream_running "PostgreSQL stop"
	"$PAYQ_SOURCE_ROOT/deploy/local/pg" stop "$PAYQ_TEST_PG_DIR" >>"$WL_DIR/pg.log" 2>&1 ||
		die "deploy/local/pg stop failed: $(cat "$WL_DIR/pg.log")"
	on_exit "\"$PAYQ_SOURCE_ROOT/deploy/local/pg\" start \"$PAYQ_TEST_PG_DIR\" >/dev/null 2>&1"
	sleep 8
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/healthz") || true
	[[ $code == 200 ]] || wl_violation "/healthz is $code during the database outage, expected 200"
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/readyz") || true
	[[ $code == 503 ]] || wl_violation "/readyz is $code during the database outage, expected 503"
	state=$("$WL_PROBE" group "$PAYQ_TEST_BROKERS" "$WL_GROUP") || die "group probe failed"
	[[ $state == "Stable 1" ]] || wl_violation "group during the outage is '$state', expected 'Stable 1'"
	(($(wl_log_count w1 '"msg":"revoked') == revoked)) ||
		wl_violation "the worker lost its partitions during the database outage"
	"$PAYQ_SOURCE_ROOT/deploy/local/pg" start "$PAYQ_TEST_PG_DIR" >>"$WL_DIR/pg.log" 2>&1 ||
		die "deploy/local/pg start failed: $(cat "$WL_DIR/pg.log")"
	echo "PostgreSQL back at $(wl_applied) applied" >>"$WL_DIR/events"
	pass "8 s database outage: still a group member with its partitions, /healthz 200, /readyz 503"
	wl_stream_wait
	wl_wait_drained 90
	proc_alive "${WL_PID[w1]}" || wl_violation "the worker exited instead of recovering"
	wl_check_state
	wl_check_offsets_final
	local m=$WL_DIR/metrics.txt retries
	wl_metrics w1 >"$m" || wl_violation "GET /metrics failed"
	retries=$(awk '/^payq_db_retries_total[{ ]/ { n += $2 } END { print n + 0 }' "$m")
	((retries > 0)) || wl_violation "payq_db_retries_total is 0 after the faults"
	pass "after 3 terminated backends, a restart and an outage: $(wc -l <"$WL_DIR/cmds.f") commands exactly once, $retries batch retries"
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
}

# SIGTERM mid-stream: exit 0 within PAYQ_SHUTDOWN_TIMEOUT_MS, Kafka's committed offsets
# equal consumer_progress (everything applied is committed, nothing more), the group has
# no members at once (no static membership); a restart then finishes the stream.
wl_scenario_shutdown() {
	wl_init shutdown 6
	local t0 ms state
	wl_worker_start w1 PAYQ_SHUTDOWN_TIMEOUT_MS=5000 PAYQ_BATCH_MAX=100
	wl_wait_assigned w1
	wl_stream_start h 1500 10 0.3
	wl_wait_applied 1000
	wl_stream_running "SIGTERM"
	t0=$EPOCHREALTIME
	kill -TERM "${WL_PID[w1]}"
	wl_worker_wait_exit w1 15 || wl_violation "still running 15 s after SIGTERM"
	ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
	[[ $WL_RC == 0 ]] || wl_violation "exit status $WL_RC after SIGTERM, expected 0"
	((ms <= 5000)) || wl_violation "took $ms ms to exit, PAYQ_SHUTDOWN_TIMEOUT_MS is 5000"
	grep -q '"msg":"shutting down"' "$WL_DIR/w1.log" || wl_violation "no 'shutting down' log line"
	state=$("$WL_PROBE" group "$PAYQ_TEST_BROKERS" "$WL_GROUP") || die "group probe failed"
	[[ $state == "Empty 0" ]] || wl_violation "group after shutdown is '$state', expected 'Empty 0' (left the group)"
	local kafka db
	kafka=$(wl_offsets | awk '$2 >= 0 { print $1, $2 }')
	db=$(wl_progress)
	[[ $kafka == "$db" ]] ||
		wl_violation "after SIGTERM Kafka's committed offsets ($(tr '\n' ';' <<<"$kafka")) differ from consumer_progress ($(tr '\n' ';' <<<"$db"))"
	pass "SIGTERM mid-stream: exit 0 in $ms ms (timeout 5000), committed offsets = consumer_progress, group Empty with 0 members"
	wl_worker_start w2 PAYQ_SHUTDOWN_TIMEOUT_MS=5000
	wl_wait_assigned w2
	wl_stream_wait
	wl_wait_drained 60
	wl_check_state
	wl_check_offsets_final
	t0=$EPOCHREALTIME
	kill -INT "${WL_PID[w2]}"
	wl_worker_wait_exit w2 15 || wl_violation "still running 15 s after SIGINT"
	ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
	[[ $WL_RC == 0 && $ms -le 5000 ]] || wl_violation "idle worker: exit $WL_RC after $ms ms"
	state=$("$WL_PROBE" group "$PAYQ_TEST_BROKERS" "$WL_GROUP") || die "group probe failed"
	[[ $state == "Empty 0" ]] || wl_violation "group after shutdown is '$state', expected 'Empty 0'"
	pass "restart finished the stream exactly once; idle SIGINT: exit 0 in $ms ms, group Empty"
}

# SIGTERM while the in-flight batch cannot finish (its DLQ copy cannot be persisted):
# the worker still exits within PAYQ_SHUTDOWN_TIMEOUT_MS and commits nothing past it.
wl_scenario_shutdown_stuck() {
	wl_init stuck 1
	wl_cmd_create s-1 s-1:c 100 | wl_produce
	echo 's-2|not json' | wl_produce
	wl_cmd_create s-3 s-3:c 100 | wl_produce
	wl_expect_cmd s-1 s-1:c applied 0
	wl_expect_order s-1 unpaid 1 '' 0
	wl_worker_start w1 PAYQ_SHUTDOWN_TIMEOUT_MS=3000 PAYQ_DLQ_TOPIC="$WL_DLQ.missing" PAYQ_BATCH_MAX=1
	wl_wait_assigned w1
	wl_wait_applied 1 30
	sleep 1 # the batch of the malformed message now waits for its DLQ delivery report
	local t0 ms committed
	t0=$EPOCHREALTIME
	kill -TERM "${WL_PID[w1]}"
	wl_worker_wait_exit w1 15 || wl_violation "still running 15 s after SIGTERM"
	ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
	((ms <= 3000 + 500)) || wl_violation "took $ms ms to exit, PAYQ_SHUTDOWN_TIMEOUT_MS is 3000"
	committed=$(wl_offsets | awk '{ print $2 }')
	((committed <= 1)) || wl_violation "committed offset $committed is past the malformed message at offset 1"
	wl_check_state
	pass "SIGTERM with the DLQ copy unpersistable: exit $WL_RC in $ms ms (timeout 3000), committed offset $committed, not past the malformed message"
}

# A rebalance while a batch waits for its DLQ copy: the partition of the malformed
# message is revoked in the middle of the retries. Every DLQ copy must still be a
# byte-exact copy of its original (any number of copies: the new owner sends one too),
# and every command is applied exactly once.
wl_scenario_dlq_rebalance() {
	wl_init dlqrebal 2
	local late=$WL_DLQ.late
	on_exit "\"$WL_PROBE\" delete-topics \"$PAYQ_TEST_BROKERS\" \"$late\" >/dev/null 2>&1"
	echo 'X-0|not json at all' | wl_produce -p 0 -H x-case=not_json -H origin=test
	echo 'X-1|{"v":1}' | wl_produce -p 1 -H x-case=missing_field
	wl_cmd_create Y-0 Y-0:c 100 | wl_produce -p 0
	wl_cmd_create Y-1 Y-1:c 100 | wl_produce -p 1
	# Duplicates are not checked: both workers may apply a revoked partition's batch.
	wl_expect_cmd Y-0 Y-0:c applied
	wl_expect_order Y-0 unpaid 1 '' 0
	wl_expect_cmd Y-1 Y-1:c applied
	wl_expect_order Y-1 unpaid 1 '' 0
	wl_worker_start w1 PAYQ_DLQ_TOPIC="$late" -- -X message.timeout.ms=1000
	wl_wait_assigned w1
	wl_wait_log w1 'DLQ delivery failed' 30
	wl_worker_start w2 PAYQ_DLQ_TOPIC="$late" -- -X message.timeout.ms=1000
	wl_wait_log w1 '"msg":"revoked' 30
	wl_wait_assigned w2
	# Let w1 retry its delivery at least twice after the revoke.
	local n
	n=$(wl_log_count w1 'DLQ copies not persisted')
	local deadline=$((SECONDS + 20))
	until (($(wl_log_count w1 'DLQ copies not persisted') >= n + 2)); do
		proc_alive "${WL_PID[w1]}" || wl_violation "w1 died while retrying a DLQ delivery after a revoke: $(tail -n 5 "$WL_DIR/w1.log")"
		((SECONDS < deadline)) || die "w1 did not retry its DLQ delivery"
		sleep 0.2
	done
	"$WL_PROBE" create-topics "$PAYQ_TEST_BROKERS" 2 "$late" || die "cannot create $late"
	wl_wait_drained 60
	for n in w1 w2; do
		proc_alive "${WL_PID[$n]}" || wl_violation "$n died: $(tail -n 5 "$WL_DIR/$n.log")"
	done
	wl_check_dlq "$late" 2 atleast
	wl_check_state
	wl_check_offsets_final
	pass "rebalance during DLQ retries: every DLQ copy byte-exact, commands applied once, offsets at the log end"
	for n in w1 w2; do
		wl_worker_stop "$n" TERM
		[[ $WL_RC == 0 ]] || wl_violation "worker $n exited $WL_RC after SIGTERM"
	done
}

# wl_poison_trigger COMMAND_ID: the database refuses that command's processed_commands
# row with a permanent error (SQLSTATE 22023), as a poison command would.
wl_poison_trigger() {
	wl_sql "CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
	        BEGIN
	            IF NEW.command_id = '$1' THEN
	                RAISE EXCEPTION 'poison command %', NEW.command_id USING ERRCODE = '22023';
	            END IF;
	            RETURN NEW;
	        END \$\$;
	        CREATE TRIGGER poison BEFORE INSERT ON payq.processed_commands
	            FOR EACH ROW EXECUTE FUNCTION public.poison();" >/dev/null
}

# A command the database refuses with a permanent error (here a trigger raises SQLSTATE
# 22023 for one command_id): the batch is split to find it, it goes to the DLQ with the
# SQLSTATE, and every other command of the batch is applied.
wl_scenario_poison() {
	wl_init poison 1
	wl_poison_trigger P-3:c
	local i
	for i in 1 2 3 4 5 6; do
		wl_cmd_create "P-$i" "P-$i:c" 100
		wl_cmd_pay "P-$i" "P-$i:p" 100
		if ((i == 3)); then
			wl_expect_cmd "P-$i" "P-$i:p" rejected_unknown_order 0
		else
			wl_expect_cmd "P-$i" "P-$i:c" applied 0
			wl_expect_cmd "P-$i" "P-$i:p" applied 0
			wl_expect_order "P-$i" paid 2 "P-$i:p" 1
		fi
	done | wl_produce -H content-type=application/json
	wl_worker_start w1
	wl_wait_assigned w1
	wl_wait_drained 60
	wl_check_state
	wl_check_offsets_final
	pass "a command the database refuses is isolated by splitting; the other 11 commands applied"
	"$WL_PROBE" dump "$PAYQ_TEST_BROKERS" "$WL_DLQ" >"$WL_DIR/dlq.jsonl" || die "dump of $WL_DLQ failed"
	python3 - "$WL_DIR/dlq.jsonl" >"$WL_DIR/poison.out" <<'PY' || wl_violation "poison DLQ copy: $(cat "$WL_DIR/poison.out")"
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
if len(msgs) != 1:
    print("%d DLQ messages, expected 1" % len(msgs)); sys.exit(1)
m = msgs[0]
hd = {bytes.fromhex(k).decode(): bytes.fromhex(v or "").decode() for k, v in m["headers"]}
value = bytes.fromhex(m["value"]).decode()
problems = []
if '"command_id":"P-3:c"' not in value:
    problems.append("the DLQ copy is not P-3:c: %s" % value)
if "payq-dlq-reason" not in hd or not hd["payq-dlq-reason"]:
    problems.append("no payq-dlq-reason")
if "22023" not in hd.get("payq-dlq-error", "") + hd.get("payq-dlq-reason", ""):
    problems.append("the SQLSTATE 22023 is in neither payq-dlq-reason (%r) nor payq-dlq-error (%r)"
                    % (hd.get("payq-dlq-reason"), hd.get("payq-dlq-error")))
if problems:
    print("; ".join(problems)); sys.exit(1)
print("reason %s, error %s" % (hd["payq-dlq-reason"], hd["payq-dlq-error"]))
PY
	pass "the refused command is in the DLQ with its SQLSTATE: $(cat "$WL_DIR/poison.out")"
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
}

# Schema and migrate: a worker refuses an unmigrated database (exit 3, naming the command
# to run); four concurrent migrates are safe, a second migrate is harmless.
wl_scenario_schema() {
	wl_init schema 1
	local db2=${WL_DBNAME}_fresh i rc
	on_exit "psql_q 'DROP DATABASE IF EXISTS $db2 WITH (FORCE)' >/dev/null 2>&1"
	psql_q "CREATE DATABASE $db2" || die "cannot create $db2"
	rc=0
	PAYQ_DB="$PAYQ_TEST_DB dbname=$db2" PAYQ_BROKERS="$PAYQ_TEST_BROKERS" PAYQ_HTTP_ADDR="" \
		PAYQ_TOPIC="$WL_TOPIC" PAYQ_GROUP="$WL_GROUP" timeout 30 "$WL_EXE" run \
		2>"$WL_DIR/old-schema.log" || rc=$?
	[[ $rc == 3 ]] || wl_violation "worker on an unmigrated database exited $rc, expected 3"
	grep -q 'payq-worker migrate' "$WL_DIR/old-schema.log" ||
		wl_violation "the refusal does not name 'payq-worker migrate': $(cat "$WL_DIR/old-schema.log")"
	pass "unmigrated database: the worker exits 3 and says to run 'payq-worker migrate'"
	local pids=()
	for i in 1 2 3 4; do
		PAYQ_DB="$PAYQ_TEST_DB dbname=$db2" "$WL_EXE" migrate 2>"$WL_DIR/migrate-$i.log" &
		pids+=($!)
	done
	rc=0
	for i in "${pids[@]}"; do
		wait "$i" || rc=$?
	done
	((rc == 0)) || wl_violation "a concurrent migrate failed: $(cat "$WL_DIR"/migrate-*.log)"
	local want got
	want=$(wl_sql 'SELECT string_agg(version::text, $$,$$ ORDER BY version) FROM payq.schema_migrations')
	got=$(psql "$PAYQ_TEST_DB dbname=$db2" -XAtq -c 'SELECT string_agg(version::text, $$,$$ ORDER BY version) FROM payq.schema_migrations')
	[[ $got == "$want" ]] || wl_violation "after 4 concurrent migrates: versions $got, expected $want"
	PAYQ_DB="$PAYQ_TEST_DB dbname=$db2" "$WL_EXE" migrate 2>"$WL_DIR/migrate-again.log" ||
		wl_violation "a second migrate failed: $(cat "$WL_DIR/migrate-again.log")"
	grep -q '(0 migrations applied now)' "$WL_DIR/migrate-again.log" ||
		wl_violation "a second migrate applied something: $(cat "$WL_DIR/migrate-again.log")"
	pass "4 concurrent migrates: versions $got recorded once; a second migrate applies nothing"
}

# Static membership (PAYQ_INSTANCE_ID): a clean stop leaves the member in the group until
# session.timeout.ms; a restart under the same id takes its partitions back; a second
# process with the same id fences the first, whose fatal error makes it exit non-zero.
wl_scenario_static() {
	wl_init static 4
	local state
	wl_worker_start w1 PAYQ_INSTANCE_ID=pod-a
	wl_wait_assigned w1
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "static member exited $WL_RC after SIGTERM"
	state=$("$WL_PROBE" group "$PAYQ_TEST_BROKERS" "$WL_GROUP") || die "group probe failed"
	[[ $state == *" 1" ]] || wl_violation "right after a static member's stop the group is '$state', expected its member to stay"
	wl_worker_start w2 PAYQ_INSTANCE_ID=pod-a
	wl_wait_log w2 '"msg":"assigned 4 partitions' 5
	pass "static member: stays in the group after SIGTERM ($state), and takes its 4 partitions back at once under the same id"
	{
		wl_cmd_create S-1 S-1:c 100
		wl_cmd_pay S-1 S-1:p 100
	} | wl_produce
	wl_expect_cmd S-1 S-1:c applied 0
	wl_expect_cmd S-1 S-1:p applied 0
	wl_expect_order S-1 paid 2 S-1:p 1
	wl_wait_drained 30
	wl_worker_start w3 PAYQ_INSTANCE_ID=pod-a
	wl_worker_wait_exit w2 30 || wl_violation "the fenced worker (same PAYQ_INSTANCE_ID) still runs 30 s later"
	[[ $WL_RC != 0 && $WL_RC != 137 ]] || wl_violation "the fenced worker exited $WL_RC, expected a non-zero exit of its own"
	grep -q 'fatal' "$WL_DIR/w2.log" || wl_violation "the fenced worker did not log a fatal error"
	wl_wait_assigned w3
	echo 'S-2|{"v":1,"type":"cancel_order","command_id":"S-2:x","order_id":"S-2"}' | wl_produce
	wl_expect_cmd S-2 S-2:x rejected_unknown_order 0
	wl_wait_drained 30
	wl_check_state
	wl_check_offsets_final
	pass "a second process with the same PAYQ_INSTANCE_ID fences the first: it exits $WL_RC with a fatal error; the new one carries on"
	wl_worker_stop w3 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
}

# A zombie's transaction: w1 freezes inside a batch transaction (PAYQ_STALL_AT, holding
# the lock on order Z-E and its new order Z-A uncommitted) until max.poll.interval.ms
# puts it out of the group; w2 takes the partition and applies the same commands plus a
# pay for Z-A, its read waiting on w1's lock; then w1 commits. w2 must not see w1's dedup
# rows without w1's new order: the pay for Z-A is applied, nothing is rejected as an
# unknown order (the gateway chaos soak found exactly that when the dedup read came
# after the order lock).
wl_scenario_zombie_tx() {
	wl_init zombie 1
	wl_worker_start w1 PAYQ_STALL_AT=before_db_commit:2 PAYQ_STALL_MS=14000 \
		PAYQ_STALL_UNTIL="$WL_DIR/zombie.wake" -- -X max.poll.interval.ms=7000
	wl_wait_assigned w1
	wl_cmd_create Z-E Z-E:c 700 | wl_produce
	wl_wait_applied 1 30
	{
		wl_cmd_pay Z-E Z-E:p 700
		wl_cmd_create Z-A Z-A:c 800
	} | wl_produce
	wl_wait_log w1 'stall point before_db_commit reached' 30
	wl_cmd_pay Z-A Z-A:p 800 | wl_produce
	wl_worker_start w2
	wl_wait_assigned w2 60
	# w1 wakes once w2's batch waits for its lock (at the latest after PAYQ_STALL_MS).
	# shellcheck disable=SC2016 # wait_for evaluates it
	wait_for '(($(wl_sql "SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = '"'Lock'"'") > 0))' 14 || true
	touch "$WL_DIR/zombie.wake"
	wl_wait_log w1 'stall point before_db_commit: awake' 30
	wl_expect_cmd Z-E Z-E:c applied
	wl_expect_cmd Z-E Z-E:p applied
	wl_expect_cmd Z-A Z-A:c applied
	wl_expect_cmd Z-A Z-A:p applied
	wl_expect_order Z-E paid 2 Z-E:p 1
	wl_expect_order Z-A paid 2 Z-A:p 1
	wl_wait_applied 4 30
	wl_wait_drained 60
	wl_check_state
	pass "a zombie's late commit: every command applied once, none rejected as an unknown order"
	wl_worker_stop w2
	wl_worker_stop w1
}

# The fetch wake (worker/fetch_wake.c): librdkafka 2.0.2 stops fetching once its queue is
# full and looks again only when its broker thread wakes, up to a second later. Here the
# fetch outruns the worker (fetches of 4 KiB per partition, batches of 10), so a 16 KiB
# queue (about 90 commands) fills at once and the worker drains it in a few batches. A
# backlog of 4,800 commands then drains in seconds only if the worker wakes the fetch as
# it drains the queue; without, it takes a second a queue, close to a minute. Judged: the
# backlog is drained within WL_FETCH_WAKE_S (20 s) with every outcome right, and
# payq_fetch_wakes_total counted the wakes.
wl_scenario_fetch_wake() {
	local t0 wakes
	wl_init fetchwake 4
	wl_gen_orders f 2000
	# One record batch per message, so that a fetch brings what its byte limit allows.
	wl_produce -X batch.num.messages=1 <"$WL_DIR/cmds.f"
	wl_worker_start w1 PAYQ_BATCH_MAX=10 -- \
		-X queued.max.messages.kbytes=16 -X max.partition.fetch.bytes=4096
	wl_wait_assigned w1
	t0=$SECONDS
	wl_wait_drained "${WL_FETCH_WAKE_S:-20}"
	wl_metrics w1 >"$WL_DIR/metrics.txt"
	wakes=$(wl_metric_value "$WL_DIR/metrics.txt" payq_fetch_wakes_total)
	wl_check_state
	[[ ${wakes:-0} -gt 0 ]] || wl_violation "payq_fetch_wakes_total is ${wakes:-absent}, want > 0"
	wl_worker_stop w1 TERM
	[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
	pass "fetch wake: $(wc -l <"$WL_DIR/cmds.f") commands through a 16 KiB queue in $((SECONDS - t0)) s, $wakes wakes"
}
