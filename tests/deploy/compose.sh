#!/bin/bash
# deploy/compose.yaml: valid against the compose specification's JSON schema (the copy that
# the dclint package ships), then the stack's own rules: KRaft Kafka of the version the tests
# run, topics with 12 partitions, migrate before the workers, three workers with distinct
# instance IDs, health checks and start order, published metrics ports, a generate job, and
# only PAYQ_* variables the programs know.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
# shellcheck source=tests/deploy/lib.sh
source "$PAYQ_SOURCE_ROOT/tests/deploy/lib.sh"
require_env PAYQ_WORKER_EXE PAYQ_PRODUCER_EXE

WORK=$(mktemp -d -t payq-compose.XXXXXX)
on_exit "rm -rf '$WORK'"
PY=$(deploy_python) || exit 1
NPM=$(deploy_npm) || exit 1
SCHEMA=$NPM/dclint/schemas/compose.schema.json
[[ -f $SCHEMA ]] || die "no compose-spec schema at $SCHEMA"

"$PAYQ_WORKER_EXE" --help >"$WORK/worker-help.txt" || die "payq-worker --help failed"
"$PAYQ_PRODUCER_EXE" --help >"$WORK/producer-help.txt" || die "payq-producer --help failed"
kafka_version=$(sed -n 's/^DEFAULT_KAFKA_VERSION=//p' "$PAYQ_SOURCE_ROOT/deploy/local/kafka")
[[ -n $kafka_version ]] || die "no DEFAULT_KAFKA_VERSION in deploy/local/kafka"

"$PY" "$DEPLOY_DIR/deploytool.py" compose "$PAYQ_SOURCE_ROOT/deploy/compose.yaml" --schema "$SCHEMA" \
	--worker-help "$WORK/worker-help.txt" --producer-help "$WORK/producer-help.txt" \
	--dockerfile "$PAYQ_SOURCE_ROOT/deploy/docker/Dockerfile" --root "$PAYQ_SOURCE_ROOT" \
	--kafka-version "$kafka_version" --partitions "$PARTITIONS" >"$WORK/out" 2>&1 || {
	cat "$WORK/out"
	die "compose checks failed"
}
sed "s|$PAYQ_SOURCE_ROOT/||" "$WORK/out"

# Where a docker client with the compose plugin exists, it validates too (offline; no engine).
if docker compose version >/dev/null 2>&1; then
	docker compose -f "$PAYQ_SOURCE_ROOT/deploy/compose.yaml" config --quiet ||
		die "docker compose config rejects deploy/compose.yaml"
	pass "docker compose config accepts deploy/compose.yaml"
fi
pass "deploy/compose.yaml: compose-spec schema and the stack's rules"
