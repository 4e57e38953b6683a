#!/bin/bash
# A malformed message too large for the DLQ topic on a real broker. The DLQ topic is
# created with max.message.bytes=4000, so the broker refuses the full copy of a
# 20000-byte malformed message (MESSAGE_TOO_LARGE in the delivery report; the producer's
# own message.max.bytes lets it through). The copy must not be produced again for ever,
# nor dropped: it goes to the DLQ truncated, with payq-dlq-reason too_large_for_dlq and
# payq-dlq-original-size 20000. The commands around it are applied and the offsets reach
# the end.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"

WL_DEFER=1
wl_init dlqbig 1
dlq=$WL_DLQ.small
on_exit "\"$WL_PROBE\" delete-topics \"$PAYQ_TEST_BROKERS\" \"$dlq\" >/dev/null 2>&1"
PAYQ_PROBE_TOPIC_CONFIG=max.message.bytes=4000 "$WL_PROBE" create-topics "$PAYQ_TEST_BROKERS" 1 "$dlq" ||
	die "cannot create $dlq"
{
	wl_cmd_create b-1 b-1:c 500
	wl_cmd_pay b-1 b-1:p 500
	printf 'b-2|%s\n' "$(head -c 20000 /dev/zero | tr '\0' x)"
	wl_cmd_create b-3 b-3:c 700
	wl_cmd_pay b-3 b-3:p 700
} | wl_produce -p 0
for o in b-1 b-3; do
	wl_expect_cmd "$o" "$o:c" applied 0
	wl_expect_cmd "$o" "$o:p" applied 0
done
wl_expect_order b-1 paid 2 b-1:p 1
wl_expect_order b-3 paid 2 b-3:p 1
wl_worker_start w1 PAYQ_DLQ_TOPIC="$dlq"
wl_wait_assigned w1
wl_wait_drained 60 || true

"$WL_PROBE" dump "$PAYQ_TEST_BROKERS" "$dlq" >"$WL_DIR/dlq.jsonl" || die "dump of $dlq failed"
dlq_ok=1
python3 - "$WL_DIR/dlq.jsonl" >"$WL_DIR/dlq-check.out" <<'PY' || dlq_ok=0
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
if len(recs) != 1:
    print("%d DLQ records, expected 1" % len(recs)); sys.exit(1)
r = recs[0]
hd = {bytes.fromhex(k).decode(): bytes.fromhex(v or "").decode("utf-8", "replace") for k, v in r["headers"]}
value = bytes.fromhex(r["value"] or "")
problems = []
if hd.get("payq-dlq-reason") != "too_large_for_dlq":
    problems.append("reason %r" % hd.get("payq-dlq-reason"))
if hd.get("payq-dlq-original-size") != "20000":
    problems.append("original size %r" % hd.get("payq-dlq-original-size"))
if "not_json" not in hd.get("payq-dlq-error", ""):
    problems.append("error %r does not name the original reason" % hd.get("payq-dlq-error"))
if hd.get("payq-dlq-offset") != "2" or bytes.fromhex(r["key"] or "") != b"b-2":
    problems.append("offset %r key %r" % (hd.get("payq-dlq-offset"), r["key"]))
if not 0 < len(value) < 20000 or value != b"x" * len(value):
    problems.append("value of %d bytes is not a prefix of the original" % len(value))
if problems:
    print("; ".join(problems)); sys.exit(1)
print("truncated copy: %d bytes, headers %s" % (len(value), sorted(hd)))
PY
if ((dlq_ok)); then
	pass "DLQ: $(cat "$WL_DIR/dlq-check.out")"
else
	wl_violation "DLQ copy: $(cat "$WL_DIR/dlq-check.out")"
fi
wl_check_state
wl_check_offsets_final
wl_worker_stop w1 TERM
[[ $WL_RC == 0 ]] || wl_violation "worker exited $WL_RC after SIGTERM"
wl_flush_violations
pass "a message too large for the DLQ topic went there truncated; the partition moved on"
