#!/bin/bash
# Mutation check for the test vectors: a codec built with -Dmutation=canon-hash (command_id
# and order_id swapped in the canonical form, common/canon.c:payq_codec_hash) must fail the
# vectors case of test_codec, which the real build passes. The mutant is built by
# tests/lib/mutant.sh in $PAYQ_BUILD_ROOT/../build-mut-canon-hash (only tests/unit/test_codec).
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/lib/mutant.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/mutant.sh"

require_env PAYQ_BUILD_ROOT PAYQ_SOURCE_ROOT PAYQ_VECTORS_DIR

real=$PAYQ_BUILD_ROOT/tests/unit/test_codec
[[ -x $real ]] || die "no $real: build first"

# CK_RUN_CASE=vectors runs only the vectors, so the mutant is judged by them alone.
run_vectors() {
	CK_RUN_CASE=vectors CK_FORK=yes "$1"
}

out=$(run_vectors "$real" 2>&1) || {
	printf '%s\n' "$out" >&2
	die "control: the real codec fails the vectors, so the mutant check means nothing"
}
dir=$(mutant_build canon-hash tests/unit/test_codec) || die "cannot build the canon-hash mutant"

rc=0
out=$(run_vectors "$dir/tests/unit/test_codec" 2>&1) || rc=$?
((rc != 0)) || die "mutant canon-hash: the vectors pass with a wrong canonical hash"
grep -q 'sha256 ' <<<"$out" || {
	printf '%s\n' "$out" >&2
	die "mutant canon-hash: the vectors failed, but not on a hash"
}
pass "mutant canon-hash: the vectors detect it: $(grep -m 1 'sha256 ' <<<"$out" | cut -c 1-200)"
