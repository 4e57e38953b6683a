#!/bin/bash
# payq-worker and the DLQ: every malformed reason code dead-lettered with its headers and
# the original bytes; the offset of a malformed message is committed only once its DLQ
# copy is PERSISTED (checked with a DLQ topic that does not exist yet).
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

wl_scenario wl_scenario_dlq_reasons || exit $?
wl_scenario wl_scenario_dlq_unpersisted || exit $?
wl_scenario wl_scenario_poison || exit $?
wl_scenario wl_scenario_dlq_rebalance || exit $?
