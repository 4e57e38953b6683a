#!/bin/bash
# Proves the harness is real: PostgreSQL 15 and Apache Kafka answer, round-trip data, and
# the topics exist as tests/run made them.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"

require_env PAYQ_TEST_DB PAYQ_TEST_BROKERS PAYQ_HARNESS_PROBE_EXE
PARTITIONS=${PAYQ_TEST_PARTITIONS:-12}
TOPICS=(payq.commands payq.commands.dlq)

"$PAYQ_HARNESS_PROBE_EXE" pg "$PAYQ_TEST_DB" || die "PostgreSQL probe failed ($PAYQ_TEST_DB)"
pass "PostgreSQL 15 at '$PAYQ_TEST_DB': synchronous_commit on, temp table round trip"

assert_eq 1 "$(psql_q "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")" \
	"pg_stat_statements is installed in the payq database"
assert_eq 200 "$(psql_q 'SHOW max_connections')" "max_connections is 200"

for t in "${TOPICS[@]}"; do
	"$PAYQ_HARNESS_PROBE_EXE" kafka "$PAYQ_TEST_BROKERS" "$t" ||
		die "Kafka probe failed on $t ($PAYQ_TEST_BROKERS)"
	pass "Kafka at $PAYQ_TEST_BROKERS: idempotent produce to $t and read back the same bytes"
done

# librdkafka's mock cluster advertises about twenty API keys and no KRaft ones; a real
# Apache Kafka 3.9 or 4.x broker advertises about sixty, DescribeQuorum (55) among them.
apilog=$(kcat -b "$PAYQ_TEST_BROKERS" -L -m 10 -X debug=feature 2>&1 >/dev/null) ||
	die "kcat ApiVersion probe failed"
apis=$(grep -c 'ApiKey ' <<<"$apilog" || true)
((apis >= 40)) || die "broker advertises only $apis API keys: not a real Apache Kafka"
grep -q 'ApiKey DescribeQuorum[A-Za-z]* (55)' <<<"$apilog" ||
	die "broker does not advertise DescribeQuorum (55): not a KRaft Apache Kafka"
pass "broker advertises $apis API keys including DescribeQuorum: a real KRaft Apache Kafka"

metadata=$(kcat -b "$PAYQ_TEST_BROKERS" -L -J -m 10) || die "kcat -L failed on $PAYQ_TEST_BROKERS"
summary=$(python3 -c '
import json, sys
md = json.loads(sys.argv[1])
print(" ".join(str(b["id"]) for b in md["brokers"]), md.get("controllerid"))
for t in md["topics"]:
    if not t["topic"].startswith("__"):
        ok = sum(1 for p in t["partitions"] if p.get("leader", -1) >= 0)
        print(t["topic"], len(t["partitions"]), ok)
' "$metadata")
read -r brokers controller <<<"$(head -n 1 <<<"$summary")"
assert_eq 1 "$brokers" "exactly one broker, with node.id 1"
assert_eq 1 "$controller" "broker 1 is also the KRaft controller"
for t in "${TOPICS[@]}"; do
	line=$(grep "^$t " <<<"$summary" || true)
	[[ -n $line ]] || die "topic $t does not exist"
	assert_eq "$t $PARTITIONS $PARTITIONS" "$line" "topic $t has $PARTITIONS partitions, each with a leader"
done

port=${PAYQ_TEST_BROKERS##*:}
owner=$(ss -Hltnp "sport = :$port" | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 || true)
pid=${owner##*pid=}
[[ -n $pid ]] || die "no listening process found on port $port"
grep -qz '^kafka.Kafka$' "/proc/$pid/cmdline" ||
	die "port $port belongs to pid $pid, which is not kafka.Kafka: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
pass "port $port is served by pid $pid, a JVM running kafka.Kafka"
