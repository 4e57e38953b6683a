#!/usr/bin/env bash
# The console suite: payq-console in a real browser (tests/console/walk.mjs: Debian's
# chromium driven by playwright-core). Seeds dead letters, unknown payments, anomalies
# and an audit gap; walks every page as viewer, operator and admin; checks the role
# matrix against the server, CSRF, plan safety (typed count, double submit, changed
# targets, stale plan), the action log rows, reconcile now against the sandbox gateway,
# a manual resolution and the audit repair. Screenshots: $WL_DIR/shots, copied to
# build/console-screenshots/. PAYQ_CONSOLE_EXE picks the console (the mutation check).
# shellcheck disable=SC1091
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
source "$PAYQ_SOURCE_ROOT/tests/integration/worker_lib.sh"
source "$PAYQ_SOURCE_ROOT/tests/integration/gateway_lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/seed.sh"

require_env PAYQ_TEST_READONLY_DB PAYQ_TEST_WORKER_DB PAYQ_CONSOLE_EXE PAYQ_BUILD_ROOT
[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium is missing (deploy/local/setup installs it)"
command -v npm >/dev/null || die "npm is missing (deploy/local/setup installs it)"

HERE=$PAYQ_SOURCE_ROOT/tests/console
# playwright-core from npm, once, into tests/console/node_modules (ignored by git); its
# own browser download is never used.
if [[ ! -d $HERE/node_modules/playwright-core ]]; then
	(cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) >&2 ||
		die "npm ci failed in $HERE"
fi

wl_init console 4
seed_all || die "cannot seed"
pass "seeded 4 dead letters, 3 pending or unknown payments, 3 anomalies and a gap"
gw_sandbox_start

cat >"$WL_DIR/tokens" <<TOK
# TOKEN ROLE NAME
viewer-$RANDOM$RANDOM-0123456789 viewer vera
operator-$RANDOM$RANDOM-0123456789 operator otto
admin-$RANDOM$RANDOM-0123456789 admin ada
TOK
chmod 600 "$WL_DIR/tokens"
export VIEWER_TOKEN OPERATOR_TOKEN ADMIN_TOKEN
VIEWER_TOKEN=$(awk '$2 == "viewer" { print $1 }' "$WL_DIR/tokens")
OPERATOR_TOKEN=$(awk '$2 == "operator" { print $1 }' "$WL_DIR/tokens")
ADMIN_TOKEN=$(awk '$2 == "admin" { print $1 }' "$WL_DIR/tokens")

# console_start NAME PORT [ARGS...]: reads as payq_readonly, acts as payq_worker.
console_start() {
	local name=$1 port=$2 pid
	shift 2
	PAYQ_DB="$PAYQ_TEST_READONLY_DB dbname=$WL_DBNAME" PAYQ_BROKERS=$PAYQ_TEST_BROKERS \
		PAYQ_TOPIC=$WL_TOPIC PAYQ_DLQ_TOPIC=$WL_DLQ PAYQ_GROUP=$WL_GROUP \
		PAYQ_PAYMENT_MODE=gateway PAYQ_GATEWAY_URL=$GW_URL PAYQ_GATEWAY_ALLOW_INSECURE=1 \
		"$PAYQ_CONSOLE_EXE" --listen "127.0.0.1:$port" --action-db "$WL_WORKER_DB" "$@" >>"$WL_DIR/$name.log" 2>&1 &
	pid=$!
	on_exit "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
	wait_for "curl -fsS -o /dev/null http://127.0.0.1:$port/dlq" 30 ||
		die "payq-console $name did not start: $(tail -5 "$WL_DIR/$name.log")"
}

# Refuses a non-loopback address without a token file or proxy header.
rc=0
PAYQ_DB="$PAYQ_TEST_READONLY_DB dbname=$WL_DBNAME" PAYQ_BROKERS=$PAYQ_TEST_BROKERS \
	timeout 20 "$PAYQ_CONSOLE_EXE" --listen 0.0.0.0:1 >"$WL_DIR/refuse.out" 2>&1 || rc=$?
if ((rc != 2)) || ! grep -q 'not a loopback address' "$WL_DIR/refuse.out"; then
	die "payq-console on 0.0.0.0 without auth: exit $rc: $(cat "$WL_DIR/refuse.out")"
fi
pass "refuses 0.0.0.0 without --token-file or --user-header (exit 2)"

PORT=$(free_port)
console_start console "$PORT" --token-file "$WL_DIR/tokens"
STALE_PORT=$(free_port)
console_start console-stale "$STALE_PORT" --token-file "$WL_DIR/tokens" --plan-ttl-s 1

export CONSOLE_URL=http://127.0.0.1:$PORT CONSOLE_STALE_URL=http://127.0.0.1:$STALE_PORT
export SHOT_DIR=$WL_DIR/shots SEED_DB=$WL_DB SEED_BROKERS=$PAYQ_TEST_BROKERS SEED_DLQ=$WL_DLQ \
	SEED_TOPIC=$WL_TOPIC
mkdir -p "$SHOT_DIR"
node "$HERE/walk.mjs" || die "the browser walk failed (console log: $(tail -5 "$WL_DIR/console.log"))"

# Reconcile now charged ord-unknown-1 once at the channel (its key was never seen there),
# and the manual resolution of ord-unknown-2 charged nothing.
[[ $(gw_charges ord-unknown-1) == 1 ]] || die "the sandbox charged ord-unknown-1 $(gw_charges ord-unknown-1) times"
[[ $(gw_charges ord-unknown-2) == 0 ]] || die "the sandbox charged ord-unknown-2"
pass "the sandbox charged ord-unknown-1 once and ord-unknown-2 never"

# The proxy-header mode: the header names the user and role; no header, no access.
HPORT=$(free_port)
console_start console-header "$HPORT" --user-header X-Forwarded-User
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HPORT/api/me")
[[ $code == 401 ]] || die "proxy mode without the header: HTTP $code, expected 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Forwarded-User: vera' -H 'X-Payq-Role: viewer' \
	-H 'Content-Type: application/json' -d '{"action":"anomaly-ack","params":{"kind":"key_reuse"}}' \
	"http://127.0.0.1:$HPORT/api/plan")
[[ $code == 403 ]] || die "proxy mode, a viewer's POST: HTTP $code, expected 403"
pass "proxy-header mode: 401 without the header, 403 for a viewer's POST"

# The action log and the payment transitions are append-only, even for the tables' owner.
if psql "$WL_DB" -XAtq -c "UPDATE payq.operator_actions SET ok = true" 2>/dev/null; then
	die "payq.operator_actions accepted an UPDATE"
fi
if psql "$WL_DB" -XAtq -c "DELETE FROM payq.payment_transitions" 2>/dev/null; then
	die "payq.payment_transitions accepted a DELETE"
fi
if psql "$WL_DB" -XAtq -c "DELETE FROM payq.operator_actions" 2>/dev/null; then
	die "payq.operator_actions accepted a DELETE"
fi
pass "payq.operator_actions refuses UPDATE and DELETE"
n=$(wl_sql "SELECT count(*) FROM payq.operator_actions WHERE phase = 'refused'")
((n >= 4)) || die "expected at least 4 refused rows (typed count, role, changed, stale), got $n"
pass "$n refusals logged in payq.operator_actions"

# The screenshots, at a stable path too (the build directory's console-screenshots/).
if [[ -z ${PAYQ_CONSOLE_NO_SHOTS:-} ]]; then
	mkdir -p "$PAYQ_BUILD_ROOT/console-screenshots"
	cp "$SHOT_DIR"/*.png "$PAYQ_BUILD_ROOT/console-screenshots/"
	pass "screenshots: $(cd "$SHOT_DIR" && printf '%s ' *.png)in $PAYQ_BUILD_ROOT/console-screenshots"
fi
