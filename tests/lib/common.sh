# Shared helpers for the shell integration tests; source it, do not run it.
# shellcheck shell=bash

set -euo pipefail

TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
_on_exit_cmds=()

# Prints a failure message and exits 1; the EXIT trap still runs the cleanups.
die() {
	printf 'FAIL %s: %s\n' "$TEST_NAME" "$*" >&2
	exit 1
}

# Prints one line saying what was checked.
pass() { printf 'ok   %s: %s\n' "$TEST_NAME" "$*"; }

# Prints a progress line, with the time to the millisecond.
log() { printf '%s %s: %s\n' "$(date +%T.%3N)" "$TEST_NAME" "$*"; }

# Registers a command to run on exit, even on failure; they run in reverse order.
on_exit() { _on_exit_cmds+=("$1"); }

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#_on_exit_cmds[@]} - 1; i >= 0; i--)); do
		eval "${_on_exit_cmds[i]}" || true
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Fails unless each named environment variable is set and not empty.
require_env() {
	local v
	for v in "$@"; do
		[[ -n ${!v:-} ]] || die "$v is not set (run the integration suites through tests/run)"
	done
}

# Runs SQL against PAYQ_TEST_DB; prints unaligned, tuples-only output.
psql_q() { psql "$PAYQ_TEST_DB" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

assert_eq() {
	local expected=$1 actual=$2 message=$3
	[[ $expected == "$actual" ]] || die "$message: expected '$expected', got '$actual'"
	pass "$message"
}

# Runs CMD... every 0.2 s until it succeeds or TIMEOUT_S pass: wait_until TIMEOUT_S CMD...
wait_until() {
	local timeout_s=$1 deadline
	shift
	deadline=$((SECONDS + timeout_s))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# The same for a command string, run with eval: wait_for CMD TIMEOUT_S.
wait_for() { wait_until "$2" eval "$1"; }

# Prints a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
