#!/bin/bash
# payq-replay dlq after a fix: a create_order the database refused (a trigger standing in
# for a bad deploy) is dead-lettered as db_rejected; once the trigger is gone, `dlq
# --reason db_rejected` re-drives it without the payq-dlq-* headers and with
# payq-replay-of, and the worker applies it. Re-driving it again is only a duplicate.
# --dry-run says which dead letters this build's codec accepts now, and sends nothing.
# shellcheck source=tests/lib/common.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/lib/common.sh"
# shellcheck source=tests/integration/worker_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/worker_lib.sh"
# shellcheck source=tests/integration/replay_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/replay_lib.sh"

wl_init rdlq 3
wl_sql "CREATE FUNCTION payq.test_block() RETURNS trigger LANGUAGE plpgsql AS \$\$
        BEGIN
            IF NEW.customer_id = 'blocked' THEN
                RAISE EXCEPTION 'customer is blocked' USING ERRCODE = 'P0001';
            END IF;
            RETURN NEW;
        END \$\$;
        CREATE TRIGGER test_block BEFORE INSERT ON payq.orders
            FOR EACH ROW EXECUTE FUNCTION payq.test_block()" >/dev/null
wl_worker_start w1
wl_wait_assigned w1
{
	wl_cmd_create RD-1 RD-1:c 100
	wl_cmd_create RD-2 RD-2:c 200
	echo 'RD-K|{"v":1,"type":"cancel_order","command_id":"k","order_id":"RD-OTHER"}'
} | wl_produce -H content-type=application/json
wl_wait_drained 60
# The refused command in a batch of its own: what this test is about is the re-drive.
printf 'RD-B|{"v":1,"type":"create_order","command_id":"RD-B:c","order_id":"RD-B","amount_minor":500,"currency":"EUR","customer_id":"blocked"}\n' |
	wl_produce -H content-type=application/json -H x-trace=t1
wl_wait_drained 60
assert_eq 2 "$(wl_sql "SELECT count(*) FROM payq.orders")" "RD-1 and RD-2 applied around the refused one"
assert_eq 0 "$(wl_sql "SELECT count(*) FROM payq.processed_commands WHERE order_id = 'RD-B'")" \
	"RD-B:c has no row: the database refused it"
assert_eq 2 "$(rp_count "$WL_DLQ")" "RD-B:c (db_rejected) and RD-K (key_mismatch) dead-lettered"
rp_expect 0 audit0 audit
rp_assert_fields audit0 gaps=0 db_rejected=1 malformed=1
pass "audit counts the db_rejected dead letter as accounted for: exit 0"

rp_expect 0 dry dlq --dry-run
rp_assert_fields dry read=2 matched=2 valid_now=1 still_malformed=1
grep -q "reason=db_rejected from=$WL_TOPIC/[0-9]*/[0-9]* -> $WL_TOPIC: now valid (create_order RD-B RD-B:c)" "$WL_DIR/dry.out" ||
	die "dry run does not show RD-B: $(cat "$WL_DIR/dry.out")"
grep -q "reason=key_mismatch .*still key_mismatch" "$WL_DIR/dry.out" ||
	die "dry run does not show RD-K as still malformed: $(cat "$WL_DIR/dry.out")"
topic_n=$(rp_count "$WL_TOPIC")
assert_eq 4 "$topic_n" "--dry-run sent nothing"

# The fix.
wl_sql "DROP TRIGGER test_block ON payq.orders" >/dev/null
rp_expect 0 redrive dlq --reason db_rejected
rp_assert_fields redrive read=2 matched=1 sent=1 delivered=1 failed=0
wl_wait_drained 60
assert_eq applied "$(wl_sql "SELECT outcome FROM payq.processed_commands WHERE command_id = 'RD-B:c'")" \
	"after the fix, the re-driven RD-B:c is applied"
assert_eq "unpaid 500" "$(wl_sql "SELECT status, amount_minor FROM payq.orders WHERE order_id = 'RD-B'")" \
	"order RD-B exists, unpaid, amount 500"

copy=$(kcat -C -b "$PAYQ_TEST_BROKERS" -t "$WL_TOPIC" -e -q -f '%k|%h\n' | grep '^RD-B|' | grep 'payq-replay-of' || true)
[[ -n $copy ]] || die "no re-driven copy of RD-B on $WL_TOPIC"
[[ $copy != *payq-dlq-* ]] || die "the re-driven copy kept payq-dlq-* headers: $copy"
[[ $copy == *"payq-replay-of=$WL_DLQ/"* && $copy == *content-type=application/json* && $copy == *x-trace=t1* ]] ||
	die "the re-driven copy lacks payq-replay-of or the original headers: $copy"
pass "the copy has the original headers, no payq-dlq-*, and payq-replay-of=$WL_DLQ/..."

# Life goes on for RD-B, and re-driving again changes nothing.
wl_cmd_pay RD-B RD-B:p 500 | wl_produce
wl_wait_drained 60
state=$(rp_state)
rp_expect 0 again dlq --reason db_rejected
rp_assert_fields again delivered=1
wl_wait_drained 60
assert_eq "$state" "$(rp_state)" "a second re-drive changes nothing"
assert_eq "1 paid 1" "$(wl_sql "SELECT p.duplicates, o.status, (SELECT count(*) FROM payq.payments WHERE order_id = 'RD-B')
                                FROM payq.processed_commands p JOIN payq.orders o USING (order_id)
                                WHERE p.command_id = 'RD-B:c'")" \
	"RD-B:c counted as a duplicate; RD-B paid once"
rp_expect 0 audit1 audit
rp_assert_fields audit1 gaps=0
wl_worker_stop w1 TERM
