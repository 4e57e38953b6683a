#!/bin/bash
# Formatting: clang-format --dry-run --Werror (the root .clang-format) on every C file git
# tracks, and shellcheck on every shell script (lint.sh shell). A table that reads better
# aligned by hand sits between /* clang-format off */ and /* clang-format on */.
# With a git checkout the list is git's; without one (a source tarball), every *.c and *.h
# below the source root but build folders.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"

command -v clang-format >/dev/null || die "clang-format not found (apt-get install clang-format)"
cd "$PAYQ_SOURCE_ROOT" || die "no $PAYQ_SOURCE_ROOT"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h')
else
	mapfile -t files < <(find . -path './build*' -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print)
fi
present=()
for f in "${files[@]}"; do
	[[ -f $f ]] && present+=("$f")
done
((${#present[@]})) || die "no C files found under $PAYQ_SOURCE_ROOT"
clang-format --dry-run --Werror "${present[@]}" ||
	die "clang-format would change the files above (run: clang-format -i FILE)"
pass "clang-format: all ${#present[@]} C files clean ($(clang-format --version | head -n 1))"

"$PAYQ_SOURCE_ROOT/tests/deploy/lint.sh" shell || die "shellcheck found problems"
