#!/bin/bash
# payq-worker shutdown: SIGTERM mid-stream exits 0 within PAYQ_SHUTDOWN_TIMEOUT_MS with
# its offsets committed and the group left; a batch that cannot finish does not hold
# the exit past the timeout and commits nothing.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

wl_scenario wl_scenario_shutdown || exit $?
wl_scenario wl_scenario_shutdown_stuck || exit $?
wl_scenario wl_scenario_static || exit $?
