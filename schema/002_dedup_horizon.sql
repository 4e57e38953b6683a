-- 002_dedup_horizon.sql - the dedup retention horizon that `payq-worker prune` records.

-- One row. processed_commands rows first seen before `horizon` may have been deleted,
-- so a message older than it is no longer protected by the dedup table: payq-replay
-- refuses to replay past it without --force, and audit does not expect rows for it.
-- prune raises the horizon (never lowers it) before it deletes anything.
CREATE TABLE payq.dedup_horizon (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    horizon     timestamptz NOT NULL,
    pruned_rows bigint      NOT NULL DEFAULT 0 CHECK (pruned_rows >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
