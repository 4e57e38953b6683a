-- dup_nolock.sql - NOT portable as is, a measure only: the replay batch without the FOR UPDATE of its orders (what locking already-recorded orders costs).
-- (the head gen_new.sql / gen_dup.sql is put in front by ./run)
\startpipeline
BEGIN;
SELECT p.order_id, p.command_id, encode(p.payload_sha256, 'hex'), p.outcome = 'pending', p.outcome, p.kafka_topic, p.kafka_partition, p.kafka_offset FROM unnest(:ids::text[]) AS k(id) JOIN LATERAL (SELECT * FROM payq.processed_commands WHERE order_id = k.id OFFSET 0) AS p ON true;
\endpipeline
\startpipeline
UPDATE payq.processed_commands p SET duplicates = p.duplicates + x.n, last_seen_at = now() FROM unnest(:dup_o::text[], :dup_c::text[], :dup_n::int[]) AS x(o, c, n) WHERE p.order_id = x.o AND p.command_id = x.c;
INSERT INTO payq.consumer_progress AS c (group_id, topic, partition, next_offset, reset_generation) SELECT :grp, :topic, pa, n, coalesce(g, (SELECT r.reset_generation FROM payq.consumer_progress r WHERE r.group_id = :grp AND r.topic = :topic AND r.partition = pa), 0) FROM unnest(:pr_part::int[], :pr_next::bigint[], :pr_gen::bigint[]) AS x(pa, n, g) ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = GREATEST(c.next_offset, EXCLUDED.next_offset), updated_at = now() WHERE c.reset_generation = EXCLUDED.reset_generation RETURNING partition, reset_generation;
COMMIT;
\endpipeline
