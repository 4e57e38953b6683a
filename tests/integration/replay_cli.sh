#!/bin/bash
# payq-replay's command line: --help for the program and every subcommand (with the exit
# code table), and exit 2 on bad arguments before anything touches Kafka or PostgreSQL.
# Also `payq-worker prune`'s argument checks.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"

require_env PAYQ_REPLAY_EXE PAYQ_WORKER_EXE
R=$PAYQ_REPLAY_EXE
OUT=$(mktemp -d)
on_exit "rm -rf '$OUT'"
# Nothing may reach a broker or a database here: point both at closed ports.
export PAYQ_BROKERS=127.0.0.1:1 PAYQ_DB="host=127.0.0.1 port=1 connect_timeout=1"
unset PAYQ_GROUP

# run RC ARGS...: runs payq-replay and dies unless it exits RC; output in $OUT/out, err.
run() {
	local want=$1 rc=0
	shift
	timeout 20 "$R" "$@" >"$OUT/out" 2>"$OUT/err" || rc=$?
	[[ $rc == "$want" ]] ||
		die "payq-replay $* exited $rc, expected $want: $(cat "$OUT/out" "$OUT/err")"
}

run 0 --help
for sub in republish dlq reset-offsets audit; do
	grep -Eq "^  $sub " "$OUT/out" || die "payq-replay --help does not list $sub"
done
grep -q '^Exit codes:' "$OUT/out" || die "payq-replay --help has no exit codes"
pass "payq-replay --help lists the four commands and the exit codes"

declare -A opts=(
	[republish]='--from-topic --to-topic --partition --from-offset --from-time --to-offset --to-time --order --rate --dry-run --force'
	[dlq]='--reason --to-topic --dry-run --force'
	[reset-offsets]='--group --to-earliest --to-latest --to-offset --to-time --shift-by --topic --execute --force'
	[audit]='--group --from-time --from-offset --repair --execute --force'
)
for sub in republish dlq reset-offsets audit; do
	for form in "$sub --help" "--help $sub" "$sub -h"; do
		# shellcheck disable=SC2086 # the form is split on purpose
		run 0 $form
		grep -q "^Usage: payq-replay $sub " "$OUT/out" || die "payq-replay $form: no usage line for $sub"
	done
	for o in ${opts[$sub]}; do
		grep -q -- "$o" "$OUT/out" || die "payq-replay $sub --help does not describe $o"
	done
	for code in 0 1 2 3 4 130; do
		grep -Eq "^  $code +[A-Za-z]" "$OUT/out" || die "payq-replay $sub --help lacks exit code $code"
	done
	grep -q 'PAYQ_BROKERS' "$OUT/out" || die "payq-replay $sub --help lacks the settings table"
done
pass "--help of republish, dlq, reset-offsets and audit: usage, every option, exit codes 0-4 and 130, settings"

run 0 --version
grep -q '^payq-replay ' "$OUT/out" || die "--version: $(cat "$OUT/out")"
pass "--version"

bad() { # REASON ARGS...: exit 2 with a message on stderr naming the problem
	local why=$1
	shift
	run 2 "$@"
	grep -qi -- "$why" "$OUT/err" || die "payq-replay $*: stderr does not mention '$why': $(cat "$OUT/err")"
}
bad 'no command' --brokers 127.0.0.1:1
bad 'unknown command' replicate
bad 'exactly one of --from-offset' republish --to-offset 5
bad 'exactly one of --from-offset' republish --from-offset 1 --from-time 2026-01-01T00:00:00Z --to-offset 5
bad 'at most one of --to-offset and --to-time' republish --from-offset 0 --to-offset 5 --to-time 2026-01-01T00:00:00Z
bad 'not an ISO 8601 time' republish --from-time yesterday --to-offset 5
bad 'not an offset' republish --from-offset -3 --to-offset 5
bad 'not a partition' republish --partition x --from-offset 0 --to-offset 5
bad 'not a positive number' republish --from-offset 0 --to-offset 5 --rate 0
bad 'unknown or incomplete option' republish --from-offset 0 --to-offset 5 --bogus
bad 'not a DLQ reason code' dlq --reason nonsense
bad 'group' reset-offsets --to-earliest
bad 'exactly one of --to-earliest' reset-offsets --group g --to-earliest --to-latest
bad 'not an integer' reset-offsets --group g --shift-by two
bad 'no partitions' reset-offsets --group g --to-earliest --topic payq.commands:
bad 'at most one of --from-offset' audit --from-offset 1 --from-time 2026-01-01T00:00:00Z
bad 'unexpected argument' audit extra
bad '--execute and --force go with --repair' audit --execute
pass "bad arguments exit 2 with a message, before any connection"

rc=0
"$PAYQ_WORKER_EXE" --help >"$OUT/out" 2>&1 || rc=$?
if [[ $rc != 0 ]] || ! grep -Eq 'prune +--older-than' "$OUT/out"; then
	die "payq-worker --help does not describe prune"
fi
for args in "prune" "prune --older-than soon" "prune --older-than 0s" \
	"prune --older-than 7d --batch 0" "prune --older-than 7d --bogus"; do
	rc=0
	# shellcheck disable=SC2086 # split on purpose
	"$PAYQ_WORKER_EXE" $args >"$OUT/out" 2>&1 || rc=$?
	[[ $rc == 2 ]] || die "payq-worker $args exited $rc, expected 2: $(cat "$OUT/out")"
done
pass "payq-worker --help describes prune; prune's bad arguments exit 2"
