#!/bin/bash
# Gateway mode (PAYQ_PAYMENT_MODE=gateway) against payq-sandbox-gateway, the real broker
# and PostgreSQL: declines, a lost response settled by the reconciler, a worker killed
# between recording a pay and settling it (before and after the charge), and the channel
# down for a while, a pay the database refuses. Each ends with the gateway invariants
# (gw_check_invariants).
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/gateway_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/gateway_lib.sh"

# Settings: each mistake is named, exit 2, before anything connects.
gw_cli_refuses() { # EXPECTED_MESSAGE VAR=VALUE... [-- ARGS...]
	local want=$1 out rc=0
	shift
	out=$(env -u PAYQ_GATEWAY_URL -u PAYQ_PAYMENT_MODE PAYQ_DB=dbname=none PAYQ_HTTP_ADDR= \
		"$@" 2>&1 </dev/null) || rc=$?
	[[ $rc == 2 && $out == *"$want"* ]] || die "expected exit 2 and '$want', got $rc: $out"
	pass "refused with exit 2: $want"
}
gw_cli_refuses 'gateway mode needs PAYQ_GATEWAY_URL' PAYQ_PAYMENT_MODE=gateway "$PAYQ_WORKER_EXE" run
gw_cli_refuses 'is not an http:// or https:// URL' PAYQ_PAYMENT_MODE=gateway PAYQ_GATEWAY_URL=ftp://x \
	"$PAYQ_WORKER_EXE" run
gw_cli_refuses 'soon\" is not a duration' PAYQ_PAYMENT_MODE=gateway PAYQ_GATEWAY_URL=http://x \
	PAYQ_RECONCILE_SCHEDULE=1s,soon "$PAYQ_WORKER_EXE" run
gw_cli_refuses '"cash" is not one of ledger|gateway' PAYQ_PAYMENT_MODE=cash "$PAYQ_WORKER_EXE" run
gw_cli_refuses 'unknown argument "--bogus"' PAYQ_GATEWAY_URL=http://x "$PAYQ_WORKER_EXE" reconcile --bogus

wl_scenario gw_scenario_declined || exit $?
wl_scenario gw_scenario_lost_response || exit $?
wl_scenario gw_scenario_crash_resume before_charge || exit $?
wl_scenario gw_scenario_crash_resume after_charge || exit $?
wl_scenario gw_scenario_down || exit $?
wl_scenario gw_scenario_poison || exit $?
# The guarantee at its edges (issue 13).
wl_scenario gw_scenario_key_ambiguous || exit $?
wl_scenario gw_scenario_key_stored || exit $?
wl_scenario gw_scenario_mismatch amount || exit $?
wl_scenario gw_scenario_mismatch currency || exit $?
wl_scenario gw_scenario_mismatch key || exit $?
wl_scenario gw_scenario_retention || exit $?
wl_scenario gw_scenario_bad_text || exit $?
wl_scenario gw_scenario_settle_refused || exit $?
wl_scenario gw_scenario_reconcile_goes_on || exit $?
wl_scenario gw_scenario_big_amount || exit $?
wl_scenario gw_scenario_cancel_in_progress || exit $?
wl_scenario gw_scenario_shutdown_stalled || exit $?
