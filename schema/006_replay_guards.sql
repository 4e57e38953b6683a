-- 006_replay_guards.sql - what payq-replay needs to stay right at the edges: the offsets
-- that prune really removed, and a reset generation that fences late progress writes.

-- Per partition, the highest Kafka offset among the processed_commands rows that
-- `payq-worker prune` deleted. The dedup horizon is a time, but it protects rows by when
-- the worker first saw a record (first_seen_at), not by the CreateTime its producer set:
-- a record stamped in the future may have been consumed, and its row pruned, long ago.
-- So payq-replay also treats every record at or below this offset as past the horizon.
CREATE TABLE payq.dedup_pruned_offsets (
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    max_offset bigint      NOT NULL CHECK (max_offset >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- Raised by `payq-replay reset-offsets --execute` each time it sets the row. A worker
-- reads it when it is assigned the partition and writes progress only while it is
-- unchanged: a worker that left the group but still finishes a batch cannot raise the
-- progress past a reset made meanwhile (GREATEST alone would undo a rewind).
ALTER TABLE payq.consumer_progress
    ADD COLUMN reset_generation bigint NOT NULL DEFAULT 0 CHECK (reset_generation >= 0);
