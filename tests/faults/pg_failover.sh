#!/bin/bash
# PostgreSQL failover and restore, on deploy/local/pg-ha (a primary, a streaming replica, a
# WAL archive), with two workers on the mock cluster and PAYQ_DB listing both servers
# (target_session_attrs=read-write). The database is the truth for progress: where it lost
# commits, the workers seek back to consumer_progress and re-apply (DESIGN.md, "Worker
# behaviour"). Checked against the manifest of produced commands (expected.tsv): every
# command applied exactly once, nothing lost, no order paid twice.
#
#   pg_failover.sh async     hold the replica back, apply more, fence the primary read-only
#                            (open sessions get 25006), promote, kill the old primary once
#                            the workers moved (or at the deadline): progress_rewind raised
#   pg_failover.sh async-gateway  the same in gateway mode against payq-sandbox-gateway, the
#                            primary killed outright; the sandbox's ledger shows no order
#                            charged twice
#   pg_failover.sh sync      synchronous_standby_names: kill the primary under load, promote:
#                            no rewind needed, nothing lost
#   pg_failover.sh pitr      base backup mid-run, more load, restore up to an earlier LSN from
#                            the archive, restart the workers on it: progress_rewind raised
#
# Prints its figures: commands, rewound offsets, duplicates absorbed, time to recover.
MODE=${1:-async}
TEST_NAME=${TEST_NAME:-pg_failover_$MODE}
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

case $MODE in
async | async-gateway | sync | pitr) ;;
*) die "unknown mode $MODE (async, async-gateway, sync, pitr)" ;;
esac
[[ $EUID -eq 0 ]] || {
	echo "needs root (deploy/local/pg-ha runs initdb as postgres): skipped"
	exit 77
}
T0=$(date +%s)
HA=$WORK/ha
ha() { "$PAYQ_SOURCE_ROOT/deploy/local/pg-ha" "$@" "$HA" 2>>"$WORK/pg-ha.log"; }
ha_arg() {
	local cmd=$1
	shift
	"$PAYQ_SOURCE_ROOT/deploy/local/pg-ha" "$cmd" "$HA" "$@" 2>>"$WORK/pg-ha.log"
}
on_exit "ha stop"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

start_args=()
[[ $MODE == sync ]] && start_args=(--sync)
ha_arg start "${start_args[@]}" >"$WORK/ha.conninfo" ||
	die "pg-ha start failed: $(tail -n 5 "$WORK/pg-ha.log")"
# The scenario's database lives on the pair; db_create and every check go through PAYQ_DB.
PAYQ_TEST_DB=$(cat "$WORK/ha.conninfo")
log "primary and replica: $PAYQ_TEST_DB"

broker_start --partitions 4
db_create
monitor_start
if [[ $MODE == async-gateway ]]; then
	require_env PAYQ_SANDBOX_GATEWAY_EXE
	# No declines: every order of the manifest must end paid.
	rc=0
	sandbox_spawn "$WORK/sandbox.ports" --stderr-only "$WORK/sandbox.log" \
		"$PAYQ_SANDBOX_GATEWAY_EXE" --decline-suffix -1 || rc=$?
	GW_PID=$SANDBOX_PID
	on_exit "proc_stop $GW_PID"
	((rc == 0)) || die "payq-sandbox-gateway did not start"
	GW_API=$SANDBOX_API_PORT GW_CTL_PORT=$SANDBOX_CTL_PORT
	# The sandbox speaks plaintext on loopback: allowed here only.
	WORKER_ENV=(PAYQ_PAYMENT_MODE=gateway "PAYQ_GATEWAY_URL=http://127.0.0.1:$GW_API"
		PAYQ_GATEWAY_ALLOW_INSECURE=1 PAYQ_GATEWAY_TIMEOUT_MS=3000 PAYQ_GATEWAY_CONNECT_TIMEOUT_MS=1000
		PAYQ_RECONCILE_SCHEDULE=1s PAYQ_RECONCILE_INTERVAL_MS=200)
fi
workers_start() {
	worker_start "w1$1"
	worker_start "w2$1"
	worker_wait_assigned "w1$1" 30
	worker_wait_assigned "w2$1" 30
}
workers_start ""

# Phase 1: replicated (and, for pitr, in the base backup).
produce_orders 1 150
wait_processed
[[ $MODE == pitr ]] && { ha_arg basebackup mid || die "base backup failed"; }

# Phase 2: the tail that the failover or the restore loses.
if [[ $MODE == async || $MODE == async-gateway ]]; then
	ha hold || die "cannot hold the replica back"
fi
produce_orders 151 300
wait_processed
if [[ $MODE == pitr ]]; then
	TARGET=$(ha lsn)
	ha switch-wal || die "cannot archive the WAL up to $TARGET"
	produce_orders 301 400
	wait_processed
fi
wait_until 30 committed_at_end || die "committed offsets did not reach the end before the fault"
BEFORE=$(processed_count)
log "before the fault: $BEFORE commands applied, Kafka committed at the log end"

# Phase 3: the fault, with load going on.
produce_orders_bg 401 600
T_FAULT=$(now)
case $MODE in
async)
	ha fence || die "cannot fence the primary"
	ha promote || die "promote failed"
	;;
async-gateway | sync)
	ha kill-primary || die "cannot kill the primary"
	ha promote || die "promote failed"
	;;
pitr)
	worker_stop w1
	worker_stop w2
	ha kill-primary || die "cannot stop the primary"
	ha_arg restore mid "$TARGET" >"$WORK/restored.conninfo" || die "restore failed: $(tail -n 5 "$WORK/pg-ha.log")"
	DB="$(cat "$WORK/restored.conninfo") dbname=$DBNAME"
	;;
esac
T_PROMOTED=$(now)
# What the database lost: the commands applied before the fault (orders up to LAST) that
# it no longer has, counted right away, before the workers are back on it.
LAST=$([[ $MODE == pitr ]] && echo 400 || echo 300)
AFTER_FAULT=$(sql "SELECT count(*) FROM payq.processed_commands
                   WHERE split_part(command_id, '-', 2)::int <= $LAST")
if [[ $MODE == pitr ]]; then
	log "restored up to $TARGET; the workers restart on it"
	workers_start b
fi
LOST=$((BEFORE - AFTER_FAULT))
log "the new database has $AFTER_FAULT of the $BEFORE commands applied before the fault: $LOST lost"
wait "$PRODUCER_PID" || die "payq-producer failed: $(tail -n 3 "$WORK/producer.log")"

# Phase 4: the workers recover within a bounded time (a stall is a violation).
expect check_processed "${PAYQ_FAILOVER_WAIT_S:-120}"
T_DONE=$(now)
if [[ $MODE == async ]]; then
	ha kill-primary || true # the fenced old primary, once the workers have left it
fi

rewinds=$(sql "SELECT count(*) FROM payq.anomalies WHERE kind = 'progress_rewind'")
rewound=$(sql "SELECT coalesce(sum(kafka_offset - substring(detail FROM 'consumer_progress ([0-9]+)')::bigint), 0)
               FROM payq.anomalies WHERE kind = 'progress_rewind'")
dups=$(sql "SELECT coalesce(sum(duplicates), 0) FROM payq.processed_commands")
check_rewinds() {
	if [[ $MODE == sync ]]; then
		[[ $rewinds == 0 ]] || {
			violation "synchronous replication lost nothing, yet $rewinds progress_rewind anomalies"
			return 1
		}
		pass "no progress_rewind: synchronous replication lost nothing"
		return 0
	fi
	[[ $rewinds -gt 0 ]] || {
		violation "the database lost $LOST commands' effects but no progress_rewind was raised"
		return 1
	}
	pass "progress_rewind raised on $rewinds partitions, $rewound offsets re-applied"
}
expect check_rewinds
if [[ $MODE == async ]]; then
	# The fenced primary answered the open sessions with 25006; the workers left it.
	check_read_only_seen() {
		local n
		n=$(cat "$WORK"/w1.log "$WORK"/w2.log | grep -c 'SQLSTATE 25006), retrying' || true)
		((n > 0)) || {
			violation "no worker met SQLSTATE 25006 on the fenced primary: the scenario did not test it"
			return 1
		}
		pass "the workers met SQLSTATE 25006 $n times on the fenced primary and reconnected"
	}
	expect check_read_only_seen
fi
expect check_exactly_once
expect check_progress
if [[ $MODE == async-gateway ]]; then
	check_ledger() {
		local twice charged pays
		pays=$(awk -F'\t' '$3 == "pay"' "$WORK/expected.tsv" | wc -l)
		curl -fsS --max-time 5 "http://127.0.0.1:$GW_CTL_PORT/ledger.csv" >"$WORK/ledger.csv" ||
			die "cannot read the sandbox ledger"
		twice=$(awk -F, '$6 == "succeeded" { n[$2]++ } END { for (o in n) if (n[o] > 1) c++; print c + 0 }' "$WORK/ledger.csv")
		charged=$(awk -F, '$6 == "succeeded" { n[$2]++ } END { print length(n) }' "$WORK/ledger.csv")
		[[ $twice == 0 ]] || {
			violation "the sandbox charged $twice orders more than once"
			return 1
		}
		[[ $charged == "$pays" ]] || {
			violation "the sandbox charged $charged distinct orders, expected $pays"
			return 1
		}
		REPLAYED=$(curl -fsS --max-time 5 "http://127.0.0.1:$GW_CTL_PORT/stats" |
			python3 -c 'import json, sys; print(json.load(sys.stdin)["replayed"])') ||
			die "cannot read the sandbox stats"
		pass "the sandbox's ledger: $pays orders charged, none twice ($REPLAYED repeated charges answered from their idempotency keys)"
	}
	expect check_ledger
fi
printf 'figures %s: commands=%s lost_by_the_database=%s rewinds=%s rewound_offsets=%s duplicates_absorbed=%s gateway_replays=%s failover_s=%s recover_s=%s test_s=%s\n' \
	"$MODE" "$(expected_count)" "$LOST" "$rewinds" \
	"$rewound" "$dups" "${REPLAYED:-n/a}" "$(secs "$T_FAULT" "$T_PROMOTED")" "$(secs "$T_PROMOTED" "$T_DONE")" \
	"$(($(date +%s) - T0))"
finish
