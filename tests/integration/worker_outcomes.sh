#!/bin/bash
# payq-worker against real PostgreSQL and Kafka: every row of DESIGN.md's outcome table,
# duplicates (2 and 50 deliveries), two different pays, key reuse, /metrics through
# promtool; then every command redelivered after its first outcome was committed; then a
# replay followed by new pays next to duplicates (the fast path's split read).
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

wl_scenario wl_scenario_outcomes || exit $?
wl_scenario wl_scenario_redelivery || exit $?
wl_scenario wl_scenario_replay_mixed || exit $?
wl_scenario wl_scenario_schema || exit $?
