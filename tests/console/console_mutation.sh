#!/usr/bin/env bash
# Mutation check of the console suite: a payq-console that enforces roles only in the
# page (-Dmutation=console-client-roles: no server check) must fail console.sh.
# shellcheck disable=SC1091
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
# shellcheck disable=SC1091
source "$PAYQ_SOURCE_ROOT/tests/lib/mutant.sh"
require_env PAYQ_BUILD_ROOT PAYQ_SOURCE_ROOT

dir=$(mutant_build console-client-roles console/payq-console) ||
	die "cannot build the console-client-roles mutant"

out=$(mktemp "${PAYQ_TEST_STATE_DIR:-/tmp}/console-mutant.XXXXXX")
on_exit "rm -f $out"
rc=0
PAYQ_CONSOLE_EXE=$dir/console/payq-console PAYQ_CONSOLE_NO_SHOTS=1 \
	"$PAYQ_SOURCE_ROOT/tests/console/console.sh" >"$out" 2>&1 || rc=$?
((rc != 0)) || { cat "$out" >&2; die "the console-client-roles mutant passed the console suite"; }
# Caught by a role check: a payload shown unredacted to a viewer, or a POST not refused.
grep -Eq 'FAIL console: .*(403|redacted)' "$out" ||
	{ cat "$out" >&2; die "the mutant failed, but not on a role check"; }
pass "the console-client-roles mutant is caught: $(grep -m1 'FAIL console' "$out")"
