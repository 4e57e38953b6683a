#!/bin/bash
# payq-producer against the real Kafka broker: murmur2 partitioning (Kafka's own vectors,
# kcat), per-order ordering, all-or-nothing JSONL, unreachable broker, deterministic generator.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:?run through meson test}/tests/lib/common.sh"

require_env PAYQ_TEST_BROKERS PAYQ_PRODUCER_EXE
command -v kcat >/dev/null || die "kcat not found"
export LC_ALL=C PAYQ_BROKERS=$PAYQ_TEST_BROKERS PAYQ_TOPIC=payq.commands PAYQ_LOG_LEVEL=info
P=$PAYQ_PRODUCER_EXE
TOPIC=$PAYQ_TOPIC
PARTS=${PAYQ_TEST_PARTITIONS:-12}
RUN=pt$$-$(date +%s) # every ID this test puts on the topic starts with it
W=$(mktemp -d)
on_exit "rm -rf '$W'"

# Prints "partition end_offset" for every partition of the topic.
end_offsets() {
	local args=() p
	for ((p = 0; p < PARTS; p++)); do
		args+=(-t "$TOPIC:$p:-1")
	done
	kcat -b "$PAYQ_BROKERS" -Q "${args[@]}" | sed -n 's/^.* \[\([0-9]*\)\] offset \([0-9]*\)$/\1 \2/p' |
		sort -n
}

total() { awk '{ s += $2 } END { print s + 0 }' "$1"; }

# Prints "partition<TAB>offset<TAB>key<TAB>headers<TAB>value" for every message after the
# offsets saved in file $1, partition by partition, in offset order.
consume_since() {
	local p off
	while read -r p off; do
		kcat -b "$PAYQ_BROKERS" -C -t "$TOPIC" -p "$p" -o "$off" -e -q \
			-f '%p\t%o\t%k\t%h\t%s\n'
	done <"$1"
}

expect_rc() {
	local want=$1 got=$2 what=$3
	[[ $got == "$want" ]] || die "$what: exit code $got, expected $want (stderr: $(tail -c 2000 "$W/err"))"
}

# --- 1. Kafka's own murmur2 test vectors (clients UtilsTest.testMurmur2) ----------------
# The Java client picks toPositive(murmur2(key)) % partitions (BuiltInPartitioner
# .partitionForKey), toPositive being & 0x7fffffff.
declare -A JAVA_MURMUR2=(
	[21]=-973932308
	[foobar]=-790332482
	[a-little-bit-long-string]=-985981536
	[a-little-bit-longer-string]=-1486304829
	[lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8]=-58897971
	[abc]=479470107
)
for key in "${!JAVA_MURMUR2[@]}"; do
	want=$(((JAVA_MURMUR2[$key] & 0x7fffffff) % PARTS))
	got=$("$P" cancel --order "$key" --command-id v-1 --dry-run --partitions "$PARTS" 2>"$W/err" |
		cut -d' ' -f1)
	assert_eq "$want" "$got" "key \"$key\" goes to the Java client's partition $want of $PARTS"
done
got=$("$P" cancel --order abc --command-id v-1 --dry-run 2>"$W/err" | cut -d' ' -f1)
assert_eq "$(((479470107 & 0x7fffffff) % PARTS))" "$got" \
	"--dry-run learns the partition count ($PARTS) from the broker"

# --- 2. Real placement: per-order partition and order, kcat's murmur2_random agrees -----
end_offsets >"$W/before2"
orders=("$RUN-ORD-a" "$RUN-ORD-b" "$RUN-ORD-c" "$RUN-ORD-d")
: >"$W/cmds.jsonl"
for step in 1 2 3 4; do # interleaved: step k of every order, then step k+1
	for o in "${orders[@]}"; do
		case $step in
		1) t=create_order extra=',"amount_minor":1999,"currency":"CNY"' ;;
		2) t=pay extra=',"amount_minor":1999,"currency":"CNY"' ;;
		3) t=cancel_order extra=',"reason":"customer"' ;;
		4) t=pay extra=',"amount_minor":1999,"currency":"CNY","payer_id":"again"' ;;
		esac
		printf '{"v":1,"type":"%s","command_id":"%s-c%d","order_id":"%s"%s}\n' \
			"$t" "$o" "$step" "$o" "$extra" >>"$W/cmds.jsonl"
	done
done
"$P" send "$W/cmds.jsonl" --dry-run --partitions "$PARTS" >"$W/dry2" 2>"$W/err" ||
	die "send --dry-run failed: $(cat "$W/err")"
"$P" send "$W/cmds.jsonl" >/dev/null 2>"$W/err" || die "send failed: $(cat "$W/err")"
grep -q 'sent 16, delivered 16, failed 0' "$W/err" || die "no closing summary: $(cat "$W/err")"
pass "send: closing summary says sent 16, delivered 16, failed 0"
id=$("$P" pay --order "$RUN-ORD-s" --amount 5 --currency EUR 2>"$W/err") ||
	die "pay failed: $(cat "$W/err")"
[[ $id =~ ^[0-9a-f]{32}$ ]] || die "pay without --command-id printed \"$id\", not 32 hex digits"
pass "pay without --command-id prints a random 128-bit ID"

# kcat with librdkafka's murmur2_random partitioner, the same keys as our dry run.
for i in 1 2 3 4 5 6 7 8; do
	k="$RUN-KC-$i"
	printf '%s\t{"v":1,"type":"cancel_order","command_id":"kc-%d","order_id":"%s"}\n' "$k" "$i" "$k"
done >"$W/kcat.in"
kcat -b "$PAYQ_BROKERS" -P -t "$TOPIC" -K $'\t' -X partitioner=murmur2_random <"$W/kcat.in" ||
	die "kcat -P failed"
consume_since "$W/before2" | grep -a "^[0-9]*	[0-9]*	$RUN-" >"$W/got2" || true

for o in "${orders[@]}"; do
	parts=$(awk -F'\t' -v k="$o" '$3 == k { print $1 }' "$W/got2" | sort -u | tr '\n' ' ')
	want=$(awk -v k="$o" '$2 == k { print $1 }' "$W/dry2" | sort -u | tr '\n' ' ')
	assert_eq "$want" "$parts" "all 4 commands of $o are in one partition, the one --dry-run predicted"
	seq=$(awk -F'\t' -v k="$o" '$3 == k { print $5 }' "$W/got2" |
		sed 's/.*"command_id":"\([^"]*\)".*/\1/' | tr '\n' ' ')
	assert_eq "$o-c1 $o-c2 $o-c3 $o-c4 " "$seq" "$o: commands in send order"
done
hdr=$(awk -F'\t' -v k="${orders[0]}" '$3 == k { print $4; exit }' "$W/got2")
[[ $hdr =~ ^content-type=application/json,payq-type=create_order,payq-command-id=${orders[0]}-c1,traceparent=00-[0-9a-f]{32}-[0-9a-f]{16}-01$ ]] ||
	die "headers: want content-type, payq-type, payq-command-id and a W3C traceparent, got '$hdr'"
pass "headers content-type, payq-type, payq-command-id and traceparent"
traces=$(awk -F'\t' '{ print $4 }' "$W/got2" | grep -o 'traceparent=00-[0-9a-f]*' | sort | uniq -d | wc -l)
assert_eq 0 "$traces" "a trace ID of its own for every command"
grep -aq "\"command_id\":\"$id\"" "$W/got2" || die "the printed command ID $id is not on the topic"
pass "the printed command ID is the one sent"
for i in 1 2 3 4 5 6 7 8; do
	k="$RUN-KC-$i"
	kc=$(awk -F'\t' -v k="$k" '$3 == k { print $1 }' "$W/got2")
	ours=$("$P" cancel --order "$k" --command-id x --dry-run --partitions "$PARTS" 2>/dev/null |
		cut -d' ' -f1)
	[[ -n $kc && $kc == "$ours" ]] || die "key $k: kcat put it in partition '$kc', we compute '$ours'"
done
pass "kcat -X partitioner=murmur2_random puts 8 keys where payq-producer computes"

# --- 3. A JSONL file with bad lines sends nothing -----------------------------------
cat >"$W/bad.jsonl" <<EOF
{"v":1,"type":"create_order","command_id":"b1","order_id":"$RUN-ORD-bad","amount_minor":10,"currency":"USD"}
{"v":1,"type":"pay","command_id":"b2","order_id":"$RUN-ORD-bad","amount_minor":10,"currency":"USD"}
{"v":1,"type":"pay","command_id":"b3","order_id":"$RUN-ORD-bad",

{"v":1,"type":"cancel_order","command_id":"b4","order_id":"$RUN-ORD-bad"}
{"v":1,"type":"pay","command_id":"b5","order_id":"$RUN-ORD-bad","amount_minor":10}
EOF
end_offsets >"$W/before3"
rc=0
"$P" send "$W/bad.jsonl" >/dev/null 2>"$W/err" || rc=$?
expect_rc 2 "$rc" "send with bad lines"
grep -q '^line 3: not_json: ' "$W/err" || die "line 3 not reported: $(cat "$W/err")"
grep -q '^line 6: missing_field: ' "$W/err" || die "line 6 not reported: $(cat "$W/err")"
[[ $(grep -c '^line ' "$W/err") == 2 ]] || die "wrong lines reported: $(cat "$W/err")"
end_offsets >"$W/after3"
cmp -s "$W/before3" "$W/after3" || die "end offsets moved although nothing may be sent"
pass "a file with bad lines 3 and 6: both reported with their reason, nothing sent, exit 2"
rc=0
"$P" send --skip-invalid "$W/bad.jsonl" >/dev/null 2>"$W/err" || rc=$?
expect_rc 0 "$rc" "send --skip-invalid"
end_offsets >"$W/after3b"
assert_eq 3 $(($(total "$W/after3b") - $(total "$W/after3"))) \
	"--skip-invalid sends the 3 valid lines and exits 0"

rc=0
"$P" pay --order "$RUN-ORD-x" --amount 12.50 --currency USD >/dev/null 2>"$W/err" || rc=$?
expect_rc 2 "$rc" "pay --amount 12.50"
grep -q -- '--amount' "$W/err" || die "the error does not name --amount: $(cat "$W/err")"
pass "a bad flag value is refused naming the flag, exit 2"

# --- 4. Broker unreachable: clear error, non-zero exit within the timeout ---------------
dead=127.0.0.1:$(free_port)
t0=$EPOCHREALTIME
rc=0
PAYQ_BROKERS=$dead "$P" pay --order "$RUN-ORD-u" --amount 1 --currency USD \
	-X message.timeout.ms=3000 >/dev/null 2>"$W/err" || rc=$?
took=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
expect_rc 1 "$rc" "pay with the broker unreachable"
awk -v t="$took" 'BEGIN { exit !(t < 3 + 4) }' || die "took ${took}s with message.timeout.ms=3000"
grep -q 'not persisted: first error: Local: Message timed out' "$W/err" ||
	die "no clear error: $(cat "$W/err")"
grep -q 'Connection refused' "$W/err" || die "the broker error is not shown: $(cat "$W/err")"
pass "broker unreachable: exit 1 after ${took}s (message.timeout.ms=3000), says why"

# --- 4b. The topic is looked up before the first message ------------------------------
# Without (producer/sink.c, warm_up), a message produced after the client's first metadata
# request, which names no topic, waited for librdkafka's next topic scan: one run in two of
# these took 1.0 s instead of 0.15 s, and --rate's clock ran that far ahead of the sends.
for i in 1 2 3 4; do
	"$P" generate --orders 500 --rate 7000 --seed "$i" --id-prefix "${RUN}w$i-" \
		>/dev/null 2>"$W/err" || die "generate --rate 7000: $(cat "$W/err")"
	took=$(grep -o 'in [0-9.]* s' "$W/err" | awk '{ print $2 }')
	awk -v t="$took" 'BEGIN { exit !(t != "" && t < 0.7) }' ||
		die "run $i: 1,000 commands at 7,000/s took ${took:-?} s: the first messages waited"
done
pass "four paced runs of 1,000 commands at 7,000/s: none waited for a topic scan"

# --- 5. The generator is deterministic ------------------------------------------------
G="${RUN}g-"
gen=(generate --orders 300 --seed 4242 --id-prefix "$G" --dup-rate 0.2 --double-pay-rate 0.2
	--cancel-rate 0.3 --key-reuse-rate 0.2 --malformed-rate 0.25)
dry=(--dry-run --partitions "$PARTS" --print)
"$P" "${gen[@]}" "${dry[@]}" --manifest "$W/a.json" >"$W/a.out" 2>"$W/err" || die "generate: $(cat "$W/err")"
"$P" "${gen[@]}" "${dry[@]}" --manifest "$W/b.json" >"$W/b.out" 2>"$W/err" || die "generate: $(cat "$W/err")"
cmp -s "$W/a.out" "$W/b.out" || die "same seed, different messages"
cmp -s "$W/a.json" "$W/b.json" || die "same seed, different manifest"
pass "same seed: byte-identical messages ($(wc -l <"$W/a.out")) and manifest"
other=("${gen[@]}")
other[4]=4243
"$P" "${other[@]}" "${dry[@]}" --manifest "$W/c.json" >"$W/c.out" 2>"$W/err" || die "generate: $(cat "$W/err")"
! cmp -s "$W/a.out" "$W/c.out" || die "another seed gives the same messages"
! cmp -s "$W/a.json" "$W/c.json" || die "another seed gives the same manifest"
pass "another seed: other messages and manifest"

python3 - "$W/a.json" "$W/a.out" 300 <<'EOF' || die "manifest does not describe the messages"
import json, sys
m = json.load(open(sys.argv[1]))
lines = open(sys.argv[2], "rb").read().split(b"\n")[:-1]
orders = int(sys.argv[3])
assert m["orders"] == orders and m["messages"] == len(lines), (m["messages"], len(lines))
assert m["outcomes"]["create_order"] == {"applied": orders, "rejected_order_exists": 0}
assert set(m["outcomes"]["pay"]) == {"applied", "rejected_already_paid", "rejected_order_cancelled",
                                     "rejected_unknown_order", "rejected_amount_mismatch"}
assert m["paid_orders"] + m["cancelled_orders"] + m["unpaid_orders"] == orders
assert m["double_payment_attempts"] == m["outcomes"]["pay"]["rejected_already_paid"] > 0
assert m["duplicates"] > 0 and m["anomalies"]["key_reuse"] > 0
valid = sum(sum(o.values()) for o in m["outcomes"].values())
assert valid == m["valid_commands"]
assert valid + m["duplicates"] + m["anomalies"]["key_reuse"] + len(m["malformed"]) == len(lines)
assert all(n > 0 for n in m["dlq"].values()), m["dlq"]  # every reason was generated
assert sum(m["dlq"].values()) == len(m["malformed"])
for e in m["malformed"]:
    assert lines[e["index"]].split(b"\t")[1].decode() == e["order_id"], e
EOF
pass "manifest: counts add up to the messages, every DLQ reason present, indexes point at the keys"

end_offsets >"$W/before5"
"$P" "${gen[@]}" --print --manifest "$W/r.json" >"$W/r.out" 2>"$W/err" ||
	die "generate to Kafka: $(cat "$W/err")"
cmp -s "$W/a.json" "$W/r.json" || die "the real run's manifest differs from the dry run's"
sort -s -t $'\t' -k1,1n "$W/a.out" >"$W/a.sorted"
sort -s -t $'\t' -k1,1n "$W/r.out" | cmp -s - "$W/a.sorted" ||
	die "persisted messages differ from the dry run's"
consume_since "$W/before5" | grep -a "^[0-9]*	[0-9]*	$G" | cut -f1,3,5 >"$W/topic5" || true
cmp -s "$W/topic5" "$W/a.sorted" || die "the topic holds other bytes or partitions than --dry-run --print"
pass "to Kafka: same manifest, and the topic holds byte-identical messages in the predicted partitions and order"

# --- 6. SIGINT stops cleanly and accounts for everything ----------------------------------
"$P" generate --orders 100000 --seed 1 --id-prefix "${RUN}i-" --rate 400 >/dev/null 2>"$W/err" &
pid=$!
sleep 1.5
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
expect_rc 130 "$rc" "generate interrupted by SIGINT"
grep -Eq 'sent ([0-9]+), delivered \1, failed 0, undelivered 0 \(interrupted\)' "$W/err" ||
	die "no clean summary after SIGINT: $(cat "$W/err")"
pass "SIGINT: exit 130, every sent message delivered and reported"
