#!/bin/bash
# Mutation check: the idle-lane-paused build resumes a paused lane only when it sends its
# next batch (the rule before the lanes' review fixes), so a lane whose held messages a
# revoke dropped stays paused for good. The lane_paused_revoke scenario, judged by whether
# every command is applied, passes against the real worker and must report a violation
# against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

mutant_scenario_check idle-lane-paused "$PAYQ_SOURCE_ROOT/tests/faults/lane_paused_revoke.sh" \
	"check_processed"
