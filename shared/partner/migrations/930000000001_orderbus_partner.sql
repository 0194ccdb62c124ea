-- orderbus-partner tables (versions 930000000000-930000000999 are reserved for partner calls).

-- Call log: one row per outbound partner call, linked to the order it was made for.
CREATE TABLE IF NOT EXISTS partner_calls (
    id           BIGSERIAL   PRIMARY KEY,
    partner      TEXT        NOT NULL,
    operation    TEXT        NOT NULL,
    order_ref    TEXT,
    started_at   TIMESTAMPTZ NOT NULL,
    duration_ms  DOUBLE PRECISION NOT NULL,
    -- ok | error
    outcome      TEXT        NOT NULL,
    -- NULL when ok; else timeout | connect | transport | http_5xx | http_4xx | decode | protocol
    -- | rejected | invalid
    error_class  TEXT,
    -- The HTTP status when the provider error carries one (successes: NULL, the provider
    -- clients do not expose it).
    http_status  SMALLINT,
    -- The error's text, bounded.
    error        TEXT,
    trace_id     TEXT
);
CREATE INDEX IF NOT EXISTS partner_calls_order ON partner_calls (order_ref, started_at) WHERE order_ref IS NOT NULL;
CREATE INDEX IF NOT EXISTS partner_calls_started ON partner_calls (started_at);
