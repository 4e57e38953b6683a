#!/bin/bash
# payq-worker killed with SIGKILL at its crash points (PAYQ_CRASH_AT, built with
# -Dcrash_points=true): before the database COMMIT nothing is lost; after the COMMIT and
# before the Kafka commit there is no second effect, whether the restart seeks forward
# (drift check) or the batch is redelivered (dedup table).
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

wl_scenario wl_scenario_crash_before_commit || exit $?
wl_scenario wl_scenario_crash_after_commit || exit $?
wl_scenario wl_scenario_crash_after_commit_tail || exit $?
