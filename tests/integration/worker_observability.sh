#!/bin/bash
# What an operator sees of the worker: payq_consumer_lag{group,topic,partition} for the
# partitions a worker owns, and no longer for those revoked from it (each partition reported by
# exactly one worker of the group); order_id in every log line about a command; and the W3C
# trace context from the message headers in the worker's log lines.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/gateway_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/gateway_lib.sh"
require_env PAYQ_PRODUCER_EXE PAYQ_REPLAY_EXE

wl_init observability 12

# Prints "PARTITION" for each payq_consumer_lag series of worker NAME (checking its labels).
lag_partitions() {
	wl_metrics "$1" | awk -v g="$WL_GROUP" -v t="$WL_TOPIC" '
		index($1, "payq_consumer_lag{") == 1 {
			if (index($1, "group=\"" g "\",topic=\"" t "\",partition=\"") == 0) { print "BAD " $1; next }
			p = $1; sub(/.*partition="/, "", p); sub(/".*/, "", p); print p
		}'
}

# ---- lag: one series per owned partition, removed on revoke ----
wl_worker_start w1
wl_wait_log w1 '"msg":"assigned 12 partitions' 60
for i in $(seq 1 48); do
	printf 'OBS-%d|{"v":1,"type":"create_order","command_id":"c-%d","order_id":"OBS-%d","amount_minor":100,"currency":"EUR"}\n' "$i" "$i" "$i"
done | wl_produce -H content-type=application/json
wl_wait_applied 48
nonempty=$(wl_offsets | awk '$4 > 0 { n++ } END { print n + 0 }')
all_lag() { [[ $(lag_partitions w1 | grep -vc BAD) -ge $nonempty ]]; }
wait_for all_lag 60 || die "w1 reports lag for $(lag_partitions w1 | wc -l) partitions, want $nonempty: $(lag_partitions w1 | tr '\n' ' ')"
! lag_partitions w1 | grep -q BAD || die "a lag series without group, topic and partition: $(lag_partitions w1 | grep BAD)"
pass "w1 reports payq_consumer_lag{group,topic,partition} for the $nonempty partitions with messages"

wl_worker_start w2
wl_wait_log w2 '"msg":"assigned [1-9][0-9]* partitions' 60
# Settled: both workers report lag, each partition by exactly one of them, together all of them.
split_ok() {
	lag_partitions w1 >"$WL_DIR/lag.w1" && lag_partitions w2 >"$WL_DIR/lag.w2" &&
		[[ -s $WL_DIR/lag.w1 && -s $WL_DIR/lag.w2 ]] &&
		[[ -z $(sort "$WL_DIR/lag.w1" "$WL_DIR/lag.w2" | uniq -d) ]] &&
		(($(sort -u "$WL_DIR/lag.w1" "$WL_DIR/lag.w2" | wc -l) >= nonempty))
}
wait_for split_ok 90 || wl_violation "after w2 joined, lag series overlap or miss partitions: w1 {$(tr '\n' ' ' <"$WL_DIR/lag.w1")} w2 {$(tr '\n' ' ' <"$WL_DIR/lag.w2")}"
pass "after a rebalance each partition's lag comes from one worker only: w1 {$(sort -n "$WL_DIR/lag.w1" | tr '\n' ' ')} w2 {$(sort -n "$WL_DIR/lag.w2" | tr '\n' ' ')}"
wl_worker_stop w2 TERM
wl_worker_stop w1 TERM

# ---- one trace: payq-producer -> the worker's log -> the payment channel ----
gw_sandbox_start --request-log "$WL_DIR/requests.jsonl"
gw_worker_start w3 PAYQ_LOG_LEVEL=debug
wl_wait_assigned w3 60
produce_cmd() { # SUBCOMMAND ARGS...: one command through payq-producer, logged at debug
	PAYQ_LOG_LEVEL=debug "$PAYQ_PRODUCER_EXE" --brokers "$PAYQ_TEST_BROKERS" --topic "$WL_TOPIC" \
		"$@" >>"$WL_DIR/producer.out" 2>>"$WL_DIR/producer.log" || die "payq-producer $1 failed: $(tail -n 3 "$WL_DIR/producer.log")"
}
produce_cmd create-order --order TR-1 --amount 4200 --currency EUR --command-id tr-c1
produce_cmd pay --order TR-1 --amount 4200 --currency EUR --command-id tr-c2
# field FILE ORDER COMMAND NAME: NAME of the JSON log line about that order and command.
field() {
	python3 - "$@" <<'PYEOF'
import json, sys
path, order, cmd, name = sys.argv[1:]
for line in open(path, errors="replace"):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("order_id") == order and o.get("command_id", o.get("idempotency_key")) in (cmd, f"{order}:{cmd}"):
        if name in o:
            print(o[name])
            break
PYEOF
}
trace=$(field "$WL_DIR/producer.log" TR-1 tr-c2 trace_id)
[[ $trace =~ ^[0-9a-f]{32}$ ]] || die "payq-producer logged no trace_id for TR-1/tr-c2: $(grep TR-1 "$WL_DIR/producer.log")"
parent_span=$(kcat -C -b "$PAYQ_TEST_BROKERS" -t "$WL_TOPIC" -o beginning -e -q -f '%k %h\n' 2>/dev/null |
	grep '^TR-1 .*payq-command-id=tr-c2' | grep -o "traceparent=00-$trace-[0-9a-f]*" | cut -d- -f3)
[[ -n $parent_span ]] || die "the pay message has no traceparent with trace $trace"
logged() { [[ $(field "$WL_DIR/w3.log" TR-1 tr-c2 msg) == "pay: applied" ]]; }
wait_for logged 60 || die "no worker log line 'pay: applied' for TR-1/tr-c2: $(grep TR-1 "$WL_DIR/w3.log" | tail -n 3)"
worker_trace=$(field "$WL_DIR/w3.log" TR-1 tr-c2 trace_id)
[[ $worker_trace == "$trace" ]] || wl_violation "the worker logged trace_id '$worker_trace' for TR-1/tr-c2, the producer $trace"
sent=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o["method"] == "POST" and o["idempotency_key"] == "TR-1|tr-c2":
        print(o["traceparent"] or "-")
        break' "$WL_DIR/requests.jsonl")
[[ $sent =~ ^00-$trace-([0-9a-f]{16})-01$ ]] ||
	wl_violation "the charge for TR-1/tr-c2 reached the gateway with traceparent '$sent', want trace $trace"
[[ ${BASH_REMATCH[1]} != "$parent_span" ]] || wl_violation "the worker sent the producer's span ID, not a child span"
pass "one trace ID $trace: payq-producer's log, the worker's log line (pay: applied) and the gateway's request (child span ${BASH_REMATCH[1]} of $parent_span)"

# ---- a dead letter keeps its trace, in the log, the DLQ copy and a replay ----
tp=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
printf 'TR-bad|this is not json\n' | wl_produce -H "traceparent=$tp" -H tracestate=vendor=abc
dead() { [[ $(grep -c '"msg":"dead-lettered: not_json.*"order_id":"TR-bad".*"trace_id":"0af7651916cd43dd8448eb211c80319c"' "$WL_DIR/w3.log") -ge "$1" ]]; }
wait_for "dead 1" 60 || wl_violation "no dead-lettered line with order_id TR-bad and its trace_id: $(grep TR-bad "$WL_DIR/w3.log")"
dlq_headers() { kcat -C -b "$PAYQ_TEST_BROKERS" -t "$WL_DLQ" -o beginning -e -q -f '%h\n' 2>/dev/null; }
dlq_headers | grep -q "traceparent=$tp.*tracestate=vendor=abc" || wl_violation "the DLQ copy lost traceparent/tracestate: $(dlq_headers)"
"$PAYQ_REPLAY_EXE" --brokers "$PAYQ_TEST_BROKERS" --topic "$WL_TOPIC" --dlq-topic "$WL_DLQ" \
	--group "$WL_GROUP" --db "$WL_DB" dlq --reason not_json >>"$WL_DIR/replay.log" 2>&1 ||
	die "payq-replay dlq failed: $(tail -n 3 "$WL_DIR/replay.log")"
wait_for "dead 2" 60 || wl_violation "the replayed dead letter was not dead-lettered again with its trace_id"
[[ $(dlq_headers | grep -c "traceparent=$tp.*payq-replay-of=") == 1 ]] ||
	wl_violation "the replayed copy lost its traceparent: $(dlq_headers)"
pass "a dead letter keeps order_id and trace_id in the log, and traceparent on the DLQ copy and its replay"

# ---- order_id on every line about a command ----
bad=$(grep -h '"command_id"' "$WL_DIR"/w*.log | grep -vc '"order_id"' || true)
[[ $bad == 0 ]] || wl_violation "$bad worker log lines name a command_id but no order_id: $(grep -h '"command_id"' "$WL_DIR"/w*.log | grep -v '"order_id"' | head -n 2)"
pass "every worker log line with a command_id has its order_id ($(grep -hc '"command_id"' "$WL_DIR"/w3.log) lines)"
wl_worker_stop w3 TERM
