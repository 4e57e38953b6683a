#!/bin/bash
# `meson install` (into a DESTDIR) installs the four production programs (not the dev broker
# nor the sandbox gateway), a manual page for each generated
# from its --help by help2man (every --option the program documents is in its page, and man
# renders it), and the systemd units with ExecStart rewritten to the installed payq-worker.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
require_env PAYQ_BUILD_ROOT
command -v help2man >/dev/null || die "help2man not found (apt-get install help2man)"
command -v man >/dev/null || die "man not found (apt-get install man-db)"

WORK=$(mktemp -d -t payq-install.XXXXXX)
on_exit "rm -rf '$WORK'"
DEST=$WORK/dest
meson install -C "$PAYQ_BUILD_ROOT" --no-rebuild --destdir "$DEST" >"$WORK/install.log" 2>&1 ||
	die "meson install failed: $(tail -n 20 "$WORK/install.log")"
info=$(meson introspect --buildoptions "$PAYQ_BUILD_ROOT" | python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print(o["prefix"], o["bindir"], o["mandir"])')
read -r prefix bindir mandir <<<"$info"
[[ $bindir == /* ]] || bindir=$prefix/$bindir
[[ $mandir == /* ]] || mandir=$prefix/$mandir

for prog in payq-devbroker payq-sandbox-gateway; do
	[[ ! -e $DEST$bindir/$prog && ! -e $DEST$mandir/man1/$prog.1 ]] || die "$prog (a dev tool) is installed"
done
for prog in payq-worker payq-producer payq-replay payq-console; do
	exe=$DEST$bindir/$prog
	page=$DEST$mandir/man1/$prog.1
	[[ -x $exe ]] || die "$prog is not installed in $bindir"
	[[ -s $page ]] || die "no manual page $mandir/man1/$prog.1"
	MANWIDTH=200 man -l "$page" >"$WORK/$prog.txt" 2>"$WORK/man.err" || die "man cannot render $prog.1: $(cat "$WORK/man.err")"
	if ! grep -q "^NAME" "$WORK/$prog.txt" || ! grep -q "$prog - " "$WORK/$prog.txt"; then
		die "$prog.1 has no NAME line: $(head -n 5 "$WORK/$prog.txt")"
	fi
	"$exe" --version | head -n 1 >"$WORK/version" || die "$prog --version failed"
	grep -qF "$(awk '{ print $2 }' "$WORK/version")" "$WORK/$prog.txt" ||
		die "$prog.1 does not carry the version $(cat "$WORK/version")"
	"$exe" --help >"$WORK/help" 2>&1 || true
	# The page's source with roff's escaped hyphens plain (man hyphenates long lines).
	sed 's/\\-/-/g' "$page" >"$WORK/$prog.roff"
	missing=$(grep -oE -- '--[a-z][a-z0-9-]+' "$WORK/help" | sort -u | while read -r opt; do
		grep -qF -- "$opt" "$WORK/$prog.roff" || echo "$opt"
	done)
	[[ -z $missing ]] || die "$prog.1 lacks options of $prog --help: $missing"
	pass "$prog and $mandir/man1/$prog.1 ($(grep -oE -- '--[a-z][a-z0-9-]+' "$WORK/help" | sort -u | wc -l) options, version $(awk '{ print $2 }' "$WORK/version"))"
done

units=$(find "$DEST" -path '*/systemd/system/*' -type f -printf '%f\n' | sort | tr '\n' ' ')
[[ $units == "payq-migrate.service payq-prune.service payq-prune.timer payq-worker@.service " ]] ||
	die "installed units: '$units'"
for u in "$DEST"/*/lib/systemd/system/*.service "$DEST"/lib/systemd/system/*.service; do
	[[ -e $u ]] || continue
	exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$u")
	[[ $exec_path == "$bindir/payq-worker" && -x $DEST$exec_path ]] ||
		die "${u##*/}: ExecStart=$exec_path is not the installed $bindir/payq-worker"
done
pass "the systemd units are installed ($units) with ExecStart=$bindir/payq-worker"
