#!/bin/bash
# Mutation check: the lost-commit-ok build commits on revoke even when the assignment was
# lost. The kafka_coordinator_down scenario, in sync commit mode (so that a failed commit
# is still pending when the session times out) and judged by its commit checks alone,
# passes against the real worker and must report a violation against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

PAYQ_FAULTS_COMMIT_MODE=sync PAYQ_MUTANT_CONTROL=1 mutant_scenario_check lost-commit-ok \
	"$PAYQ_SOURCE_ROOT/tests/faults/kafka_coordinator_down.sh" \
	"check_no_commit_after_lost check_monotonic check_exactly_once"
