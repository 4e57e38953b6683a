#!/bin/bash
# The release configuration, as distribution packagers and the image build it:
#  1. `meson setup --buildtype=release` (-O3, NDEBUG, -Werror) builds clean with gcc and with
#     Debian's clang, each into a folder under the build tree (release-gcc, release-clang);
#  2. the installed programs carry the hardening (readelf): PIE, full RELRO (GNU_RELRO and
#     BIND_NOW), the stack protector (__stack_chk_fail) and FORTIFY_SOURCE (__*_chk calls);
#  3. the crash, fault and stall points are compiled out: the release payq-worker holds none of
#     the PAYQ_CRASH_AT / PAYQ_FAULT_AT / PAYQ_STALL_AT names, and, run against the test
#     PostgreSQL and Kafka with all three set at before_db_commit and kafka_fatal, it applies the
#     commands and stops cleanly; the test build's worker, the control, is killed at the same
#     crash point, so this check fails on a release build that obeys the switches. The release
#     worker listens on PAYQ_HTTP_ADDR=[::]:PORT and answers over IPv4 and IPv6.
PAYQ_SOURCE_ROOT=${PAYQ_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=tests/lib/common.sh
source "$PAYQ_SOURCE_ROOT/tests/lib/common.sh"
# shellcheck source=tests/deploy/lib.sh
source "$PAYQ_SOURCE_ROOT/tests/deploy/lib.sh"
require_env PAYQ_BUILD_ROOT PAYQ_WORKER_EXE PAYQ_TEST_DB PAYQ_TEST_BROKERS

WORK=$(mktemp -d -t payq-release.XXXXXX)
on_exit "rm -rf '$WORK'"
PROGRAMS=(worker/payq-worker producer/payq-producer replay/payq-replay)
SWITCHES=(PAYQ_CRASH_AT PAYQ_FAULT_AT PAYQ_STALL_AT)

# ---- 1. release builds ----

# build_release NAME CC: meson setup (first time) and ninja in PAYQ_BUILD_ROOT/release-NAME,
# under a lock so two runs share one folder. Prints the seconds it took.
build_release() {
	local name=$1 compiler=$2 dir=$PAYQ_BUILD_ROOT/release-$1 t0
	t0=$EPOCHREALTIME
	(
		exec {lock}>"$dir.lock"
		flock "$lock"
		if [[ ! -f $dir/build.ninja ]]; then
			CC=$compiler meson setup "$dir" "$PAYQ_SOURCE_ROOT" --buildtype=release \
				>"$WORK/$name.setup.log" 2>&1 || {
				cat "$WORK/$name.setup.log" >&2
				exit 1
			}
		fi
		ninja -C "$dir" >"$WORK/$name.build.log" 2>&1 || {
			grep -E -A5 'error|warning' "$WORK/$name.build.log" | head -n 60 >&2
			exit 1
		}
	) || die "the release build with $compiler failed (-O3 -Werror, $dir)"
	awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

command -v clang >/dev/null || die "clang is not installed (deploy/local/setup --packages lists it)"
for pair in gcc:gcc clang:clang; do
	name=${pair%%:*}
	took=$(build_release "$name" "${pair#*:}")
	meson introspect --buildoptions "$PAYQ_BUILD_ROOT/release-$name" >"$WORK/$name.options.json"
	opts=$(python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(open(sys.argv[1]))}
names = ["buildtype", "optimization", "werror", "crash_points", "hardening", "b_pie"]
print(" ".join(n + "=" + str(o[n]) for n in names))' "$WORK/$name.options.json")
	[[ $opts == *"optimization=3 werror=True crash_points=False hardening=True b_pie=True" ]] ||
		die "release-$name is not configured as a release build: $opts"
	pass "release build with $name ($opts) clean in ${took} s ($PAYQ_BUILD_ROOT/release-$name)"
done

# ---- 2. hardening, read back from the binaries ----

# hardening_of BINARY: prints what is missing, nothing when all is there.
hardening_of() {
	local bin=$1 header dyn segs syms
	header=$(readelf -hW "$bin") dyn=$(readelf -dW "$bin") segs=$(readelf -lW "$bin")
	syms=$(readelf -sW --dyn-syms "$bin")
	grep -q 'Type:[[:space:]]*DYN' <<<"$header" && grep -q 'Flags:.*PIE' <<<"$dyn" || echo "not PIE"
	grep -q 'GNU_RELRO' <<<"$segs" || echo "no GNU_RELRO segment"
	grep -Eq '\(BIND_NOW\)|Flags:.*\<NOW\>' <<<"$dyn" || echo "no BIND_NOW (partial RELRO)"
	grep -q '__stack_chk_fail' <<<"$syms" || echo "no stack protector (__stack_chk_fail)"
	grep -Eq '__[a-z_]+_chk(@|$)' <<<"$(grep -v __stack_chk_fail <<<"$syms")" ||
		echo "no FORTIFY_SOURCE (__*_chk) calls"
}
for name in gcc clang; do
	for p in "${PROGRAMS[@]}"; do
		bin=$PAYQ_BUILD_ROOT/release-$name/$p
		missing=$(hardening_of "$bin")
		[[ -z $missing ]] || die "release-$name ${p##*/}: $(tr '\n' ';' <<<"$missing")"
		chk=$(readelf -sW --dyn-syms "$bin" | grep -oE '__[a-z_]+_chk' | grep -v __stack_chk_fail | sort -u | wc -l)
		pass "release-$name ${p##*/}: PIE, GNU_RELRO + BIND_NOW, __stack_chk_fail, $chk fortified __*_chk functions"
	done
done
if command -v hardening-check >/dev/null; then
	hardening-check "$PAYQ_BUILD_ROOT/release-gcc/worker/payq-worker" || die "hardening-check disagrees"
fi

# ---- 3. crash, fault and stall points compiled out ----

RELEASE_WORKER=$PAYQ_BUILD_ROOT/release-gcc/worker/payq-worker
# (and not the injected fatal error's text, "payq fault injection", either)
for s in "${SWITCHES[@]}" "payq fault injection"; do
	! grep -q "$s" "$RELEASE_WORKER" || die "the release payq-worker still holds \"$s\""
	grep -q "$s" "$PAYQ_WORKER_EXE" || die "control: the test build's worker does not hold \"$s\" (tests/run builds it with -Dcrash_points=true)"
done
pass "the release payq-worker holds none of ${SWITCHES[*]} nor the fault injection's text; the test build's worker holds them all"

id=$$$RANDOM
fresh_database "payq_release_$id"
db=$DEPLOY_DB

# run_worker NAME EXE VAR=VALUE...: migrates, starts EXE with those switches set, produces a
# create_order and a pay for its own order on its own topic. Sets WORKER_PID, ORDER, PORT.
run_worker() {
	local name=$1 exe=$2 topic=payq.release-$1-$id
	shift 2
	ORDER=ORD-release-$name-$id
	PORT=$(free_port)
	fresh_topics "$topic" "$topic.dlq"
	"$exe" migrate --db "$db" 2>"$WORK/$name-migrate.log" || die "$name: migrate failed: $(cat "$WORK/$name-migrate.log")"
	printf '%s\0' PATH=/usr/bin:/bin "PAYQ_DB=$db" "PAYQ_BROKERS=$PAYQ_TEST_BROKERS" \
		"PAYQ_TOPIC=$topic" "PAYQ_DLQ_TOPIC=$topic.dlq" "PAYQ_GROUP=payq-release-$name-$id" \
		"PAYQ_HTTP_ADDR=${HTTP_HOST:-127.0.0.1}:$PORT" PAYQ_BATCH_MAX=1 "$@" >"$WORK/$name.env"
	printf '%s\0' "$exe" run >"$WORK/$name.argv"
	start_worker "$WORK/$name.env" "$WORK/$name.argv"
	produce_command "$topic" create_order "$ORDER" "c-$name-$id-1" \
		"{\"v\":1,\"type\":\"create_order\",\"command_id\":\"c-$name-$id-1\",\"order_id\":\"$ORDER\",\"amount_minor\":500,\"currency\":\"EUR\"}"
	produce_command "$topic" pay "$ORDER" "c-$name-$id-2" \
		"{\"v\":1,\"type\":\"pay\",\"command_id\":\"c-$name-$id-2\",\"order_id\":\"$ORDER\",\"amount_minor\":500,\"currency\":\"EUR\",\"payer_id\":\"p-1\"}"
}
order_status() { psql "$db" -XAtc "SELECT status FROM payq.orders WHERE order_id = '$ORDER'"; }

# The control: the test build dies by SIGKILL at its first database commit, nothing applied.
run_worker control "$PAYQ_WORKER_EXE" PAYQ_CRASH_AT=before_db_commit
proc_wait_gone "$WORKER_PID" 90 || die "control: the test build's worker did not crash within 90 s at PAYQ_CRASH_AT=before_db_commit"
proc_reap "$WORKER_PID"
assert_eq 137 "$PROC_RC" "control: the test build's worker is SIGKILLed at PAYQ_CRASH_AT=before_db_commit (exit 128+9)"
assert_eq "" "$(order_status)" "control: nothing applied"

# The release build ignores all three switches. It listens on [::] (PAYQ_HTTP_ADDR in IPv6,
# dual stack): /readyz answers on 127.0.0.1 (wait_http) and on ::1.
HTTP_HOST='[::]'
# (PAYQ_FAULT_AT=kafka_fatal would make a worker that obeys it exit 1 at its first batch;
# PAYQ_STALL_AT would freeze it for ten minutes inside its transaction.)
run_worker release "$RELEASE_WORKER" PAYQ_CRASH_AT=before_db_commit PAYQ_FAULT_AT=kafka_fatal \
	PAYQ_STALL_AT=before_db_commit PAYQ_STALL_MS=600000
wait_http "$PORT" /readyz 90
curl -gfsS --max-time 5 "http://[::1]:$PORT/healthz" >"$WORK/v6.out" 2>&1 ||
	die "PAYQ_HTTP_ADDR=[::]:$PORT: /healthz does not answer on [::1]: $(cat "$WORK/v6.out")"
pass "PAYQ_HTTP_ADDR=[::]:$PORT answers on 127.0.0.1 and on [::1] ($(cat "$WORK/v6.out"))"
paid() { [[ $(order_status) == paid ]]; }
wait_for paid 60 || die "the release worker did not pay $ORDER within 60 s; log: $(tail -n 20 "$WORK/worker.log")"
kill -0 "$WORKER_PID" 2>/dev/null || die "the release worker exited"
! grep -Eq 'crash point|fault point|stall point' "$WORK/worker.log" || die "the release worker reached a test point: $(grep -E 'point' "$WORK/worker.log")"
pass "the release worker, with ${SWITCHES[*]} set, applied create_order and pay ($ORDER paid) and is alive"
stop_worker "$WORKER_PID" 30
pass "and stops on SIGTERM with exit 0 in $STOP_SECONDS s"
