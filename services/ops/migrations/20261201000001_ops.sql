-- The ops service: the journal of every message on amq.topic, parked messages taken in from
-- every service's parking queue, the audit of replays and purges, and the monitoring intake.

-- Journal: one row per message seen on the bus (the spec's keys through ops.journal, every
-- other key through the alternate exchange into ops.unrouted).
CREATE TABLE journal (
    id             BIGSERIAL   PRIMARY KEY,
    seen_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- the queue it came through: ops.journal or ops.unrouted
    via            TEXT        NOT NULL,
    routing_key    TEXT        NOT NULL,
    -- message_id, else 'sha256:<hex>' of routing key + body (what the consumers' inbox uses)
    msg_key        TEXT        NOT NULL,
    message_id     TEXT,
    app_id         TEXT,
    -- the AMQP timestamp property
    sent_at        TIMESTAMPTZ,
    correlation_id TEXT,
    traceparent    TEXT,
    trace_id       TEXT,
    headers        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    body           BYTEA       NOT NULL,
    -- sha256 of the canonical JSON (keys sorted), else of the bytes: matches monitor reports
    body_sha256    TEXT        NOT NULL,
    -- true when the body decodes as its key's contract
    decoded        BOOLEAN     NOT NULL,
    decode_error   TEXT,
    unrouted       BOOLEAN     NOT NULL,
    -- the orders the message names (order_code, orderCode, parent and source codes, address arrays)
    order_codes    BIGINT[]    NOT NULL DEFAULT '{}',
    -- exchange/return ids it names: exchange:<id>, erp-exchange:<id>, return:<id>, erp-return:<id>
    refs           TEXT[]      NOT NULL DEFAULT '{}'
);
-- A redelivery after a crash between commit and ack is the same row.
CREATE UNIQUE INDEX journal_dedupe ON journal (routing_key, msg_key);
CREATE INDEX journal_by_key_time ON journal (routing_key, seen_at);
CREATE INDEX journal_seen ON journal (seen_at);
CREATE INDEX journal_orders ON journal USING GIN (order_codes);
CREATE INDEX journal_refs ON journal USING GIN (refs);
CREATE INDEX journal_body ON journal (routing_key, body_sha256);

-- Parked messages, taken in from <service>.parking (acked there once stored here).
CREATE TABLE parked (
    id             BIGSERIAL   PRIMARY KEY,
    service        TEXT        NOT NULL,
    -- the work queue it was refused by (x-orderbus-park-queue, else the x-death queue)
    work_queue     TEXT        NOT NULL,
    routing_key    TEXT        NOT NULL,
    message_id     TEXT,
    msg_key        TEXT        NOT NULL,
    -- x-orderbus-parked-at, else the x-death time: the same parking twice is one row
    park_key       TEXT        NOT NULL,
    reason         TEXT        NOT NULL,
    -- decode | database | retries_exhausted | delivery_limit | inbox | panic | handler
    reason_class   TEXT        NOT NULL,
    attempts       INTEGER,
    parked_at      TIMESTAMPTZ NOT NULL,
    ingested_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- the AMQP properties and headers as received (x-death included)
    properties     JSONB       NOT NULL,
    headers        JSONB       NOT NULL,
    body           BYTEA       NOT NULL,
    order_codes    BIGINT[]    NOT NULL DEFAULT '{}',
    trace_id       TEXT,
    -- parked | replayed | purged
    state          TEXT        NOT NULL DEFAULT 'parked',
    state_at       TIMESTAMPTZ,
    audit_id       BIGINT,
    UNIQUE (service, msg_key, park_key)
);
CREATE INDEX parked_open ON parked (service, parked_at) WHERE state = 'parked';
CREATE INDEX parked_orders ON parked USING GIN (order_codes);

-- Every replay, re-drive and purge, real or dry run.
CREATE TABLE audit (
    id             BIGSERIAL   PRIMARY KEY,
    -- replay | redrive | purge
    action         TEXT        NOT NULL,
    dry_run        BOOLEAN     NOT NULL,
    -- the API client, and the OS user the CLI reported
    actor          TEXT        NOT NULL,
    os_user        TEXT,
    reason         TEXT        NOT NULL,
    selector       JSONB       NOT NULL,
    matched        INTEGER     NOT NULL,
    done           INTEGER     NOT NULL DEFAULT 0,
    -- running | done | interrupted (dry runs and purges are done at once)
    state          TEXT        NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at    TIMESTAMPTZ
);

-- The messages of one replay or re-drive: what was selected, and when each was sent.
CREATE TABLE audit_items (
    audit_id       BIGINT      NOT NULL REFERENCES audit (id),
    seq            INTEGER     NOT NULL,
    -- parked.id or journal.id
    source_id      BIGINT      NOT NULL,
    service        TEXT        NOT NULL,
    routing_key    TEXT        NOT NULL,
    -- the message id of the parked/journalled message, and of the copy sent
    message_id_before TEXT,
    message_id_after  TEXT,
    sent_at        TIMESTAMPTZ,
    PRIMARY KEY (audit_id, seq)
);

-- Monitoring intake (POST /erp/order/publishRabbitmqSentEvent): a sender reports a publish.
CREATE TABLE monitor_reports (
    id             BIGSERIAL   PRIMARY KEY,
    received_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- the API client that reported (the sender)
    sender         TEXT        NOT NULL,
    content_type   TEXT,
    raw            BYTEA       NOT NULL,
    topic          TEXT,
    body           TEXT,
    -- ok | unknown_topic | undecodable | malformed
    verdict        TEXT        NOT NULL,
    verdict_detail TEXT,
    body_sha256    TEXT,
    order_codes    BIGINT[]    NOT NULL DEFAULT '{}',
    -- pending | matched | missing | invalid
    state          TEXT        NOT NULL,
    journal_id     BIGINT,
    resolved_at    TIMESTAMPTZ
);
CREATE INDEX monitor_reports_pending ON monitor_reports (received_at) WHERE state = 'pending';
CREATE INDEX monitor_reports_journal ON monitor_reports (journal_id) WHERE journal_id IS NOT NULL;
CREATE INDEX monitor_reports_orders ON monitor_reports USING GIN (order_codes);
CREATE INDEX monitor_reports_sender ON monitor_reports (sender, received_at);
