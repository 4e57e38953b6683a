#!/bin/bash
# Mutation check: the pause-after-assign build sets its pauses after the assign, as the
# worker did before, which races with librdkafka's fetch start. The assign_race scenario,
# judged by whether every command is applied, passes against the real worker and must
# report a violation (partition 0 never fetched) against the mutant.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

mutant_scenario_check pause-after-assign "$PAYQ_SOURCE_ROOT/tests/faults/assign_race.sh" \
	"check_processed"
