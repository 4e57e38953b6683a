# Helpers and scenarios for gateway mode (PAYQ_PAYMENT_MODE=gateway) against
# payq-sandbox-gateway; source after worker_lib.sh.
# shellcheck shell=bash
#
# Each gw_scenario_* is one check, run through wl_scenario: exit 0 when the guarantees
# hold, 3 (wl_violation) when one is broken, 1 when it could not run. worker_mutation.sh
# runs gw_scenario_crash_resume against the new-key-on-retry mutant.

require_env PAYQ_SANDBOX_GATEWAY_EXE

GW_PID=

# gw_sandbox_start [FLAGS...]: starts payq-sandbox-gateway on free ports; sets GW_URL
# (the payments API the worker uses) and GW_CTL (its control API).
gw_sandbox_start() {
	local pf=$WL_DIR/sandbox.ports api ctl
	"$PAYQ_SANDBOX_GATEWAY_EXE" --port-file "$pf" "$@" 2>>"$WL_DIR/sandbox.log" &
	GW_PID=$!
	on_exit "kill $GW_PID 2>/dev/null; wait $GW_PID 2>/dev/null"
	wait_for "[[ -s $pf ]]" 10 || die "payq-sandbox-gateway did not start: $(cat "$WL_DIR/sandbox.log")"
	read -r api ctl <"$pf"
	GW_URL=http://127.0.0.1:$api
	GW_CTL=http://127.0.0.1:$ctl
	echo "sandbox gateway $GW_URL (control $GW_CTL)" >>"$WL_DIR/events"
}

# gw_faults JSON: sets the sandbox's fault switches, e.g. '{"down":true}'.
gw_faults() {
	curl -fsS --max-time 5 -X POST --data "$1" "$GW_CTL/faults" >/dev/null ||
		die "cannot set sandbox faults $1"
	echo "sandbox faults $1" >>"$WL_DIR/events"
}

# gw_stat NAME: one counter of the sandbox's /stats.
gw_stat() {
	curl -fsS --max-time 5 "$GW_CTL/stats" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" ||
		die "cannot read sandbox stats"
}

# gw_charges ORDER: succeeded charges the sandbox made for the order (money moved).
gw_charges() {
	curl -fsS --max-time 5 "$GW_CTL/ledger.csv" |
		awk -F, -v o="$1" '$2 == o && $6 == "succeeded" { n++ } END { print n + 0 }'
}

# gw_expect_charges ORDER N: the gateway charged ORDER exactly N times, or a violation.
gw_expect_charges() {
	local got
	got=$(gw_charges "$1")
	[[ $got == "$2" ]] || wl_violation "the gateway charged order $1 $got times, expected $2"
	pass "the gateway charged order $1 $2 time(s)"
}

# gw_worker_start NAME [VAR=VALUE...]: a worker in gateway mode against the sandbox, with
# a reconciler that looks after 1 s (override with PAYQ_RECONCILE_SCHEDULE=...).
gw_worker_start() {
	local name=$1
	shift
	wl_worker_start "$name" PAYQ_PAYMENT_MODE=gateway PAYQ_GATEWAY_URL="$GW_URL" \
		PAYQ_GATEWAY_TIMEOUT_MS=3000 PAYQ_GATEWAY_CONNECT_TIMEOUT_MS=1000 \
		PAYQ_RECONCILE_SCHEDULE=1s PAYQ_RECONCILE_INTERVAL_MS=200 "$@"
}

# gw_wait_sql SQL EXPECTED [TIMEOUT_S]: waits until the query prints EXPECTED.
gw_wait_sql() {
	local sql=$1 want=$2 deadline=$((SECONDS + ${3:-30})) got
	while :; do
		got=$(wl_sql "$sql" 2>/dev/null || true)
		[[ $got == "$want" ]] && return 0
		((SECONDS < deadline)) || die "waited ${3:-30}s for [$sql] = '$want', last '$got'"
		sleep 0.2
	done
}

# gw_metric WORKER SERIES: the value of one series of the worker's /metrics (0 if absent).
gw_metric() {
	wl_metrics "$1" >"$WL_DIR/metrics.txt" || return 1
	wl_metric_value "$WL_DIR/metrics.txt" "$2"
}

# The row of one order: "status version paid_command_id".
gw_order() { wl_sql "SELECT status, version, coalesce(paid_command_id, '-') FROM payq.orders WHERE order_id = '$1'"; }
# The payments of one order, oldest first: "command_id status" per line.
gw_payments() { wl_sql "SELECT command_id, status FROM payq.payments WHERE order_id = '$1' ORDER BY payment_id"; }
gw_outcome() { wl_sql "SELECT outcome FROM payq.processed_commands WHERE order_id = '$1' AND command_id = '$2'"; }

# gw_check_invariants: gateway mode's guarantees, through the sandbox's ledger and SQL.
#   - the gateway charged each order at most once;
#   - every gateway charge is a succeeded payment with that charge id, and every
#     succeeded payment is a gateway charge; every failed payment is a decline;
#   - no payment is left pending or unknown; every paid order has its succeeded payment.
gw_check_invariants() {
	local csv=$WL_DIR/ledger.csv multi out
	curl -fsS --max-time 10 "$GW_CTL/ledger.csv" >"$csv" || die "cannot read the sandbox ledger"
	multi=$(curl -fsS --max-time 10 "$GW_CTL/ledger" |
		python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)["multi_charged_orders"]))') ||
		die "cannot read the sandbox ledger summary"
	[[ -z $multi ]] || wl_violation "the gateway charged these orders more than once: $multi"
	psql "$WL_DB" -XAtq -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' \
		-c 'DROP TABLE IF EXISTS gw_ledger' \
		-c 'CREATE TABLE gw_ledger (key text, order_id text, command_id text, amount_minor bigint,
		    currency text, status text, charge_id text)' \
		-c "\\copy gw_ledger FROM '$csv' WITH (FORMAT csv)" >/dev/null ||
		die "cannot load the sandbox ledger into the database"
	out=$(wl_sql "SELECT
	    (SELECT count(*) FROM gw_ledger l WHERE l.status = 'succeeded' AND NOT EXISTS (
	        SELECT 1 FROM payq.payments p WHERE p.order_id = l.order_id AND p.status = 'succeeded'
	        AND p.command_id = l.command_id AND p.gateway_charge_id = l.charge_id)),
	    (SELECT count(*) FROM payq.payments p WHERE p.status = 'succeeded' AND NOT EXISTS (
	        SELECT 1 FROM gw_ledger l WHERE l.status = 'succeeded' AND l.charge_id = p.gateway_charge_id)),
	    (SELECT count(*) FROM payq.payments p WHERE p.status = 'failed' AND NOT EXISTS (
	        SELECT 1 FROM gw_ledger l WHERE l.status = 'declined' AND l.order_id = p.order_id
	        AND l.command_id = p.command_id)),
	    (SELECT count(*) FROM payq.payments WHERE status IN ('pending', 'unknown')),
	    (SELECT count(*) FROM payq.orders o WHERE o.status = 'paid' AND NOT EXISTS (
	        SELECT 1 FROM payq.payments p WHERE p.order_id = o.order_id AND p.status = 'succeeded'
	        AND p.command_id = o.paid_command_id)),
	    (SELECT count(*) FROM payq.processed_commands WHERE outcome = 'pending')")
	read -r a b c d e f <<<"$out"
	((a == 0)) || wl_violation "$a gateway charges have no succeeded payment with their charge id"
	((b == 0)) || wl_violation "$b succeeded payments have no charge at the gateway"
	((c == 0)) || wl_violation "$c failed payments have no decline at the gateway"
	((d == 0)) || wl_violation "$d payments still pending or unknown"
	((e == 0)) || wl_violation "$e paid orders without their succeeded payment"
	((f == 0)) || wl_violation "$f commands still have the outcome pending"
	pass "gateway invariants: $(grep -c ',succeeded,' "$csv" || true) charges, each one succeeded payment; no order charged twice; nothing pending"
}

# ---- scenarios ----

# The channel charges, then the response is lost. The payment goes unknown; the
# reconciler asks the channel and settles it as succeeded, with no second charge.
gw_scenario_lost_response() {
	wl_init gw-lost 3
	gw_sandbox_start --drop-rate 1
	gw_worker_start w1
	{
		wl_cmd_create L1 L1:c 2500
		wl_cmd_pay L1 L1:p 2500
	} | wl_produce
	gw_wait_sql "SELECT status FROM payq.payments WHERE order_id = 'L1'" succeeded 30
	assert_eq "1" "$(gw_stat dropped)" "the sandbox charged and dropped the response once"
	gw_expect_charges L1 1
	assert_eq "paid 2 L1:p" "$(gw_order L1)" "order L1 is paid by L1:p"
	assert_eq "applied" "$(gw_outcome L1 L1:p)" "L1:p ends applied"
	[[ $(wl_log_count w1 'payment of order L1 unknown') -ge 1 ]] ||
		wl_violation "the worker did not record L1's payment as unknown first"
	[[ $(wl_log_count w1 'reconciler: order L1 command L1:p gateway: charge') -ge 1 ]] ||
		wl_violation "the reconciler did not settle L1"
	pass "lost response: unknown, then settled by the reconciler as succeeded"
	wl_wait_drained 30
	wl_worker_stop w1
	gw_check_invariants
}

# gw_scenario_crash_resume POINT: the worker is killed at POINT (before_charge: after
# the batch COMMIT recorded the pay as pending; after_charge: the channel answered, the
# result not yet recorded). The restarted worker gets the pay again and resumes it with
# the same idempotency key: the gateway shows one charge.
gw_scenario_crash_resume() {
	local point=${1:-after_charge}
	wl_init gw-crash 3
	gw_sandbox_start
	# The reconciler waits an hour, so that the resume is the worker's own.
	gw_worker_start w1 PAYQ_CRASH_AT="$point" PAYQ_RECONCILE_SCHEDULE=1h
	{
		wl_cmd_create K1 K1:c 4200
		wl_cmd_pay K1 K1:p 4200
	} | wl_produce
	wl_worker_wait_exit w1 30 || die "the worker did not reach the crash point $point"
	[[ $WL_RC == 137 ]] || die "the worker exited with $WL_RC, not by the crash point"
	assert_eq "K1:p pending" "$(gw_payments K1)" "after the crash ($point) the payment is pending"
	gw_worker_start w2 PAYQ_RECONCILE_SCHEDULE=1h
	gw_wait_sql "SELECT status FROM payq.payments WHERE order_id = 'K1'" succeeded 30
	gw_expect_charges K1 1
	if [[ $point == after_charge ]]; then
		[[ $(gw_stat replayed) -ge 1 ]] ||
			wl_violation "the resume did not reuse the idempotency key (no replay at the gateway)"
	fi
	assert_eq "paid 2 K1:p" "$(gw_order K1)" "order K1 is paid by K1:p"
	wl_wait_drained 30
	wl_worker_stop w2
	gw_check_invariants
}

# The channel is down: payments go unknown (and, after the looks run out, are reported
# as unresolved_payment), later pay and cancel_order for those orders are rejected as
# payment in progress and never charged, other orders keep flowing; once the channel is
# back the reconciler settles everything.
gw_scenario_down() {
	local i
	wl_init gw-down 3
	gw_sandbox_start
	gw_faults '{"down":true}'
	gw_worker_start w1 PAYQ_RECONCILE_SCHEDULE=300ms PAYQ_RECONCILE_MAX_ATTEMPTS=3
	for i in 1 2 3; do
		wl_cmd_create "D$i" "D$i:c" "$((1000 + i))"
		wl_cmd_pay "D$i" "D$i:p" "$((1000 + i))"
	done | wl_produce
	gw_wait_sql "SELECT count(*) FROM payq.payments WHERE status = 'unknown'" 3 30
	pass "channel down: 3 payments unknown"
	{
		wl_cmd_pay D1 D1:p2 1001
		wl_cmd_cancel D2 D2:x
		for i in 1 2 3 4 5; do wl_cmd_create "F$i" "F$i:c" 500; done
		wl_cmd_cancel F1 F1:x
	} | wl_produce
	gw_wait_sql "SELECT count(*) FROM payq.processed_commands" 14 30
	assert_eq "rejected_payment_in_progress" "$(gw_outcome D1 D1:p2)" "a second pay while D1's payment is unknown"
	assert_eq "rejected_payment_in_progress" "$(gw_outcome D2 D2:x)" "a cancel while D2's payment is unknown"
	assert_eq "cancelled" "$(wl_sql "SELECT status FROM payq.orders WHERE order_id = 'F1'")" "other orders flow meanwhile"
	wl_wait_drained 30
	pass "offsets committed to the log end while the channel is down"
	gw_wait_sql "SELECT count(*) FROM payq.anomalies WHERE kind = 'unresolved_payment'" 3 30
	wait_for "[[ \$(gw_metric w1 payq_payments_unresolved) == 3 ]]" 10 ||
		wl_violation "payq_payments_unresolved is not 3 while 3 payments are unresolved"
	pass "after 3 looks: 3 unresolved_payment anomalies, payq_payments_unresolved 3"
	gw_faults '{"down":false}'
	gw_wait_sql "SELECT count(*) FROM payq.payments WHERE status = 'succeeded'" 3 30
	wait_for "[[ \$(gw_metric w1 payq_payments_unresolved) == 0 ]]" 10 ||
		wl_violation "payq_payments_unresolved stays above 0 after everything settled"
	for i in 1 2 3; do
		assert_eq "paid 2 D$i:p" "$(gw_order "D$i")" "D$i paid once the channel is back"
	done
	gw_expect_charges F1 0
	wl_worker_stop w1
	gw_check_invariants
}

# Declines: the order stays unpaid, and a later pay with a new command id can succeed.
gw_scenario_declined() {
	wl_init gw-declined 3
	gw_sandbox_start
	gw_worker_start w1
	{
		wl_cmd_create N1 N1:c 3000
		printf '%s|{"v":1,"type":"pay","command_id":"N1:p1","order_id":"N1","amount_minor":3000,"currency":"EUR","payer_id":"declined-card-1"}\n' N1
		wl_cmd_create N2 N2:c 7713
		wl_cmd_pay N2 N2:p1 7713
	} | wl_produce
	gw_wait_sql "SELECT count(*) FROM payq.payments WHERE status = 'failed'" 2 30
	assert_eq "rejected_declined" "$(gw_outcome N1 N1:p1)" "a declined card: rejected_declined"
	assert_eq "rejected_declined" "$(gw_outcome N2 N2:p1)" "an amount ending in 13: rejected_declined"
	assert_eq "unpaid 1 -" "$(gw_order N1)" "a declined payment leaves the order unpaid"
	assert_eq "card_declined" "$(wl_sql "SELECT decline_code FROM payq.payments WHERE order_id = 'N1'")" "decline code recorded"
	printf '%s|{"v":1,"type":"pay","command_id":"N1:p2","order_id":"N1","amount_minor":3000,"currency":"EUR","payer_id":"u-2"}\n' N1 | wl_produce
	gw_wait_sql "SELECT status FROM payq.orders WHERE order_id = 'N1'" paid 30
	assert_eq "paid 2 N1:p2" "$(gw_order N1)" "a later pay with a new command id succeeds"
	assert_eq "$(printf 'N1:p1 failed\nN1:p2 succeeded')" "$(gw_payments N1)" "one failed and one succeeded payment"
	gw_expect_charges N1 1
	wl_wait_drained 30
	wl_worker_stop w1
	gw_check_invariants
}

# A pay the database refuses (a permanent error, isolated by splitting the batch and sent
# to the DLQ) is never charged: its pending payment was rolled back with it.
gw_scenario_poison() {
	local i
	wl_init gw-poison 1
	wl_poison_trigger Q-3:p
	gw_sandbox_start
	for i in 1 2 3 4 5 6; do
		wl_cmd_create "Q-$i" "Q-$i:c" 100
		wl_cmd_pay "Q-$i" "Q-$i:p" 100
	done | wl_produce
	gw_worker_start w1
	wl_wait_drained 60
	gw_expect_charges Q-3 0
	for i in 1 2 4 5 6; do
		gw_expect_charges "Q-$i" 1
	done
	assert_eq "unpaid" "$(wl_sql "SELECT status FROM payq.orders WHERE order_id = 'Q-3'")" "the refused pay left Q-3 unpaid"
	wl_worker_stop w1
	gw_check_invariants
}
