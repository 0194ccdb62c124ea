-- orderbus-scheduler tables (version range 910000000000-910000000999 is reserved for the scheduler).
-- One claim row per (job, slot): the replica whose INSERT ... ON CONFLICT DO NOTHING returns the
-- row owns the slot. Every later write is fenced by `attempt`, which grows on every (re)claim.
CREATE TABLE IF NOT EXISTS orderbus_scheduler_runs (
    job          TEXT        NOT NULL,
    -- The scheduled instant (UTC) this row stands for.
    slot         TIMESTAMPTZ NOT NULL,
    -- running: a replica holds the lease; pending: waiting for a retry at not_before;
    -- done / failed / skipped: final.
    status       TEXT        NOT NULL CHECK (status IN ('running', 'pending', 'done', 'failed', 'skipped')),
    -- Fencing token: 1 at the first claim, +1 at every retry or takeover; 0 for skipped slots.
    attempt      INTEGER     NOT NULL,
    -- Failed attempts so far (the job returned an error, or its runner stopped renewing the lease).
    failures     INTEGER     NOT NULL DEFAULT 0,
    -- The replica that made the latest claim.
    owner        TEXT        NOT NULL,
    -- While running: the holder renews it; once it has passed, another replica may take over.
    lease_until  TIMESTAMPTZ,
    -- While pending: the earliest time of the next attempt.
    not_before   TIMESTAMPTZ,
    -- Written by the job through its run context; handed to the next attempt.
    checkpoint   JSONB,
    -- Slots that this row stands for: 1, or, for the row written after a gap with no replica
    -- running, the number of missed slots it covers (itself included).
    missed       INTEGER     NOT NULL DEFAULT 1,
    last_error   TEXT,
    claimed_at   TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    PRIMARY KEY (job, slot)
);
-- Takeovers and retries look for unfinished rows of one job.
CREATE INDEX IF NOT EXISTS orderbus_scheduler_runs_unfinished
    ON orderbus_scheduler_runs (job, slot) WHERE status IN ('running', 'pending');
