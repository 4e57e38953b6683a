# Seeds PostgreSQL and Kafka for the console suite: dead letters of two reasons, unknown
# payments, anomalies, an order with a full timeline and a deliberate audit gap.
# shellcheck shell=bash
seed_all() {
	local dlq=$WL_DLQ topic=$WL_TOPIC group=$WL_GROUP i
	for i in 1 2 3; do
		printf '{"v":1,"type":"pay","order_id":"ord-bad-%s","secret":"4111111111111111"\n' "$i" |
			kcat -b "$PAYQ_TEST_BROKERS" -P -t "$dlq" -p 0 -k "ord-bad-$i" \
				-H payq-dlq-reason=not_json -H "payq-dlq-topic=$topic" \
				-H payq-dlq-partition=0 -H "payq-dlq-offset=$((100 + i))" \
				-H "payq-dlq-group=$group" -H "payq-dlq-timestamp=$(date +%s%3N)"
	done
	printf '{"v":9,"type":"pay","order_id":"ord-v9"}' |
		kcat -b "$PAYQ_TEST_BROKERS" -P -t "$dlq" -p 1 -k ord-v9 \
			-H payq-dlq-reason=unsupported_version -H "payq-dlq-topic=$topic" \
			-H payq-dlq-partition=1 -H payq-dlq-offset=7 -H "payq-dlq-group=$group" \
			-H "payq-dlq-timestamp=$(date +%s%3N)"
	# A command on the topic that no worker ever processed: the audit's gap.
	printf '{"v":1,"type":"create_order","order_id":"ord-gap","command_id":"c-gap","amount_minor":500,"currency":"EUR"}' |
		kcat -b "$PAYQ_TEST_BROKERS" -P -t "$topic" -p 2 -k ord-gap
	psql "$WL_DB" -XAtq -v ON_ERROR_STOP=1 -v topic="$topic" -v grp="$group" <<'SQL'
INSERT INTO payq.orders (order_id, amount_minor, currency, status) VALUES
  ('ord-unknown-1', 1200, 'EUR', 'unpaid'), ('ord-unknown-2', 3400, 'EUR', 'unpaid'),
  ('ord-timeline', 990, 'EUR', 'unpaid');
INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, status, idempotency_key,
                           attempts, created_at)
VALUES ('ord-unknown-1', 'pay-1', 1200, 'EUR', 'unknown', 'key-unknown-1', 2, now() - interval '10 minutes'),
       ('ord-unknown-2', 'pay-2', 3400, 'EUR', 'unknown', 'key-unknown-2', 5, now() - interval '2 hours'),
       ('ord-timeline', 'pay-t', 990, 'EUR', 'pending', 'key-timeline', 0, now() - interval '1 minute');
INSERT INTO payq.processed_commands (order_id, command_id, command_type, payload_sha256, outcome, detail,
                                     kafka_topic, kafka_partition, kafka_offset, duplicates)
VALUES ('ord-timeline', 'c-create', 'create_order', sha256('c'::bytea), 'applied', NULL, :'topic', 3, 0, 1),
       ('ord-timeline', 'pay-t', 'pay', sha256('p'::bytea), 'applied', 'charge pending', :'topic', 3, 1, 0);
INSERT INTO payq.anomalies (kind, order_id, command_id, detail)
VALUES ('unresolved_payment', 'ord-unknown-2', 'pay-2', 'gateway: timeout'),
       ('unresolved_payment', 'ord-timeline', 'pay-t', 'gateway: 503'),
       ('key_reuse', 'ord-timeline', 'c-create', 'same key, other payload');
-- The gap: the group's progress says offset 0 of partition 2 was consumed, and no row
-- and no dead letter stands for it.
INSERT INTO payq.consumer_progress (group_id, topic, partition, next_offset)
VALUES (:'grp', :'topic', 2, 1);
SQL
}
