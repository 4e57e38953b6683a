#!/bin/bash
# The Kubernetes manifests, run: the migration Job and then the worker Deployment's container,
# each started with exactly the environment and arguments the rendered base gives it (read
# from the manifest here, not copied), against the test PostgreSQL and Kafka. Only addresses
# change: the brokers, the database (the Secret), the HTTP port, a fake pod name for the
# downward API, and a topic and group of this test's own on the shared test broker. The worker
# must become ready, apply commands, answer the image's probe, and stop cleanly on SIGTERM
# within the pod's terminationGracePeriodSeconds.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
# shellcheck source=tests/deploy/lib.sh
source "$PAYQ_SOURCE_ROOT/tests/deploy/lib.sh"
require_env PAYQ_TEST_DB PAYQ_TEST_BROKERS PAYQ_WORKER_EXE

WORK=$(mktemp -d -t payq-worker-env.XXXXXX)
on_exit "rm -rf '$WORK'"
PY=$(deploy_python) || exit 1
KUSTOMIZE=$(deploy_kustomize) || exit 1
read -ra KUSTOMIZE <<<"$KUSTOMIZE"
"${KUSTOMIZE[@]}" "$PAYQ_SOURCE_ROOT/deploy/k8s/base" >"$WORK/base.yaml" || die "kustomize build failed"

id=$$$RANDOM
topic=payq.deploy-env-$id
group=payq-deploy-env-$id
pod=payq-worker-6f9c8d7b5-x$id
port=$(free_port)
fresh_topics "$topic" "$topic.dlq"
fresh_database "payq_deploy_env_$id"

manifest_env() { # KIND NAME CONTAINER
	"$PY" "$DEPLOY_DIR/deploytool.py" worker-env "$WORK/base.yaml" --kind "$1" --name "$2" \
		--container "$3" --dockerfile "$PAYQ_SOURCE_ROOT/deploy/docker/Dockerfile" \
		--worker-exe "$PAYQ_WORKER_EXE" --brokers "$PAYQ_TEST_BROKERS" --db "$DEPLOY_DB" \
		--pod-name "$pod" --http-addr "127.0.0.1:$port" --topic "$topic" --dlq-topic "$topic.dlq" \
		--group "$group" --out-env "$WORK/$2.env" --out-argv "$WORK/$2.argv" ||
		die "cannot derive the environment of $1/$2 from the manifest"
}

# The migration Job, as the manifest runs it.
echo "Job/payq-migrate, container migrate:"
manifest_env Job payq-migrate migrate
mapfile -d '' -t envs <"$WORK/payq-migrate.env"
mapfile -d '' -t argv <"$WORK/payq-migrate.argv"
env -i "${envs[@]}" "${argv[@]}" 2>"$WORK/migrate.log" ||
	die "the migration Job's command failed: $(cat "$WORK/migrate.log")"
pass "the Job's command (${argv[*]##*/}) migrated the database: $(psql "$DEPLOY_DB" -XAtc 'SELECT max(version) FROM payq.schema_migrations') is the schema version"

echo "Deployment/payq-worker, container worker:"
manifest_env Deployment payq-worker worker
mapfile -d '' -t envs <"$WORK/payq-worker.env"
mapfile -d '' -t argv <"$WORK/payq-worker.argv"
grace=$("$PY" -c '
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Deployment":
        print(d["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30))
' "$WORK/base.yaml")

# The settings the worker resolves from that environment (-X dump) are the manifest's.
env -i "${envs[@]}" "${argv[@]}" -X dump >"$WORK/dump.txt" 2>&1 || die "-X dump failed: $(cat "$WORK/dump.txt")"
grep -qx "PAYQ_INSTANCE_ID = $pod" "$WORK/dump.txt" || die "PAYQ_INSTANCE_ID is not the pod name: $(grep INSTANCE "$WORK/dump.txt")"
grep -qx "PAYQ_GROUP = $group" "$WORK/dump.txt" || die "PAYQ_GROUP not applied"
grep -qx "PAYQ_TOPIC = $topic" "$WORK/dump.txt" || die "PAYQ_TOPIC not applied"
grep -q "^PAYQ_DB = .*dbname=" "$WORK/dump.txt" || die "PAYQ_DB not set: $(grep ^PAYQ_DB "$WORK/dump.txt")"
pass "payq-worker resolves the manifest's environment: instance id $pod, group $group"

start_worker "$WORK/payq-worker.env" "$WORK/payq-worker.argv"
wait_http "$port" /healthz 30
pass "liveness: /healthz answers 200"
wait_http "$port" /readyz 90
pass "readiness: /readyz answers 200 (joined the group, database answers)"
"$PAYQ_SOURCE_ROOT/deploy/docker/payq-httpcheck" /readyz "127.0.0.1:$port" >"$WORK/check.out" ||
	die "payq-httpcheck /readyz failed against the worker: $(cat "$WORK/check.out")"
pass "the image's probe agrees: $(cat "$WORK/check.out")"

order=ORD-deploy-$id
produce_command "$topic" create_order "$order" "c-$id-1" \
	"{\"v\":1,\"type\":\"create_order\",\"command_id\":\"c-$id-1\",\"order_id\":\"$order\",\"amount_minor\":1999,\"currency\":\"CNY\",\"customer_id\":\"u-42\"}"
produce_command "$topic" pay "$order" "c-$id-2" \
	"{\"v\":1,\"type\":\"pay\",\"command_id\":\"c-$id-2\",\"order_id\":\"$order\",\"amount_minor\":1999,\"currency\":\"CNY\",\"payer_id\":\"u-42\"}"
paid() { [[ $(psql "$DEPLOY_DB" -XAtc "SELECT status FROM payq.orders WHERE order_id = '$order'") == paid ]]; }
wait_for paid 60 || die "order $order not paid within 60 s; log: $(tail -n 20 "$WORK/worker.log")"
assert_eq "create_order applied,pay applied" \
	"$(psql "$DEPLOY_DB" -XAtc "SELECT string_agg(command_type || ' ' || outcome, ',' ORDER BY kafka_offset) FROM payq.processed_commands WHERE order_id = '$order'")" \
	"the worker consumed both commands and applied them in order"
assert_eq 1 "$(psql "$DEPLOY_DB" -XAtc "SELECT count(*) FROM payq.payments WHERE order_id = '$order' AND status = 'succeeded'")" \
	"one succeeded payment row"

committed() {
	http_get "$port" /metrics >"$WORK/metrics.txt" &&
		awk '$1 == "payq_last_commit_timestamp_seconds" && $2 > 0 { ok = 1 } END { exit !ok }' "$WORK/metrics.txt"
}
wait_for committed 30 || die "no offset commit reported in /metrics within 30 s"
pass "/metrics reports an offset commit (payq_last_commit_timestamp_seconds > 0)"

# Logs are JSON lines (for the cluster's log collector).
"$PY" - "$WORK/worker.log" <<'PY' || die "the worker's stderr is not JSON lines"
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
for l in lines:
    d = json.loads(l)
    assert {"ts", "level", "msg"} <= d.keys(), l
print(f"ok   {len(lines)} log lines, each a JSON object with ts, level and msg")
PY

stop_worker "$WORKER_PID" "$grace"
pass "SIGTERM: exit 0 after $STOP_SECONDS s, within terminationGracePeriodSeconds $grace"
