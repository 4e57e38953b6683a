/* apply_sql.c - the applier's prepared statements (apply.c's top comment says how a
 * batch uses them). */
#include "apply_internal.h"

#include "util.h"

const apply_statement_t apply_statements[] = {
	/* Both reads probe the primary key once per order through LATERAL: on fresh,
	 * unanalysed tables the planner would otherwise guess that an = ANY() over a few
	 * hundred ids matches most of the table and scan all of it. Locks are taken in
	 * order_id order, so two workers never deadlock on the same orders. */
	{"lock_orders",
	 "SELECT o.order_id, o.status, o.version, o.amount_minor, o.currency"
	 " FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS u(id) ORDER BY id) AS k"
	 " JOIN LATERAL (SELECT * FROM payq.orders WHERE order_id = k.id FOR UPDATE) AS o"
	 " ON true"},
	/* Gateway mode also needs to know whether a payment is in progress. */
	{"lock_orders_gw",
	 "SELECT o.order_id, o.status, o.version, o.amount_minor, o.currency,"
	 " EXISTS (SELECT 1 FROM payq.payments p WHERE p.order_id = o.order_id"
	 " AND p.status IN ('pending', 'unknown'))"
	 " FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS u(id) ORDER BY id) AS k"
	 " JOIN LATERAL (SELECT * FROM payq.orders WHERE order_id = k.id FOR UPDATE) AS o"
	 " ON true"},
	/* Every dedup row of the batch's orders, an index range scan on the key's prefix
	 * (OFFSET 0 keeps the planner from flattening the probe into a hash join).
	 * Rows of commands not in the batch are simply never looked up. */
	{"read_dedup",
	 "SELECT p.order_id, p.command_id, encode(p.payload_sha256, 'hex'),"
	 " p.outcome = 'pending', p.outcome, p.kafka_topic, p.kafka_partition, p.kafka_offset"
	 " FROM unnest($1::text[]) AS k(id)"
	 " JOIN LATERAL (SELECT * FROM payq.processed_commands WHERE order_id = k.id"
	 " OFFSET 0) AS p"
	 " ON true"},
	{"ins_orders",
	 "INSERT INTO payq.orders (order_id, amount_minor, currency, customer_id, status,"
	 " version, paid_command_id)"
	 " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],"
	 " $6::int[], $7::text[])"},
	{"upd_orders",
	 "WITH u AS (UPDATE payq.orders o SET status = x.status, version = x.new_version,"
	 " paid_command_id = x.paid, updated_at = now()"
	 " FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::text[])"
	 " AS x(order_id, old_version, new_version, status, paid)"
	 " WHERE o.order_id = x.order_id AND o.version = x.old_version RETURNING 1)"
	 " SELECT payq.expect_rows(cardinality($1::text[]), (SELECT count(*) FROM u),"
	 " 'order version check')"},
	{"ins_payments",
	 "INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, payer_id, status)"
	 " SELECT o, c, a, cur, p, 'succeeded'"
	 " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])"
	 " AS x(o, c, a, cur, p)"},
	/* The idempotency key (payq_gateway_key()) is fixed here, once, for every later
	 * charge and query: they all read it back (read_keys). */
	{"ins_payments_gw",
	 "INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, payer_id, status,"
	 " idempotency_key, next_attempt_at)"
	 " SELECT o, c, a, cur, p, 'pending', k, now() + make_interval(secs => $1)"
	 " FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[])"
	 " AS x(o, c, a, cur, p, k)"},
	/* The stored key of each live payment to charge, and whether it was recorded longer
	 * ago than the channel keeps keys ($3 seconds). */
	{"read_keys",
	 "SELECT k.i, p.idempotency_key, p.created_at < now() - make_interval(secs => $3)"
	 " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(o, c, i)"
	 " JOIN payq.payments p ON p.order_id = k.o AND p.command_id = k.c"
	 " AND p.status IN ('pending', 'unknown') AND p.idempotency_key IS NOT NULL"},
	/* An anomaly about one payment, once: a payment looked at again and again (by the
	 * reconciler) raises it on the first look only. Returns a row when it was new. */
	{"ins_payment_anomaly",
	 "INSERT INTO payq.anomalies (kind, order_id, command_id, detail)"
	 " SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM payq.anomalies"
	 " WHERE kind = $1 AND order_id = $2 AND command_id = $3) RETURNING 1"},
	/* Step 3 of gateway mode, one statement: only payments still pending or unknown
	 * move, and the order and the outcome follow the payment. */
	{"settle",
	 "WITH r AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[],"
	 " $6::text[], $7::text[]) AS r(order_id, command_id, status, charge_id, decline, detail)),"
	 " p AS (UPDATE payq.payments p SET status = r.status,"
	 " gateway_charge_id = coalesce(r.charge_id, p.gateway_charge_id),"
	 " decline_code = r.decline, updated_at = now(),"
	 " next_attempt_at = CASE WHEN r.status = 'unknown'"
	 " THEN now() + make_interval(secs => $1) END"
	 " FROM r WHERE p.order_id = r.order_id AND p.command_id = r.command_id"
	 " AND p.status IN ('pending', 'unknown')"
	 " RETURNING p.order_id, p.command_id, p.status, r.detail),"
	 " o AS (UPDATE payq.orders o SET status = 'paid', version = o.version + 1,"
	 " paid_command_id = p.command_id, updated_at = now()"
	 " FROM p WHERE p.status = 'succeeded' AND o.order_id = p.order_id"
	 " AND o.status = 'unpaid' RETURNING 1),"
	 " c AS (UPDATE payq.processed_commands c SET outcome = CASE p.status"
	 " WHEN 'succeeded' THEN 'applied' WHEN 'failed' THEN 'rejected_declined'"
	 " ELSE 'pending' END, detail = p.detail"
	 " FROM p WHERE c.order_id = p.order_id AND c.command_id = p.command_id RETURNING 1)"
	 " SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM p WHERE status = 'succeeded'),"
	 " (SELECT count(*) FROM o)"},
	{"ins_processed",
#ifdef PAYQ_MUTATION_SKIP_DEDUP
	 /* Deliberately broken build: the dedup check is skipped, so a redelivery is
	  * evaluated again and overwrites the first outcome. */
	 "INSERT INTO payq.processed_commands AS p (order_id, command_id, command_type,"
	 " payload_sha256, outcome, detail, kafka_topic, kafka_partition, kafka_offset, duplicates)"
	 " SELECT o, c, t, decode(h, 'hex'), oc, d, $1, pa, off, dup"
	 " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
	 " $8::int[], $9::bigint[], $10::int[]) AS x(o, c, t, h, oc, d, pa, off, dup)"
	 " ON CONFLICT (order_id, command_id) DO UPDATE SET outcome = EXCLUDED.outcome,"
	 " detail = EXCLUDED.detail"},
#else
	 "INSERT INTO payq.processed_commands (order_id, command_id, command_type,"
	 " payload_sha256, outcome, detail, kafka_topic, kafka_partition, kafka_offset, duplicates)"
	 " SELECT o, c, t, decode(h, 'hex'), oc, d, $1, pa, off, dup"
	 " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
	 " $8::int[], $9::bigint[], $10::int[]) AS x(o, c, t, h, oc, d, pa, off, dup)"},
#endif
	{"upd_dups",
	 "UPDATE payq.processed_commands p SET duplicates = p.duplicates + x.n, last_seen_at = now()"
	 " FROM unnest($1::text[], $2::text[], $3::int[]) AS x(o, c, n)"
	 " WHERE p.order_id = x.o AND p.command_id = x.c"},
	{"ins_anomalies",
	 "INSERT INTO payq.anomalies (kind, order_id, command_id, detail, kafka_topic,"
	 " kafka_partition, kafka_offset)"
	 " SELECT k, o, c, d, $1, pa, off FROM unnest($2::text[], $3::text[], $4::text[],"
	 " $5::text[], $6::int[], $7::bigint[]) AS x(k, o, c, d, pa, off)"},
	/* Progress only moves forward, and only under the reset generation this worker read
	 * on assign: a worker that left the group but still finishes a batch must not raise
	 * the row past a reset made meanwhile. A partition whose generation is not known yet
	 * (NULL) takes the row's current one. RETURNING lists the partitions written. */
	{"upsert_progress",
	 "INSERT INTO payq.consumer_progress AS c (group_id, topic, partition, next_offset,"
	 " reset_generation)"
	 " SELECT $1, $2, pa, n, coalesce(g, (SELECT r.reset_generation"
	 " FROM payq.consumer_progress r WHERE r.group_id = $1 AND r.topic = $2"
	 " AND r.partition = pa), 0)"
	 " FROM unnest($3::int[], $4::bigint[], $5::bigint[]) AS x(pa, n, g)"
	 " ON CONFLICT (group_id, topic, partition) DO UPDATE"
	 " SET next_offset = GREATEST(c.next_offset, EXCLUDED.next_offset), updated_at = now()"
#ifndef PAYQ_MUTATION_UNGUARDED_PROGRESS
	 " WHERE c.reset_generation = EXCLUDED.reset_generation"
#endif
	 " RETURNING partition, reset_generation"},
	{"read_progress", "SELECT next_offset, reset_generation FROM payq.consumer_progress"
			  " WHERE group_id = $1 AND topic = $2 AND partition = $3"},
	{"ins_anomaly",
	 "INSERT INTO payq.anomalies (kind, detail, kafka_topic, kafka_partition, kafka_offset)"
	 " VALUES ($1, $2, $3, $4, $5)"},
	{"read_horizon",
	 "SELECT (extract(epoch FROM horizon) * 1000)::bigint FROM payq.dedup_horizon"},
};

const size_t apply_nstatements = PAYQ_ARRAY_SIZE(apply_statements);
