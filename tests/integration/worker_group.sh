#!/bin/bash
# payq-worker in a consumer group: two workers share the partitions; one killed with -9
# and one stopped with SIGTERM mid-stream, and every command is applied exactly once; a
# zombie's transaction; a rebalance that finds a batch's answers already arrived.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

wl_scenario wl_scenario_group || exit $?
wl_scenario wl_scenario_zombie_tx || exit $?
wl_scenario wl_scenario_quiesce_answered || exit $?
