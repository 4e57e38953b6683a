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
	local rc=0
	sandbox_spawn "$WL_DIR/sandbox.ports" --stderr-only "$WL_DIR/sandbox.log" \
		"$PAYQ_SANDBOX_GATEWAY_EXE" "$@" || rc=$?
	GW_PID=$SANDBOX_PID
	on_exit "kill $GW_PID 2>/dev/null; wait $GW_PID 2>/dev/null"
	((rc == 0)) || die "payq-sandbox-gateway did not start: $(cat "$WL_DIR/sandbox.log")"
	GW_URL=http://127.0.0.1:$SANDBOX_API_PORT
	GW_CTL=http://127.0.0.1:$SANDBOX_CTL_PORT
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
		PAYQ_GATEWAY_ALLOW_INSECURE=1 PAYQ_GATEWAY_TIMEOUT_MS=3000 PAYQ_GATEWAY_CONNECT_TIMEOUT_MS=1000 \
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
#     succeeded payment is a gateway charge for its own order and command; every failed
#     payment is a decline;
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
	        SELECT 1 FROM gw_ledger l WHERE l.status = 'succeeded' AND l.charge_id = p.gateway_charge_id
	        AND l.order_id = p.order_id AND l.command_id = p.command_id)),
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
	((b == 0)) || wl_violation "$b succeeded payments have no charge of their own at the gateway"
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
	local got
	got=$(gw_wait_settled K1 30)
	gw_expect_charges K1 1
	[[ $got == succeeded ]] || wl_violation "the resumed pay of K1 ended $got, not succeeded"
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

# ---- the guarantee at its edges (issue 13) ----

# gw_reconcile [VAR=VALUE...] ARGS...: payq-worker reconcile ARGS against this test's
# database and sandbox; stderr goes to reconcile.log.
gw_reconcile() {
	local envs=()
	while (($#)) && [[ $1 == *=* ]]; do
		envs+=("$1")
		shift
	done
	env PAYQ_DB="$WL_DB" PAYQ_GATEWAY_URL="$GW_URL" PAYQ_GATEWAY_ALLOW_INSECURE=1 PAYQ_HTTP_ADDR='' PAYQ_LOG_LEVEL=warn \
		"${envs[@]}" "$WL_EXE" reconcile "$@" 2>>"$WL_DIR/reconcile.log"
}

# gw_payment ORDER: "status attempts" of the order's newest payment.
gw_payment() { wl_sql "SELECT status, attempts FROM payq.payments WHERE order_id = '$1' ORDER BY payment_id DESC LIMIT 1"; }
gw_anomalies() { wl_sql "SELECT count(*) FROM payq.anomalies WHERE kind = '$1' AND order_id = '$2'"; }

# gw_wait_settled ORDER TIMEOUT_S: waits until the order's payment is no longer pending;
# prints its status (pending when it never left it).
gw_wait_settled() {
	local deadline=$((SECONDS + $2)) got
	while :; do
		got=$(wl_sql "SELECT status FROM payq.payments WHERE order_id = '$1' ORDER BY payment_id DESC LIMIT 1" 2>/dev/null || true)
		if [[ -n $got && $got != pending ]] || ((SECONDS >= deadline)); then
			printf '%s\n' "${got:-none}"
			return 0
		fi
		sleep 0.2
	done
}

# Two orders whose IDs made the same idempotency key in the old form order_id:command_id:
# order "shop" paid by command "1:pay", and order "shop:1" paid by command "pay". Each must
# be charged once, with its own key; the second must never settle on the first's charge.
gw_scenario_key_ambiguous() {
	wl_init gw-key 3
	gw_sandbox_start
	gw_worker_start w1
	{
		wl_cmd_create shop shop:c 500
		wl_cmd_create shop:1 shop:1:c 500
	} | wl_produce
	gw_wait_sql "SELECT count(*) FROM payq.orders" 2 30
	wl_cmd_pay shop 1:pay 500 | wl_produce
	gw_wait_sql "SELECT status FROM payq.payments WHERE order_id = 'shop'" succeeded 30
	wl_cmd_pay shop:1 pay 500 | wl_produce
	# Settled at once, or by the reconciler (it looks after 1 s) when the first answer
	# was not clear; 20 s is many looks.
	wait_for "[[ \$(gw_wait_settled shop:1 1) == succeeded ]]" 20 || true
	gw_expect_charges shop 1
	gw_expect_charges shop:1 1
	assert_eq 2 "$(wl_sql "SELECT count(DISTINCT idempotency_key) FROM payq.payments")" "two payments, two idempotency keys"
	assert_eq "paid 2 pay" "$(gw_order shop:1)" "order shop:1 is paid by its own command"
	wl_wait_drained 30
	wl_worker_stop w1
	gw_check_invariants
}

# A payment recorded before the key format changed keeps its stored key: the reconciler
# asks the channel with it and settles the charge made with it, never charging again.
gw_scenario_key_stored() {
	wl_init gw-keyold 3
	gw_sandbox_start
	# The old worker recorded U1:U1:p as pending with the old-form key and charged it;
	# then it died before settling.
	wl_sql "INSERT INTO payq.orders (order_id, amount_minor, currency, status, version)
	        VALUES ('U1', 700, 'EUR', 'unpaid', 1);
	        INSERT INTO payq.processed_commands (order_id, command_id, command_type, payload_sha256,
	            outcome, kafka_topic, kafka_partition, kafka_offset)
	        VALUES ('U1', 'U1:p', 'pay', sha256('x'), 'pending', 't', 0, 0);
	        INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, payer_id, status,
	            idempotency_key, next_attempt_at)
	        VALUES ('U1', 'U1:p', 700, 'EUR', 'u-1', 'pending', 'U1:U1:p', now())" >/dev/null
	curl -fsS --max-time 5 -X POST -H 'Idempotency-Key: U1:U1:p' -H 'Content-Type: application/json' \
		--data '{"order_id":"U1","command_id":"U1:p","amount_minor":700,"currency":"EUR","payer_id":"u-1"}' \
		"$GW_URL/charges" >/dev/null || die "cannot charge U1 at the sandbox"
	gw_worker_start w1
	local got
	got=$(gw_wait_settled U1 20)
	wait_for "[[ \$(gw_wait_settled U1 1) == succeeded ]]" 20 || true
	gw_expect_charges U1 1
	assert_eq "U1:U1:p" "$(wl_sql "SELECT idempotency_key FROM payq.payments WHERE order_id = 'U1'")" "the stored key is kept"
	# Schema 005: a live payment without a stored key cannot exist (nothing rebuilds keys).
	wl_sql "INSERT INTO payq.orders (order_id, amount_minor, currency, status, version)
	        VALUES ('U2', 700, 'EUR', 'unpaid', 1)" >/dev/null
	if wl_sql "INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, status)
	           VALUES ('U2', 'U2:p', 700, 'EUR', 'unknown')" >/dev/null 2>&1; then
		wl_violation "a live payment without an idempotency key was accepted"
	fi
	pass "a live payment without a stored key is refused (payments_live_key)"
	assert_eq "paid 2 U1:p" "$(gw_order U1)" "the reconciler settled U1 with the stored key (first status $got)"
	wl_worker_stop w1
	gw_check_invariants
}

# gw_scenario_mismatch LIE: the channel answers (POST and GET alike) with another
# amount, currency or key than the payment's. Nothing settles: the payment stays
# unknown, charge_mismatch is raised and counted; once the channel tells the truth the
# reconciler settles it.
gw_scenario_mismatch() {
	local lie=${1:-amount} got
	wl_init gw-lie 3
	gw_sandbox_start
	gw_faults "{\"lie\":\"$lie\"}"
	gw_worker_start w1 PAYQ_RECONCILE_SCHEDULE=300ms
	{
		wl_cmd_create M1 M1:c 1200
		wl_cmd_pay M1 M1:p 1200
	} | wl_produce
	got=$(gw_wait_settled M1 30)
	[[ $got == unknown ]] || wl_violation "an answer with another $lie settled the payment as '$got'"
	# Several looks of the reconciler, each answered with the same lie.
	gw_wait_sql "SELECT attempts >= 3 FROM payq.payments WHERE order_id = 'M1'" t 30
	assert_eq "unknown" "$(wl_sql "SELECT status FROM payq.payments WHERE order_id = 'M1'")" "the reconciler does not settle on a lie ($lie) either"
	[[ $(gw_anomalies charge_mismatch M1) == 1 ]] ||
		wl_violation "expected one charge_mismatch anomaly for M1, got $(gw_anomalies charge_mismatch M1)"
	wait_for "[[ \$(gw_metric w1 'payq_anomalies_total{kind=\"charge_mismatch\"}') -ge 1 ]]" 10 ||
		wl_violation "payq_anomalies_total{kind=\"charge_mismatch\"} is not counted"
	assert_eq "unpaid" "$(wl_sql "SELECT status FROM payq.orders WHERE order_id = 'M1'")" "the order stays unpaid"
	pass "lie=$lie: payment unknown, one charge_mismatch anomaly, counted"
	gw_faults '{"lie":"none"}'
	gw_wait_sql "SELECT status FROM payq.payments WHERE order_id = 'M1'" succeeded 30
	gw_expect_charges M1 1
	wl_wait_drained 30
	wl_worker_stop w1
	gw_check_invariants
}

# Channels keep idempotency records for a limited time. A payment unknown for longer
# than PAYQ_GATEWAY_KEY_RETENTION whose key the channel no longer knows (GET 404) is not
# charged again: unresolved_payment, and `payq-worker reconcile` shows how to resolve it.
# Within the retention a 404 still charges (the channel never saw the key).
gw_scenario_retention() {
	local out rc=0 charge
	wl_init gw-retain 3
	gw_sandbox_start
	gw_worker_start w1 PAYQ_RECONCILE_SCHEDULE=1h
	# Within the retention: the channel is down for R2's charge, so it never saw the key.
	gw_faults '{"down":true}'
	{
		wl_cmd_create R2 R2:c 800
		wl_cmd_pay R2 R2:p 800
	} | wl_produce
	gw_wait_sql "SELECT status FROM payq.payments WHERE order_id = 'R2'" unknown 30
	gw_faults '{"down":false}'
	out=$(gw_reconcile --once --all) || rc=$?
	[[ $rc == 0 ]] || die "reconcile --once exited $rc: $out"
	assert_eq "succeeded" "$(wl_sql "SELECT status FROM payq.payments WHERE order_id = 'R2'")" "a 404 within the retention charges again"
	gw_expect_charges R2 1
	# Past the retention: R1 is charged, the answer is lost, and the channel forgets keys.
	gw_faults '{"drop_rate":1}'
	{
		wl_cmd_create R1 R1:c 900
		wl_cmd_pay R1 R1:p 900
	} | wl_produce
	gw_wait_sql "SELECT status FROM payq.payments WHERE order_id = 'R1'" unknown 30
	gw_faults '{"drop_rate":0}'
	wl_worker_stop w1
	sleep 3
	curl -fsS --max-time 5 -X POST "$GW_CTL/forget" >/dev/null || die "cannot make the sandbox forget keys"
	rc=0
	out=$(gw_reconcile PAYQ_GATEWAY_KEY_RETENTION=2s --once --all) || rc=$?
	printf '%s\n' "$out" >"$WL_DIR/reconcile.out"
	[[ $rc == 0 ]] || die "reconcile --once exited $rc: $out"
	gw_expect_charges R1 1
	assert_eq "unknown" "$(wl_sql "SELECT status FROM payq.payments WHERE order_id = 'R1'")" "past the retention the payment is left unknown"
	[[ $(gw_anomalies unresolved_payment R1) == 1 ]] || wl_violation "no unresolved_payment anomaly for R1"
	[[ $out == *"R1"*"--order R1 --command R1:p --mark-succeeded"* ]] ||
		wl_violation "reconcile --once does not show how to resolve R1: $out"
	pass "past the retention: not charged again, unresolved_payment, reconcile shows the way"
	# A second pass does not charge either, nor raise the anomaly again.
	gw_reconcile PAYQ_GATEWAY_KEY_RETENTION=2s --once --all >/dev/null ||
		die "second reconcile --once failed"
	gw_expect_charges R1 1
	assert_eq 1 "$(gw_anomalies unresolved_payment R1)" "the anomaly is raised once"
	# The person looks the charge up at the channel and records it.
	charge=$(curl -fsS --max-time 5 "$GW_CTL/ledger.csv" | awk -F, '$2 == "R1" { print $7 }')
	gw_reconcile --order R1 --command R1:p --mark-succeeded "$charge" >>"$WL_DIR/reconcile.out" ||
		die "reconcile --mark-succeeded failed: $(cat "$WL_DIR/reconcile.out")"
	assert_eq "paid 2 R1:p" "$(gw_order R1)" "--mark-succeeded settles the payment"
	assert_eq "applied" "$(gw_outcome R1 R1:p)" "R1:p ends applied"
	gw_check_invariants
}

# gw_expect_text "FROM ... WHERE ..." COLUMN CONDITION MESSAGE: a violation, with the
# COLUMN's value, unless CONDITION holds on the row that FROM ... WHERE ... reads.
gw_expect_text() {
	[[ $(wl_sql "SELECT $3 $1") == t ]] || wl_violation "$4: $(wl_sql "SELECT $2 $1")"
}

# Text from the channel that is not valid UTF-8 (a decline code, an error message) is
# stored cleaned and cut on character boundaries; it never stalls settling.
gw_scenario_bad_text() {
	local got
	wl_init gw-text 3
	gw_sandbox_start
	gw_faults '{"bad_text":true}'
	gw_worker_start w1
	{
		wl_cmd_create T1 T1:c 1500
		printf '%s|{"v":1,"type":"pay","command_id":"T1:p","order_id":"T1","amount_minor":1500,"currency":"EUR","payer_id":"declined-9"}\n' T1
		wl_cmd_create T2 T2:c 1600
		wl_cmd_pay T2 T2:p 1600
	} | wl_produce
	got=$(gw_wait_settled T1 30)
	[[ $got == failed ]] || wl_violation "a decline with invalid UTF-8 did not settle (payment $got)"
	gw_expect_text "FROM payq.payments WHERE order_id = 'T1'" decline_code \
		"decline_code LIKE 'card_declined%' AND decline_code LIKE '%'||chr(65533)||'%'" \
		"the decline code is not the cleaned text"
	assert_eq "paid 2 T2:p" "$(gw_order T2)" "the other order of the batch is paid"
	# An error answer with invalid UTF-8 (503s): the payment goes unknown with the text.
	gw_faults '{"error_rate":1}'
	{
		wl_cmd_create T3 T3:c 1700
		wl_cmd_pay T3 T3:p 1700
	} | wl_produce
	got=$(gw_wait_settled T3 30)
	[[ $got == unknown ]] || wl_violation "an error answer with invalid UTF-8 left the payment $got"
	gw_expect_text "FROM payq.processed_commands WHERE order_id = 'T3' AND command_id = 'T3:p'" \
		detail "detail LIKE '%injected error%'" "the error text was not kept"
	gw_faults '{"error_rate":0,"bad_text":false}'
	gw_wait_sql "SELECT status FROM payq.payments WHERE order_id = 'T3'" succeeded 30
	wl_wait_drained 30
	wl_worker_stop w1
	gw_check_invariants
}

# gw_settle_trigger ORDER...: the database refuses to record these orders' payments as
# succeeded or failed (a permanent error, SQLSTATE 22023), but lets them go unknown.
gw_settle_trigger() {
	local list
	list=$(printf "'%s'," "$@")
	wl_sql "CREATE OR REPLACE FUNCTION public.refuse_settle() RETURNS trigger LANGUAGE plpgsql AS \$\$
	        BEGIN
	            IF NEW.order_id IN (${list%,}) AND NEW.status IN ('succeeded', 'failed') THEN
	                RAISE EXCEPTION 'settle refused for %', NEW.order_id USING ERRCODE = '22023';
	            END IF;
	            RETURN NEW;
	        END \$\$;
	        DROP TRIGGER IF EXISTS refuse_settle ON payq.payments;
	        CREATE TRIGGER refuse_settle BEFORE UPDATE ON payq.payments
	            FOR EACH ROW EXECUTE FUNCTION public.refuse_settle();" >/dev/null
}

# A permanent database error in the settle step does not loop: the payment is recorded
# unknown with the error, settle_refused is raised, and the batch and the partition go
# on.
gw_scenario_settle_refused() {
	local got
	wl_init gw-refuse 1
	gw_settle_trigger V1
	gw_sandbox_start
	gw_worker_start w1 PAYQ_RECONCILE_SCHEDULE=300ms
	{
		wl_cmd_create V1 V1:c 100
		wl_cmd_pay V1 V1:p 100
		wl_cmd_create V2 V2:c 200
		wl_cmd_pay V2 V2:p 200
	} | wl_produce
	got=$(gw_wait_settled V2 30)
	[[ $got == succeeded ]] || wl_violation "a settle the database refuses for V1 stalls V2 (payment $got)"
	got=$(gw_wait_settled V1 10)
	[[ $got == unknown ]] || wl_violation "V1's refused settle left its payment $got, expected unknown"
	[[ $(gw_anomalies settle_refused V1) -ge 1 ]] || wl_violation "no settle_refused anomaly for V1"
	wl_wait_drained 30
	pass "worker: the refused settle is recorded unknown with an anomaly; the partition goes on"
	wl_worker_stop w1
}

# The reconciler, failing on one payment (the database refuses to settle it), goes on
# with the next ones of its page, pass after pass.
gw_scenario_reconcile_goes_on() {
	wl_init gw-recgo 1
	gw_sandbox_start
	gw_faults '{"down":true}'
	gw_worker_start w2 PAYQ_RECONCILE_SCHEDULE=1h
	{
		for o in V3 V4 V5; do
			wl_cmd_create "$o" "$o:c" 300
			wl_cmd_pay "$o" "$o:p" 300
		done
	} | wl_produce
	gw_wait_sql "SELECT count(*) FROM payq.payments WHERE order_id IN ('V3', 'V4', 'V5') AND status = 'unknown'" 3 30
	wl_worker_stop w2
	gw_faults '{"down":false}'
	gw_settle_trigger V3
	gw_reconcile --once --all >"$WL_DIR/reconcile.out" || true
	local got
	got=$(wl_sql "SELECT string_agg(status, ' ' ORDER BY order_id) FROM payq.payments WHERE order_id IN ('V4', 'V5')")
	[[ $got == "succeeded succeeded" ]] ||
		wl_violation "the reconciler did not go on past V3, which the database refuses: V4 and V5 are $got"
	pass "the reconciler goes on past the payment the database refuses"
	assert_eq "unknown" "$(wl_sql "SELECT status FROM payq.payments WHERE order_id = 'V3'")" "V3 stays unknown"
	[[ $(gw_anomalies settle_refused V3) -ge 1 ]] || wl_violation "no settle_refused anomaly for V3"
	gw_expect_charges V3 1
}

# An amount of 10^15 (the largest valid one) goes to the channel as 1000000000000000,
# which it accepts; not 1e+15, which it refuses.
gw_scenario_big_amount() {
	local got
	wl_init gw-amount 3
	gw_sandbox_start
	gw_worker_start w1
	{
		wl_cmd_create B1 B1:c 1000000000000000
		wl_cmd_pay B1 B1:p 1000000000000000
		wl_cmd_create B2 B2:c 123456789012345
		wl_cmd_pay B2 B2:p 123456789012345
	} | wl_produce
	got=$(gw_wait_settled B1 30)
	[[ $got == succeeded ]] || wl_violation "a pay of 10^15 was not charged (payment $got): $(grep -o 'gateway refused[^"]*' "$WL_DIR/w1.log" | head -n 1)"
	assert_eq "succeeded" "$(gw_wait_settled B2 30)" "a 15-digit amount is charged"
	assert_eq "1000000000000000" "$(curl -fsS --max-time 5 "$GW_CTL/ledger.csv" | awk -F, '$2 == "B1" { print $4 }')" "the channel charged exactly 10^15"
	wl_wait_drained 30
	wl_worker_stop w1
	gw_check_invariants
}

# cancel_order while a payment is pending or unknown is rejected (see README): the
# order is not cancelled under a charge that may have moved money. Once the payment
# settles, a cancel takes effect as the outcome table says.
gw_scenario_cancel_in_progress() {
	wl_init gw-cancel 3
	gw_sandbox_start
	gw_faults '{"down":true}'
	gw_worker_start w1 PAYQ_RECONCILE_SCHEDULE=1h
	{
		wl_cmd_create X1 X1:c 100
		wl_cmd_pay X1 X1:p 100
		wl_cmd_create X2 X2:c 113
		wl_cmd_pay X2 X2:p 113
	} | wl_produce
	gw_wait_sql "SELECT count(*) FROM payq.payments WHERE status = 'unknown'" 2 30
	{
		wl_cmd_cancel X1 X1:x
		wl_cmd_cancel X2 X2:x
	} | wl_produce
	gw_wait_sql "SELECT count(*) FROM payq.processed_commands WHERE command_id LIKE '%:x'" 2 30
	assert_eq "rejected_payment_in_progress" "$(gw_outcome X1 X1:x)" "cancel while X1's payment is unknown"
	assert_eq "unpaid" "$(wl_sql "SELECT status FROM payq.orders WHERE order_id = 'X1'")" "X1 is not cancelled"
	wl_worker_stop w1
	gw_faults '{"down":false}'
	gw_reconcile --once --all >/dev/null || die "reconcile --once failed"
	gw_worker_start w2 PAYQ_RECONCILE_SCHEDULE=1h
	{
		wl_cmd_cancel X1 X1:y
		wl_cmd_cancel X2 X2:y
	} | wl_produce
	gw_wait_sql "SELECT count(*) FROM payq.processed_commands WHERE command_id LIKE '%:y'" 2 30
	assert_eq "rejected_already_paid" "$(gw_outcome X1 X1:y)" "X1 settled paid: a cancel is rejected_already_paid"
	assert_eq "applied" "$(gw_outcome X2 X2:y)" "X2 settled declined: a cancel applies"
	assert_eq "cancelled" "$(wl_sql "SELECT status FROM payq.orders WHERE order_id = 'X2'")" "X2 is cancelled"
	wl_wait_drained 30
	wl_worker_stop w2
	gw_check_invariants
}

# SIGTERM while the channel stalls every request (charges and the reconciler's queries):
# the worker exits within PAYQ_SHUTDOWN_TIMEOUT_MS.
gw_scenario_shutdown_stalled() {
	local t0 ms state
	wl_init gw-stall 3
	gw_sandbox_start
	gw_faults '{"latency_ms":600000}'
	# Unknown payments for the reconciler to query (its looks stall too).
	wl_sql "INSERT INTO payq.orders (order_id, amount_minor, currency, status, version)
	        SELECT 'S' || i, 100, 'EUR', 'unpaid', 1 FROM generate_series(1, 3) i;
	        INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, status,
	            idempotency_key, next_attempt_at)
	        SELECT 'S' || i, 'S' || i || ':p', 100, 'EUR', 'unknown', 'S' || i || '|S' || i || ':p', now()
	        FROM generate_series(1, 3) i" >/dev/null
	gw_worker_start w1 PAYQ_SHUTDOWN_TIMEOUT_MS=3000 PAYQ_GATEWAY_TIMEOUT_MS=600000 \
		PAYQ_RECONCILE_INTERVAL_MS=100
	{
		wl_cmd_create S9 S9:c 100
		wl_cmd_pay S9 S9:p 100
	} | wl_produce
	gw_wait_sql "SELECT status FROM payq.payments WHERE order_id = 'S9'" pending 30
	wait_for "[[ \$(gw_stat get_charges) -ge 1 && \$(gw_stat post_charges) -ge 1 ]]" 30 ||
		die "the stalled charge and query did not reach the sandbox"
	t0=$EPOCHREALTIME
	kill -TERM "${WL_PID[w1]}"
	wl_worker_wait_exit w1 30 || wl_violation "still running 30 s after SIGTERM with the channel stalled"
	ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
	((ms <= 3000 + 1000)) || wl_violation "took $ms ms to exit with the channel stalled, PAYQ_SHUTDOWN_TIMEOUT_MS is 3000"
	state=$("$WL_PROBE" group "$PAYQ_TEST_BROKERS" "$WL_GROUP") || die "group probe failed"
	[[ $state == "Empty 0" ]] || wl_violation "group after shutdown is '$state', expected 'Empty 0' (left the group)"
	pass "SIGTERM with the channel stalled: exit $WL_RC in $ms ms (timeout 3000)", left the group
	[[ $(wl_sql "SELECT status FROM payq.payments WHERE order_id = 'S9'") == @(pending|unknown) ]] ||
		wl_violation "the stalled pay is no longer pending or unknown"
	pass "the stalled pay stays pending or unknown, for a redelivery or the reconciler"
}

# gw_scenario_security_script NAME: tests/security/NAME.sh against this WL_EXE, as one
# scenario (worker_mutation.sh runs gateway_tls.sh against the gateway-no-verify mutant).
gw_scenario_security_script() {
	WL_EXE=$WL_EXE "$PAYQ_SOURCE_ROOT/tests/security/$1.sh"
}
