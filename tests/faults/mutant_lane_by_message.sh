#!/bin/bash
# Mutation check: the lane-by-message build sends messages to the apply lanes in turn
# instead of by partition. The lane_order scenario, judged by its exactly-once check,
# passes against the real worker and must report a violation against the mutant: pays
# read before their creates commit on the other lane and are rejected.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

mutant_scenario_check lane-by-message "$PAYQ_SOURCE_ROOT/tests/faults/lane_order.sh" \
	check_exactly_once
