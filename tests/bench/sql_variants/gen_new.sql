-- gen_new.sql - the head of every "new" variant: one batch of :orders fresh orders, each
-- with create_order + pay (the backlog case), as the arrays the worker sends. pgbench
-- variables cannot be built client-side per transaction, so this one SELECT builds them
-- (text array literals, as payq_sqlbuf_array() sends them) and \gset keeps them. It
-- costs the same in every variant; the "gen" row of the table measures it alone.
\set base random(1, 1000000000000)
\set part :client_id * 100 + random(0, 11)
SELECT
 (SELECT array_agg('sv-' || :base || '-' || g ORDER BY g) FROM generate_series(1, :orders::int) g) AS ids,
 (SELECT array_agg(1000 + g ORDER BY g) FROM generate_series(1, :orders::int) g) AS amounts,
 array_fill('EUR'::text, ARRAY[:orders::int]) AS curs,
 (SELECT array_agg('cust-' || g ORDER BY g) FROM generate_series(1, :orders::int) g) AS custs,
 array_fill('paid'::text, ARRAY[:orders::int]) AS statuses,
 array_fill(2, ARRAY[:orders::int]) AS versions,
 (SELECT array_agg('pc-' || :base || '-' || g || '-2' ORDER BY g) FROM generate_series(1, :orders::int) g) AS paycmds,
 (SELECT array_agg('payer-' || g ORDER BY g) FROM generate_series(1, :orders::int) g) AS payers,
 (SELECT array_agg('sv-' || :base || '-' || ((g + 1) / 2) ORDER BY g) FROM generate_series(1, 2 * :orders::int) g) AS pc_o,
 (SELECT array_agg('pc-' || :base || '-' || ((g + 1) / 2) || '-' || (2 - g % 2) ORDER BY g) FROM generate_series(1, 2 * :orders::int) g) AS pc_c,
 (SELECT array_agg(CASE WHEN g % 2 = 1 THEN 'create_order' ELSE 'pay' END ORDER BY g) FROM generate_series(1, 2 * :orders::int) g) AS pc_t,
 (SELECT array_agg(md5(:base || '-' || g) || md5(g || '-' || :base) ORDER BY g) FROM generate_series(1, 2 * :orders::int) g) AS pc_h,
 array_fill('applied'::text, ARRAY[2 * :orders::int]) AS pc_oc,
 array_fill(NULL::text, ARRAY[2 * :orders::int]) AS pc_d,
 array_fill(:part::int, ARRAY[2 * :orders::int]) AS pc_pa,
 (SELECT array_agg(g::bigint ORDER BY g) FROM generate_series(1, 2 * :orders::int) g) AS pc_off,
 array_fill(0, ARRAY[2 * :orders::int]) AS pc_dup,
 ARRAY[:part::int] AS pr_part, ARRAY[:base::bigint] AS pr_next, '{0}'::bigint[] AS pr_gen,
 '{}'::text[] AS empty_t, '{}'::int[] AS empty_i, '{}'::bigint[] AS empty_b
\gset
