#!/bin/bash
# Mutation check: the skip-dedup build applies a command again when it is delivered again.
# The kafka_broker_kill scenario (3-broker cluster, leader SIGKILLed under generator load),
# judged by its check against the generator's manifest alone, must report a violation
# against it: the generator's re-sent pays and any redelivery around the kills are applied
# twice. The real worker's run of the same scenario is the test kafka_broker_kill in this
# suite, so it is not repeated here (each run starts a 3-broker cluster).
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

scenario=$PAYQ_SOURCE_ROOT/tests/faults/kafka_broker_kill.sh
mutant=$(mutant_exe skip-dedup)

log "mutant: $mutant"
PAYQ_FAULTS_ONLY=check_manifest PAYQ_FAULTS_EXPECT_VIOLATION=1 PAYQ_FAULTS_WORKER_EXE=$mutant \
	TEST_NAME=kafka_broker_kill-mutant "$scenario" ||
	die "the scenario did not detect the skip-dedup mutant"
pass "skip-dedup mutant detected by kafka_broker_kill's manifest check"
