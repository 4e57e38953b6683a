#!/bin/bash
# Formatting: clang-format --dry-run --Werror (the root .clang-format) on the C files listed
# in tests/deploy/format-clean.txt, and shellcheck on every shell script (lint.sh shell).
# The list holds the files already formatted; the rest of the tree is reformatted in one go
# later, so that the check can cover every C file.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"

command -v clang-format >/dev/null || die "clang-format not found (apt-get install clang-format)"
cd "$PAYQ_SOURCE_ROOT" || die "no $PAYQ_SOURCE_ROOT"

list=tests/deploy/format-clean.txt
mapfile -t files < <(grep -v -e '^#' -e '^[[:space:]]*$' "$list")
((${#files[@]})) || die "$list lists no files"
for f in "${files[@]}"; do
	[[ -f $f ]] || die "$list names $f, which does not exist"
	[[ $f == *.c || $f == *.h ]] || die "$list names $f, which is not a C file"
done
clang-format --dry-run --Werror "${files[@]}" || die "clang-format would change the files above"
pass "clang-format: ${#files[@]} C files clean ($(clang-format --version | head -n 1))"

# Files not on the list yet: reported, not failed.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t all < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h')
	todo=0
	for f in "${all[@]}"; do
		[[ -f $f ]] || continue
		grep -qxF -- "$f" "$list" || todo=$((todo + 1))
	done
	echo "format: $todo of ${#all[@]} C files not on $list yet"
fi

"$PAYQ_SOURCE_ROOT/tests/deploy/lint.sh" shell || die "shellcheck found problems"
