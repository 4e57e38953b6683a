#!/bin/bash
# -X keys that would break the offset rule, the group or the producers' guarantees are
# refused at start (exit 2, the key named) by payq-worker, payq-producer and payq-replay,
# against the real broker and database they would otherwise use; and secrets reach
# neither -X dump nor the log.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:?run through meson test}/tests/lib/common.sh"

require_env PAYQ_TEST_DB PAYQ_TEST_BROKERS PAYQ_WORKER_EXE PAYQ_PRODUCER_EXE PAYQ_REPLAY_EXE \
	PAYQ_OFFSETS_PROBE_EXE
export LC_ALL=C PAYQ_BROKERS=$PAYQ_TEST_BROKERS PAYQ_HTTP_ADDR='' PAYQ_LOG_LEVEL=info
RUN=cg$$
W=$(mktemp -d)
on_exit "rm -rf '$W'"
# Its own topic, group and database: a program that is wrongly let through does real work
# on them, and nothing else sees it.
export PAYQ_TOPIC=payq.$RUN PAYQ_DLQ_TOPIC=payq.$RUN.dlq PAYQ_GROUP=payq-$RUN
"$PAYQ_OFFSETS_PROBE_EXE" create-topics "$PAYQ_BROKERS" 2 "$PAYQ_TOPIC" "$PAYQ_DLQ_TOPIC" ||
	die "cannot create topics $PAYQ_TOPIC and $PAYQ_DLQ_TOPIC"
on_exit "'$PAYQ_OFFSETS_PROBE_EXE' delete-topics '$PAYQ_BROKERS' '$PAYQ_TOPIC' '$PAYQ_DLQ_TOPIC' >/dev/null 2>&1"
DBNAME=payq_$RUN
psql_q "CREATE DATABASE $DBNAME" || die "cannot create database $DBNAME"
on_exit "psql '$PAYQ_TEST_DB' -XAtq -c 'DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)' >/dev/null 2>&1"
export PAYQ_DB="$PAYQ_TEST_DB dbname=$DBNAME"
PAYQ_LOG_LEVEL=warn "$PAYQ_WORKER_EXE" migrate 2>"$W/migrate.log" ||
	die "payq-worker migrate failed: $(cat "$W/migrate.log")"

# expect_refused NAME KEY=VALUE CMD...: CMD must exit 2 within 20 s, naming KEY=VALUE in a
# "refused" line on stderr. A program that is let through runs until the timeout (124).
expect_refused() {
	local name=$1 kv=$2 rc=0
	shift 2
	timeout -k 5 20 "$@" >"$W/out" 2>"$W/err" </dev/null || rc=$?
	((rc == 2)) || die "$name with -X $kv: exit $rc, want 2 (stderr: $(tail -c 600 "$W/err"))"
	grep -F -- "-X $kv" "$W/err" | grep -q refused ||
		die "$name with -X $kv: stderr does not name the key as refused: $(tail -c 600 "$W/err")"
	pass "$name -X $kv: exit 2, $(grep -F -- "-X $kv" "$W/err" | head -n 1 | cut -c1-160)"
}

for kv in enable.auto.commit=true enable.auto.offset.store=true group.id=other-group \
	isolation.level=read_uncommitted enable.partition.eof=true auto.offset.reset=latest; do
	expect_refused payq-worker "$kv" "$PAYQ_WORKER_EXE" run -X "$kv"
done
expect_refused payq-worker enable.idempotence=false "$PAYQ_WORKER_EXE" run -X enable.idempotence=false

for kv in acks=1 enable.idempotence=false partitioner=consistent_random; do
	expect_refused payq-producer "$kv" "$PAYQ_PRODUCER_EXE" -X "$kv" \
		pay --order "ORD-$RUN" --amount 100 --currency CNY
done

for kv in enable.partition.eof=false isolation.level=read_uncommitted acks=1; do
	expect_refused payq-replay "$kv" "$PAYQ_REPLAY_EXE" -X "$kv" \
		republish --from-offset 0 --to-offset 1
done

# A harmless -X key still starts the worker: it joins the group.
rc=0
timeout -k 5 60 "$PAYQ_WORKER_EXE" run -X session.timeout.ms=6000 >"$W/out" 2>"$W/ok.err" </dev/null &
pid=$!
on_exit "kill $pid 2>/dev/null"
wait_for "grep -q '\"msg\":\"assigned' '$W/ok.err'" 50 ||
	die "payq-worker with -X session.timeout.ms=6000 did not join: $(tail -c 600 "$W/ok.err")"
kill -TERM "$pid"
wait "$pid" || rc=$?
((rc == 0)) || die "payq-worker with -X session.timeout.ms=6000 stopped with exit $rc"
pass "payq-worker -X session.timeout.ms=6000 is accepted: it joined the group and stopped cleanly"

# Secrets: -X dump shows what the worker runs with, secrets masked.
secret_env=("PAYQ_DB=postgresql://payq:hunter2-$RUN@db.example/payq"
	"PAYQ_GATEWAY_URL=https://sk-$RUN:pw-$RUN@pay.example/v1")
env "${secret_env[@]}" "$PAYQ_WORKER_EXE" -X "sasl.password=sasl-$RUN" -X dump >"$W/dump" 2>&1 ||
	die "-X dump failed: $(cat "$W/dump")"
if grep -E "hunter2-$RUN|sk-$RUN|pw-$RUN|sasl-$RUN" "$W/dump"; then
	die "-X dump shows a secret (lines above)"
fi
grep -qx 'enable.auto.commit = false' "$W/dump" ||
	die "-X dump does not show the consumer's enable.auto.commit = false"
grep -qx 'PAYQ_GATEWAY_URL = https://\*\*\*@pay.example/v1' "$W/dump" ||
	die "-X dump: $(grep PAYQ_GATEWAY_URL "$W/dump")"
pass "-X dump: enable.auto.commit = false, $(grep '^PAYQ_GATEWAY_URL' "$W/dump"), $(grep '^PAYQ_DB' "$W/dump")"

# ... and in the log: a gateway URL the worker refuses is logged without its userinfo.
rc=0
timeout -k 5 20 "$PAYQ_WORKER_EXE" run --payment-mode gateway \
	--gateway-url "ftp://sk-$RUN:pw-$RUN@pay.example/v1" >"$W/out" 2>"$W/err" </dev/null || rc=$?
((rc == 2)) || die "an ftp:// gateway URL: exit $rc, want 2: $(tail -c 600 "$W/err")"
if grep -E "sk-$RUN|pw-$RUN" "$W/err"; then
	die "the log shows the gateway URL's userinfo (lines above)"
fi
grep -q 'pay.example' "$W/err" || die "the log does not name the gateway host: $(cat "$W/err")"
pass "the log names the refused gateway URL without its userinfo: $(grep -o 'ftp://[^ ]*' "$W/err" | head -n 1)"
