-- 001_init.sql - payq's tables: orders, payments, the dedup table, anomalies, progress.

CREATE TABLE payq.orders (
    order_id        text        PRIMARY KEY,
    amount_minor    bigint      NOT NULL CHECK (amount_minor BETWEEN 1 AND 1000000000000000),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    customer_id     text,
    status          text        NOT NULL CHECK (status IN ('unpaid', 'paid', 'cancelled')),
    version         integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    paid_command_id text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'paid') = (paid_command_id IS NOT NULL))
);

CREATE TABLE payq.payments (
    payment_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     text        NOT NULL REFERENCES payq.orders (order_id),
    command_id   text        NOT NULL,
    amount_minor bigint      NOT NULL CHECK (amount_minor BETWEEN 1 AND 1000000000000000),
    currency     text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    payer_id     text,
    status       text        NOT NULL
                 CHECK (status IN ('pending', 'succeeded', 'failed', 'unknown')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- "Paid at most once", enforced by the database whatever the code does: one live
-- payment per order.
CREATE UNIQUE INDEX payments_one_live_per_order
    ON payq.payments (order_id)
    WHERE status IN ('succeeded', 'pending', 'unknown');

-- The dedup table. Idempotency keys are scoped to an order, so it can be sharded
-- by order_id.
CREATE TABLE payq.processed_commands (
    order_id        text        NOT NULL,
    command_id      text        NOT NULL,
    command_type    text        NOT NULL
                    CHECK (command_type IN ('create_order', 'pay', 'cancel_order')),
    payload_sha256  bytea       NOT NULL CHECK (length(payload_sha256) = 32),
    outcome         text        NOT NULL,
    detail          text,
    kafka_topic     text,
    kafka_partition integer,
    kafka_offset    bigint,
    duplicates      integer     NOT NULL DEFAULT 0,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, command_id)
);

CREATE INDEX processed_commands_first_seen ON payq.processed_commands (first_seen_at);

CREATE TABLE payq.anomalies (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL,
    order_id        text,
    command_id      text,
    detail          text,
    kafka_topic     text,
    kafka_partition integer,
    kafka_offset    bigint,
    at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX anomalies_kind_at ON payq.anomalies (kind, at);

-- Written in each batch's own transaction: the next offset to apply per partition.
CREATE TABLE payq.consumer_progress (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Raised by the batch apply when an optimistic version check matched fewer rows than
-- expected. 40001 makes the worker retry the batch.
CREATE FUNCTION payq.expect_rows(expected bigint, actual bigint, what text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF expected <> actual THEN
        RAISE EXCEPTION 'payq: % matched % rows, expected %', what, actual, expected
            USING ERRCODE = 'serialization_failure';
    END IF;
END
$$;
