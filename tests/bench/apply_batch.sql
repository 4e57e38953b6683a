-- apply_batch.sql - one worker batch (worker/apply.c), for pgbench -M prepared.
--
-- Variables (pgbench -D): orders = commands / 2; every order gets create_order + pay in
-- the same batch, which the worker merges into one INSERT of a paid order (version 2),
-- one payment and two dedup rows, as it does for a preproduced `generate` backlog.
-- Order ids are fresh per transaction: a random base plus the position in the batch.
-- The statements are the worker's; the arrays the worker sends as parameters are built
-- here with generate_series, since pgbench variables cannot hold arrays.
\set base random(1, 1000000000000)
\set part random(0, 11)
-- Round trip 1, as worker/apply_sql.c has it: BEGIN, read the batch's dedup rows, then lock
-- its orders, each through LATERAL probes of the primary key.
\startpipeline
BEGIN;
SELECT p.order_id, p.command_id, encode(p.payload_sha256, 'hex'), p.outcome = 'pending',
 p.outcome, p.kafka_topic, p.kafka_partition, p.kafka_offset
 FROM unnest(ARRAY(SELECT 'pb-' || :base || '-' || g
                   FROM generate_series(1, :orders::int) g)::text[]) AS k(id)
 JOIN LATERAL (SELECT * FROM payq.processed_commands WHERE order_id = k.id OFFSET 0) AS p
 ON true;
SELECT o.order_id, o.status, o.version, o.amount_minor, o.currency
 FROM (SELECT DISTINCT id FROM unnest(ARRAY(SELECT 'pb-' || :base || '-' || g
                                            FROM generate_series(1, :orders::int) g)::text[])
       AS u(id) ORDER BY id) AS k
 JOIN LATERAL (SELECT * FROM payq.orders WHERE order_id = k.id FOR UPDATE) AS o ON true;
\endpipeline
-- Round trip 2: the set-based writes and COMMIT.
\startpipeline
INSERT INTO payq.orders (order_id, amount_minor, currency, customer_id, status,
 version, paid_command_id)
 SELECT * FROM unnest(
  ARRAY(SELECT 'pb-' || :base || '-' || g FROM generate_series(1, :orders::int) g)::text[],
  ARRAY(SELECT 1000 + g FROM generate_series(1, :orders::int) g)::bigint[],
  array_fill('EUR'::text, ARRAY[:orders::int]),
  ARRAY(SELECT 'cust-' || g FROM generate_series(1, :orders::int) g)::text[],
  array_fill('paid'::text, ARRAY[:orders::int]),
  array_fill(2, ARRAY[:orders::int]),
  ARRAY(SELECT 'pc-' || :base || '-' || g || '-2' FROM generate_series(1, :orders::int) g)::text[]);
INSERT INTO payq.payments (order_id, command_id, amount_minor, currency, payer_id, status)
 SELECT o, c, a, cur, p, 'succeeded'
 FROM unnest(
  ARRAY(SELECT 'pb-' || :base || '-' || g FROM generate_series(1, :orders::int) g)::text[],
  ARRAY(SELECT 'pc-' || :base || '-' || g || '-2' FROM generate_series(1, :orders::int) g)::text[],
  ARRAY(SELECT 1000 + g FROM generate_series(1, :orders::int) g)::bigint[],
  array_fill('EUR'::text, ARRAY[:orders::int]),
  ARRAY(SELECT 'payer-' || g FROM generate_series(1, :orders::int) g)::text[])
 AS x(o, c, a, cur, p);
INSERT INTO payq.processed_commands (order_id, command_id, command_type,
 payload_sha256, outcome, detail, kafka_topic, kafka_partition, kafka_offset, duplicates)
 SELECT o, c, t, decode(h, 'hex'), oc, d, 'bench', pa, off, dup
 FROM unnest(
  ARRAY(SELECT 'pb-' || :base || '-' || ((g + 1) / 2) FROM generate_series(1, 2 * :orders::int) g)::text[],
  ARRAY(SELECT 'pc-' || :base || '-' || ((g + 1) / 2) || '-' || (2 - g % 2)
        FROM generate_series(1, 2 * :orders::int) g)::text[],
  ARRAY(SELECT CASE WHEN g % 2 = 1 THEN 'create_order' ELSE 'pay' END
        FROM generate_series(1, 2 * :orders::int) g)::text[],
  ARRAY(SELECT md5(:base || '-' || g) || md5(g || '-' || :base)
        FROM generate_series(1, 2 * :orders::int) g)::text[],
  array_fill('applied'::text, ARRAY[2 * :orders::int]),
  array_fill(NULL::text, ARRAY[2 * :orders::int]),
  array_fill(:part::int, ARRAY[2 * :orders::int]),
  ARRAY(SELECT g::bigint FROM generate_series(1, 2 * :orders::int) g)::bigint[],
  array_fill(0, ARRAY[2 * :orders::int]))
 AS x(o, c, t, h, oc, d, pa, off, dup);
INSERT INTO payq.consumer_progress (group_id, topic, partition, next_offset)
 SELECT 'bench-' || :client_id, 'bench', pa, n
 FROM unnest(ARRAY[:part::int], ARRAY[:base::bigint]) AS x(pa, n)
 ON CONFLICT (group_id, topic, partition) DO UPDATE
 SET next_offset = GREATEST(payq.consumer_progress.next_offset, EXCLUDED.next_offset),
 updated_at = now();
COMMIT;
\endpipeline
