#!/bin/bash
# Mutation check: the early-send build takes a batch for committed once its COMMIT is
# sent and pipelines the next batch behind it, before the COMMIT result has arrived. The
# lane_commit_failed scenario, judged by its no-loss check, passes against the real
# worker and must report a violation against the mutant: the batch whose COMMIT failed is
# lost.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

mutant_scenario_check early-send "$PAYQ_SOURCE_ROOT/tests/faults/lane_commit_failed.sh" \
	check_exactly_once
