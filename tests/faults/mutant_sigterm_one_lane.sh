#!/bin/bash
# Mutation check: the sigterm-one-lane build pauses, on SIGTERM inside the synchronous
# path (worker_tick), only the lane that waits there, so the stopping worker goes on
# fetching the other lanes' partitions and applies orders produced after the signal. The
# lane_sigterm scenario, judged by what the stopping worker applied, passes against the
# real worker and must report a violation against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

mutant_scenario_check sigterm-one-lane "$PAYQ_SOURCE_ROOT/tests/faults/lane_sigterm.sh" \
	"check_nothing_late"
