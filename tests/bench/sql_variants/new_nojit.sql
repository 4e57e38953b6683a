-- new_nojit.sql - candidate 5: today's statements with JIT off (the worker would SET jit = off once per session, like plan_cache_mode; here SET LOCAL in the first pipeline, no extra round trip).
-- (the head gen_new.sql / gen_dup.sql is put in front by ./run)
\startpipeline
BEGIN;
SET LOCAL jit = off;
SELECT p.order_id, p.command_id, encode(p.payload_sha256, 'hex'), p.outcome = 'pending', p.outcome, p.kafka_topic, p.kafka_partition, p.kafka_offset FROM unnest(:ids::text[]) AS k(id) JOIN LATERAL (SELECT * FROM payq.processed_commands WHERE order_id = k.id OFFSET 0) AS p ON true;
SELECT o.order_id, o.status, o.version, o.amount_minor, o.currency FROM (SELECT DISTINCT id FROM unnest(:ids::text[]) AS u(id) ORDER BY id) AS k JOIN LATERAL (SELECT * FROM payq.orders WHERE order_id = k.id FOR UPDATE) AS o ON true;
\endpipeline
\startpipeline
INSERT INTO payq.orders (order_id, amount_minor, currency, customer_id, status, version, paid_command_id) SELECT * FROM unnest(:ids::text[], :amounts::bigint[], :curs::text[], :custs::text[], :statuses::text[], :versions::int[], :paycmds::text[]);
INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, payer_id, status) SELECT o, c, a, cur, p, 'succeeded' FROM unnest(:ids::text[], :paycmds::text[], :amounts::bigint[], :curs::text[], :payers::text[]) AS x(o, c, a, cur, p);
INSERT INTO payq.processed_commands (order_id, command_id, command_type, payload_sha256, outcome, detail, kafka_topic, kafka_partition, kafka_offset, duplicates) SELECT o, c, t, decode(h, 'hex'), oc, d, :topic, pa, off, dup FROM unnest(:pc_o::text[], :pc_c::text[], :pc_t::text[], :pc_h::text[], :pc_oc::text[], :pc_d::text[], :pc_pa::int[], :pc_off::bigint[], :pc_dup::int[]) AS x(o, c, t, h, oc, d, pa, off, dup);
INSERT INTO payq.consumer_progress AS c (group_id, topic, partition, next_offset, reset_generation) SELECT :grp, :topic, pa, n, coalesce(g, (SELECT r.reset_generation FROM payq.consumer_progress r WHERE r.group_id = :grp AND r.topic = :topic AND r.partition = pa), 0) FROM unnest(:pr_part::int[], :pr_next::bigint[], :pr_gen::bigint[]) AS x(pa, n, g) ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = GREATEST(c.next_offset, EXCLUDED.next_offset), updated_at = now() WHERE c.reset_generation = EXCLUDED.reset_generation RETURNING partition, reset_generation;
COMMIT;
\endpipeline
