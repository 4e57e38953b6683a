#!/bin/bash
# Mutation check: the hold-drop build skips a message it could not hold (out of memory)
# instead of seeking back to it, so the offsets of later messages move past it. The
# hold_alloc scenario, judged by its no-loss checks alone, passes against the real worker
# and must report a violation against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

# The dropped message is never processed, so the mutant's run need not wait out the
# scenario's 60 s (PAYQ_FAULTS_STALL_S; its own test, hold_alloc, keeps them).
PAYQ_FAULTS_STALL_S=15 mutant_scenario_check hold-drop "$PAYQ_SOURCE_ROOT/tests/faults/hold_alloc.sh" \
	"check_processed check_exactly_once"
