#!/bin/bash
# yamllint (with the repository's .yamllint) on every YAML file, and shellcheck on every shell
# script (by extension or shebang) in the repository: tracked files and new ones not ignored.
#   lint.sh [yaml] [shell]   (default: both; the deploy suite's format test runs "shell")
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"

want_yaml=0
want_shell=0
(($#)) || set -- yaml shell
for arg; do
	case $arg in
	yaml) want_yaml=1 ;;
	shell) want_shell=1 ;;
	*) die "usage: lint.sh [yaml] [shell]" ;;
	esac
done
((!want_yaml)) || command -v yamllint >/dev/null || die "yamllint not found (apt-get install yamllint)"
((!want_shell)) || command -v shellcheck >/dev/null ||
	die "shellcheck not found (apt-get install shellcheck)"
cd "$PAYQ_SOURCE_ROOT" || die "no $PAYQ_SOURCE_ROOT"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	mapfile -t files < <(git ls-files --cached --others --exclude-standard | sort -u)
else
	mapfile -t files < <(find . -path './build*' -prune -o -path './.git' -prune -o -type f -print |
		sed 's|^\./||' | sort)
fi

yaml=()
shell=()
for f in "${files[@]}"; do
	[[ -f $f ]] || continue # deleted in the work tree
	case $f in
	*.yaml | *.yml | .yamllint) yaml+=("$f") ;;
	*.sh | *.bash) shell+=("$f") ;;
	*)
		if head -n 1 "$f" 2>/dev/null | grep -qE '^#!.*([/ ]|^#!)(ba|da|k)?sh([[:space:]]|$)'; then
			shell+=("$f")
		fi
		;;
	esac
done
((${#yaml[@]})) || die "no YAML files found"
((${#shell[@]})) || die "no shell scripts found"

if ((want_yaml)); then
	yamllint --strict -c .yamllint "${yaml[@]}" || die "yamllint found problems"
	pass "yamllint: ${#yaml[@]} YAML files clean (${yaml[*]})"
fi
if ((want_shell)); then
	# One file per process, as many at once as there are cores: -x re-reads sourced libraries.
	printf '%s\0' "${shell[@]}" | xargs -0 -n 1 -P "$(nproc)" shellcheck -x ||
		die "shellcheck found problems"
	pass "shellcheck: ${#shell[@]} shell scripts clean (${shell[*]})"
fi
