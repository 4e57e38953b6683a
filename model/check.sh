#!/bin/bash
# check.sh - runs SPIN over model/payq.pml: the real protocol must verify clean, every
# mutant (and every "today" switch, see README.md) must be refuted with a trail.
#   model/check.sh [--keep] [NAME...]   (default: every run below)
# Prints, per run: states stored, depth reached, seconds, and the verdict.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KEEP=0
ONLY=()
for a in "$@"; do
	case $a in
	--keep) KEEP=1 ;;
	-h | --help)
		sed -n '2,4p' "$0" | sed 's/^# //'
		exit 0
		;;
	*) ONLY+=("$a") ;;
	esac
done

command -v spin >/dev/null || {
	echo "model/check.sh: spin is not installed (deploy/local/setup installs the Debian package)" >&2
	exit 1
}
CC=${CC:-cc}
WORK=$(mktemp -d -t payq-model.XXXXXX)
cleanup() {
	if ((KEEP)); then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# name | spin -D flags | cc flags | pan flags | expect (clean or refuted)
# Safety runs: assertions (never twice, never lost, offsets, the quiet-state checks) and
# invalid end states (a stuck worker). Liveness runs (-DNP, pan -l -f): no cycle that
# makes no progress, under weak fairness; the only progress state is the quiet one.
# MAXF is the fault budget; NO_* leaves a kind of fault out; NMSG=n keeps the first n
# messages. Every run is exhaustive (no bitstate hashing). The overlap_* runs check the
# pipelined loop of issue 18 (-DOVERLAP), smaller than the serial ones because the
# overlap multiplies the interleavings (README.md, "The runs"); the reach_* runs are
# reachability probes of the new crash windows: their "refuted" is the proof.
RUNS=(
	"ledger_safety      | -DMAXF=2                                | -DSAFETY | -m100000 | clean"
	"ledger_liveness    | -DMAXF=1                                | -DNP -DNFAIR=3 | -m100000 -l -f | clean"
	"gateway_safety     | -DGATEWAY -DMAXF=1                      | -DSAFETY | -m100000 | clean"
	"gateway_safety2    | -DGATEWAY -DMAXF=2 -DNO_LOSE -DNO_REVOKE | -DSAFETY | -m100000 | clean"
	"gateway_liveness   | -DGATEWAY -DMAXF=1 -DNO_LOSE            | -DNP -DNFAIR=3 | -m100000 -l -f | clean"
	"overlap_safety     | -DOVERLAP -DMAXF=1                      | -DSAFETY | -m100000 | clean"
	"overlap_safety2    | -DOVERLAP -DMAXF=2 -DNMSG=2             | -DSAFETY | -m100000 | clean"
	"overlap_liveness   | -DOVERLAP -DMAXF=1 -DNO_LOSE            | -DNP -DNFAIR=3 | -m100000 -l -f | clean"
	"overlap_gateway    | -DOVERLAP -DGATEWAY -DMAXF=1 -DNMSG=2   | -DSAFETY | -m100000 | clean"
	"overlap_gateway4   | -DOVERLAP -DGATEWAY -DMAXF=1 -DNMSG=4 -DNO_LOSE -DNO_REVOKE | -DSAFETY | -m100000 | clean"
	"m_store_before_commit     | -DMAXF=1 -DM_STORE_BEFORE_COMMIT           | -DSAFETY | -m100000 | refuted"
	"m_skip_dedup              | -DMAXF=0 -DM_SKIP_DEDUP                    | -DSAFETY | -m100000 | refuted"
	"m_dedup_after_lock        | -DMAXF=1 -DM_DEDUP_AFTER_LOCK              | -DSAFETY | -m100000 | refuted"
	"m_trust_kafka_ahead       | -DMAXF=2 -DM_TRUST_KAFKA_AHEAD             | -DSAFETY | -m100000 | refuted"
	"m_recharge_past_retention | -DGATEWAY -DMAXF=2 -DM_RECHARGE_PAST_RETENTION | -DSAFETY | -m100000 | refuted"
	"m_ambiguous_key           | -DGATEWAY -DMAXF=0 -DM_AMBIGUOUS_KEY       | -DSAFETY | -m100000 | refuted"
	"m_dlq_store_early         | -DMAXF=1 -DM_DLQ_STORE_EARLY               | -DSAFETY | -m100000 | refuted"
	"m_lock_skip_any           | -DMAXF=0 -DM_LOCK_SKIP_ANY                 | -DSAFETY | -m100000 | refuted"
	"m_stuck_pause             | -DMAXF=2 -DM_STUCK_PAUSE                   | -DSAFETY | -m100000 | refuted"
	"m_look_forever            | -DGATEWAY -DMAXF=2 -DNO_LOSE -DNO_CRASH -DNO_REVOKE -DNO_FAILOVER -DNO_DLQFAIL -DM_LOOK_FOREVER | -DNP -DNFAIR=3 | -m100000 -l -f | refuted"
	"m_early_send              | -DOVERLAP -DMAXF=0 -DM_EARLY_SEND          | -DSAFETY | -m100000 | refuted"
	"reach_committed_unsent    | -DOVERLAP -DMAXF=1 -DNO_LOSE -DNO_REVOKE -DNO_FAILOVER -DNO_DLQFAIL -DREACH_COMMITTED_UNSENT | -DSAFETY | -m100000 | refuted"
	"reach_collected_unsent    | -DOVERLAP -DMAXF=1 -DNO_LOSE -DNO_REVOKE -DNO_FAILOVER -DNO_DLQFAIL -DREACH_COLLECTED_UNSENT | -DSAFETY | -m100000 | refuted"
	"d18_abandon_no_seek       | -DOVERLAP -DMAXF=1 -DD18_ABANDON_NO_SEEK   | -DSAFETY | -m100000 | refuted"
	"today_no_recheck          | -DMAXF=1 -DTODAY_NO_RECHECK                | -DSAFETY | -m100000 | refuted"
	"today_keep_inflight       | -DMAXF=2 -DTODAY_KEEP_INFLIGHT             | -DSAFETY | -m100000 | refuted"
	"today_resume_expired      | -DGATEWAY -DMAXF=2 -DTODAY_RESUME_EXPIRED  | -DSAFETY | -m100000 | refuted"
)

trim() { sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' <<<"$1"; }

# run_one NAME DEFS CCFLAGS PANFLAGS EXPECT: builds and runs one verifier in $WORK/NAME,
# and leaves its line of the table in NAME/row (and what to show on failure in NAME/fail).
run_one() {
	local name=$1 defs=$2 ccflags=$3 panflags=$4 expect=$5 dir=$WORK/$1 opt=-O0 t0 secs
	local states depth errors what incomplete verdict
	mkdir -p "$dir"
	cp "$HERE/payq.pml" "$dir/"
	[[ $expect == clean ]] && opt="-O2 -DCOLLAPSE"
	t0=$EPOCHREALTIME
	# shellcheck disable=SC2086 # the flags are word lists
	if ! (cd "$dir" && spin $defs -a payq.pml >spin.out 2>&1 &&
		$CC $opt -w $ccflags -DMEMLIM=$MEMLIM -o pan pan.c >cc.out 2>&1); then
		printf '%-26s %12s %7s %8s  %s\n' "$name" - - - "FAILED: building the verifier" >"$dir/row"
		cat "$dir/spin.out" "$dir/cc.out" >"$dir/fail" 2>/dev/null || true
		return
	fi
	# shellcheck disable=SC2086
	(cd "$dir" && ./pan $panflags >pan.out 2>&1) || true
	secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	states=$(awk '/states, stored/ { print $1; exit }' "$dir/pan.out")
	depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$dir/pan.out" | head -1)
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$dir/pan.out" | head -1)
	what=$(grep -m1 -E '^pan:1: ' "$dir/pan.out" | sed 's/^pan:1: //' || true)
	incomplete=$(grep -m1 -E 'out of memory|max search depth too small' "$dir/pan.out" || true)
	if [[ -z $errors ]]; then
		verdict="FAILED: no verdict from pan"
	elif [[ $expect == clean ]]; then
		if [[ $errors == 0 && -z $incomplete ]]; then
			verdict="clean"
		else
			verdict="FAILED: ${what:-$incomplete}"
		fi
	else
		if [[ $errors != 0 && -f $dir/payq.pml.trail ]]; then
			verdict="refuted: $what"
		else
			verdict="FAILED: not refuted"
		fi
	fi
	printf '%-26s %12s %7s %8s  %s\n' "$name" "${states:-?}" "${depth:-?}" "$secs" "$verdict" >"$dir/row"
	if [[ $verdict == FAILED* ]]; then
		{
			tail -n 30 "$dir/pan.out"
			[[ ! -f $dir/payq.pml.trail ]] ||
				echo "trail: model/check.sh --keep $name, then: (cd DIR/$name && spin $defs -t -p payq.pml)"
		} >"$dir/fail"
	fi
}

# The verifiers are independent and each runs on one core: run them JOBS at a time (one per
# core, PAYQ_MODEL_JOBS to change), and print the table in the order above once all are
# done. Each may use MEMLIM megabytes; the largest run stores well under it.
JOBS=${PAYQ_MODEL_JOBS:-$(nproc)}
((JOBS >= 1)) || JOBS=1
MEMLIM=6000
names=()
for line in "${RUNS[@]}"; do
	IFS='|' read -r name defs ccflags panflags expect <<<"$line"
	name=$(trim "$name")
	if ((${#ONLY[@]})) && [[ " ${ONLY[*]} " != *" $name "* ]]; then
		continue
	fi
	names+=("$name")
	while (($(jobs -rp | wc -l) >= JOBS)); do
		wait -n || true
	done
	run_one "$name" "$(trim "$defs")" "$(trim "$ccflags")" "$(trim "$panflags")" "$(trim "$expect")" &
done
wait

failed=0
printf '%-26s %12s %7s %8s  %s\n' run states depth seconds verdict
for name in "${names[@]}"; do
	if [[ ! -f $WORK/$name/row ]]; then
		printf '%-26s %12s %7s %8s  %s\n' "$name" - - - "FAILED: no result"
		failed=$((failed + 1))
		continue
	fi
	cat "$WORK/$name/row"
	if [[ -f $WORK/$name/fail ]]; then
		failed=$((failed + 1))
		cat "$WORK/$name/fail" >&2
	fi
done
if ((failed)); then
	echo "model: $failed run(s) failed" >&2
	exit 1
fi
echo "model: every run as expected"
