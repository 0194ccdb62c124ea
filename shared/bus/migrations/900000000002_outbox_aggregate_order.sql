-- Per-aggregate order: the relay publishes a row only when no older unsent row has the same
-- correlation_id (the order code), so one order's messages reach the broker in commit order even
-- with pipelined batches on several channels and several relay replicas. This index serves that
-- check.
CREATE INDEX IF NOT EXISTS orderbus_outbox_pending_by_aggregate
    ON orderbus_outbox (correlation_id, id) WHERE sent_at IS NULL AND correlation_id IS NOT NULL;
