#!/bin/bash
# Mutation check for the outcome table: the deliberately broken build
# -Dmutation=pay-cancelled (a pay on a cancelled order is applied) must fail
# test_outcome, which the real build passes. It needs no database and no broker, so the
# table's unit test catches the mutant before any integration test runs
# (tests/integration/worker_mutation.sh catches it again with wl_scenario_outcomes).
#
# The mutant is built by tests/lib/mutant.sh, incrementally, in
# $PAYQ_BUILD_ROOT/../build-mut-pay-cancelled (the folder worker_mutation.sh uses for its
# worker), or taken from
# PAYQ_MUTANT_PAY_CANCELLED_TEST_OUTCOME_EXE.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/lib/mutant.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/mutant.sh"

require_env PAYQ_BUILD_ROOT PAYQ_SOURCE_ROOT

real=$PAYQ_BUILD_ROOT/tests/unit/test_outcome
[[ -x $real ]] || die "$real is not built"

mutant=${PAYQ_MUTANT_PAY_CANCELLED_TEST_OUTCOME_EXE:-}
if [[ -z $mutant ]]; then
	dir=$(mutant_build pay-cancelled tests/unit/test_outcome) ||
		die "cannot build the pay-cancelled mutant"
	mutant=$dir/tests/unit/test_outcome
fi
[[ -x $mutant ]] || die "$mutant is not an executable"

out=$(mktemp)
on_exit "rm -f '$out'"

# Control: the real table passes, or the check means nothing.
rc=0
CK_FORK=yes "$real" >"$out" 2>&1 || rc=$?
((rc == 0)) || {
	cat "$out" >&2
	die "control: the real test_outcome fails (exit $rc)"
}

rc=0
CK_FORK=yes "$mutant" >"$out" 2>&1 || rc=$?
((rc != 0)) || {
	cat "$out" >&2
	die "mutant pay-cancelled survived test_outcome"
}
# It must fail for the right reason: the pay on the cancelled order.
grep -q 'pay: order cancelled' "$out" || {
	cat "$out" >&2
	die "mutant pay-cancelled: test_outcome failed, but not on the cancelled-order row"
}
pass "mutant pay-cancelled: test_outcome detects it: $(grep -m 1 'pay: order cancelled' "$out" | sed 's/^.*test_cell[^:]*: *//' | cut -c 1-200)"
