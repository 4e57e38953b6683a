#!/bin/bash
# A connection silently blackholed: the worker reaches PostgreSQL through a loopback
# proxy (tests/faults/pgproxy.py) that stops forwarding without closing anything, as a
# dead link or a stuck middlebox would. The proxy's kernel still acknowledges every
# byte, so neither keepalives nor tcp_user_timeout can see it: the worker must give up
# on its own, after statement_timeout + tcp_user_timeout without an answer, and
# reconnect through a path that works, with no liveness probe (PAYQ_HTTP_ADDR empty).
# (a) hole: the worker's open connection dies; new connections go through.
# (b) hole while the worker is idle: its readiness ping, every 5 s, meets the silent
#     connection; the worker drops it on its own and stays responsive.
# (c) hole-all: for 8 s every connection, new ones too, is held; then forwarding resumes.
# Each recovery must come within its bound, and every command is applied exactly once.
# The worker runs as payq_worker with sslmode=verify-full, through the proxy.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"
require_env PAYQ_TEST_WORKER_DB

STATEMENT_MS=2000
USER_TIMEOUT_MS=1000
CONNECT_S=3
RETRY_MAX_MS=1000
# Waiting for an answer: statement + tcp_user_timeout; then a reconnect (connect_timeout)
# after at most one backoff; 5 s of slack for a loaded machine.
BOUND_A=$(((STATEMENT_MS + USER_TIMEOUT_MS + RETRY_MAX_MS) / 1000 + CONNECT_S + 5))
BOUND_B=$(((STATEMENT_MS + USER_TIMEOUT_MS + RETRY_MAX_MS) / 1000 + CONNECT_S + 5))

broker_start --partitions 4
db_create
# This tree's schema and grants (007_roles) even when WORKER_EXE is another build (an older
# worker, for a comparison, knows fewer migrations).
PAYQ_DB=$DB "$PAYQ_WORKER_EXE" migrate >>"$WORK/migrate.log" 2>&1 || die "migrate failed: $(cat "$WORK/migrate.log")"
pg_port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$PAYQ_TEST_DB")
echo forward >"$WORK/proxy.ctl"
PGPROXY_CONTROL=$WORK/proxy.ctl python3 "$PAYQ_SOURCE_ROOT/tests/faults/pgproxy.py" \
	"$WORK/proxy.port" 127.0.0.1 "${pg_port:-5432}" 0 >"$WORK/proxy.out" 2>&1 &
proxy=$!
on_exit "proc_stop $proxy"
wait_until 10 test -s "$WORK/proxy.port" || die "pgproxy.py did not start: $(cat "$WORK/proxy.out")"
# The passfile names the server's port: give payq_worker's password for the proxy's too.
passfile=$(sed -n 's/.*passfile=\([^ ]*\).*/\1/p' <<<"$PAYQ_TEST_WORKER_DB")
(umask 077 && awk -F: -v p="$(cat "$WORK/proxy.port")" '$4 == "payq_worker" { $2 = p; print }' OFS=: \
	"$passfile" >"$WORK/pgpass")
worker_db="$PAYQ_TEST_WORKER_DB dbname=$DBNAME host=127.0.0.1 port=$(cat "$WORK/proxy.port") passfile=$WORK/pgpass"

monitor_start
worker_start w1 "PAYQ_DB=$worker_db" PAYQ_HTTP_ADDR= \
	PAYQ_DB_STATEMENT_TIMEOUT_MS=$STATEMENT_MS PAYQ_DB_TCP_USER_TIMEOUT_MS=$USER_TIMEOUT_MS \
	PAYQ_DB_CONNECT_TIMEOUT_S=$CONNECT_S PAYQ_DB_KEEPALIVES_IDLE_S=1 \
	PAYQ_DB_KEEPALIVES_INTERVAL_S=1 PAYQ_DB_KEEPALIVES_COUNT=2 PAYQ_RETRY_MAX_MS=$RETRY_MAX_MS
worker_wait_assigned w1
produce_orders 1 10
wait_processed

now() { date +%s.%3N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
mode_count() { grep -c '^mode ' "$WORK/proxy.out" || true; }
mode_count_above() { (($(mode_count) > $1)); }
set_mode() {
	local n
	n=$(mode_count)
	echo "$1" >"$WORK/proxy.ctl"
	wait_until 5 mode_count_above "$n" || die "the proxy did not switch to $1"
	log "proxy: $(grep '^mode ' "$WORK/proxy.out" | tail -n 1)"
}
# recover LABEL BOUND_S SINCE: every command applied within BOUND_S of SINCE.
recover() {
	if wait_until "$2" all_processed; then
		pass "$1: recovered in $(since "$3") s (bound $2 s)"
	else
		expect violation "$1: only $(processed_count) of $(expected_count) commands processed $(since "$3") s after the fault (bound $2 s)"
		wait_until 60 all_processed || die "$1: the worker never recovered"
	fi
}

# (a) The worker's connection goes silent; new connections work.
set_mode hole
t0=$(now)
produce_orders 11 20
recover "(a) hole" "$BOUND_A" "$t0"
set_mode forward

# (b) Silent while idle: the readiness ping must not hang the poll loop.
drops() { grep -c 'no answer within' "$WORK/w1.log" || true; }
drops_above() { (($(drops) > $1)); }
before=$(drops)
set_mode hole
t0=$(now)
if wait_until 20 drops_above "$before"; then
	pass "(b) idle: the worker dropped the silent connection $(since "$t0") s after it went silent"
else
	expect violation "(b) idle: no 'no answer within' line 20 s after the connection went silent"
fi
t0=$(now)
produce_orders 21 30
recover "(b) idle, then commands" "$BOUND_A" "$t0"
set_mode forward

# (c) Every connection silent for 8 s, then forwarding again.
set_mode hole-all
produce_orders 31 40
sleep 8
set_mode forward
t0=$(now)
recover "(c) hole-all, after forwarding resumed" "$BOUND_B" "$t0"

if grep -q 'no answer within 3000 ms' "$WORK/w1.log"; then
	pass "the worker dropped the silent connection itself (no answer within 3000 ms)"
else
	expect violation "no 'no answer within' line in the worker log"
fi
expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_monotonic
expect check_assignment_kept w1
expect check_clean_stop w1
finish
