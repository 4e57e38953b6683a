-- 008_operator_actions.sql - payq-console's action log: who did what, on which plan, with
-- which reason and result (failures and refusals included). Append-only: a trigger
-- refuses UPDATE, DELETE and TRUNCATE, whoever asks.
CREATE TABLE payq.operator_actions (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    role         text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    action       text        NOT NULL CHECK (action IN ('dlq-redrive', 'reconcile-now', 'resolve',
                                                        'audit-repair', 'anomaly-ack')),
    -- plan: a dry run; execute: written before the action runs (no row, no run);
    -- result: what it did; refused: stale, changed, unconfirmed or not allowed.
    phase        text        NOT NULL CHECK (phase IN ('plan', 'execute', 'result', 'refused')),
    plan_id      text        NOT NULL,
    plan_hash    text        NOT NULL,
    target_count integer     NOT NULL CHECK (target_count >= 0),
    targets      jsonb       NOT NULL,
    params       jsonb       NOT NULL,
    reason       text,
    result       text,
    ok           boolean     NOT NULL,
    order_ids    text[]      NOT NULL DEFAULT '{}'
);
CREATE INDEX operator_actions_plan ON payq.operator_actions (plan_id);
CREATE INDEX operator_actions_orders ON payq.operator_actions USING gin (order_ids);

CREATE FUNCTION payq.operator_actions_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payq.operator_actions is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER operator_actions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON payq.operator_actions FOR EACH STATEMENT EXECUTE FUNCTION payq.operator_actions_append_only();

-- An order's timeline finds its anomalies and payments by index, not by a scan.
CREATE INDEX anomalies_order ON payq.anomalies (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX payments_order ON payq.payments (order_id);

-- The console's actions run as payq_worker: it may add rows, never change them.
GRANT SELECT, INSERT ON payq.operator_actions TO payq_worker;
