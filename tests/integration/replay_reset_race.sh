#!/bin/bash
# payq-replay reset-offsets racing a worker still finishing a batch (rp_scenario_reset_race
# in replay_lib.sh): the reset holds, the stale worker exits without committing offsets.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

rp_scenario_reset_race
