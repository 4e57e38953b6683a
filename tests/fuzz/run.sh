#!/bin/bash
# The fuzz suite: builds the libFuzzer targets with Debian's clang under AddressSanitizer and
# UndefinedBehaviorSanitizer into PAYQ_BUILD_ROOT/fuzz (-Dfuzz=true), replays every committed
# input (corpus/TARGET: the seeds and the regression inputs of fixed findings), then fuzzes
# each target for PAYQ_FUZZ_SECONDS (default 30) and prints its executions per second.
# A crash, a leak, undefined behaviour or a failed check fails the test; the input is kept in
# PAYQ_BUILD_ROOT/fuzz-artifacts for `TARGET-binary INPUT` to replay.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
TEST_NAME=fuzz
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
require_env PAYQ_BUILD_ROOT

FUZZ_SECONDS=${PAYQ_FUZZ_SECONDS:-30}
DIR=$PAYQ_BUILD_ROOT/fuzz
ARTIFACTS=$PAYQ_BUILD_ROOT/fuzz-artifacts
HERE=$PAYQ_SOURCE_ROOT/tests/fuzz
TARGETS=(codec gateway)
WORK=$(mktemp -d -t payq-fuzz.XXXXXX)
on_exit "rm -rf '$WORK'"
mkdir -p "$ARTIFACTS"

command -v clang >/dev/null || die "clang is not installed (deploy/local/setup --packages lists it)"
t0=$EPOCHREALTIME
(
	exec {lock}>"$DIR.lock"
	flock "$lock"
	if [[ ! -f $DIR/build.ninja ]]; then
		CC=clang meson setup "$DIR" "$PAYQ_SOURCE_ROOT" -Dfuzz=true \
			-Db_sanitize=address,undefined -Db_lundef=false >"$WORK/setup.log" 2>&1 || {
			cat "$WORK/setup.log" >&2
			exit 1
		}
	fi
	ninja -C "$DIR" "${TARGETS[@]/#/tests/fuzz/fuzz_}" >"$WORK/build.log" 2>&1 || {
		tail -n 40 "$WORK/build.log" >&2
		exit 1
	}
) || die "cannot build the fuzz targets in $DIR"
pass "built ${TARGETS[*]/#/fuzz_} with clang -fsanitize=fuzzer,address,undefined in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"

# Leaks count; undefined behaviour stops the run like a crash.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=0:print_stacktrace=1

# stat NAME LOG: a libFuzzer -print_final_stats value.
stat() { awk -v k="stat::$1:" '$1 == k { print $2 }' "$2"; }

for t in "${TARGETS[@]}"; do
	exe=$DIR/tests/fuzz/fuzz_$t
	seeds=$HERE/corpus/$t
	n=$(find "$seeds" -type f | wc -l)
	((n > 0)) || die "no seed inputs in $seeds"
	opts=(-timeout=10 -rss_limit_mb=2048 "-artifact_prefix=$ARTIFACTS/$t-")
	[[ -f $HERE/$t.dict ]] && opts+=("-dict=$HERE/$t.dict")

	# Every committed input, once: the seeds and the regressions.
	"$exe" "${opts[@]}" -runs=0 "$seeds" >"$WORK/$t.replay.log" 2>&1 || {
		tail -n 40 "$WORK/$t.replay.log"
		die "fuzz_$t fails on a committed input of $seeds"
	}
	pass "fuzz_$t: the $n committed inputs of corpus/$t pass"

	# Then new inputs for FUZZ_SECONDS; the first folder gets what libFuzzer finds.
	mkdir -p "$WORK/$t"
	"$exe" "${opts[@]}" -max_total_time="$FUZZ_SECONDS" -max_len=8192 -print_final_stats=1 \
		"$WORK/$t" "$seeds" >"$WORK/$t.log" 2>&1 || {
		grep -a -A30 -m1 -E 'ERROR: |runtime error|check failed|not valid UTF-8|not NUL-terminated|re-encoded' "$WORK/$t.log" || tail -n 40 "$WORK/$t.log"
		die "fuzz_$t found a failure; input: $(grep -o "$ARTIFACTS/[^ ]*" "$WORK/$t.log" | tail -n 1)"
	}
	runs=$(stat number_of_executed_units "$WORK/$t.log")
	rate=$(stat average_exec_per_sec "$WORK/$t.log")
	cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$WORK/$t.log" | tail -n 1)
	[[ -n $runs && $runs -gt 0 ]] || die "fuzz_$t ran nothing: $(tail -n 5 "$WORK/$t.log")"
	pass "fuzz_$t: $runs executions in $FUZZ_SECONDS s ($rate exec/s), $cov, $(stat new_units_added "$WORK/$t.log") new inputs, peak RSS $(stat peak_rss_mb "$WORK/$t.log") MB; no crash, leak or undefined behaviour"
done
