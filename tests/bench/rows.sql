-- rows.sql - what a consumer left in payq's tables, as one JSON object, for phase (j)'s check
-- that payq-worker and the Python peer (tests/bench/peer.py) agree on the same input.
--
-- outcomes: dedup rows by command type and outcome; duplicates: their summed counters;
-- key_reuse: anomalies of that kind; orders: by status; payments: by status; digest: md5
-- over every such row (ordered; NULLs kept apart from empty strings by the row syntax),
-- without the columns that differ by nature (ids, timestamps, consumer_progress).
SELECT json_build_object(
  'outcomes', (SELECT coalesce(json_object_agg(command_type, o), '{}') FROM (
      SELECT command_type, json_object_agg(outcome, n) AS o FROM (
        SELECT command_type, outcome, count(*) AS n FROM payq.processed_commands
        GROUP BY 1, 2) x GROUP BY 1) y),
  'duplicates', (SELECT coalesce(sum(duplicates), 0) FROM payq.processed_commands),
  'key_reuse', (SELECT count(*) FROM payq.anomalies WHERE kind = 'key_reuse'),
  'orders', (SELECT coalesce(json_object_agg(status, n), '{}') FROM (
      SELECT status, count(*) AS n FROM payq.orders GROUP BY 1) x),
  'payments', (SELECT coalesce(json_object_agg(status, n), '{}') FROM (
      SELECT status, count(*) AS n FROM payq.payments GROUP BY 1) x),
  'digest', md5(concat(
    (SELECT string_agg(ROW(order_id, command_id, command_type, outcome, detail,
        encode(payload_sha256, 'hex'), kafka_topic, kafka_partition, kafka_offset,
        duplicates)::text, E'\n' ORDER BY order_id, command_id)
     FROM payq.processed_commands), E'\f',
    (SELECT string_agg(ROW(order_id, amount_minor, currency, customer_id, status, version,
        paid_command_id)::text, E'\n' ORDER BY order_id)
     FROM payq.orders), E'\f',
    (SELECT string_agg(ROW(order_id, command_id, amount_minor, currency, payer_id,
        status)::text, E'\n' ORDER BY order_id, command_id)
     FROM payq.payments), E'\f',
    (SELECT string_agg(ROW(kind, order_id, command_id, detail, kafka_topic, kafka_partition,
        kafka_offset)::text, E'\n' ORDER BY kafka_topic, kafka_partition, kafka_offset)
     FROM payq.anomalies WHERE kind = 'key_reuse'))));
