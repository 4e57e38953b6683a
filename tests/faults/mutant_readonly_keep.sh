#!/bin/bash
# Mutation check: the readonly-keep build retries a batch that met SQLSTATE 25006 (the
# server is read-only: a standby, or a primary fenced during a failover) on the same
# connection instead of reconnecting. In the asynchronous failover (pg_failover.sh async,
# whose old primary is fenced read-only before the replica is promoted) it never reaches
# the new primary: the bounded wait of check_processed reports the stall. The real worker
# passes the same scenario (pg_failover_async).
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

scenario=$PAYQ_SOURCE_ROOT/tests/faults/pg_failover.sh
mutant=$(mutant_exe readonly-keep)
log "mutant: $mutant"
# The real worker is back within a few seconds of the promotion (the whole of
# pg_failover_async takes about 11 s), so 20 s of no progress is a stall.
PAYQ_FAULTS_ONLY="check_processed" PAYQ_FAULTS_EXPECT_VIOLATION=1 PAYQ_FAILOVER_WAIT_S=20 \
	PAYQ_FAULTS_WORKER_EXE=$mutant TEST_NAME=pg_failover_async-mutant "$scenario" async ||
	die "the async failover did not detect the readonly-keep mutant"
pass "readonly-keep mutant detected: it stalled on the fenced primary"
