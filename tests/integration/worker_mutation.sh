#!/bin/bash
# Mutation check: deliberately broken payq-worker builds (meson -Dmutation=NAME) must fail
# the same scenario checks that the real worker passes. Each scenario is run against the
# mutant, which must report a violation (exit 3; exit 1 means it could not run, which is
# no detection). The control, the same scenario against the real worker, is the
# scenario's own test (worker_crash, worker_outcomes, worker_dlq, worker_gateway,
# worker_group, replay_reset_race, worker_fetch_wake, and security's gateway_tls), which
# tests/run runs in the same CI run; PAYQ_MUTANT_CONTROL=1 runs it here first, as for a
# mutation check run alone.
#
#   store-before-commit  crash before the database COMMIT, restart: commands are lost
#   skip-dedup           redelivered commands: outcomes overwritten, duplicates not counted
#   dlq-store-early      a DLQ copy that cannot be persisted: its offset is committed anyway
#   new-key-on-retry     gateway mode: a pay resumed after a crash is charged with a new
#                        idempotency key, so the channel charges the order twice
#   lock-before-dedup    the dedup read after the order lock: a zombie's late commit shows
#                        its dedup rows but not its new orders, and a pay is rejected
#   charge-poison        gateway mode: a pay the database refused (rolled back, sent to the
#                        DLQ) is charged anyway
#   unguarded-progress   the progress write ignores the reset generation: a worker that left
#                        the group and finishes a batch after reset-offsets undoes the reset
#                        DLQ) is charged anyway (with a key built from its IDs, since it
#                        has no payment row to read one from)
#   ambiguous-key        gateway mode: the idempotency key is the old order_id:command_id,
#                        which order "shop" + command "1:pay" and order "shop:1" + command
#                        "pay" share, so the second pay is never charged
#   pay-cancelled        a pay on a cancelled order is applied (tests/unit/test_outcome
#                        catches it first, through tests/unit/outcome_mutation.sh)
#   gateway-no-verify    gateway mode: the channel's TLS certificate is not checked, so the
#                        API key goes to whoever answers (tests/security/gateway_tls.sh)
#   no-fetch-wake        the worker never wakes librdkafka's fetch: a backlog behind a small
#                        queue drains a queue a second, far past the scenario's deadline
#   quiesce-no-step      a rebalance checks a batch's deadline before taking the answers
#                        that arrived, so a batch whose COMMIT result is there is abandoned
#   lock-skip-any        after a batch of duplicates only, an order with any command
#                        the dedup read found is not locked, so a new pay next to a
#                        duplicate is judged against no order (rejected_unknown_order)
#
# The mutants come from PAYQ_MUTANT_<NAME>_EXE (NAME upper-case, '-' as '_'), for example
# PAYQ_MUTANT_SKIP_DEDUP_EXE; unset ones are built by tests/lib/mutant.sh, incrementally,
# in $PAYQ_BUILD_ROOT/../build-mut-<name>.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/lib/mutant.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/mutant.sh"

require_env PAYQ_BUILD_ROOT

# check_mutant NAME SCENARIO [ARG...]: the mutant fails SCENARIO (given the ARGs); with
# PAYQ_MUTANT_CONTROL=1, the real worker passes it first.
check_mutant() {
	local name=$1 scenario=$2 exe rc t0
	local args=("${@:3}")
	exe=$(mutant_exe "$name")
	t0=$SECONDS
	rc=0
	if [[ ${PAYQ_MUTANT_CONTROL:-0} == 1 ]]; then
		wl_scenario "$scenario" "${args[@]}" >"$WL_LOGDIR/$name.$scenario.real.out" 2>&1 || rc=$?
		if ((rc != 0)); then
			cat "$WL_LOGDIR/$name.$scenario.real.out" >&2
			die "control: the real worker fails $scenario (exit $rc), so the mutant check means nothing"
		fi
	fi
	WL_EXE=$exe wl_scenario "$scenario" "${args[@]}" >"$WL_LOGDIR/$name.$scenario.mutant.out" 2>&1 ||
		rc=$?
	case $rc in
	"$WL_VIOLATION")
		pass "mutant $name: $scenario detects it ($((SECONDS - t0)) s): $(grep -m 1 '^VIOLATION' "$WL_LOGDIR/$name.$scenario.mutant.out" | cut -c 1-200)"
		;;
	0)
		cat "$WL_LOGDIR/$name.$scenario.mutant.out" >&2
		die "mutant $name survived $scenario: the check passed against a broken worker"
		;;
	*)
		cat "$WL_LOGDIR/$name.$scenario.mutant.out" >&2
		die "mutant $name: $scenario could not run (exit $rc), which is not a detection"
		;;
	esac
}

WL_LOGDIR=$(mktemp -d "${PAYQ_TEST_STATE_DIR:-${TMPDIR:-/tmp}}/wt-mutation.XXXXXX")
on_exit "[[ \${rc:-1} != 0 ]] || rm -rf '$WL_LOGDIR'"

check_mutant store-before-commit wl_scenario_crash_before_commit
check_mutant skip-dedup wl_scenario_redelivery
check_mutant skip-dedup wl_scenario_outcomes
check_mutant pay-cancelled wl_scenario_outcomes
check_mutant dlq-store-early wl_scenario_dlq_unpersisted
check_mutant new-key-on-retry gw_scenario_crash_resume
check_mutant lock-before-dedup wl_scenario_zombie_tx
check_mutant charge-poison gw_scenario_poison
check_mutant unguarded-progress rp_scenario_reset_race
check_mutant ambiguous-key gw_scenario_key_ambiguous
check_mutant gateway-no-verify gw_scenario_security_script gateway_tls
check_mutant no-fetch-wake wl_scenario_fetch_wake
check_mutant lock-skip-any wl_scenario_replay_mixed
check_mutant quiesce-no-step wl_scenario_quiesce_answered
