#!/bin/bash
# Mutation check: the hold-drop build skips a message it could not hold (out of memory)
# instead of seeking back to it, so the offsets of later messages move past it. The
# hold_alloc scenario, judged by its no-loss checks alone, passes against the real worker
# and must report a violation against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

scenario=$PAYQ_SOURCE_ROOT/tests/faults/hold_alloc.sh
checks="check_processed check_exactly_once"
mutant=$(mutant_exe hold-drop)

log "real worker: $WORKER_EXE"
PAYQ_FAULTS_ONLY=$checks TEST_NAME=hold_alloc-real "$scenario" ||
	die "the scenario's checks fail against the real worker"
log "mutant: $mutant"
PAYQ_FAULTS_ONLY=$checks PAYQ_FAULTS_EXPECT_VIOLATION=1 PAYQ_FAULTS_WORKER_EXE=$mutant \
	TEST_NAME=hold_alloc-mutant "$scenario" ||
	die "the scenario did not detect the hold-drop mutant"
pass "hold-drop mutant detected; real worker passes the same checks"
