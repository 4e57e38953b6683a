#!/bin/bash
# Gateway mode through TLS with an API key (issue 15), against payq-sandbox-gateway with
# --tls-cert/--tls-key (a throwaway CA made here with openssl, the server's certificate for
# 127.0.0.1), --tls-client-ca (the worker's client certificate, PAYQ_GATEWAY_CERT_FILE, is
# required) and --api-key-file, the real broker and PostgreSQL:
#   - settings refused with exit 2 and a clear message: a plaintext http:// channel without
#     PAYQ_GATEWAY_ALLOW_INSECURE=1, a world-readable key file, a missing CA bundle;
#   - a worker with the wrong key: a log line naming the 401, the payments unknown, nothing
#     charged in the sandbox's ledger, every command processed and its offset committed;
#   - the reconciler without the CA bundle: TLS verification fails, nothing changes;
#   - a worker with the right key: its reconciler settles the payments, each order charged
#     exactly once, and a new pay is charged directly; the gateway invariants hold;
#   - the keys' values appear in no log, no `ps` line, no /proc/PID/environ and no -X dump.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$PAYQ_SOURCE_ROOT/tests/integration/worker_lib.sh"
# shellcheck source=tests/integration/gateway_lib.sh
source "$PAYQ_SOURCE_ROOT/tests/integration/gateway_lib.sh"
command -v openssl >/dev/null || die "openssl not found"

wl_init gw-tls 3
TLS=$WL_DIR/tls
mkdir -m 700 "$TLS"

# ---- a throwaway CA, the sandbox's certificate (SAN IP 127.0.0.1), a client certificate ----
ossl() { openssl "$@" 2>>"$TLS/openssl.log" || die "openssl $1 failed: $(tail -n 5 "$TLS/openssl.log")"; }
ossl req -x509 -newkey rsa:2048 -nodes -keyout "$TLS/ca.key" -out "$TLS/ca.pem" -days 2 \
	-subj "/CN=payq throwaway test CA"
for who in server client; do
	ossl req -newkey rsa:2048 -nodes -keyout "$TLS/$who.key" -out "$TLS/$who.csr" -subj "/CN=payq-$who"
done
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$TLS/server.ext"
printf 'extendedKeyUsage=clientAuth\n' >"$TLS/client.ext"
for who in server client; do
	ossl x509 -req -in "$TLS/$who.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
		-out "$TLS/$who.pem" -days 2 -extfile "$TLS/$who.ext"
done
chmod 600 "$TLS"/*.key

# Two keys with values of this run only, so that a grep for them finds nothing else.
RIGHT=sk_live_right_$RANDOM$RANDOM$RANDOM
WRONG=sk_live_wrong_$RANDOM$RANDOM$RANDOM
(umask 077 && printf '%s\n' "$RIGHT" >"$TLS/right.key" && printf '%s\n' "$WRONG" >"$TLS/wrong.key")

gw_sandbox_start --tls-cert "$TLS/server.pem" --tls-key "$TLS/server.key" \
	--tls-client-ca "$TLS/ca.pem" --api-key-file "$TLS/right.key"
GW_URL=https://${GW_URL#http://}

# ---- the sandbox itself: HTTPS only, 403 without a client certificate, 401 without the key ----
code() { curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$@" 2>/dev/null || true; }
MTLS=(--cacert "$TLS/ca.pem" --cert "$TLS/client.pem" --key "$TLS/client.key")
assert_eq 403 "$(code --cacert "$TLS/ca.pem" -H "Authorization: Bearer $RIGHT" "$GW_URL/charges/x")" \
	"the sandbox: the right key without a client certificate, 403"
assert_eq 401 "$(code "${MTLS[@]}" "$GW_URL/charges/x")" "the sandbox: no key, 401"
assert_eq 401 "$(code "${MTLS[@]}" -H "Authorization: Bearer $WRONG" "$GW_URL/charges/x")" \
	"the sandbox: the wrong key, 401"
assert_eq 404 "$(code "${MTLS[@]}" -H "Authorization: Bearer $RIGHT" "$GW_URL/charges/x")" \
	"the sandbox: client certificate and the right key, 404 (no such charge)"
assert_eq 000 "$(code -H "Authorization: Bearer $RIGHT" "$GW_URL/charges/x")" \
	"the sandbox: a client without the CA does not trust it"
assert_eq 000 "$(code "http://${GW_URL#https://}/charges/x")" "the sandbox: no plaintext on the TLS port"

# The worker's gateway settings for this test; each phase adds the key file.
GW_ENV=(PAYQ_PAYMENT_MODE=gateway "PAYQ_GATEWAY_URL=$GW_URL" "PAYQ_GATEWAY_CA_FILE=$TLS/ca.pem"
	"PAYQ_GATEWAY_CERT_FILE=$TLS/client.pem" "PAYQ_GATEWAY_CERT_KEY_FILE=$TLS/client.key"
	PAYQ_GATEWAY_TIMEOUT_MS=5000 PAYQ_GATEWAY_CONNECT_TIMEOUT_MS=2000
	PAYQ_RECONCILE_SCHEDULE=1s PAYQ_RECONCILE_INTERVAL_MS=200)

# ---- settings: each mistake is named, exit 2, before anything connects ----
refuses() { # EXPECTED_MESSAGE VAR=VALUE...
	local want=$1 out rc=0
	shift
	# A worker that takes the setting runs on (and waits for the database): 20 s bounds it.
	out=$(timeout -k 5 20 env -u PAYQ_GATEWAY_ALLOW_INSECURE PAYQ_DB=dbname=none PAYQ_HTTP_ADDR= \
		"${GW_ENV[@]}" "PAYQ_GATEWAY_API_KEY_FILE=$TLS/right.key" "$@" "$WL_EXE" run 2>&1 </dev/null) ||
		rc=$?
	[[ $rc == 2 && $out == *"$want"* ]] || wl_violation "expected exit 2 and '$want', got $rc: $out"
	[[ $out != *"$RIGHT"* ]] || wl_violation "the refusal shows the API key: $out"
	pass "refused with exit 2: $want"
}
refuses 'is plaintext http://: use https://, or set PAYQ_GATEWAY_ALLOW_INSECURE=1' \
	"PAYQ_GATEWAY_URL=http://${GW_URL#https://}"
cp "$TLS/right.key" "$TLS/open.key" && chmod 644 "$TLS/open.key"
refuses "secret file $TLS/open.key: refused: mode 0644 lets every user read it" "PAYQ_GATEWAY_API_KEY_FILE=$TLS/open.key"
refuses "gateway-ca-file (PAYQ_GATEWAY_CA_FILE): $TLS/none.pem: No such file" \
	"PAYQ_GATEWAY_CA_FILE=$TLS/none.pem"
: >"$TLS/empty.key" && chmod 600 "$TLS/empty.key"
refuses "gateway-api-key (PAYQ_GATEWAY_API_KEY_FILE): the key is empty" "PAYQ_GATEWAY_API_KEY_FILE=$TLS/empty.key"
# Two lines would smuggle a second header into every request.
(umask 077 && printf '%s\r\nX-Evil: 1\n' "$RIGHT" >"$TLS/twolines.key")
refuses "secret file $TLS/twolines.key: holds more than one line" \
	"PAYQ_GATEWAY_API_KEY_FILE=$TLS/twolines.key"
(umask 077 && head -c 5000 /dev/zero | tr '\0' k >"$TLS/long.key")
refuses "gateway-api-key (PAYQ_GATEWAY_API_KEY_FILE): the key is longer than 4096 bytes" "PAYQ_GATEWAY_API_KEY_FILE=$TLS/long.key"
chmod 644 "$TLS/client.key"
refuses "secret file $TLS/client.key: refused: mode 0644 lets every user read it"
chmod 600 "$TLS/client.key"

# ---- the wrong key: 401, payments unknown, nothing charged, nothing lost ----
wl_worker_start w1 "${GW_ENV[@]}" "PAYQ_GATEWAY_API_KEY_FILE=$TLS/wrong.key"
for i in 1 2 3; do
	wl_cmd_create "K$i" "K$i:c" "$((2000 + i))"
	wl_cmd_pay "K$i" "K$i:p" "$((2000 + i))"
done | wl_produce
gw_wait_sql "SELECT count(*) FROM payq.payments WHERE status = 'unknown'" 3 60
pass "the wrong key: 3 payments unknown"
wl_wait_log w1 'refused our credentials on [0-9]+ of [0-9]+ charges \(gateway: HTTP 401: missing or wrong API key\): check PAYQ_GATEWAY_API_KEY_FILE' 30
pass "the wrong key: $(grep -o 'refused our credentials on [^(]*(gateway: HTTP 401' "$WL_DIR/w1.log" | head -n 1)"
wl_wait_log w1 'refused our credentials on [0-9]+ of [0-9]+ status queries' 30
pass "the wrong key: the reconciler's status queries are refused too (401), and logged"
for i in 1 2 3; do
	assert_eq 0 "$(gw_charges "K$i")" "the wrong key: order K$i not charged"
done
assert_eq 0 "$(gw_stat post_charges)" "the wrong key: no charge reached the sandbox's handler"
(($(gw_stat unauthorized_401) >= 3)) || wl_violation "the sandbox saw $(gw_stat unauthorized_401) 401s, want >= 3"
wl_wait_drained 60
assert_eq 6 "$(wl_sql 'SELECT count(*) FROM payq.processed_commands')" \
	"the wrong key: all 6 commands processed, offsets committed to the log end"

# Where a secret could leak while the worker runs: its command line, its environment.
leaks() { # WHERE FILE: dies when FILE shows either key
	if grep -aFe "$RIGHT" -e "$WRONG" "$2" >"$WL_DIR/leak.txt"; then
		wl_violation "$1 shows an API key: $(head -c 300 "$WL_DIR/leak.txt")"
	fi
}
ps -eo pid,args >"$WL_DIR/ps.txt"
grep -q "$WL_EXE" "$WL_DIR/ps.txt" || die "ps does not list the worker"
leaks "ps" "$WL_DIR/ps.txt"
tr '\0' '\n' <"/proc/${WL_PID[w1]}/environ" >"$WL_DIR/w1.environ"
leaks "the worker's environment" "$WL_DIR/w1.environ"
pass "neither key in ps or the worker's environment (only the file's path)"
wl_worker_stop w1

# -X dump shows that a key is set, never the key.
env PAYQ_DB=dbname=none "${GW_ENV[@]}" "PAYQ_GATEWAY_API_KEY_FILE=$TLS/right.key" \
	"$WL_EXE" -X dump >"$WL_DIR/dump" 2>&1 || die "-X dump failed: $(cat "$WL_DIR/dump")"
grep -qxF "PAYQ_GATEWAY_API_KEY = ***" "$WL_DIR/dump" ||
	die "-X dump: $(grep PAYQ_GATEWAY_API_KEY "$WL_DIR/dump")"
leaks "-X dump" "$WL_DIR/dump"
pass "-X dump: $(grep -c . "$WL_DIR/dump") lines, the key masked"

# ---- TLS verification is on: without the CA bundle the reconciler cannot talk ----
rc=0
env -u PAYQ_GATEWAY_ALLOW_INSECURE PAYQ_DB="$WL_DB" "PAYQ_GATEWAY_URL=$GW_URL" PAYQ_HTTP_ADDR= \
	PAYQ_LOG_LEVEL=warn "PAYQ_GATEWAY_API_KEY_FILE=$TLS/right.key" PAYQ_RECONCILE_SCHEDULE=1s \
	"$WL_EXE" reconcile --once --all >"$WL_DIR/reconcile-noca.out" 2>"$WL_DIR/reconcile-noca.log" ||
	rc=$?
grep -q 'TLS with the channel failed on 3 of 3 status queries (gateway: SSL certificate problem' \
	"$WL_DIR/reconcile-noca.log" ||
	wl_violation "the reconciler without the CA bundle (exit $rc) logged no TLS failure: it trusted" \
		"a certificate no trusted CA signed (the sandbox has now answered $(gw_stat get_charges) status" \
		"queries and $(gw_stat post_charges) charges)"
[[ $(wl_sql "SELECT count(*) FROM payq.payments WHERE status = 'unknown'") == 3 ]] ||
	wl_violation "the reconciler without the CA bundle settled payments"
pass "without the CA bundle: TLS fails ($(grep -o 'SSL certificate problem[^)]*' "$WL_DIR/reconcile-noca.log" | head -n 1)), the payments stay unknown"

# ---- the right key: the reconciler settles them, each charged exactly once ----
wl_worker_start w2 "${GW_ENV[@]}" "PAYQ_GATEWAY_API_KEY_FILE=$TLS/right.key"
gw_wait_sql "SELECT count(*) FROM payq.payments WHERE status = 'succeeded'" 3 60
for i in 1 2 3; do
	assert_eq "paid 2 K$i:p" "$(gw_order "K$i")" "the right key: K$i paid"
	gw_expect_charges "K$i" 1
done
{
	wl_cmd_create K4 K4:c 2004
	wl_cmd_pay K4 K4:p 2004
} | wl_produce
gw_wait_sql "SELECT outcome FROM payq.processed_commands WHERE command_id = 'K4:p'" applied 60
gw_expect_charges K4 1
pass "the right key: a new pay is charged directly over TLS"
wl_wait_drained 60
wl_worker_stop w2
[[ $WL_RC == 0 ]] || die "worker w2 exited with $WL_RC"
gw_check_invariants

# ---- no log shows a key ----
for f in "$WL_DIR"/*.log; do
	leaks "$(basename "$f")" "$f"
done
pass "neither key in any log ($(cd "$WL_DIR" && echo *.log))"
