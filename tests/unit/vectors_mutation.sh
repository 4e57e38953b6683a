#!/bin/bash
# Mutation check for the test vectors: a codec built with -Dmutation=canon-hash (command_id
# and order_id swapped in the canonical form, common/canon.c:payq_codec_hash) must fail the
# vectors case of test_codec, which the real build passes. The mutant is built
# incrementally in $PAYQ_BUILD_ROOT/mut-canon-hash (only tests/unit/test_codec).
# shellcheck source=tests/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib.sh"

require_env PAYQ_BUILD_ROOT PAYQ_SOURCE_ROOT PAYQ_VECTORS_DIR

real=$PAYQ_BUILD_ROOT/tests/unit/test_codec
dir=$PAYQ_BUILD_ROOT/mut-canon-hash
[[ -x $real ]] || die "no $real: build first"

# CK_RUN_CASE=vectors runs only the vectors, so the mutant is judged by them alone.
run_vectors() {
	CK_RUN_CASE=vectors CK_FORK=yes "$1"
}

out=$(run_vectors "$real" 2>&1) || {
	printf '%s\n' "$out" >&2
	die "control: the real codec fails the vectors, so the mutant check means nothing"
}
(
	exec {lock}>"$dir.lock"
	flock "$lock"
	if [[ ! -f $dir/build.ninja ]]; then
		meson setup "$dir" "$PAYQ_SOURCE_ROOT" -Dmutation=canon-hash -Dman=disabled \
			>"$dir.setup.log" 2>&1 || {
			cat "$dir.setup.log" >&2
			exit 1
		}
	fi
	ninja -C "$dir" tests/unit/test_codec >"$dir.build.log" 2>&1 || {
		tail -n 30 "$dir.build.log" >&2
		exit 1
	}
) || die "cannot build the canon-hash mutant in $dir"

rc=0
out=$(run_vectors "$dir/tests/unit/test_codec" 2>&1) || rc=$?
((rc != 0)) || die "mutant canon-hash: the vectors pass with a wrong canonical hash"
grep -q 'sha256 ' <<<"$out" || {
	printf '%s\n' "$out" >&2
	die "mutant canon-hash: the vectors failed, but not on a hash"
}
pass "mutant canon-hash: the vectors detect it: $(grep -m 1 'sha256 ' <<<"$out" | cut -c 1-200)"
