-- 009_payment_transitions.sql - every change of a payment's status, kept for ever.
--
-- payments holds each payment's current status; this table holds how it got there. A
-- trigger appends a row whenever the status changes, whoever changes it: the worker's
-- settle, the reconciler, or a person resolving a payment by hand through
-- `payq-worker reconcile --mark-succeeded/--mark-failed` or payq-console. Rows are never
-- updated or deleted (an append-only trigger, as on operator_actions), so a manual
-- resolution is a new transition, never an edit of the history. A payment's first status
-- is its row's own (created_at); ledger-mode payments, inserted `succeeded` and never
-- changed, add no row and no cost to the hot path.
CREATE TABLE payq.payment_transitions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id  bigint      NOT NULL REFERENCES payq.payments (payment_id),
    order_id    text        NOT NULL,
    from_status text        NOT NULL,
    to_status   text        NOT NULL,
    -- Who: the database role and the program (application_name) that made the change.
    by_role     text        NOT NULL DEFAULT current_user,
    by_program  text        NOT NULL DEFAULT coalesce(current_setting('application_name', true), ''),
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_transitions_order ON payq.payment_transitions (order_id);

CREATE FUNCTION payq.payment_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payq.payment_transitions (payment_id, order_id, from_status, to_status)
    VALUES (NEW.payment_id, NEW.order_id, OLD.status, NEW.status);
    RETURN NULL;
END $$;
CREATE TRIGGER payments_transition AFTER UPDATE OF status ON payq.payments
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION payq.payment_transition();

CREATE FUNCTION payq.payment_transitions_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payq.payment_transitions is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER payment_transitions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON payq.payment_transitions FOR EACH STATEMENT
    EXECUTE FUNCTION payq.payment_transitions_append_only();

GRANT INSERT ON payq.payment_transitions TO payq_worker;
GRANT SELECT ON payq.payment_transitions TO payq_worker, payq_replay, payq_readonly;
