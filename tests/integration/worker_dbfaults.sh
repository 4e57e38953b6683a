#!/bin/bash
# payq-worker and PostgreSQL faults mid-stream: pg_terminate_backend on its connection
# inside a transaction, and a full PostgreSQL restart (deploy/local/pg restart, which
# affects anything else using the test cluster: integration tests run one at a time).
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

wl_scenario wl_scenario_db_faults || exit $?
