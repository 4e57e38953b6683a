#!/bin/bash
# The producer conformance kit (clients/): the Python, Java and Go producers each send the same
# 2,000 commands to one real 12-partition topic, and every order must land on the partition
# payq-producer --dry-run names; a worker then applies the topic, once per command despite the
# three copies. The Python producer with librdkafka's default partitioner (consistent_random)
# sends the same commands to a second topic, to show how many orders it misplaces.
# Tools come from their registries into PAYQ_CACHE (default ~/.cache/payq) on the first run:
# confluent-kafka from PyPI into a venv, kafka-clients and the JSON Schema validator from Maven
# Central into ~/.m2, franz-go from the Go module proxy into the cache's GOMODCACHE.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
# shellcheck source=tests/deploy/lib.sh
source "$PAYQ_SOURCE_ROOT/tests/deploy/lib.sh"
require_env PAYQ_TEST_DB PAYQ_TEST_BROKERS PAYQ_WORKER_EXE PAYQ_PRODUCER_EXE

ORDERS=1000 # two commands each
SEED=17
CLIENTS=$PAYQ_SOURCE_ROOT/clients
SCHEMA=$PAYQ_SOURCE_ROOT/schema/command.schema.json
KIT=$PAYQ_SOURCE_ROOT/tests/clients/clientkit.py
WORK=$(mktemp -d -t payq-clients.XXXXXX)
on_exit "rm -rf '$WORK'"

step_t0=
step() {
	step_t0=$EPOCHREALTIME
	printf '... %s\n' "$*"
}
took() { awk -v a="$step_t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }'; }

# ---- the three toolchains, cached ----
_python_venv() {
	local venv=$CACHE/clients/venv req=$CLIENTS/python/requirements.txt stamp
	stamp=$venv/.payq-$(md5sum <"$req" | cut -c1-12)
	[[ -f $stamp ]] && return 0
	echo "creating $venv (confluent-kafka from PyPI)" >&2
	rm -rf "$venv"
	mkdir -p "$CACHE/clients"
	# Debian's python3-jsonschema is visible through --system-site-packages.
	/usr/bin/python3 -m venv --system-site-packages "$venv" >&2 &&
		PIP_CACHE_DIR=$CACHE/pip "$venv/bin/pip" install --quiet --disable-pip-version-check \
			-r "$req" >&2 &&
		"$venv/bin/python" -c 'import confluent_kafka, jsonschema' && touch "$stamp"
}
go_env() {
	# The Go client builds in the cache (the source tree may be read-only); modules and the
	# build cache stay there for the next run.
	env GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gobuild" GOFLAGS=-modcacherw GOTOOLCHAIN=local "$@"
}
_go_build() {
	mkdir -p "$CACHE/clients"
	(cd "$CLIENTS/go" && go_env go build -o "$CACHE/clients/payq-producer-go" .)
}
_java_build() {
	local out=$CACHE/clients/java stamp
	stamp=$out/.payq-$(cat "$CLIENTS/java/pom.xml" "$CLIENTS"/java/src/main/java/payq/clients/*.java | md5sum | cut -c1-12)
	[[ -f $stamp ]] && return 0
	rm -rf "$out"
	mkdir -p "$out"
	# The compiled classes and the classpath go to the cache, not into the source tree.
	mvn -q -B -f "$CLIENTS/java/pom.xml" -Dpayq.build.dir="$out" compile dependency:build-classpath \
		-Dmdep.outputFile="$out/classpath.txt" >&2 && touch "$stamp"
}

step "toolchains: Python venv, Go build, Maven build"
command -v go >/dev/null || die "go not found (Go 1.21 or later)"
command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
command -v javac >/dev/null || die "javac not found (apt-get install openjdk-17-jdk-headless)"
with_lock clients-venv _python_venv || die "could not set up $CACHE/clients/venv"
with_lock clients-go _go_build || die "could not build the Go client"
with_lock clients-java _java_build || die "could not build the Java client"
PY=$CACHE/clients/venv/bin/python
pass "clients built ($(took))"

# ---- the schema says what the worker's codec says ----
python3 "$KIT" schema-cases >"$WORK/cases.jsonl"
"$PY" "$KIT" schema-verdict "$SCHEMA" "$WORK/cases.jsonl" >"$WORK/schema.rejects" ||
	die "schema check failed"
"$PAYQ_PRODUCER_EXE" send "$WORK/cases.jsonl" --dry-run --partitions 12 --skip-invalid \
	>/dev/null 2>"$WORK/codec.log" || die "payq-producer could not check the cases: $(cat "$WORK/codec.log")"
sed -n 's/^line \([0-9]*\): .*/\1/p' "$WORK/codec.log" >"$WORK/codec.rejects"
diff "$WORK/codec.rejects" "$WORK/schema.rejects" >"$WORK/verdicts.diff" ||
	die "schema/command.schema.json and the codec disagree (< codec rejects, > schema rejects; lines of $(python3 "$KIT" schema-cases | wc -l) cases): $(cat "$WORK/verdicts.diff"); codec: $(cat "$WORK/codec.log")"
pass "schema/command.schema.json agrees with the codec on $(wc -l <"$WORK/cases.jsonl") edge cases ($(wc -l <"$WORK/codec.rejects") rejected by both)"

# ---- the commands and where payq-producer puts them ----
id=$$$RANDOM
topic=payq.clients-$id
scatter=payq.clients-default-$id
fresh_topics "$topic" "$topic.dlq" "$scatter"
python3 "$KIT" commands "$ORDERS" "$SEED" >"$WORK/commands.jsonl"
"$PAYQ_PRODUCER_EXE" --brokers "$PAYQ_TEST_BROKERS" --topic "$topic" \
	send "$WORK/commands.jsonl" --dry-run >"$WORK/dryrun.txt" 2>"$WORK/dryrun.log" ||
	die "payq-producer --dry-run failed: $(cat "$WORK/dryrun.log")"
assert_eq 2000 "$(wc -l <"$WORK/dryrun.txt")" "payq-producer --dry-run places 2000 commands"
grep -q 'per partition: 0:.* 11:' "$WORK/dryrun.log" ||
	die "the topic does not have 12 partitions: $(cat "$WORK/dryrun.log")"

# Appends to FILE "partition<TAB>key<TAB>headers" for every message of TOPIC not yet in it,
# by offset: each client's messages are the ones that arrived since the previous client.
consume_new() {
	local topic=$1 file=$2 n=$3
	: >"$WORK/all.txt"
	kcat -C -b "$PAYQ_TEST_BROKERS" -t "$topic" -o beginning -e -q \
		-f '%p\t%o\t%k\t%h\n' >"$WORK/all.txt" 2>"$WORK/kcat.err" ||
		die "kcat could not read $topic: $(cat "$WORK/kcat.err")"
	awk -F '\t' 'FILENAME == ARGV[1] { seen[$1 "/" $2] = 1; next }
		!(($1 "/" $2) in seen) { print $1 "\t" $3 "\t" $4 }' \
		"$WORK/seen.txt" "$WORK/all.txt" >"$file"
	cut -f 1,2 "$WORK/all.txt" >"$WORK/seen.txt"
	[[ $(wc -l <"$file") == "$n" ]] || die "$(wc -l <"$file") new messages on $topic, want $n"
}
: >"$WORK/seen.txt"

run_client() {
	local name=$1 topic=$2
	shift 2
	step "$name"
	"$@" >"$WORK/$name.log" 2>&1 || die "$name failed: $(tail -n 5 "$WORK/$name.log")"
	consume_new "$topic" "$WORK/$name.tsv" 2000
	pass "$name produced 2000 commands ($(took))"
}
run_client python "$topic" "$PY" "$CLIENTS/python/payq_producer.py" --brokers "$PAYQ_TEST_BROKERS" \
	--topic "$topic" --schema "$SCHEMA" "$WORK/commands.jsonl"
run_client java "$topic" java -cp "$CACHE/clients/java/classes:$(cat "$CACHE/clients/java/classpath.txt")" \
	payq.clients.Producer "$PAYQ_TEST_BROKERS" "$topic" "$SCHEMA" "$WORK/commands.jsonl"
run_client go "$topic" "$CACHE/clients/payq-producer-go" --brokers "$PAYQ_TEST_BROKERS" --topic "$topic" \
	--schema "$SCHEMA" "$WORK/commands.jsonl"
: >"$WORK/seen.txt"
run_client python-default "$scatter" "$PY" "$CLIENTS/python/payq_producer.py" \
	--brokers "$PAYQ_TEST_BROKERS" --topic "$scatter" --schema "$SCHEMA" \
	--librdkafka-default-partitioner "$WORK/commands.jsonl"

# ---- the placement table ----
echo
"$PY" "$KIT" placement "$WORK/dryrun.txt" \
	"python confluent-kafka, murmur2_random:$WORK/python.tsv" \
	"java kafka-clients, default:$WORK/java.tsv" \
	"go franz-go, StickyKeyPartitioner(nil):$WORK/go.tsv" \
	"python confluent-kafka, default (consistent_random):$WORK/python-default.tsv" \
	>"$WORK/table.txt" || die "placement check failed: $(cat "$WORK/table.txt")"
head -n -1 "$WORK/table.txt"
echo
result=$(tail -n 1 "$WORK/table.txt")
"$PY" - "$result" <<'PYEOF' || die "placement: $result"
import json, sys
r = json.loads(sys.argv[1])
bad = {k: v for k, v in r.items() if "default (" not in k and v}
scatter = [v for k, v in r.items() if "default (" in k]
if bad:
    sys.exit(f"configured clients misplace orders: {bad}")
if not scatter or scatter[0] == 0:
    sys.exit("the unconfigured client misplaced nothing: the check cannot fail")
PYEOF
pass "every order from the Python, Java and Go clients is on payq-producer's partition; librdkafka's default partitioner misplaces $(tail -n 1 "$WORK/table.txt" | "$PY" -c 'import json,sys; print([v for k, v in json.load(sys.stdin).items() if "default (" in k][0])') of $ORDERS orders"

# ---- a worker applies the three copies: every command once ----
step "worker"
fresh_database "payq_clients_$id"
PAYQ_DB=$DEPLOY_DB "$PAYQ_WORKER_EXE" migrate 2>"$WORK/migrate.log" || die "migrate failed: $(cat "$WORK/migrate.log")"
port=$(free_port)
printf '%s\0' PAYQ_BROKERS="$PAYQ_TEST_BROKERS" PAYQ_DB="$DEPLOY_DB" PAYQ_TOPIC="$topic" \
	PAYQ_DLQ_TOPIC="$topic.dlq" PAYQ_GROUP="payq-clients-$id" PAYQ_HTTP_ADDR="127.0.0.1:$port" \
	PAYQ_INSTANCE_ID="payq-worker-clients-$id" >"$WORK/env"
printf '%s\0' "$PAYQ_WORKER_EXE" run >"$WORK/argv"
start_worker "$WORK/env" "$WORK/argv"
db() { psql "$DEPLOY_DB" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
drained() {
	[[ $(db "SELECT count(*) || ' ' || coalesce(sum(duplicates), 0) FROM payq.processed_commands") == "2000 4000" ]]
}
wait_for drained 180 || die "the worker did not apply 2000 commands and see 4000 duplicates: $(db "SELECT count(*), sum(duplicates) FROM payq.processed_commands"); log: $(tail -n 5 "$WORK/worker.log")"
stop_worker "$WORKER_PID" 30
assert_eq "applied 2000" "$(db "SELECT outcome, count(*) FROM payq.processed_commands GROUP BY 1" | tr '|' ' ')" \
	"every command applied once, the two other copies counted as duplicates"
assert_eq "cancelled 250,paid 750" "$(db "SELECT string_agg(status || ' ' || n, ',' ORDER BY status) FROM (SELECT status, count(*) n FROM payq.orders GROUP BY 1) s")" \
	"orders paid and cancelled as sent"
assert_eq "750 0" "$(db "SELECT count(*) FILTER (WHERE status = 'succeeded') || ' ' || count(*) FILTER (WHERE status <> 'succeeded') FROM payq.payments")" \
	"one succeeded payment per paid order"
assert_eq 0 "$(db "SELECT count(*) FROM payq.anomalies")" "no anomalies"
assert_eq 0 "$(kcat -C -b "$PAYQ_TEST_BROKERS" -t "$topic.dlq" -o beginning -e -q -f '.\n' 2>/dev/null | wc -l)" \
	"nothing dead-lettered: the three clients' commands pass the worker's codec"
pass "worker ($(took))"
