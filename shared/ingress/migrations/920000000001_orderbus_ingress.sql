-- orderbus-ingress tables (versions 920000000000-920000000999 are reserved for the ingress).

-- Dedupe: one row per (partner, idempotency key) whose effect committed, written in the same
-- transaction as the effect and its outbox rows. The primary key is what makes concurrent
-- duplicates wait for (and then replay) the first one's reply instead of applying twice.
CREATE TABLE IF NOT EXISTS ingress_dedupe (
    partner        TEXT        NOT NULL,
    -- The partner's idempotency key, or 'sha256:<hex of the raw body>' when it sends none.
    dedupe_key     TEXT        NOT NULL,
    -- The reply the first request got, replayed byte for byte to every duplicate.
    reply_status   SMALLINT,
    reply_headers  JSONB       NOT NULL DEFAULT '[]'::jsonb,
    reply_body     BYTEA,
    order_ref      TEXT,
    trace_id       TEXT        NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, dedupe_key)
);
CREATE INDEX IF NOT EXISTS ingress_dedupe_created ON ingress_dedupe (created_at);

-- Ingress log: every webhook request, whatever became of it.
CREATE TABLE IF NOT EXISTS ingress_log (
    id                   BIGSERIAL   PRIMARY KEY,
    partner              TEXT        NOT NULL,
    -- The route template (e.g. /webhooks/sweettracker/{token}), never the concrete path: paths
    -- and query strings may carry callback tokens.
    route                TEXT        NOT NULL,
    received_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    trace_id             TEXT        NOT NULL,
    -- Chosen request headers as [[name, value], ...]; credentials replaced by "[redacted]".
    headers              JSONB       NOT NULL DEFAULT '[]'::jsonb,
    -- The first bytes of the raw body (bounded), with the length and hash of what was received.
    body                 BYTEA       NOT NULL,
    body_len             BIGINT      NOT NULL,
    body_truncated       BOOLEAN     NOT NULL,
    -- NULL when the body was not received completely (too large, too slow).
    body_sha256          TEXT,
    -- passed | unsigned | missing | invalid | stale | malformed | unavailable | not_checked
    verification         TEXT        NOT NULL,
    verification_detail  TEXT,
    -- first | duplicate | in_progress, NULL when the request never reached the dedupe step.
    dedupe               TEXT,
    dedupe_key           TEXT,
    -- accepted | refused | replayed | rejected | busy | failed
    outcome              TEXT        NOT NULL,
    status               SMALLINT    NOT NULL,
    error                TEXT,
    order_ref            TEXT,
    duration_ms          DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS ingress_log_received ON ingress_log (received_at);
CREATE INDEX IF NOT EXISTS ingress_log_order ON ingress_log (order_ref, received_at) WHERE order_ref IS NOT NULL;

-- Callback tokens: the unguessable secret we put in a callback URL for partners that sign
-- nothing. Only the SHA-256 of the token is stored, so a database dump does not reveal it.
CREATE TABLE IF NOT EXISTS ingress_callback_tokens (
    token_sha256  TEXT        PRIMARY KEY,
    partner       TEXT        NOT NULL,
    order_ref     TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS ingress_callback_tokens_order ON ingress_callback_tokens (partner, order_ref);
