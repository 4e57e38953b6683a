#!/bin/bash
# deploy/systemd: the unit files pass `systemd-analyze verify` with no warning (their
# ExecStart pointed at the programs just built), each service scores at most 2.0 ("OK") in
# `systemd-analyze security --offline=true`, payq-worker@.service has the settings the design
# asks for, its stop timeout leaves room for PAYQ_SHUTDOWN_TIMEOUT_MS (the worker's default
# and the example environment file's), and the example file names only settings the worker knows.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
require_env PAYQ_WORKER_EXE
command -v systemd-analyze >/dev/null || die "systemd-analyze not found (apt-get install systemd)"

SRC=$PAYQ_SOURCE_ROOT/deploy/systemd
WORK=$(mktemp -d -t payq-systemd.XXXXXX)
on_exit "rm -rf '$WORK'"
MAX_EXPOSURE=2.0
MARGIN_S=5 # at least this long between the worker's shutdown deadline and systemd's SIGKILL

# The units name /usr/local/bin (meson install's default prefix; meson install rewrites it to
# the real bindir): point them at the build so that verify finds an executable.
for f in "$SRC"/*.service "$SRC"/*.timer; do
	sed "s|/usr/local/bin/payq-worker|$PAYQ_WORKER_EXE|g" "$f" >"$WORK/${f##*/}"
done
units=(payq-worker@a.service payq-migrate.service payq-prune.service payq-prune.timer)
# Documentation=man:payq-worker(1) is checked against the pages the build made with help2man.
man=no
if compgen -G "${PAYQ_BUILD_ROOT:-/nonexistent}/man/*.1" >/dev/null && command -v man >/dev/null; then
	mkdir -p "$WORK/man/man1"
	ln -s "$PAYQ_BUILD_ROOT"/man/*.1 "$WORK/man/man1/"
	man=yes
fi
(cd "$WORK" && MANPATH=$WORK/man systemd-analyze verify --man=$man "${units[@]/#/./}") >"$WORK/verify.out" 2>&1 ||
	die "systemd-analyze verify failed: $(cat "$WORK/verify.out")"
[[ ! -s $WORK/verify.out ]] || die "systemd-analyze verify warns: $(cat "$WORK/verify.out")"
pass "systemd-analyze verify (--man=$man): ${units[*]} clean"

for u in payq-worker@a.service payq-migrate.service payq-prune.service; do
	(cd "$WORK" && systemd-analyze security --offline=true --no-pager "./$u") >"$WORK/security.out" 2>&1 ||
		die "systemd-analyze security $u failed: $(tail -n 5 "$WORK/security.out")"
	score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p' "$WORK/security.out")
	[[ -n $score ]] || die "no exposure level for $u: $(tail -n 3 "$WORK/security.out")"
	awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' ||
		die "$u: exposure $score, want at most $MAX_EXPOSURE; the rest: $(grep '✗' "$WORK/security.out" | head -n 10)"
	pass "systemd-analyze security $u: $score (at most $MAX_EXPOSURE)"
done

# The settings the design asks of the worker's unit, each exactly once.
W=$SRC/payq-worker@.service
for want in 'EnvironmentFile=/etc/payq/%i.env' DynamicUser=yes ProtectSystem=strict \
	NoNewPrivileges=yes Restart=on-failure 'ExecStart=/usr/local/bin/payq-worker run'; do
	[[ $(grep -cxF -- "$want" "$W") == 1 ]] || die "payq-worker@.service: no single line $want"
done
pass "payq-worker@.service: environment from /etc/payq/%i.env, DynamicUser, ProtectSystem=strict, NoNewPrivileges, Restart=on-failure"

# TimeoutStopSec against PAYQ_SHUTDOWN_TIMEOUT_MS.
stop_s=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$W")
[[ -n $stop_s ]] || die "payq-worker@.service: TimeoutStopSec is not a plain number of seconds"
"$PAYQ_WORKER_EXE" --help >"$WORK/help.txt" 2>&1 || true
default_ms=$(sed -n 's/.*PAYQ_SHUTDOWN_TIMEOUT_MS .*(default: \([0-9]*\)).*/\1/p' "$WORK/help.txt")
[[ -n $default_ms ]] || die "payq-worker --help gives no default for PAYQ_SHUTDOWN_TIMEOUT_MS"
example_ms=$(sed -n 's/^PAYQ_SHUTDOWN_TIMEOUT_MS=\([0-9]*\)$/\1/p' "$SRC/payq.env.example")
for ms in "$default_ms" "${example_ms:-$default_ms}"; do
	((stop_s * 1000 >= ms + MARGIN_S * 1000)) ||
		die "TimeoutStopSec=${stop_s}s leaves less than ${MARGIN_S}s after PAYQ_SHUTDOWN_TIMEOUT_MS=$ms"
done
pass "TimeoutStopSec=${stop_s}s is at least ${MARGIN_S}s above PAYQ_SHUTDOWN_TIMEOUT_MS (default $default_ms ms, example ${example_ms:-unset})"

# Every variable of the example environment file is one the worker documents.
while IFS='=' read -r name _; do
	grep -q " $name " "$WORK/help.txt" || die "payq.env.example sets $name, which payq-worker --help does not know"
done < <(grep -E '^[A-Z_]+=' "$SRC/payq.env.example")
pass "payq.env.example names only settings of payq-worker --help"
