-- dup_locknew.sql - candidate 3b on a replay batch: every command recorded, so no order is locked; the writes as today.
-- (the head gen_new.sql / gen_dup.sql is put in front by ./run)
\startpipeline
BEGIN;
WITH d AS MATERIALIZED (SELECT p.order_id, p.command_id, encode(p.payload_sha256, 'hex') AS hash, p.outcome = 'pending' AS pending, p.outcome, p.kafka_topic, p.kafka_partition, p.kafka_offset FROM unnest(:ids::text[]) AS k(id) JOIN LATERAL (SELECT * FROM payq.processed_commands WHERE order_id = k.id OFFSET 0) AS p ON true) SELECT 'd' AS kind, d.order_id, d.command_id, d.hash, d.pending, d.outcome, d.kafka_topic, d.kafka_partition, d.kafka_offset, NULL::text AS status, NULL::int AS version, NULL::bigint AS amount_minor, NULL::text AS currency FROM d UNION ALL SELECT 'o', o.order_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, o.status, o.version, o.amount_minor, o.currency FROM (SELECT DISTINCT b.o AS id FROM unnest(:dup_o::text[], :dup_c::text[]) AS b(o, c) WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.order_id = b.o AND d.command_id = b.c AND NOT d.pending) ORDER BY id) AS k JOIN LATERAL (SELECT * FROM payq.orders WHERE order_id = k.id FOR UPDATE) AS o ON true;
\endpipeline
\startpipeline
UPDATE payq.processed_commands p SET duplicates = p.duplicates + x.n, last_seen_at = now() FROM unnest(:dup_o::text[], :dup_c::text[], :dup_n::int[]) AS x(o, c, n) WHERE p.order_id = x.o AND p.command_id = x.c;
INSERT INTO payq.consumer_progress AS c (group_id, topic, partition, next_offset, reset_generation) SELECT :grp, :topic, pa, n, coalesce(g, (SELECT r.reset_generation FROM payq.consumer_progress r WHERE r.group_id = :grp AND r.topic = :topic AND r.partition = pa), 0) FROM unnest(:pr_part::int[], :pr_next::bigint[], :pr_gen::bigint[]) AS x(pa, n, g) ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = GREATEST(c.next_offset, EXCLUDED.next_offset), updated_at = now() WHERE c.reset_generation = EXCLUDED.reset_generation RETURNING partition, reset_generation;
COMMIT;
\endpipeline
