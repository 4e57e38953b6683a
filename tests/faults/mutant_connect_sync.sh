#!/bin/bash
# Mutation check: the connect-sync build settles the batch of a lane that cannot connect
# on the synchronous path (the rule before the lanes' review fixes), which holds every
# lane until it connects. The lane_connect_refused scenario, judged by whether the other
# lane goes on meanwhile, passes against the real worker and must report a violation
# against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

mutant_scenario_check connect-sync "$PAYQ_SOURCE_ROOT/tests/faults/lane_connect_refused.sh" \
	"check_one_lane_on"
