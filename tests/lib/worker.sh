# The one worker launcher of the test suites (integration, faults, chaos, deploy); source
# it, do not run it. It needs nothing else: the chaos soak sources it on its own.
# shellcheck shell=bash
#
# Each suite keeps its own settings (the PAYQ_* environment its scenarios want) and its own
# bookkeeping of names; the process handling is here, once:
#
#   worker_spawn [--fresh-log] [--stderr-only] LOG CMD...
#       starts CMD in the background, stdin from /dev/null, stdout and stderr appended to
#       LOG (--fresh-log: LOG emptied first; --stderr-only: stdout left alone, so LOG holds
#       the JSON log lines alone). Sets WORKER_SPAWN_PID, a child of this shell: call it
#       directly, never in $(...), so that this shell can wait for it.
#   proc_alive PID            true while PID runs (a zombie nobody waited for counts as gone)
#   proc_wait_gone PID TIMEOUT_S
#                             waits until PID is gone; returns 1 if it still runs after
#                             TIMEOUT_S seconds (it is not signalled)
#   proc_reap PID             waits for the child PID; sets PROC_RC to its exit status
#                             (137 after SIGKILL, 143 after an unhandled SIGTERM)
#   proc_stop PID [GRACE_S]   SIGTERM, up to GRACE_S (default 10) seconds, then SIGKILL,
#                             and reaps it: for cleanups, never fails
#   log_wait LOG REGEX TIMEOUT_S [PID]
#                             waits for a line of LOG matching the extended REGEX; returns
#                             1 on timeout, 2 as soon as PID (when given) is gone
#   sandbox_spawn PORT_FILE [--fresh-log] [--stderr-only] LOG EXE FLAG...
#                             starts payq-sandbox-gateway (EXE --port-file PORT_FILE
#                             FLAG..., as worker_spawn) and waits up to 10 s for its port
#                             file; sets SANDBOX_PID, SANDBOX_API_PORT and SANDBOX_CTL_PORT.
#                             Returns 1 without a port file by then, 2 if the sandbox exited

# worker_spawn [--fresh-log] [--stderr-only] LOG CMD...
worker_spawn() {
	local fresh=0 stderr_only=0 log
	while (($#)); do
		case $1 in
		--fresh-log) fresh=1 ;;
		--stderr-only) stderr_only=1 ;;
		*) break ;;
		esac
		shift
	done
	log=$1
	shift
	((fresh == 0)) || : >"$log"
	if ((stderr_only)); then
		"$@" </dev/null 2>>"$log" &
	else
		"$@" </dev/null >>"$log" 2>&1 &
	fi
	WORKER_SPAWN_PID=$!
}

# proc_alive PID
proc_alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 1) || return 1
	[[ -n $st && $st != Z ]]
}

# proc_wait_gone PID TIMEOUT_S
proc_wait_gone() {
	local pid=$1 deadline
	deadline=$(($(date +%s%N) / 1000000 + $2 * 1000))
	while proc_alive "$pid"; do
		(($(date +%s%N) / 1000000 < deadline)) || return 1
		sleep 0.05
	done
}

# proc_reap PID
# shellcheck disable=SC2034 # PROC_RC is read by the scripts that source this file
proc_reap() {
	PROC_RC=0
	wait "$1" 2>/dev/null || PROC_RC=$?
}

# proc_stop PID [GRACE_S]
proc_stop() {
	local pid=$1 grace=${2:-10}
	proc_alive "$pid" || {
		wait "$pid" 2>/dev/null || true
		return 0
	}
	kill -TERM "$pid" 2>/dev/null || true
	proc_wait_gone "$pid" "$grace" || kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# log_wait LOG REGEX TIMEOUT_S [PID]
log_wait() {
	local log=$1 re=$2 deadline pid=${4:-}
	deadline=$((SECONDS + $3))
	until grep -Eq -- "$re" "$log" 2>/dev/null; do
		[[ -z $pid ]] || proc_alive "$pid" || return 2
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# sandbox_spawn PORT_FILE [--fresh-log] [--stderr-only] LOG EXE FLAG...
sandbox_spawn() {
	local pf=$1 flags=() deadline
	shift
	while [[ ${1:-} == --* ]]; do
		flags+=("$1")
		shift
	done
	local log=$1 exe=$2
	shift 2
	worker_spawn "${flags[@]}" "$log" "$exe" --port-file "$pf" "$@"
	SANDBOX_PID=$WORKER_SPAWN_PID
	deadline=$((SECONDS + 10))
	until [[ -s $pf ]]; do
		proc_alive "$SANDBOX_PID" || return 2
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
	# shellcheck disable=SC2034 # read by the scripts that source this file
	read -r SANDBOX_API_PORT SANDBOX_CTL_PORT <"$pf"
}
