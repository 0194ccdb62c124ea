-- orderbus-tracking: shipments, their tracking events, exchange replacement orders and the
-- SHOPLINE transaction mapping. Tables are prefixed trk_ (the storefront has its own
-- `shipments` and `tracking_events`; one sqlx check database holds every service's tables).

-- Replacement orders of exchanges, learned from erp.createChangeOrder (code 200): a 600 for
-- one of these orders is a re-delivery (seed 000 OS30), not a delivery (OS02).
CREATE TABLE trk_replacement_orders (
    new_order_code    BIGINT      PRIMARY KEY,
    source_order_code BIGINT      NOT NULL,
    exchange_id       BIGINT      NOT NULL,
    learned_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per waybill of an order.
CREATE TABLE trk_shipments (
    id                 BIGSERIAL   PRIMARY KEY,
    order_code         BIGINT      NOT NULL,
    uid                BIGINT      NOT NULL,
    -- delivery (seed OS02/OS03) | redelivery (an exchange's replacement, OS30/OS31)
    kind               TEXT        NOT NULL CHECK (kind IN ('delivery', 'redelivery')),
    -- seed 000's order_status for this shipment: OS02 / OS30 while shipping, OS03 / OS31 done
    order_status       TEXT        NOT NULL CHECK (order_status IN ('OS02', 'OS03', 'OS30', 'OS31')),
    -- the ERP's express_id (order.erpstatus data.express_id) = logisticsType we publish
    express_id         BIGINT      NOT NULL,
    -- SweetTracker's carrier code from the configured table; NULL = not in the table
    carrier_code       TEXT,
    -- the waybill exactly as given, and without spaces and '-'
    waybill            TEXT        NOT NULL,
    waybill_normalised TEXT        NOT NULL,
    -- who told us about it: erp (order.erpstatus 600) | shopline (a logistics report)
    source             TEXT        NOT NULL,
    -- 'online' unless a channel is configured otherwise (seed: online malls only)
    channel            TEXT        NOT NULL DEFAULT 'online',
    -- the normalised stage (tracking vocabulary); NULL before the first mapped event
    stage              TEXT,
    -- an exception (scan error, failed delivery) was reported; the stage stays
    exception          BOOLEAN     NOT NULL DEFAULT false,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_event_at      TIMESTAMPTZ,
    registered_at      TIMESTAMPTZ,
    registration_error TEXT,
    completed_at       TIMESTAMPTZ,
    UNIQUE (order_code, waybill_normalised)
);
CREATE INDEX trk_shipments_shipping ON trk_shipments (order_status, id)
    WHERE order_status IN ('OS02', 'OS30');

-- Every event received, applied or not.
CREATE TABLE trk_events (
    id           BIGSERIAL   PRIMARY KEY,
    shipment_id  BIGINT      NOT NULL REFERENCES trk_shipments (id),
    -- sweettracker | shopline
    source       TEXT        NOT NULL,
    -- the source's status as received (SweetTracker level, SHOPLINE trackingStatus)
    status       TEXT        NOT NULL,
    -- the normalised stage; NULL = not in the vocabulary (recorded and counted, never guessed)
    stage        TEXT,
    -- what the event did: advance | same_stage | backwards | after_terminal | exception | unmapped
    verdict      TEXT        NOT NULL,
    -- dedupe key of the event (also uniqueKey on order.updateExpressInfo)
    unique_key   TEXT        NOT NULL,
    published    BOOLEAN     NOT NULL,
    event_time   TIMESTAMPTZ NOT NULL,
    location     TEXT        NOT NULL DEFAULT '',
    details      TEXT        NOT NULL DEFAULT '',
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (shipment_id, unique_key)
);

-- SHOPLINE's channelOrderTransactionId → our order, put by whoever creates the SHOPLINE
-- payment transaction (PUT /v1/shopline/transactions/{id}).
CREATE TABLE trk_shopline_transactions (
    channel_order_transaction_id TEXT        PRIMARY KEY,
    order_code                   BIGINT      NOT NULL,
    uid                          BIGINT      NOT NULL,
    express_id                   BIGINT      NOT NULL DEFAULT 0,
    created_at                   TIMESTAMPTZ NOT NULL DEFAULT now()
);
