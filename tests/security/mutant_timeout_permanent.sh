#!/bin/bash
# Mutation check: the timeout-permanent build takes a lock or statement timeout (55P03,
# 57014) for a permanent error, so the batch is split and the commands behind the lock
# go to the DLQ instead of being retried. db_lock_timeout passes against the real worker
# and must report a violation against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

scenario=$PAYQ_SOURCE_ROOT/tests/security/db_lock_timeout.sh
mutant=$(mutant_exe timeout-permanent)

log "mutant: $mutant"
# The commands the mutant gives up on are never processed, so its run need not wait out
# the scenario's two 60 s deadlines (PAYQ_FAULTS_STALL_S).
PAYQ_FAULTS_STALL_S=15 PAYQ_FAULTS_EXPECT_VIOLATION=1 PAYQ_FAULTS_WORKER_EXE=$mutant \
	TEST_NAME=db_lock_timeout-mutant "$scenario" ||
	die "db_lock_timeout did not detect the timeout-permanent mutant"
pass "timeout-permanent mutant detected (the real worker passes db_lock_timeout on its own)"
