-- orderbus-bus tables (version range 900000000000-900000000999 is reserved for the bus).
-- Outbox: one row per message to publish, written in the caller's business transaction.
CREATE TABLE IF NOT EXISTS orderbus_outbox (
    id              BIGSERIAL PRIMARY KEY,
    message_id      UUID        NOT NULL UNIQUE,
    exchange        TEXT        NOT NULL,
    routing_key     TEXT        NOT NULL,
    -- Exact body bytes: the contract's JSON, no envelope.
    body            BYTEA       NOT NULL,
    correlation_id  TEXT,
    -- Extra AMQP headers (string values), e.g. traceparent.
    headers         JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- NULL = pending.
    sent_at         TIMESTAMPTZ,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Lease held by a relay replica while it publishes; an expired lease means the claimer died.
    locked_until    TIMESTAMPTZ,
    locked_by       TEXT,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS orderbus_outbox_pending ON orderbus_outbox (next_attempt_at, id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS orderbus_outbox_sent ON orderbus_outbox (sent_at) WHERE sent_at IS NOT NULL;

-- Wake relays right after commit (notifications are delivered at commit, once per statement).
CREATE OR REPLACE FUNCTION orderbus_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orderbus_outbox', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS orderbus_outbox_notify ON orderbus_outbox;
CREATE TRIGGER orderbus_outbox_notify AFTER INSERT ON orderbus_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION orderbus_outbox_notify();

-- Inbox: messages a consumer has applied, written in the handler's transaction.
CREATE TABLE IF NOT EXISTS orderbus_inbox (
    consumer     TEXT        NOT NULL,
    message_id   TEXT        NOT NULL,
    routing_key  TEXT        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS orderbus_inbox_processed ON orderbus_inbox (processed_at);
