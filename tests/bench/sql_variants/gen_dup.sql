-- gen_dup.sql - the head of every "dup" variant: a replay batch, 2 * :orders commands
-- that are all recorded already (create_order + pay of :orders orders preloaded by the
-- run script as block :blk), as the arrays the worker sends. Same cost in every variant.
\set blk random(1, :blocks)
\set base random(1, 1000000000000)
\set part :client_id * 100 + random(0, 11)
SELECT
 (SELECT array_agg('rp-' || :blk || '-' || g ORDER BY g) FROM generate_series(1, :orders::int) g) AS ids,
 (SELECT array_agg('rp-' || :blk || '-' || ((g + 1) / 2) ORDER BY g) FROM generate_series(1, 2 * :orders::int) g) AS dup_o,
 (SELECT array_agg('rc-' || :blk || '-' || ((g + 1) / 2) || '-' || (2 - g % 2) ORDER BY g) FROM generate_series(1, 2 * :orders::int) g) AS dup_c,
 array_fill(1, ARRAY[2 * :orders::int]) AS dup_n,
 ARRAY[:part::int] AS pr_part, ARRAY[:base::bigint] AS pr_next, '{0}'::bigint[] AS pr_gen,
 '{}'::text[] AS empty_t, '{}'::int[] AS empty_i, '{}'::bigint[] AS empty_b
\gset
