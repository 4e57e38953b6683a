#!/bin/bash
# Mutation check: the trust-kafka-ahead build keeps the old drift rule (Kafka trusted when
# its offset is ahead of consumer_progress: offset_gap, no rewind). The asynchronous
# failover and the point-in-time restore (pg_failover.sh async, pitr) must lose commands
# against it; the real worker passes them (pg_failover_async and pg_failover_pitr).
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

scenario=$PAYQ_SOURCE_ROOT/tests/faults/pg_failover.sh
mutant=$(mutant_exe trust-kafka-ahead)
for mode in async pitr; do
	log "mutant: $mutant, scenario $mode"
	PAYQ_FAULTS_ONLY="check_exactly_once check_rewinds" PAYQ_FAULTS_EXPECT_VIOLATION=1 \
		PAYQ_FAULTS_WORKER_EXE=$mutant TEST_NAME=pg_failover_$mode-mutant "$scenario" "$mode" ||
		die "the $mode scenario did not detect the trust-kafka-ahead mutant"
done
pass "trust-kafka-ahead mutant detected by the async failover and the point-in-time restore"
