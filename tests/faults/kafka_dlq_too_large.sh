#!/bin/bash
# A malformed message too large for the DLQ. The worker runs with -X message.max.bytes=1000
# (its DLQ producer's limit), so the full copy of a 5000-byte malformed message fails at
# once in rd_kafka_producev with MSG_SIZE_TOO_LARGE. It must not be produced again for
# ever, nor dropped: it goes to the DLQ as a truncated copy with payq-dlq-reason
# too_large_for_dlq and payq-dlq-original-size 5000, and the batch settles. A small
# malformed message of the same batch keeps its full copy and its own reason.
# shellcheck source=tests/faults/lib.sh
source "${PAYQ_SOURCE_ROOT:-$(dirname "$0")/../..}/tests/faults/lib.sh"

BIG=5000
broker_start --partitions 2
db_create
WORKER_X+=(-X message.max.bytes=1000)
worker_start w1
worker_wait_assigned w1

produce_orders 1 3
{
	printf 'MAL-%s-1\t%s\n' "$$" "$(head -c "$BIG" /dev/zero | tr '\0' x)"
	printf 'MAL-%s-2\tnot json 2\n' "$$"
} | probe produce "$BROKERS" "$TOPIC" 2>>"$WORK/producer.log" || die "producing malformed messages failed"
produce_orders 4 6
expect check_processed 60

probe dump-text "$BROKERS" "$DLQ_TOPIC" >"$WORK/dlq.dump" || die "cannot read $DLQ_TOPIC"
big=$(awk -v k="MAL-$$-1" '$3 == k' "$WORK/dlq.dump")
small=$(awk -v k="MAL-$$-2" '$3 == k' "$WORK/dlq.dump")
read -r _ _ _ _ _ reason size bytes <<<"${big:-- - - - - - - -}"
if [[ $reason == too_large_for_dlq && $size == "$BIG" ]] && ((bytes < BIG)); then
	pass "the 5000-byte message went to the DLQ truncated to $bytes bytes, reason $reason, original size $size"
else
	expect violation "no truncated DLQ copy of the 5000-byte message with reason too_large_for_dlq and original size $BIG (found: '${big:-nothing}')"
fi
read -r _ _ _ _ _ reason size bytes <<<"${small:-- - - - - - - -}"
if [[ $reason == not_json && $size == - ]]; then
	pass "the small malformed message kept its full copy ($bytes bytes, reason $reason)"
else
	expect violation "the small malformed message has no full not_json copy (found: '${small:-nothing}')"
fi
expect check_dlq_copies
expect check_committed_end 20
expect check_exactly_once
expect check_progress
expect check_alive w1
expect check_clean_stop w1
finish
