#!/bin/bash
# Kafka security end to end, on a broker of its own started with deploy/local/kafka --secure
# (SASL_SSL with SCRAM-SHA-512, mTLS, StandardAuthorizer and per-principal ACLs):
#   - payq-producer, payq-worker and payq-replay work with -F and their own principals
#     (database rows, committed offsets, audit, reset-offsets, republish);
#   - a worker with the producer's credentials stops with exit 1 and an error naming the
#     authorization failure, commits nothing, and a correct worker then applies everything;
#   - each principal has no more than its ACLs give it;
#   - mTLS (ssl.certificate.location, an encrypted ssl.key.location) end to end;
#   - no secret in argv (ps), in any log line or in -X dump;
#   - secret files that others may read (-F, PAYQ_DB_FILE, ssl.key.location) are refused.
# The shared test broker stays plaintext. Kafka 3.9.1: librdkafka before 2.6.1 (Debian has
# 2.0.2) fails SCRAM against Kafka 4.x brokers (librdkafka#4895; see README, Security).
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:?run through meson test}/tests/lib/common.sh"

require_env PAYQ_TEST_DB PAYQ_WORKER_EXE PAYQ_PRODUCER_EXE PAYQ_REPLAY_EXE \
	PAYQ_OFFSETS_PROBE_EXE
command -v kcat >/dev/null || die "kcat not found"
export LC_ALL=C
KAFKA=$PAYQ_SOURCE_ROOT/deploy/local/kafka
PROBE=$PAYQ_OFFSETS_PROBE_EXE
PARTS=4
W=$(mktemp -d "${PAYQ_TEST_STATE_DIR:-${TMPDIR:-/tmp}}/kafka-secure.XXXXXX")
K=$W/kafka
DBNAME=sec_$$_$RANDOM
declare -A PIDS=()

stop_all() {
	local n
	for n in "${!PIDS[@]}"; do
		kill -KILL "${PIDS[$n]}" 2>/dev/null || true
		wait "${PIDS[$n]}" 2>/dev/null || true
	done
	[[ -d $K ]] && "$KAFKA" stop "$K" >/dev/null 2>&1
	psql_q "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1
	if [[ ${rc:-0} == 0 ]]; then rm -rf "$W"; else echo "kept $W for inspection" >&2; fi
}
on_exit stop_all

# ---- the secure broker ----
started=$SECONDS
PAYQ_KAFKA_VERSION=3.9.1 "$KAFKA" start "$K" --partitions "$PARTS" --secure \
	>"$W/bootstrap" 2>"$W/kafka-start.log" || {
	tail -n 30 "$W/kafka-start.log" >&2
	die "the secure broker did not start"
}
BROKERS=$(cat "$W/bootstrap")
MTLS=$(cat "$K/bootstrap.mtls")
pass "secure broker up in $((SECONDS - started)) s: SASL_SSL $BROKERS, mTLS $MTLS"
for c in worker producer replay mtls admin; do
	assert_eq 600 "$(stat -c %a "$K/client-$c.conf")" "client-$c.conf is mode 0600"
done
# No plaintext way in: a client without TLS and SASL gets no metadata.
if kcat -b "$BROKERS" -L -m 5 >/dev/null 2>&1; then
	die "the SASL_SSL listener answered a plaintext client"
fi
pass "a plaintext client gets no metadata from the SASL_SSL listener"

# ---- secrets: the database conninfo from a file, with a password to hide ----
psql_q "CREATE DATABASE $DBNAME" || die "cannot create database $DBNAME"
DB_SECRET=dbpw-$(openssl rand -hex 8)
DB="$PAYQ_TEST_DB dbname=$DBNAME password=$DB_SECRET"
(
	umask 077
	printf '%s\n' "$DB" >"$W/db.conninfo"
	openssl rand -hex 12 >"$W/api.key"
)
API_KEY=$(cat "$W/api.key")
SECRETS=("$DB_SECRET" "$API_KEY" "$(cat "$K/tls/mtls.pass")")
for u in admin payq-worker payq-producer payq-replay; do
	SECRETS+=("$(cat "$K/tls/$u.password")")
done
export PAYQ_DB_FILE=$W/db.conninfo PAYQ_BROKERS=$BROKERS PAYQ_HTTP_ADDR='' PAYQ_TOPIC=payq.commands \
	PAYQ_DLQ_TOPIC=payq.commands.dlq PAYQ_GROUP=payq-workers PAYQ_STATS_INTERVAL_MS=0
unset PAYQ_DB PAYQ_KAFKA_CONFIG_FILE
"$PAYQ_WORKER_EXE" migrate 2>"$W/migrate.log" || die "migrate with PAYQ_DB_FILE: $(cat "$W/migrate.log")"
pass "payq-worker migrate reads its conninfo from PAYQ_DB_FILE"

sql() { psql "$PAYQ_TEST_DB dbname=$DBNAME" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
applied() { sql 'SELECT count(*) FROM payq.processed_commands'; }

# "PARTITION COMMITTED LOW HIGH" per partition, read as the admin.
offsets() { PAYQ_PROBE_KAFKA_CONFIG=$K/client-admin.conf "$PROBE" offsets "$BROKERS" payq-workers payq.commands; }

# Every partition's committed offset is its high watermark.
at_end() { offsets | awk '$2 != $4 { bad = 1 } END { exit bad }'; }

# start_worker NAME [ARGS...]: a worker in the background, its log in $W/NAME.log.
start_worker() {
	local name=$1
	shift
	"$PAYQ_WORKER_EXE" "$@" >"$W/$name.log" 2>&1 &
	PIDS[$name]=$!
}

stop_worker() {
	local name=$1 rc=0
	kill -TERM "${PIDS[$name]}" 2>/dev/null || true
	wait "${PIDS[$name]}" || rc=$?
	unset "PIDS[$name]"
	return "$rc"
}

# Fails unless no argv of the program under pid $1 holds a secret (what ps shows).
check_argv() {
	local pid=$1 s args
	args=$(ps -o args= -p "$pid" || true)
	[[ -n $args ]] || die "pid $pid is gone before its argv could be read"
	for s in "${SECRETS[@]}"; do
		[[ $args != *"$s"* ]] || die "a secret shows in ps for pid $pid: $args"
	done
}

# ---- refusals: secret files others may read ----
# expect_refused WHAT FILE CMD...: exit 2 and an error naming FILE.
expect_refused() {
	local what=$1 file=$2 rc=0
	shift 2
	"$@" >"$W/refused.out" 2>"$W/refused.err" || rc=$?
	assert_eq 2 "$rc" "$what: exit 2"
	grep -qF "secret file $file: refused: mode" "$W/refused.err" ||
		die "$what: stderr does not name $file: $(cat "$W/refused.err")"
}
cp "$K/client-worker.conf" "$W/open.conf"
chmod 644 "$W/open.conf"
expect_refused "-F file mode 0644" "$W/open.conf" "$PAYQ_WORKER_EXE" -F "$W/open.conf" -X dump
chmod 620 "$W/open.conf"
expect_refused "-F file mode 0620 (group-writable)" "$W/open.conf" \
	"$PAYQ_PRODUCER_EXE" -F "$W/open.conf" -X dump
chmod 640 "$W/open.conf"
"$PAYQ_REPLAY_EXE" -F "$W/open.conf" -X dump >/dev/null 2>"$W/err" ||
	die "-F file mode 0640 is refused: $(cat "$W/err")"
pass "-F file mode 0640 is accepted"
cp "$W/db.conninfo" "$W/db.open"
chmod 604 "$W/db.open"
expect_refused "PAYQ_DB_FILE mode 0604" "$W/db.open" env PAYQ_DB_FILE="$W/db.open" \
	"$PAYQ_WORKER_EXE" -X dump
cp "$K/tls/mtls.key" "$W/mtls-open.key"
chmod 644 "$W/mtls-open.key"
expect_refused "ssl.key.location mode 0644" "$W/mtls-open.key" "$PAYQ_WORKER_EXE" \
	-F "$K/client-mtls.conf" -X "ssl.key.location=$W/mtls-open.key" -X dump
rc=0
PAYQ_DB=x "$PAYQ_WORKER_EXE" -X dump >/dev/null 2>"$W/err" || rc=$?
assert_eq 2 "$rc" "PAYQ_DB and PAYQ_DB_FILE both set: exit 2"
grep -q 'PAYQ_DB and PAYQ_DB_FILE are both set' "$W/err" || die "both set: $(cat "$W/err")"
# The -F file goes through the same offset-rule check as -X.
(
	umask 077
	cat "$K/client-worker.conf" >"$W/autocommit.conf"
	printf '\n# not allowed\nenable.auto.commit = true\n' >>"$W/autocommit.conf"
)
rc=0
"$PAYQ_WORKER_EXE" -F "$W/autocommit.conf" -X dump >/dev/null 2>"$W/err" || rc=$?
assert_eq 2 "$rc" "-F file with enable.auto.commit=true: exit 2"
grep -q "$W/autocommit.conf: enable.auto.commit=true: refused: .*offset rule" "$W/err" ||
	die "the -F offset-rule refusal does not name the file and the rule: $(cat "$W/err")"

# ---- -X dump: secrets masked ----
PAYQ_GATEWAY_API_KEY_FILE=$W/api.key "$PAYQ_WORKER_EXE" -F "$K/client-worker.conf" -X dump \
	>"$W/dump-worker.txt" 2>&1 || die "worker -X dump failed: $(tail -5 "$W/dump-worker.txt")"
"$PAYQ_WORKER_EXE" -F "$K/client-mtls.conf" -X dump >"$W/dump-mtls.txt" 2>&1 ||
	die "worker -X dump (mTLS) failed"
"$PAYQ_PRODUCER_EXE" -F "$K/client-producer.conf" -X dump >"$W/dump-producer.txt" 2>&1 ||
	die "producer -X dump failed"
"$PAYQ_REPLAY_EXE" -F "$K/client-replay.conf" -X dump >"$W/dump-replay.txt" 2>&1 ||
	die "replay -X dump failed"
grep -q '^PAYQ_GATEWAY_API_KEY = \*\*\*$' "$W/dump-worker.txt" || die "the API key is not shown as ***"
grep -q '^sasl.password = \*\*\*$' "$W/dump-worker.txt" || die "sasl.password is not shown as ***"
grep -q '^ssl.key.password = \*\*\*$' "$W/dump-mtls.txt" || die "ssl.key.password is not shown as ***"
grep -q "from -F $K/client-worker.conf" "$W/dump-worker.txt" || die "-X dump does not show the -F file"
pass "-X dump shows the -F file's pairs, secrets as ***"

# ---- ACLs: each principal has only its own rights ----
kcat -F "$K/client-producer.conf" -b "$BROKERS" -C -t payq.commands -o beginning -e -q \
	>"$W/kcat.out" 2>"$W/kcat.err" && die "the producer's principal could read payq.commands"
grep -qi 'authoriz' "$W/kcat.err" || die "reading as the producer: $(tail -3 "$W/kcat.err")"
pass "the producer's principal cannot read payq.commands"
echo 'k:v' | kcat -F "$K/client-worker.conf" -b "$BROKERS" -P -t payq.commands -K: \
	>"$W/kcat.out" 2>"$W/kcat.err" && die "the worker's principal could write payq.commands"
grep -qi 'authoriz' "$W/kcat.err" || die "writing as the worker: $(tail -3 "$W/kcat.err")"
pass "the worker's principal cannot write payq.commands"
rc=0
"$PAYQ_PRODUCER_EXE" -F "$K/client-worker.conf" pay --order o-denied --amount 5 --currency EUR \
	>"$W/producer-denied.out" 2>"$W/producer-denied.log" || rc=$?
assert_eq 1 "$rc" "payq-producer with the worker's credentials exits 1"
grep -q '"level":"error".*Topic authorization failed' "$W/producer-denied.log" ||
	die "payq-producer denied: $(tail -3 "$W/producer-denied.log")"

# ---- SASL_SSL end to end ----
"$PAYQ_PRODUCER_EXE" -F "$K/client-producer.conf" generate --orders 30 --seed 4242 \
	>"$W/producer.out" 2>"$W/producer.log" || die "producer over SASL_SSL: $(tail -3 "$W/producer.log")"
N=60
high=$(offsets | awk '{ n += $4 } END { print n + 0 }')
assert_eq "$N" "$high" "the producer wrote $N commands over SASL_SSL with -F"

# A worker with the producer's credentials: refused, stops, commits nothing.
before=$(offsets)
started=$SECONDS
rc=0
timeout 120 "$PAYQ_WORKER_EXE" -F "$K/client-producer.conf" >"$W/worker-denied.log" 2>&1 || rc=$?
assert_eq 1 "$rc" "a worker with the producer's credentials exits 1 (in $((SECONDS - started)) s)"
grep -E '"level":"error".*(GROUP|TOPIC)_AUTHORIZATION_FAILED' "$W/worker-denied.log" >/dev/null ||
	die "no error line naming the authorization failure: $(tail -5 "$W/worker-denied.log")"
pass "its log names the error: $(grep -oE '(GROUP|TOPIC)_AUTHORIZATION_FAILED' "$W/worker-denied.log" | head -1)"
assert_eq 0 "$(applied)" "the refused worker applied nothing"
assert_eq "$before" "$(offsets)" "the refused worker changed no committed offset"

# A wrong password is retried (librdkafka reports a connection lost mid-handshake with the
# same local error), logged, and commits nothing.
(
	umask 077
	sed 's/^sasl.password=.*/sasl.password=not-the-password/' "$K/client-worker.conf" >"$W/wrong.conf"
)
rc=0
timeout 10 "$PAYQ_WORKER_EXE" -F "$W/wrong.conf" >"$W/worker-wrongpw.log" 2>&1 || rc=$?
assert_eq 124 "$rc" "a worker with a wrong password keeps retrying"
grep -q '"level":"warn".*Kafka error: _AUTHENTICATION: .*invalid credentials' "$W/worker-wrongpw.log" ||
	die "wrong password: $(tail -3 "$W/worker-wrongpw.log")"
assert_eq "$before" "$(offsets)" "the worker with a wrong password changed no committed offset"
SECRETS+=(not-the-password)

# The worker's own principal, the -F file given by PAYQ_KAFKA_CONFIG_FILE, librdkafka's
# security debugging on: every command applied, every offset committed.
PAYQ_KAFKA_CONFIG_FILE=$K/client-worker.conf PAYQ_LOG_LEVEL=debug \
	start_worker worker -X debug=security,broker
wait_for "[[ \$(applied) == $N ]]" 90 || die "the worker applied $(applied) of $N commands"
check_argv "${PIDS[worker]}"
wait_for at_end 60 || die "committed offsets not at the end: $(offsets)"
stop_worker worker || die "the worker exited with an error: $(tail -5 "$W/worker.log")"
assert_eq "$N" "$(applied)" "the worker applied all $N commands over SASL_SSL"
pass "every committed offset is at the end: $(offsets | awk '{ printf "%s:%s ", $1, $2 }')"
orders=$(sql "SELECT count(*) FROM payq.payments")
assert_eq 30 "$orders" "30 payments"

# payq-replay with its own principal: audit, reset-offsets --execute, republish.
"$PAYQ_REPLAY_EXE" -F "$K/client-replay.conf" audit >"$W/audit.out" 2>"$W/replay.log" ||
	die "audit over SASL_SSL: $(tail -3 "$W/replay.log")"
grep -q 'gaps=0' "$W/audit.out" "$W/replay.log" || die "audit: $(cat "$W/audit.out")"
pass "payq-replay audit over SASL_SSL finds no gap"
p=$(offsets | awk '$4 > 1 { print $1; exit }')
"$PAYQ_REPLAY_EXE" -F "$K/client-replay.conf" reset-offsets --group payq-workers --shift-by -1 \
	--topic "payq.commands:$p" --execute >>"$W/replay.log" 2>&1 ||
	die "reset-offsets --execute: $(tail -3 "$W/replay.log")"
at_end && die "reset-offsets --execute did not move partition $p"
"$PAYQ_REPLAY_EXE" -F "$K/client-replay.conf" republish --partition "$p" --from-offset 0 \
	--to-offset 1 >>"$W/replay.log" 2>&1 || die "republish: $(tail -3 "$W/replay.log")"
pass "payq-replay moved partition $p back by one and republished one command"
start_worker worker2 -F "$K/client-worker.conf"
wait_for at_end 90 || die "offsets not at the end after the replay: $(offsets)"
check_argv "${PIDS[worker2]}"
stop_worker worker2 || die "worker2: $(tail -5 "$W/worker2.log")"
assert_eq "$N" "$(applied)" "the replayed commands were duplicates: still $N applied"
dups=$(sql "SELECT count(*) FROM payq.payments")
assert_eq 30 "$dups" "still 30 payments: nothing paid twice"

# ---- mTLS end to end ----
"$PAYQ_PRODUCER_EXE" --brokers "$MTLS" -F "$K/client-mtls.conf" generate --orders 10 --seed 77 \
	--id-prefix mtls- >"$W/producer-mtls.out" 2>"$W/producer-mtls.log" ||
	die "producer over mTLS: $(tail -3 "$W/producer-mtls.log")"
start_worker worker-mtls --brokers "$MTLS" -F "$K/client-mtls.conf"
wait_for "[[ \$(applied) == $((N + 20)) ]]" 90 || die "mTLS worker: $(applied) of $((N + 20)) applied"
wait_for at_end 60 || die "mTLS worker: committed offsets not at the end: $(offsets)"
check_argv "${PIDS[worker-mtls]}"
stop_worker worker-mtls || die "worker-mtls: $(tail -5 "$W/worker-mtls.log")"
assert_eq 40 "$(sql "SELECT count(*) FROM payq.payments")" "mTLS: 10 more payments, offsets at the end"

# ---- no secret in any log or dump ----
n=0
for f in "$W"/*.log "$W"/*.txt "$W"/*.out; do
	for s in "${SECRETS[@]}"; do
		if grep -qF -- "$s" "$f"; then
			die "a secret appears in $(basename "$f")"
		fi
	done
	n=$((n + 1))
done
pass "none of ${#SECRETS[@]} secrets appears in $n logs and dumps ($(wc -l <"$W/worker.log") lines of debug log)"
