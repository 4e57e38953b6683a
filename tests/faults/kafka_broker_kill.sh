#!/bin/bash
# Scenario 4, Kafka leader loss, on a real 3-broker KRaft cluster of its own (replication
# factor 3, min.insync.replicas 2, unclean leader election off; deploy/local/kafka
# --brokers 3, PAYQ_KAFKA_VERSION as the harness takes it). While payq-producer generate
# produces (malformed messages in the load) and two workers consume:
#   (a) SIGKILL the broker that leads the most payq.commands partitions, then restart it;
#   (b) the same again at a moment a DLQ delivery is in flight (the DLQ is growing).
# Then drain, and check against the generator's manifest (deploy/local/verify): nothing
# lost, every DLQ copy there by its coordinates, no order paid twice, redeliveries absorbed
# by the dedup table; committed offsets never moved backwards; no offset_gap.
# Figures: commands, duplicates absorbed, time to recover (leaders back, processing resumed
# on the partitions the dead broker led, the restarted broker back in every ISR).
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

KAFKA=$PAYQ_SOURCE_ROOT/deploy/local/kafka
VERIFY=$PAYQ_SOURCE_ROOT/deploy/local/verify
CLUSTER=$WORK/kafka
PARTITIONS=12
# About 9,000 messages at 150/s: a minute of traffic, long enough for both kills and restarts.
ORDERS=${PAYQ_FAULTS_BROKER_KILL_ORDERS:-4000}
RATE=${PAYQ_FAULTS_BROKER_KILL_RATE:-150}
SEED=20261207

# ---- the cluster ----
log "starting a 3-broker KRaft cluster in $CLUSTER"
on_exit "'$KAFKA' stop '$CLUSTER' >/dev/null 2>&1"
t0=$SECONDS
BROKERS=$("$KAFKA" start "$CLUSTER" --brokers 3 --partitions "$PARTITIONS" 2>"$WORK/kafka-start.log") ||
	die "the 3-broker cluster did not start: $(tail -n 5 "$WORK/kafka-start.log")"
log "cluster at $BROKERS (Apache Kafka $(cat "$CLUSTER/version"), started in $((SECONDS - t0)) s)"

# "PARTITION LEADER" for every partition of TOPIC (-1: none), from the cluster's metadata.
leaders() {
	kcat -b "$BROKERS" -L -m 5 -J -t "$1" 2>/dev/null | python3 -c '
import json, sys
md = json.load(sys.stdin)
for t in md.get("topics", []):
    if t["topic"] == sys.argv[1]:
        for p in sorted(t["partitions"], key=lambda p: p["partition"]):
            print(p["partition"], p.get("leader", -1))
' "$1"
}

# Every partition of the commands topic has a live leader other than NODE.
led_without() {
	local out
	out=$(leaders "$TOPIC") || return 1
	[[ $(wc -l <<<"$out") == "$PARTITIONS" ]] && ! awk -v n="$1" '$2 < 0 || $2 == n { bad = 1 } END { exit !bad }' <<<"$out"
}

progress_of() {
	sql "SELECT coalesce(sum(next_offset), 0) FROM payq.consumer_progress
	     WHERE group_id = '$GROUP' AND topic = '$TOPIC' AND partition IN ($1)"
}

dlq_end() { probe end "$BROKERS" "$DLQ_TOPIC" 2>/dev/null | awk '{ s += $3 } END { print s + 0 }'; }

ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# Kills the broker that leads the most commands partitions, and measures the recovery:
# kill_leader LABEL. Sets FIG_<LABEL> to "victim partitions failover resume restart".
kill_leader() {
	local label=$1 victim parts before tk t_fail t_resume t_restart
	victim=$("$KAFKA" leader "$CLUSTER" --topic "$TOPIC") || die "no leader found for $TOPIC"
	parts=$(leaders "$TOPIC" | awk -v n="$victim" '$2 == n { print $1 }' | paste -sd, -)
	before=$(progress_of "$parts")
	tk=$EPOCHREALTIME
	"$KAFKA" kill "$CLUSTER" --node "$victim" 2>>"$WORK/kafka-ops.log" || die "kill of node $victim failed"
	log "($label) SIGKILL node $victim, leader of $TOPIC partitions $parts (their consumer_progress: $before)"
	wait_until 60 led_without "$victim" || die "($label) partitions still without a live leader 60 s after the kill"
	t_fail=$(ms_since "$tk")
	log "($label) every partition has a live leader again after ${t_fail} s"
	wait_until 90 progress_moved "$parts" "$before" ||
		die "($label) no progress on partitions $parts within 90 s of the kill"
	t_resume=$(ms_since "$tk")
	log "($label) workers applying again on partitions $parts after ${t_resume} s"
	tk=$EPOCHREALTIME
	PAYQ_KAFKA_TOPICS="$TOPIC $DLQ_TOPIC" "$KAFKA" start "$CLUSTER" --node "$victim" \
		2>>"$WORK/kafka-ops.log" || die "($label) node $victim did not come back"
	t_restart=$(ms_since "$tk")
	log "($label) node $victim restarted and back in every ISR after ${t_restart} s"
	printf -v "FIG_$label" '%s %s %s %s %s' "$victim" "$parts" "$t_fail" "$t_resume" "$t_restart"
}

progress_moved() { (($(progress_of "$1") > $2)); }

# ---- database, workers, traffic ----
db_create
monitor_start
worker_start w1
worker_start w2
worker_wait_assigned w1 60
worker_wait_assigned w2 60

# One produce request in flight per broker: librdkafka 2.0.2's idempotent producer can
# otherwise turn a leader's death into a fatal OUT_OF_ORDER_SEQUENCE_NUMBER ("sequence
# desynchronization", after a batch left possibly persisted by the dropped connection;
# librdkafka#4438, fixed in 2.3.0), and the generator stops with its manifest unwritten.
PAYQ_BROKERS=$BROKERS PAYQ_LOG_LEVEL=info "$PAYQ_PRODUCER_EXE" \
	-X max.in.flight.requests.per.connection=1 generate --orders "$ORDERS" \
	--seed "$SEED" --dup-rate 0.05 --double-pay-rate 0.05 --cancel-rate 0.05 \
	--key-reuse-rate 0.02 --malformed-rate 0.05 --rate "$RATE" --manifest "$WORK/manifest.json" \
	--id-prefix "bk$$-" </dev/null >"$WORK/generate.out" 2>"$WORK/generate.log" &
GEN_PID=$!
on_exit "proc_stop $GEN_PID"
T_TRAFFIC=$SECONDS
log "generator: $ORDERS orders at $RATE msg/s, 5 % malformed"

# (a) Once the workers are applying, kill the busiest leader.
applied_over() { (($(processed_count) > $1)); }
wait_until 60 applied_over 300 || die "the workers applied fewer than 300 commands within 60 s"
kill_leader a
kill -0 "$GEN_PID" 2>/dev/null || die "scenario error: the generator finished before the second kill; lower PAYQ_FAULTS_BROKER_KILL_RATE"

# (b) At a moment a DLQ delivery is in flight: the DLQ's end offsets moved in the last
# 200 ms, so a malformed message was just handed to the DLQ producer and more are coming.
d0=$(dlq_end)
deadline=$((SECONDS + 60))
while :; do
	sleep 0.2
	d1=$(dlq_end)
	((d1 > d0)) && break
	((SECONDS < deadline)) || die "scenario error: the DLQ did not grow within 60 s"
	d0=$d1
done
DLQ_AT_KILL=$d1
kill_leader b
DLQ_AFTER_KILL=$(dlq_end)

GEN_RC=0
wait "$GEN_PID" || GEN_RC=$?
((GEN_RC == 0)) || die "payq-producer generate failed ($GEN_RC): $(tail -n 3 "$WORK/generate.log")"
log "generator done in $((SECONDS - T_TRAFFIC)) s"
MESSAGES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' "$WORK/manifest.json")

# ---- drain and check ----
drained() { progress_at_end && committed_at_end; }
if ! wait_until 120 drained; then
	violation "not drained 120 s after the traffic: consumer_progress [$(sql "SELECT string_agg(partition || ':' || next_offset, ' ' ORDER BY partition) FROM payq.consumer_progress WHERE group_id = '$GROUP'")], committed [$(committed_offsets | tr '\n' ' ')], log end [$(end_offsets | tr '\n' ' ')]" ||
		VIOLATIONS=$((VIOLATIONS + 1))
fi
T_DRAINED=$SECONDS
expect check_progress
expect check_committed_end 30
expect check_clean_stop w1
expect check_clean_stop w2
expect check_monotonic

check_manifest() {
	if ! "$VERIFY" --db "$DB" --brokers "$BROKERS" --manifest "$WORK/manifest.json" --redelivery \
		--json "$WORK/verify.json" >"$WORK/verify.out" 2>&1; then
		violation "deploy/local/verify against the manifest: $(grep -iE 'mismatch|violat|lost|FAIL|BAD' "$WORK/verify.out" | head -n 8 | tr '\n' ';')"
		return 1
	fi
	pass "deploy/local/verify --redelivery: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(1 for x in r if x["ok"]), "of", len(r), "checks ok")' "$WORK/verify.json") against the manifest ($MESSAGES messages)"
}
expect check_manifest

check_no_offset_gap() {
	local n
	n=$(sql "SELECT count(*) FROM payq.anomalies WHERE kind = 'offset_gap'")
	[[ $n == 0 ]] || {
		violation "$n offset_gap anomalies"
		return 1
	}
	pass "no offset_gap anomaly"
}
expect check_no_offset_gap

# A DLQ copy landed after the second kill: a DLQ delivery outlived the leader's death.
check_dlq_across_kill() {
	local total
	total=$(dlq_end)
	if ((total <= DLQ_AT_KILL)); then
		violation "no DLQ copy landed after the second kill (DLQ at $DLQ_AT_KILL before, $total at the end)"
		return 1
	fi
	pass "DLQ deliveries went on across the second kill: $DLQ_AT_KILL copies before it, $DLQ_AFTER_KILL when the broker was back, $total at the end"
}
expect check_dlq_across_kill

# ---- figures ----
read -r VALID EXPECTED_DUPS < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["valid_commands"], m["duplicates"])' "$WORK/manifest.json")
ROWS=$(sql "SELECT count(*) FROM payq.processed_commands")
SEEN_DUPS=$(sql "SELECT coalesce(sum(duplicates), 0) FROM payq.processed_commands")
for l in a b; do
	v=FIG_$l
	read -r victim parts t_fail t_resume t_restart <<<"${!v}"
	log "figures ($l): node $victim killed (leader of partitions $parts); leaders back ${t_fail} s, applying again ${t_resume} s, restarted into every ISR ${t_restart} s"
done
log "figures: $MESSAGES messages ($VALID valid commands, $ROWS processed_commands rows), duplicates absorbed $SEEN_DUPS (the generator sent $EXPECTED_DUPS; $((SEEN_DUPS - EXPECTED_DUPS)) redeliveries), drained $((T_DRAINED - T_TRAFFIC)) s after the traffic began, Apache Kafka $(cat "$CLUSTER/version")"
finish
