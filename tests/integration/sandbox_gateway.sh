#!/bin/bash
# payq-sandbox-gateway on its own, through curl: charges, idempotent replays, 409/422,
# validation, declines, status queries, latency and concurrency, injected errors, dropped
# answers, down/up on the same port, hostile answers (lie, bad_text), forgotten keys,
# the ledger, SIGTERM and bad flags.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:?run through meson test}/tests/lib/common.sh"
# shellcheck source=tests/lib/worker.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/worker.sh"

require_env PAYQ_SANDBOX_GATEWAY_EXE
command -v curl >/dev/null || die "curl not found"
command -v python3 >/dev/null || die "python3 not found"
GW=$PAYQ_SANDBOX_GATEWAY_EXE
W=$(mktemp -d "${PAYQ_TEST_STATE_DIR:-/tmp}/sandbox_gateway.XXXXXX")
on_exit "rm -rf '$W'"

expect_rc() {
	local want=$1 got=$2 what=$3
	[[ $got == "$want" ]] || die "$what: exit code $got, expected $want (stderr: $(tail -c 2000 "$W/err"))"
}

# Runs curl against URL with the remaining arguments; prints the HTTP status (000 when
# there was no answer) and leaves the body in $W/body and the headers in $W/hdr.
http() {
	local url=$1
	shift
	curl -s -o "$W/body" -D "$W/hdr" -w '%{http_code}' "$@" "$url"
}

# POST /charges with the key (none when empty) and the JSON body.
charge() {
	local key=$1 body=$2 hdr=()
	[[ -n $key ]] && hdr=(-H "Idempotency-Key: $key")
	http "$API/charges" -X POST "${hdr[@]}" -H 'Content-Type: application/json' --data-binary "$body"
}

# A charge request body: order, command, amount, then optionally a payer id.
req() {
	local payer=null
	[[ -n ${4:-} ]] && payer="\"$4\""
	printf '{"order_id":"%s","command_id":"%s","amount_minor":%s,"currency":"EUR","payer_id":%s}' \
		"$1" "$2" "$3" "$payer"
}

# Fails unless the Python expression over d, the JSON document in FILE, is true.
json_ok() {
	local file=$1 expr=$2 what=$3
	python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)' "$file" "$expr" || die "$what: $(cat "$file")"
	pass "$what"
}

expect_http() {
	local want=$1 got=$2 what=$3
	[[ $got == "$want" ]] || die "$what: HTTP $got, expected $want, body: $(cat "$W/body" 2>/dev/null)"
}

faults() {
	expect_http 200 "$(http "$CTL/faults" -X POST --data-binary "$1")" "POST /faults $1"
}

ledger() {
	expect_http 200 "$(http "$CTL/ledger")" "GET /ledger"
	cp "$W/body" "$W/ledger"
}

# --- 1. Arguments ---------------------------------------------------------------------
rc=0
"$GW" --help >"$W/out" 2>"$W/err" || rc=$?
expect_rc 0 "$rc" "--help"
grep -q '^Usage: payq-sandbox-gateway' "$W/out" || die "--help prints no usage"
for bad in "--latency-ms abc" "--error-rate 1.5" "--decline-suffix 100" "--listen nowhere" \
	"--bogus" "--seed"; do
	rc=0
	# shellcheck disable=SC2086 # split on purpose: flag and value
	"$GW" $bad >"$W/out" 2>"$W/err" || rc=$?
	expect_rc 2 "$rc" "$bad"
	grep -q -- "${bad%% *}" "$W/err" || die "$bad: the message does not name the flag: $(cat "$W/err")"
done
pass "bad flags exit 2 naming the flag; --help exits 0"

# --- 2. Start -------------------------------------------------------------------------
rc=0
sandbox_spawn "$W/ports" --fresh-log --stderr-only "$W/gw.log" "$GW" --seed 7 || rc=$?
GW_PID=$SANDBOX_PID
on_exit "kill $GW_PID 2>/dev/null; wait $GW_PID 2>/dev/null"
((rc == 0)) || die "no port file after 10 s: $(cat "$W/gw.log")"
API_PORT=$SANDBOX_API_PORT CTL_PORT=$SANDBOX_CTL_PORT
API=http://127.0.0.1:$API_PORT
CTL=http://127.0.0.1:$CTL_PORT
[[ ! -e $W/ports.tmp ]] || die "the port file's .tmp was left behind"
grep -q "^listening: api 127.0.0.1:$API_PORT control 127.0.0.1:$CTL_PORT\$" "$W/gw.log" ||
	die "no listening line: $(cat "$W/gw.log")"
expect_http 200 "$(http "$CTL/healthz")" "GET /healthz"
assert_eq ok "$(cat "$W/body")" "port file written, listening line logged, /healthz says ok"

# --- 3. Charge, replay, mismatch -----------------------------------------------------
expect_http 201 "$(charge k-1 "$(req O-1 c-1 1999)")" "first charge"
cp "$W/body" "$W/first"
json_ok "$W/first" 'd == {"id": "ch_00000001", "idempotency_key": "k-1", "status": "succeeded",
	"order_id": "O-1", "command_id": "c-1", "amount_minor": 1999, "currency": "EUR"}' \
	"a charge succeeds: 201 with id, key, status and the request's fields"
grep -qi '^Idempotent-Replayed' "$W/hdr" && die "a first answer says Idempotent-Replayed"
expect_http 201 "$(charge k-1 "$(req O-1 c-1 1999)")" "replay"
cmp -s "$W/first" "$W/body" || die "the replay's body differs: $(cat "$W/body")"
grep -qi '^Idempotent-Replayed: true' "$W/hdr" || die "no Idempotent-Replayed header: $(cat "$W/hdr")"
ledger
json_ok "$W/ledger" 'd["charges"] == 1 and d["keys"] == 1' \
	"same key and body: 201, byte-identical body, Idempotent-Replayed: true, still 1 charge"
expect_http 422 "$(charge k-1 "$(req O-1 c-1 2000)")" "same key, other amount"
json_ok "$W/body" '"different request" in d["error"]' "same key, other amount: 422"
expect_http 422 "$(charge k-1 "$(req O-1 c-1 1999 someone)")" "same key, other payer"
pass "same key, other payer_id: 422"

# --- 4. Validation --------------------------------------------------------------------
expect_http 400 "$(charge "" "$(req O-2 c-2 100)")" "no Idempotency-Key"
json_ok "$W/body" '"Idempotency-Key" in d["error"]' "no Idempotency-Key header: 400 naming it"
long=$(printf 'k%.0s' {1..256})
expect_http 400 "$(charge "$long" "$(req O-2 c-2 100)")" "256-character key"
pass "a 256-character key: 400"
while IFS='|' read -r body field; do
	expect_http 400 "$(charge k-bad "$body")" "body $body"
	json_ok "$W/body" "d['error'].startswith('$field')" "bad body $body: 400 naming $field"
done <<'EOF'
not json|body
{"command_id":"c","amount_minor":5,"currency":"EUR"}|order_id
{"order_id":"O","amount_minor":5,"currency":"EUR"}|command_id
{"order_id":"O","command_id":"c","amount_minor":"5","currency":"EUR"}|amount_minor
{"order_id":"O","command_id":"c","amount_minor":0,"currency":"EUR"}|amount_minor
{"order_id":"O","command_id":"c","amount_minor":1.5,"currency":"EUR"}|amount_minor
{"order_id":"O","command_id":"c","amount_minor":5,"currency":"eur"}|currency
{"order_id":"O","command_id":"c","amount_minor":5,"currency":"EUR","payer_id":7}|payer_id
EOF
python3 -c 'print("{\"order_id\":\"" + "x" * 70000 + "\"}")' >"$W/big.json"
expect_http 413 "$(http "$API/charges" -X POST -H 'Idempotency-Key: k-big' --data-binary "@$W/big.json")" \
	"a 70 kB body"
pass "a body over 64 KiB: 413"
expect_http 405 "$(http "$API/charges")" "GET /charges"
expect_http 404 "$(http "$API/refunds" -X POST)" "POST /refunds"
pass "GET /charges: 405; an unknown path: 404"
ledger
json_ok "$W/ledger" 'd["keys"] == 1' "refused requests record no key"

# --- 5. Declines and status queries ------------------------------------------------------
expect_http 402 "$(charge k-2 "$(req O-2 c-2 2513)")" "amount ending in 13"
cp "$W/body" "$W/declined"
json_ok "$W/body" 'd["status"] == "declined" and d["decline_code"] == "insufficient_funds" and
	d["id"] == "ch_00000002"' "an amount ending in 13: 402 insufficient_funds"
expect_http 402 "$(charge k-3 "$(req O-3 c-3 500 declined-x)")" "payer declined-x"
json_ok "$W/body" 'd["status"] == "declined" and d["decline_code"] == "card_declined"' \
	"payer declined-x: 402 card_declined"
expect_http 402 "$(charge k-2 "$(req O-2 c-2 2513)")" "declined replay"
cmp -s "$W/declined" "$W/body" || die "the declined replay's body differs"
pass "a declined key replays 402 with the same body"
expect_http 200 "$(http "$API/charges/k-1")" "GET known key"
cmp -s "$W/first" "$W/body" || die "GET /charges/k-1 gives another body: $(cat "$W/body")"
pass "GET a known key: 200, the charge's body"
expect_http 200 "$(http "$API/charges/k-2")" "GET declined key"
json_ok "$W/body" 'd["status"] == "declined"' "GET a declined key: 200, status declined"
expect_http 404 "$(http "$API/charges/k-nope")" "GET unknown key"
json_ok "$W/body" 'd == {"error": "no such charge"}' "GET an unknown key: 404"
odd='O-4:c-4 50%/x+y'
expect_http 201 "$(charge "$odd" "$(req O-4 c-4 700)")" "key with odd characters"
enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$odd")
expect_http 200 "$(http "$API/charges/$enc")" "GET /charges/$enc"
json_ok "$W/body" "d['idempotency_key'] == '$odd'" "GET with a percent-encoded key ($enc) finds it"

# --- 6. Latency: a concurrent retry gets 409; requests run concurrently -------------------
faults '{"latency_ms":1500}'
ledger
before=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["charges"])' "$W/ledger")
curl -s -o "$W/slow1" -w '%{http_code}' -X POST -H 'Idempotency-Key: k-slow' \
	--data-binary "$(req O-5 c-5 800)" "$API/charges" >"$W/code1" &
p1=$!
sleep 0.3
curl -s -o "$W/slow2" -w '%{http_code}' -X POST -H 'Idempotency-Key: k-slow' \
	--data-binary "$(req O-5 c-5 800)" "$API/charges" >"$W/code2" &
p2=$!
wait "$p1" "$p2"
# Whichever reached the sandbox first is charged; on a busy machine that may be the second.
assert_eq "201 409" "$(sort "$W/code1" "$W/code2" | tr '\n' ' ' | sed 's/ $//')" \
	"latency 1500 ms, two concurrent POSTs with one key: 201 and 409"
grep -q 'in progress' "$W/slow1" "$W/slow2" || die "the 409 does not say why"
ledger
json_ok "$W/ledger" "d['charges'] == $before + 1" "the ledger shows one charge for them"

faults '{"latency_ms":300}'
t0=$EPOCHREALTIME
pids=()
for i in $(seq 1 20); do
	curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "Idempotency-Key: k-par-$i" \
		--data-binary "$(req "O-par-$i" "c-par-$i" 100)" "$API/charges" >"$W/par.$i" &
	pids+=($!)
done
wait "${pids[@]}"
took=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
assert_eq 20 "$(cat "$W"/par.* | grep -c '^201$')" "latency 300 ms: 20 concurrent charges all 201"
awk -v t="$took" 'BEGIN { exit !(t < 3) }' || die "20 requests of 300 ms took ${took}s: not concurrent"
pass "... in ${took}s, well under 20 x 0.3 s: they ran concurrently"
faults '{"latency_ms":0}'

# --- 7. Injected errors, dropped answers -------------------------------------------------
ledger
cp "$W/ledger" "$W/ledger.before"
faults '{"error_rate":1}'
expect_http 503 "$(charge k-err "$(req O-6 c-6 900)")" "error_rate 1"
json_ok "$W/body" 'd == {"error": "sandbox: injected error"}' "error_rate 1: 503 injected error"
expect_http 503 "$(http "$API/charges/k-1")" "GET with error_rate 1"
pass "error_rate 1: GET /charges/K is 503 too"
faults '{"error_rate":0}'
expect_http 404 "$(http "$API/charges/k-err")" "GET k-err"
ledger
cmp -s "$W/ledger.before" "$W/ledger" || die "an injected error changed the ledger: $(cat "$W/ledger")"
pass "error_rate 1: nothing recorded (404 for the key, ledger unchanged)"

faults '{"drop_rate":1}'
rc=0
curl -s -o /dev/null -X POST -H 'Idempotency-Key: k-drop' --data-binary "$(req O-7 c-7 1000)" \
	"$API/charges" || rc=$?
[[ $rc == 52 || $rc == 56 ]] || die "drop_rate 1: curl exit $rc, expected 52 (empty reply) or 56"
pass "drop_rate 1: curl gets no answer (exit $rc)"
expect_http 200 "$(http "$API/charges/k-drop")" "GET k-drop with drop_rate 1"
json_ok "$W/body" 'd["status"] == "succeeded"' "GET is never dropped; the dropped charge succeeded"
faults '{"drop_rate":0}'
ledger
json_ok "$W/ledger" "d['charges'] == $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["charges"])' "$W/ledger.before") + 1" \
	"the ledger counts the dropped charge"

# --- 8. Down and up on the same port --------------------------------------------------------
faults '{"down":true}'
json_ok "$W/body" 'd["down"] is True' "down: /faults says down"
rc=0
curl -s -o /dev/null "$API/charges/k-1" || rc=$?
expect_rc 7 "$rc" "curl while down"
rc=0
charge k-down "$(req O-8 c-8 1100)" >/dev/null || rc=$?
expect_rc 7 "$rc" "POST while down"
expect_http 200 "$(http "$CTL/healthz")" "control API while down"
pass "down: connection refused on port $API_PORT (curl exit 7); the control API still answers"
faults '{"down":false}'
json_ok "$W/body" 'd["down"] is False' "up: /faults says up"
expect_http 201 "$(charge k-up "$(req O-8 c-8 1100)")" "POST after up"
expect_http 404 "$(http "$API/charges/k-down")" "GET k-down"
pass "up: port $API_PORT answers again; nothing was charged while down"
grep -q 'payments API down' "$W/gw.log" || die "down is not logged: $(cat "$W/gw.log")"
grep -q 'payments API up' "$W/gw.log" || die "up is not logged: $(cat "$W/gw.log")"

# --- 9. Ledger, CSV, stats -----------------------------------------------------------
ledger
json_ok "$W/ledger" 'd["multi_charged_orders"] == [] and d["declines"] == 2' \
	"no order charged twice yet; 2 declines"
expect_http 201 "$(charge k-m1 "$(req O-M c-m1 300)")" "O-M first"
expect_http 201 "$(charge k-m2 "$(req O-M c-m2 300)")" "O-M second"
ledger
json_ok "$W/ledger" 'd["multi_charged_orders"] == ["O-M"] and d["keys"] == d["charges"] + d["declines"]
	and d["orders_charged"] == d["charges"] - 1' \
	"two keys for one order: multi_charged_orders lists O-M"
expect_http 200 "$(http "$CTL/ledger.csv")" "GET /ledger.csv"
cp "$W/body" "$W/ledger.csv"
python3 - "$W/ledger.csv" "$W/ledger" <<'EOF' || die "ledger.csv is wrong: $(head -5 "$W/ledger.csv")"
import json, sys
rows = [l.split(",") for l in open(sys.argv[1]).read().splitlines()]
summary = json.load(open(sys.argv[2]))
assert rows[0] == ["k-1", "O-1", "c-1", "1999", "EUR", "succeeded", "ch_00000001"], rows[0]
assert rows[1] == ["k-2", "O-2", "c-2", "2513", "EUR", "declined", "ch_00000002"], rows[1]
assert all(len(r) == 7 for r in rows)
assert len(rows) == summary["keys"]
assert sum(r[5] == "succeeded" for r in rows) == summary["charges"]
ids = [r[6] for r in rows]
assert ids == sorted(ids) and len(set(ids)) == len(ids)
assert [r[0] for r in rows if r[1] == "O-M"] == ["k-m1", "k-m2"]
EOF
pass "ledger.csv: one line per key, ordered by charge id, agreeing with /ledger"
expect_http 200 "$(http "$CTL/stats")" "GET /stats"
json_ok "$W/body" 'd["replayed"] == 2 and d["conflicts_409"] == 1 and d["mismatch_422"] == 2
	and d["errors_injected"] == 2 and d["dropped"] == 1 and d["post_charges"] > 30' \
	"stats count replays, 409s, 422s, injected errors and drops"
expect_http 400 "$(http "$CTL/faults" -X POST --data-binary '{"error_rate":2}')" "error_rate 2"
expect_http 400 "$(http "$CTL/faults" -X POST --data-binary '{"latency":5}')" "unknown fault"
json_ok "$W/body" 'd["error"].startswith("latency:")' "bad /faults: 400 naming the field"
# Hostile answers and forgotten keys (the switches the gateway scenarios use).
expect_http 400 "$(http "$CTL/faults" -X POST --data-binary '{"lie":"maybe"}')" "lie maybe"
json_ok "$W/body" 'd["error"].startswith("lie:")' "bad lie: 400 naming the field"
expect_http 400 "$(charge k-exp '{"order_id":"O-7","command_id":"c-7","amount_minor":1e+15,"currency":"EUR","payer_id":null}')" \
	"an amount written 1e+15"
json_ok "$W/body" 'd["error"].startswith("amount_minor")' "1e+15 is refused: amount_minor must be a plain integer"
expect_http 201 "$(charge k-lie "$(req O-7 c-7 700)")" "k-lie charged"
faults '{"lie":"amount"}'
expect_http 200 "$(http "$API/charges/k-lie")" "GET k-lie while lying about the amount"
json_ok "$W/body" 'd["amount_minor"] == 701' "lie=amount: the answer names another amount"
faults '{"lie":"key"}'
expect_http 200 "$(http "$API/charges/k-lie")" "GET k-lie while lying about the key"
json_ok "$W/body" 'd["idempotency_key"] == "k-lie-other"' "lie=key: the answer names another key"
faults '{"lie":"none","bad_text":true}'
expect_http 402 "$(charge k-bad "$(req O-8 c-8 800 declined-1)")" "a decline with bad_text"
python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); sys.exit(0 if b"\xff" in b else 1)' "$W/body" ||
	die "bad_text: the decline is valid UTF-8: $(cat "$W/body")"
pass "bad_text: the decline text is not valid UTF-8"
faults '{"bad_text":false}'
expect_http 200 "$(http "$CTL/forget" -X POST)" "POST /forget"
json_ok "$W/body" 'd["forgotten"] >= 2' "forget counts the keys it dropped"
expect_http 404 "$(http "$API/charges/k-lie")" "GET k-lie after forget"
expect_http 201 "$(charge k-lie "$(req O-7 c-7 700)")" "a forgotten key charges again"
ledger
json_ok "$W/ledger" '"O-7" in d["multi_charged_orders"]' "the ledger shows the order charged twice"
expect_http 200 "$(http "$CTL/reset" -X POST)" "POST /reset"
json_ok "$W/body" 'd == {"charges": 0, "declines": 0, "keys": 0, "orders_charged": 0,
	"multi_charged_orders": []}' "reset empties the ledger"
expect_http 404 "$(http "$API/charges/k-1")" "GET k-1 after reset"
expect_http 201 "$(charge k-1 "$(req O-1 c-1 1999)")" "k-1 after reset"
json_ok "$W/body" 'd["id"] != "ch_00000001"' "after reset, a key charges again with a new id"

# --- 10. SIGTERM ------------------------------------------------------------------------
faults '{"latency_ms":30000}'
curl -s -o /dev/null -X POST -H 'Idempotency-Key: k-term' --data-binary "$(req O-9 c-9 1200)" \
	"$API/charges" &
sleep 0.3
t0=$EPOCHREALTIME
kill -TERM "$GW_PID"
rc=0
wait "$GW_PID" || rc=$?
took=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
expect_rc 0 "$rc" "SIGTERM"
awk -v t="$took" 'BEGIN { exit !(t < 5) }' || die "SIGTERM took ${took}s with a request in its sleep"
wait
pass "SIGTERM with a charge in its 30 s latency: exit 0 after ${took}s"
# Anything else on stderr (a libmicrohttpd complaint, a sanitizer report) is a failure.
grep -v -e '^listening: ' -e '^payq-sandbox-gateway: payments API \(down\|up\)$' "$W/gw.log" \
	>"$W/unexpected" || true
[[ ! -s $W/unexpected ]] || die "unexpected lines on stderr: $(head -c 3000 "$W/unexpected")"
pass "stderr holds only the listening line and the down/up lines"
