#!/bin/bash
# Every `file.c:function` (or .h) that README.md and docs/*.md name must be a function
# defined in that file, and every file they name that way must exist: the table of where
# each rule is enforced (docs/ARCHITECTURE.md) is only worth reading while it is true.
# With --self-test, shows once that a stale name is caught.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}

# shellcheck disable=SC2016 # the backquotes are Markdown's, not the shell's
REF='`[A-Za-z0-9_./-]*\.[ch]:[A-Za-z_][A-Za-z0-9_]*`'

# Prints "doc file function" for each reference that does not hold.
stale() {
	local doc ref file fn
	for doc in "$@"; do
		{ grep -o "$REF" "$doc" || true; } | tr -d '`' |
			sort -u | while IFS= read -r ref; do
			file=${ref%%:*} fn=${ref##*:}
			if [[ ! -f $ROOT/$file ]]; then
				echo "$doc $file (no such file)"
			elif ! grep -Eq "^([A-Za-z_].*[ *])?$fn\(" "$ROOT/$file"; then
				echo "$doc $file:$fn"
			fi
		done
	done
}

docs=("$ROOT/README.md" "$ROOT"/docs/*.md)
bad=$(stale "${docs[@]}")
[[ -z $bad ]] || die "names that no longer hold (file:function):"$'\n'"$bad"
n=$(cat "${docs[@]}" | grep -o "$REF" | sort -u | wc -l)
pass "$n file:function references in README.md and docs/ name functions defined there"

# The check can fail: a reference to a function that is not in its file.
T=$(mktemp -d -t payq-docs-refs.XXXXXX)
on_exit "rm -rf '$T'"
# shellcheck disable=SC2016
echo 'the loop is `worker/consume.c:no_such_function`' >"$T/stale.md"
[[ -n $(stale "$T/stale.md") ]] || die "a stale reference was not caught"
pass "a stale reference (worker/consume.c:no_such_function) is caught"
