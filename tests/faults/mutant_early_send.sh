#!/bin/bash
# Mutation check: the early-send build takes a batch for committed once its COMMIT is
# sent and pipelines the next batch behind it, before the COMMIT result has arrived. The
# lane_commit_failed scenario, judged by its no-loss check, passes against the real
# worker and must report a violation against the mutant: the batch whose COMMIT failed is
# lost.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

scenario=$PAYQ_SOURCE_ROOT/tests/faults/lane_commit_failed.sh
checks="check_exactly_once"
mutant=$(mutant_exe early-send)

log "real worker: $WORKER_EXE"
PAYQ_FAULTS_ONLY=$checks TEST_NAME=lane_commit_failed-real "$scenario" ||
	die "the scenario's checks fail against the real worker"
log "mutant: $mutant"
PAYQ_FAULTS_ONLY=$checks PAYQ_FAULTS_EXPECT_VIOLATION=1 PAYQ_FAULTS_WORKER_EXE=$mutant \
	TEST_NAME=lane_commit_failed-mutant "$scenario" ||
	die "the scenario did not detect the early-send mutant"
pass "early-send mutant detected; real worker passes the same checks"
