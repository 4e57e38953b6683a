#!/bin/bash
# Every metric an alert or recording rule names is one the worker really exports: checked
# against a live /metrics scrape of a worker that has consumed commands on the test Kafka and
# PostgreSQL, one malformed (so the DLQ counter has its reason label) and one batch retried on a
# read-only database (so the retry counter has its sqlstate label). kube-state-metrics' and
# Prometheus' own series are allowed by an explicit list. The scrape also passes
# `promtool check metrics`. The same scrape checks the Grafana dashboard (deploy/grafana/payq.json,
# tests/deploy/dashboard.py): Grafana's dashboard model, every query parsed by promtool, every
# metric and label it names present, and the sidecar ConfigMap in the kustomize rendering.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
# shellcheck source=tests/deploy/lib.sh
source "$PAYQ_SOURCE_ROOT/tests/deploy/lib.sh"
require_env PAYQ_TEST_DB PAYQ_TEST_BROKERS PAYQ_WORKER_EXE
command -v promtool >/dev/null || die "promtool not found (apt-get install prometheus)"

# Series that do not come from the worker, and the labels the rules use on them.
ALLOW=(up=job kube_pod_status_ready=condition)
# The metrics the issue asks alerts for.
REQUIRE=(payq_consumer_lag payq_last_commit_timestamp_seconds payq_dlq_total
	payq_double_payment_attempts_total payq_anomalies_total payq_payments_unresolved
	kube_pod_status_ready up)

WORK=$(mktemp -d -t payq-alert-metrics.XXXXXX)
on_exit "rm -rf '$WORK'"
PY=$(deploy_python) || exit 1
KUSTOMIZE=$(deploy_kustomize) || exit 1
read -ra KUSTOMIZE <<<"$KUSTOMIZE"
"${KUSTOMIZE[@]}" "$PAYQ_SOURCE_ROOT/deploy/k8s/base" >"$WORK/base.yaml" || die "kustomize build failed"
"$PY" "$DEPLOY_DIR/deploytool.py" rules "$WORK/base.yaml" --out "$WORK/rules.yaml" \
	--readme "$PAYQ_SOURCE_ROOT/deploy/README.md" >/dev/null || die "cannot extract the rules"

id=$$$RANDOM
topic=payq.deploy-metrics-$id
port=$(free_port)
fresh_topics "$topic" "$topic.dlq"
fresh_database "payq_deploy_metrics_$id"
PAYQ_DB=$DEPLOY_DB "$PAYQ_WORKER_EXE" migrate 2>"$WORK/migrate.log" || die "migrate failed: $(cat "$WORK/migrate.log")"

printf '%s\0' PAYQ_BROKERS="$PAYQ_TEST_BROKERS" PAYQ_DB="$DEPLOY_DB" PAYQ_TOPIC="$topic" \
	PAYQ_DLQ_TOPIC="$topic.dlq" PAYQ_GROUP="payq-deploy-metrics-$id" PAYQ_HTTP_ADDR="127.0.0.1:$port" \
	PAYQ_INSTANCE_ID="payq-worker-metrics-$id" PAYQ_STATS_INTERVAL_MS=500 >"$WORK/env"
printf '%s\0' "$PAYQ_WORKER_EXE" run >"$WORK/argv"
start_worker "$WORK/env" "$WORK/argv"
wait_http "$port" /readyz 90

order=ORD-metrics-$id
produce_command "$topic" create_order "$order" "c-$id-1" \
	"{\"v\":1,\"type\":\"create_order\",\"command_id\":\"c-$id-1\",\"order_id\":\"$order\",\"amount_minor\":500,\"currency\":\"EUR\"}"
produce_command "$topic" pay "$order" "c-$id-2" \
	"{\"v\":1,\"type\":\"pay\",\"command_id\":\"c-$id-2\",\"order_id\":\"$order\",\"amount_minor\":500,\"currency\":\"EUR\"}"
produce "$topic" "$order" "this is not json"

scraped() {
	http_get "$port" /metrics >"$WORK/metrics.txt" &&
		grep -q '^payq_dlq_total{reason="not_json"} 1$' "$WORK/metrics.txt" &&
		grep -q '^payq_commands_total{type="pay",outcome="applied"} 1$' "$WORK/metrics.txt" &&
		grep -q '^payq_consumer_lag{' "$WORK/metrics.txt" &&
		awk '$1 == "payq_last_commit_timestamp_seconds" && $2 > 0 { ok = 1 } END { exit !ok }' "$WORK/metrics.txt"
}
wait_for scraped 60 || {
	cat "$WORK/metrics.txt" >&2
	die "the scrape never showed the commands, the DLQ message, lag and a commit"
}
pass "scraped a worker that applied 2 commands, dead-lettered 1 and committed"

# A transient database error, so payq_db_retries_total gets its sqlstate label: the worker's
# sessions are made read-only (SQLSTATE 25006) for one batch, then writable again.
db=payq_deploy_metrics_$id
kick() {
	psql "$PAYQ_TEST_DB" -XAtq -v ON_ERROR_STOP=1 -c "ALTER DATABASE $db $1" \
		-c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$db' AND pid <> pg_backend_pid()" >/dev/null
}
kick "SET default_transaction_read_only = on"
order2=ORD-metrics2-$id
produce_command "$topic" create_order "$order2" "c-$id-3" \
	"{\"v\":1,\"type\":\"create_order\",\"command_id\":\"c-$id-3\",\"order_id\":\"$order2\",\"amount_minor\":700,\"currency\":\"EUR\"}"
retried() { http_get "$port" /metrics >"$WORK/metrics.txt" && grep -q '^payq_db_retries_total{sqlstate=' "$WORK/metrics.txt"; }
wait_for retried 60 || die "no payq_db_retries_total{sqlstate} after the database went read-only; log: $(tail -n 5 "$WORK/worker.log")"
kick "RESET default_transaction_read_only"
applied() { [[ $(psql "$DEPLOY_DB" -XAtc "SELECT count(*) FROM payq.orders WHERE order_id = '$order2'") == 1 ]]; }
wait_for applied 60 || die "order $order2 not applied after the database became writable again"
wait_for scraped 30 || die "lost the earlier series"
pass "the worker retried a batch on $(grep -o '^payq_db_retries_total{sqlstate="[^"]*"}' "$WORK/metrics.txt" | head -n 1) and recovered"
promtool check metrics <"$WORK/metrics.txt" || die "promtool check metrics rejects the scrape"
pass "promtool check metrics accepts the scrape"
grep -q "^payq_consumer_lag{group=\"payq-deploy-metrics-$id\",topic=\"$topic\",partition=\"[0-9]*\"} " "$WORK/metrics.txt" ||
	die "payq_consumer_lag has no {group,topic,partition} series: $(grep payq_consumer_lag "$WORK/metrics.txt")"
for m in process_cpu_seconds_total process_resident_memory_bytes process_virtual_memory_bytes \
	process_open_fds process_max_fds process_start_time_seconds; do
	awk -v m="$m" '$1 == m && $2 > 0 { ok = 1 } END { exit !ok }' "$WORK/metrics.txt" ||
		die "no positive $m in the scrape"
done
pass "payq_consumer_lag{group,topic,partition} and the process_* metrics (CPU, memory, fds, start time) are in the scrape"
stop_worker "$WORKER_PID" 30

"$PY" "$DEPLOY_DIR/deploytool.py" alert-metrics "$WORK/rules.yaml" --scrape "$WORK/metrics.txt" \
	--allow "${ALLOW[@]}" --require "${REQUIRE[@]}" || die "alerts name metrics the worker does not export"
pass "every metric and label in the alert rules is exported by the worker or allowlisted (${ALLOW[*]%%=*})"

# ---- the Grafana dashboard ----
DASHBOARD=$PAYQ_SOURCE_ROOT/deploy/grafana/payq.json
PANELS=("Commands by outcome" "Duplicates and double-payment attempts" "Anomalies by kind"
	"DLQ by reason" "Consumer lag by partition" "Batch size" "Batch duration" "DB retries by SQLSTATE"
	"Rebalances" "Unresolved payments" "Time since last commit")
"$PY" "$DEPLOY_DIR/dashboard.py" "$DASHBOARD" --rules-out "$WORK/dashboard-rules.yaml" \
	--scrape "$WORK/metrics.txt" --configmap "$WORK/base.yaml" --require-title "${PANELS[@]}" ||
	die "the dashboard does not check out"
promtool check rules "$WORK/dashboard-rules.yaml" || die "promtool cannot parse a dashboard query"
pass "promtool parses every dashboard query ($(grep -c 'record:' "$WORK/dashboard-rules.yaml") as recording rules)"
