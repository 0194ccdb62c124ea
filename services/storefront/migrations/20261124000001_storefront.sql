-- Storefront: orders, JIT split children, exchange and return orders, per-order timeline,
-- HTTP idempotency keys. Statuses are the names of src/machine.rs (text, checked there).

-- Order codes are numbers on the wire (`order_code`); one sequence for every order we create.
CREATE SEQUENCE storefront_order_code_seq START WITH 100000001;
-- Our exchange/return ids (`id` / `order_returned_id` on the wire).
CREATE SEQUENCE storefront_after_sale_id_seq START WITH 1;

CREATE TABLE orders (
    order_code         BIGINT PRIMARY KEY,
    uid                BIGINT      NOT NULL,
    -- JIT split: a child names its parent; the parent has is_split_parent = true.
    parent_order_code  BIGINT REFERENCES orders (order_code),
    is_split_parent    BOOLEAN     NOT NULL DEFAULT false,
    -- 'customer' = placed through the API; 'exchange' = the ERP's replacement order of an exchange.
    kind               TEXT        NOT NULL DEFAULT 'customer',
    status             TEXT        NOT NULL,
    order_amount       NUMERIC(14, 2) NOT NULL,
    shipping_cost      NUMERIC(14, 2) NOT NULL,
    -- Delivery address (the fields of order.deliveryAddress).
    address            JSONB       NOT NULL,
    remark             TEXT        NOT NULL DEFAULT '',
    paid_amount        NUMERIC(14, 2),
    pay_type           INTEGER,
    payment_gateway    TEXT,
    gateway_trade_no   TEXT,
    paid_at            TIMESTAMPTZ,
    invoice_pdf_url    TEXT,
    -- 0 blue, 1 red (the latest invoice; the history is in order_invoices).
    invoice_type       SMALLINT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX orders_by_uid ON orders (uid, created_at DESC);
CREATE INDEX orders_by_parent ON orders (parent_order_code) WHERE parent_order_code IS NOT NULL;
-- The auto-cancel sweep scans only unpaid orders.
CREATE INDEX orders_unpaid ON orders (created_at) WHERE status = 'pending_payment';

CREATE TABLE order_items (
    order_code   BIGINT      NOT NULL REFERENCES orders (order_code),
    line_no      INTEGER     NOT NULL,
    product_sku  BIGINT      NOT NULL,
    product_skn  BIGINT      NOT NULL,
    warehouse_id BIGINT      NOT NULL,
    buy_number   BIGINT      NOT NULL CHECK (buy_number > 0),
    last_price   NUMERIC(14, 2) NOT NULL CHECK (last_price >= 0),
    PRIMARY KEY (order_code, line_no)
);

-- Waybills: 'delivery' from order.erpstatus 600.
CREATE TABLE shipments (
    id             BIGSERIAL PRIMARY KEY,
    order_code     BIGINT      NOT NULL REFERENCES orders (order_code),
    kind           TEXT        NOT NULL DEFAULT 'delivery',
    express_id     BIGINT      NOT NULL,
    express_number TEXT        NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (order_code, express_id, express_number)
);

-- Carrier tracking events (order.updateExpressInfo), deduplicated by the carrier's uniqueKey.
CREATE TABLE tracking_events (
    unique_key     TEXT PRIMARY KEY,
    order_code     BIGINT      NOT NULL REFERENCES orders (order_code),
    waybill_code   TEXT        NOT NULL,
    logistics_type BIGINT      NOT NULL,
    state          BIGINT      NOT NULL,
    accept_address TEXT        NOT NULL,
    accept_remark  TEXT        NOT NULL,
    event_time     TIMESTAMPTZ,
    received_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tracking_events_by_order ON tracking_events (order_code, event_time);

-- Every electronic invoice the ERP reported (blue, then maybe red).
CREATE TABLE order_invoices (
    id           BIGSERIAL PRIMARY KEY,
    order_code   BIGINT      NOT NULL REFERENCES orders (order_code),
    invoice_type SMALLINT    NOT NULL,
    pdf_url      TEXT        NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (order_code, invoice_type, pdf_url)
);

CREATE TABLE exchange_orders (
    id                 BIGINT PRIMARY KEY,
    order_code         BIGINT      NOT NULL REFERENCES orders (order_code),
    uid                BIGINT      NOT NULL,
    status             TEXT        NOT NULL,
    -- From erp.createChangeOrder.
    erp_exchange_id    BIGINT UNIQUE,
    erp_returned_id    BIGINT,
    new_order_code     BIGINT,
    delivery_type      BIGINT      NOT NULL,
    exchange_mode      BIGINT      NOT NULL,
    receipt_time       TEXT        NOT NULL,
    remark             TEXT        NOT NULL,
    -- consignee, mobile, email, province, city, county, address, area_code, zip_code
    address            JSONB       NOT NULL,
    goods              JSONB       NOT NULL,
    -- The customer's waybill for the goods sent back.
    express_id         BIGINT,
    express_name       TEXT,
    express_number     TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX exchange_orders_by_order ON exchange_orders (order_code);

CREATE TABLE return_orders (
    id                   BIGINT PRIMARY KEY,
    order_code           BIGINT      NOT NULL REFERENCES orders (order_code),
    uid                  BIGINT      NOT NULL,
    status               TEXT        NOT NULL,
    erp_returned_id      BIGINT UNIQUE,
    return_amount_mode   TEXT        NOT NULL,
    -- Payee and bank fields of order.createRefundOrder.
    payee_name           TEXT        NOT NULL,
    bank_id              TEXT        NOT NULL,
    bank_name            TEXT        NOT NULL,
    head_bank_name       TEXT        NOT NULL,
    bank_card            TEXT        NOT NULL,
    alipay_account       TEXT        NOT NULL,
    alipay_name          TEXT        NOT NULL,
    area_code            TEXT        NOT NULL,
    province             TEXT        NOT NULL,
    city                 TEXT        NOT NULL,
    county               TEXT        NOT NULL,
    remark               TEXT        NOT NULL,
    goods                JSONB       NOT NULL,
    -- From the ERP (create reply or status 40).
    real_returned_amount NUMERIC(14, 2),
    is_return_coupon     TEXT,
    return_yoho_coin     BIGINT,
    express_id           BIGINT,
    express_name         TEXT,
    express_number       TEXT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX return_orders_by_order ON return_orders (order_code);

-- Every event offered to an order, its exchanges or returns: applied or not, and why.
CREATE TABLE order_timeline (
    id            BIGSERIAL PRIMARY KEY,
    order_code    BIGINT      NOT NULL,
    -- 'order', 'exchange:<id>', 'return:<id>'
    subject       TEXT        NOT NULL,
    -- routing key, 'http' or 'auto-cancel'
    source        TEXT        NOT NULL,
    event         TEXT        NOT NULL,
    applied       BOOLEAN     NOT NULL,
    -- NULL when applied; duplicate | late | terminal | illegal | ... otherwise
    reason        TEXT,
    status_before TEXT,
    status_after  TEXT,
    message_id    TEXT,
    detail        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX order_timeline_by_order ON order_timeline (order_code, id);

-- HTTP Idempotency-Key: the first request inserts the row in its business transaction; a
-- concurrent duplicate blocks on it until that commits, then replays the stored response.
CREATE TABLE idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    request_hash    TEXT        NOT NULL,
    status_code     SMALLINT,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
