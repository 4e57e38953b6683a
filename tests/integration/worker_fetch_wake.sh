#!/bin/bash
# The worker keeps librdkafka fetching as it drains its queue (worker/fetch_wake.c): a
# backlog behind a 16 KiB queue drains in seconds, not a second per queue, and every
# command has its outcome (wl_scenario_fetch_wake). worker_mutation.sh runs the same
# scenario against the no-fetch-wake build, which must miss the deadline.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

wl_scenario wl_scenario_fetch_wake || exit $?
