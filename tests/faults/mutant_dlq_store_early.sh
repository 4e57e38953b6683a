#!/bin/bash
# Mutation check: the dlq-store-early build stores a malformed message's offset before
# its DLQ copy has a PERSISTED delivery report. The kafka_dlq_produce scenario, judged by
# its offset-rule checks alone, passes against the real worker and must report a
# violation against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

mutant_scenario_check dlq-store-early "$PAYQ_SOURCE_ROOT/tests/faults/kafka_dlq_produce.sh" \
	"check_committed_not_past check_dlq_copies"
