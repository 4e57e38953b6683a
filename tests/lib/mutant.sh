# The one builder of the deliberately broken builds (meson -Dmutation=NAME) and of the other
# special builds the tests need; source it, do not run it.
# shellcheck shell=bash
#
# A build lives next to the main build, in $PAYQ_BUILD_ROOT/../build-mut-NAME (or
# ${PAYQ_MUT_BUILD_PREFIX}NAME), is configured once and rebuilt incrementally, and only the
# targets asked for are built. A flock on DIR.lock serialises the suites that build the same
# folder at the same time (meson test runs tests in parallel).
#
#   mutant_build NAME [TARGET...]   prints the folder of the NAME mutant after building
#                                   TARGETs (default worker/payq-worker) in it
#   mutant_exe NAME                 prints the mutant worker: PAYQ_MUTANT_<NAME>_EXE (NAME
#                                   upper-case, '-' as '_') when set, else built here
#   cached_build DIR TARGET OPTION...  the same for any build: meson setup DIR with OPTIONs
#                                   the first time, then ninja TARGET
#
# Failures print the build's log tail on stderr and return 1; the callers decide how to die.

# cached_build DIR TARGET OPTION...
cached_build() {
	local dir=$1 target=$2
	shift 2
	(
		exec {lock}>"$dir.lock"
		flock "$lock"
		if [[ ! -f $dir/build.ninja ]]; then
			meson setup "$dir" "$PAYQ_SOURCE_ROOT" "$@" >"$dir.setup.log" 2>&1 || {
				cat "$dir.setup.log" >&2
				exit 1
			}
		fi
		ninja -C "$dir" "$target" >"$dir.build.log" 2>&1 || {
			tail -n 30 "$dir.build.log" >&2
			exit 1
		}
	)
}

# mutant_build NAME [TARGET...]
mutant_build() {
	local name=$1 dir target
	shift
	(($#)) || set -- worker/payq-worker
	if [[ -n ${PAYQ_MUT_BUILD_PREFIX:-} ]]; then
		dir=$PAYQ_MUT_BUILD_PREFIX$name
	else
		dir=$(realpath -m "$PAYQ_BUILD_ROOT/../build-mut-$name")
	fi
	for target in "$@"; do
		cached_build "$dir" "$target" -Dmutation="$name" -Dcrash_points=true || {
			printf 'cannot build %s of the %s mutant in %s\n' "$target" "$name" "$dir" >&2
			return 1
		}
	done
	printf '%s\n' "$dir"
}

# mutant_exe NAME
mutant_exe() {
	local name=$1 var dir
	var=PAYQ_MUTANT_$(tr 'a-z-' 'A-Z_' <<<"$name")_EXE
	if [[ -n ${!var:-} ]]; then
		[[ -x ${!var} ]] || die "$var=${!var} is not an executable"
		printf '%s\n' "${!var}"
		return 0
	fi
	dir=$(mutant_build "$name") || die "cannot build the $name mutant"
	printf '%s\n' "$dir/worker/payq-worker"
}
