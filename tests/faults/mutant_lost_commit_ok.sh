#!/bin/bash
# Mutation check: the lost-commit-ok build commits on revoke even when the assignment was
# lost. The kafka_coordinator_down scenario, in sync commit mode (so that a failed commit
# is still pending when the session times out) and judged by its commit checks alone,
# passes against the real worker and must report a violation against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

scenario=$PAYQ_SOURCE_ROOT/tests/faults/kafka_coordinator_down.sh
checks="check_no_commit_after_lost check_monotonic check_exactly_once"
mutant=$(mutant_exe lost-commit-ok)

log "real worker: $WORKER_EXE"
PAYQ_FAULTS_COMMIT_MODE=sync PAYQ_FAULTS_ONLY=$checks TEST_NAME=kafka_coordinator_down-real \
	"$scenario" || die "the scenario's checks fail against the real worker"
log "mutant: $mutant"
PAYQ_FAULTS_COMMIT_MODE=sync PAYQ_FAULTS_ONLY=$checks PAYQ_FAULTS_EXPECT_VIOLATION=1 \
	PAYQ_FAULTS_WORKER_EXE=$mutant TEST_NAME=kafka_coordinator_down-mutant "$scenario" ||
	die "the scenario did not detect the lost-commit-ok mutant"
pass "lost-commit-ok mutant detected; real worker passes the same checks"
