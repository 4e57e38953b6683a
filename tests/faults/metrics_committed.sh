#!/bin/bash
# The outcome metrics count what was committed, nothing else. After each phase,
# payq_commands_total{type,outcome} must equal the processed_commands rows by command type
# and outcome, and payq_duplicates_total must be 0, since no message is delivered twice.
# (a) The first COMMIT's answer is lost (pgproxy.py) though the COMMIT landed: the retry
#     finds the batch's own rows; they are the batch's outcomes, not duplicates.
# (b) A poison create_order (a trigger refuses its order with 22023) is found by
#     splitting: the rolled-back evaluations that held it count nothing, and the poison
#     command itself, dead-lettered, counts no outcome.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

broker_start --partitions 1
db_create
commit_proxy_start
PORT=$(free_port)
worker_start w1 "PAYQ_DB=$PROXY_DB" PAYQ_HTTP_ADDR="127.0.0.1:$PORT" PAYQ_BATCH_MAX=100
worker_wait_assigned w1

# "type outcome count" per processed_commands group, and the same from /metrics.
db_outcomes() {
	sql "SELECT command_type || ' ' || outcome || ' ' || count(*) FROM payq.processed_commands
	     GROUP BY command_type, outcome ORDER BY 1"
}
metric_outcomes() {
	curl -fsS --max-time 5 "http://127.0.0.1:$PORT/metrics" |
		sed -n 's/^payq_commands_total{type="\([^"]*\)",outcome="\([^"]*\)"} \([0-9.e+]*\)$/\1 \2 \3/p' |
		awk '$3 > 0 { printf "%s %s %d\n", $1, $2, $3 }' | sort
}
metric_value() {
	curl -fsS --max-time 5 "http://127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n { print $2 + 0 }'
}
metrics_match() { [[ $(metric_outcomes) == "$(db_outcomes)" ]]; }
check_metrics() {
	local rc=0 dups
	if ! wait_until 10 metrics_match; then
		violation "$1: payq_commands_total [$(metric_outcomes | tr '\n' ';')] differs from the committed outcomes [$(db_outcomes | tr '\n' ';')]" || rc=1
	fi
	dups=$(metric_value payq_duplicates_total)
	if [[ $dups != 0 ]]; then
		violation "$1: payq_duplicates_total is $dups, though no message was delivered twice" || rc=1
	fi
	((rc)) || pass "$1: payq_commands_total equals the committed outcomes [$(db_outcomes | tr '\n' ';')], no duplicate counted"
	return "$rc"
}

# (a) The first COMMIT's answer is lost; the transaction is committed.
produce_orders 1 10
wait_processed
wait_until 10 grep -q 'dropped COMMIT answer 1' "$WORK/proxy.out" ||
	die "scenario error: the proxy dropped no COMMIT answer"
grep -q 'retrying the batch' "$WORK/w1.log" || die "scenario error: the worker did not retry the batch"
expect check_metrics "lost COMMIT answer"

# (b) Poison found by splitting.
poison=ORD-$$-13
sql "CREATE FUNCTION faults.poison() RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN
         IF NEW.order_id = '$poison' THEN
             RAISE EXCEPTION 'faults: poison order' USING ERRCODE = '22023';
         END IF;
         RETURN NEW;
     END \$\$;
     CREATE TRIGGER poison BEFORE INSERT ON payq.orders
         FOR EACH ROW EXECUTE FUNCTION faults.poison()"
produce_orders 11 15
wait_until 60 progress_at_end || die "the batch with the poison command was not settled in 60 s"
grep -q 'splitting' "$WORK/w1.log" || die "scenario error: the batch was not split"
expect check_metrics "poison found by splitting"
expect check_alive w1
expect check_clean_stop w1
finish
