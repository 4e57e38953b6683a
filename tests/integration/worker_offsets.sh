#!/bin/bash
# payq-worker's Kafka offsets over a stream with a rebalance and a stop, with the eager
# and the cooperative-sticky assignors: committed offsets never move backwards, are never
# ahead of consumer_progress, and reach the log end.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

wl_scenario wl_scenario_offsets range,roundrobin || exit $?
wl_scenario wl_scenario_offsets cooperative-sticky || exit $?
