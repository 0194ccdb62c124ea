-- orderbus-erp-sim (development/test stand-in for the ERP): what it needs to play the ERP.
-- Nothing here is business data; the database can be dropped at any time.

-- Orders the sim has seen (order.submit / order.payment), to walk each one exactly once.
CREATE TABLE erp_sim_orders (
    order_code        BIGINT PRIMARY KEY,
    uid               BIGINT      NOT NULL,
    parent_order_code BIGINT,
    -- The order.submit body (contract JSON), for erp.deliveryAddressUpdate; NULL if only paid.
    submit            JSONB,
    submitted_at      TIMESTAMPTZ,
    paid_at           TIMESTAMPTZ,
    -- When the 100 -> 200 -> 600 -> 700 walk was scheduled (once per order).
    walk_started_at   TIMESTAMPTZ,
    cancelled_at      TIMESTAMPTZ
);
CREATE INDEX erp_sim_orders_parent ON erp_sim_orders (parent_order_code) WHERE parent_order_code IS NOT NULL;

-- Exchanges ('change') and returns ('refund') the sim created, keyed by its own (ERP) id.
CREATE TABLE erp_sim_after_sales (
    erp_id             BIGINT PRIMARY KEY,
    kind               TEXT        NOT NULL CHECK (kind IN ('change', 'refund')),
    storefront_id      BIGINT      NOT NULL,
    order_code         BIGINT      NOT NULL,
    uid                BIGINT      NOT NULL,
    -- 'rejected' (500/91), 'open' (being walked), 'cancelled' (order.changeRefundCancel).
    state              TEXT        NOT NULL CHECK (state IN ('rejected', 'open', 'cancelled')),
    -- Return amount (decimal text) sent with erp.createRefundOrder and status 40.
    amount             TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    waybill_at         TIMESTAMPTZ,
    UNIQUE (kind, storefront_id)
);

-- Delayed answers: a sweeper moves due rows into the bus outbox (one transaction), so a
-- scheduled message survives restarts and is published exactly like any other outbox row.
CREATE TABLE erp_sim_scheduled (
    id           BIGSERIAL PRIMARY KEY,
    -- What the row belongs to ('order:<code>', 'change:<erp id>', 'refund:<erp id>',
    -- 'unpaid:<code>'): cancelling a subject cancels its pending rows.
    subject      TEXT        NOT NULL,
    due_at       TIMESTAMPTZ NOT NULL,
    routing_key  TEXT        NOT NULL,
    -- Exact contract JSON bytes (BYTEA, not JSONB, which would reorder the keys).
    body         BYTEA       NOT NULL,
    correlation_id TEXT,
    -- Trace context of the message that caused this answer.
    traceparent  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at      TIMESTAMPTZ,
    cancelled_at TIMESTAMPTZ
);
CREATE INDEX erp_sim_scheduled_due ON erp_sim_scheduled (due_at, id) WHERE sent_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX erp_sim_scheduled_subject ON erp_sim_scheduled (subject);
