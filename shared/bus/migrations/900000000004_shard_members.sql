-- The replicas consuming a sharded subscription, so they can share its shards evenly: every
-- replica renews its row about once a second and treats rows older than a few seconds as gone
-- (a replica that died). Only a hint for balance: which replica works a shard is decided by
-- the broker (single active consumer), so a stale row costs throughput, never order.
-- Unlogged: after a crash of PostgreSQL the replicas simply announce themselves again.
CREATE UNLOGGED TABLE IF NOT EXISTS orderbus_shard_members (
    queue    TEXT        NOT NULL,
    member   TEXT        NOT NULL,
    seen_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (queue, member)
);
