#!/bin/bash
# payq-replay republish: a range the worker already applied, republished twice, changes
# nothing in the database while `duplicates` rises by one per copy; copies keep key, value
# and headers, carry payq-replay-of and land in their key's partition; --dry-run counts
# what is already processed and sends nothing; --order selects one order.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

wl_init rrepub 4
wl_gen_orders RP 20
wl_produce -H content-type=application/json <"$WL_DIR/cmds.RP"
echo 'RP-X|this is not json' | wl_produce
valid=$(wc -l <"$WL_DIR/cmds.RP")
total=$((valid + 1))
rp1=$(grep -c '^RP-1|' "$WL_DIR/cmds.RP")

wl_worker_start w1
wl_wait_assigned w1
wl_wait_drained 60
wl_check_state
sleep 0.05
T1=$(rp_now_iso) # every original message is older, every copy newer
state0=$(rp_state)
dups0=$(rp_dups)
dlq0=$(rp_count "$WL_DLQ")
[[ $dups0 == 0 && $dlq0 == 1 ]] || die "before the replay: duplicates $dups0, DLQ $dlq0"
pass "applied $valid commands, 1 dead-lettered; state recorded"

FROM=(--from-time 2000-01-01T00:00:00Z --to-time "$T1")
rp_expect 0 dry republish "${FROM[@]}" --dry-run
rp_assert_fields dry "read=$total" "matched=$total" "valid=$valid" "already_processed=$valid" \
	new=0 malformed=1
assert_eq "$total" "$(rp_count "$WL_TOPIC")" "--dry-run sent nothing"
pass "--dry-run: $valid already in processed_commands, 0 new, 1 malformed"

rp_expect 0 order republish "${FROM[@]}" --order RP-1 --dry-run
rp_assert_fields order "matched=$rp1" "already_processed=$rp1" new=0
pass "--order RP-1 selects its $rp1 commands only"

for round in 1 2; do
	rp_expect 0 "round$round" republish --from-topic "$WL_TOPIC" "${FROM[@]}"
	rp_assert_fields "round$round" "matched=$total" "sent=$total" "delivered=$total" failed=0
	assert_eq $(((round + 1) * total)) "$(rp_count "$WL_TOPIC")" \
		"republish $round: $total copies delivered"
	wl_wait_drained 60
	assert_eq "$state0" "$(rp_state)" \
		"republish $round: orders, payments, outcomes and anomalies unchanged"
	assert_eq $((dups0 + round * valid)) "$(rp_dups)" \
		"republish $round: duplicates rose by $valid, one per valid copy"
	assert_eq $((dlq0 + round)) "$(rp_count "$WL_DLQ")" \
		"republish $round: the malformed copy was dead-lettered again"
done
wl_check_state
assert_eq 0 "$(wl_sql "SELECT count(*) FROM payq.processed_commands WHERE duplicates <> 2")" \
	"every processed_commands row has duplicates = 2"
assert_eq "$(wl_sql "SELECT count(*) FROM payq.orders WHERE status = 'paid'")" \
	"$(wl_sql "SELECT count(*) FROM payq.payments")" "still one payment per paid order"

# The copies: keyed as the originals, in the same partition, with payq-replay-of.
kcat -C -b "$PAYQ_TEST_BROKERS" -t "$WL_TOPIC" -e -q -f '%p|%o|%k|%h\n' >"$WL_DIR/all.txt" ||
	die "kcat could not read $WL_TOPIC"
python3 - "$WL_DIR/all.txt" "$WL_TOPIC" "$total" >"$WL_DIR/copies.out" <<'PY' ||
import sys
path, topic, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
orig, copies, problems = {}, [], []
for line in open(path, encoding="utf-8", errors="replace"):
    p, o, k, h = line.rstrip("\n").split("|", 3)
    hdrs = dict(x.split("=", 1) for x in h.split(",") if "=" in x)
    if "payq-replay-of" in hdrs:
        copies.append((int(p), k, hdrs))
    else:
        orig[(int(p), int(o))] = (k, hdrs)
for p, k, hdrs in copies:
    t, sp, so = hdrs["payq-replay-of"].rsplit("/", 2)
    src = orig.get((int(sp), int(so)))
    if t != topic or src is None:
        problems.append("copy points at %s" % hdrs["payq-replay-of"])
        continue
    if int(sp) != p or src[0] != k:
        problems.append("copy of %s/%s in partition %d with key %s" % (sp, so, p, k))
    if {n: v for n, v in hdrs.items() if n != "payq-replay-of"} != src[1]:
        problems.append("copy of %s/%s headers %s, original %s" % (sp, so, hdrs, src[1]))
if len(copies) != 2 * total or len(orig) != total:
    problems.append("%d originals and %d copies" % (len(orig), len(copies)))
print("; ".join(problems) or "ok")
sys.exit(1 if problems else 0)
PY
	die "copies: $(cat "$WL_DIR/copies.out")"
pass "every copy keeps key and headers, adds payq-replay-of, and sits in its original's partition"

rp_expect 0 audit audit
rp_assert_fields audit gaps=0 "read=$((3 * total))" "valid=$((3 * valid))" malformed=3
pass "audit after the replays: no gaps"
wl_worker_stop w1 TERM
