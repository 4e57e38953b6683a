#!/bin/bash
# Mutation check: the dlq-store-early build stores a malformed message's offset before
# its DLQ copy has a PERSISTED delivery report. The kafka_dlq_produce scenario, judged by
# its offset-rule checks alone, passes against the real worker and must report a
# violation against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

scenario=$PAYQ_SOURCE_ROOT/tests/faults/kafka_dlq_produce.sh
checks="check_committed_not_past check_dlq_copies"
mutant=$(mutant_exe dlq-store-early)

log "real worker: $WORKER_EXE"
PAYQ_FAULTS_ONLY=$checks TEST_NAME=kafka_dlq_produce-real "$scenario" ||
	die "the scenario's checks fail against the real worker"
log "mutant: $mutant"
PAYQ_FAULTS_ONLY=$checks PAYQ_FAULTS_EXPECT_VIOLATION=1 PAYQ_FAULTS_WORKER_EXE=$mutant \
	TEST_NAME=kafka_dlq_produce-mutant "$scenario" ||
	die "the scenario did not detect the dlq-store-early mutant"
pass "dlq-store-early mutant detected; real worker passes the same checks"
