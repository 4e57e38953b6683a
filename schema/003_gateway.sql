-- 003_gateway.sql - gateway mode: pay charges money through an external payment channel.
--
-- A gateway payment goes pending (recorded in the batch transaction, before the charge),
-- then succeeded, failed (declined) or unknown (the channel did not answer). pending and
-- unknown are live, so the partial unique index of 001 still allows one per order.
-- The idempotency key sent to the channel is fixed when the row is written and never
-- changes: every retry, redelivery and reconciliation uses it.

ALTER TABLE payq.payments
    ADD COLUMN idempotency_key   text,
    ADD COLUMN gateway_charge_id text,
    ADD COLUMN decline_code      text,
    -- Reconciliation attempts so far, and when the reconciler looks again.
    ADD COLUMN attempts          integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN next_attempt_at   timestamptz,
    ADD COLUMN updated_at        timestamptz NOT NULL DEFAULT now();

-- The reconciler's queue: unresolved payments by due time. Small by construction.
CREATE INDEX payments_unresolved ON payq.payments (next_attempt_at)
    WHERE status IN ('pending', 'unknown');
