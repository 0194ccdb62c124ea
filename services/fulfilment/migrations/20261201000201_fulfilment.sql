-- Frotel fulfilment: one row per order Frotel fulfils, its callbacks, links and tracking.

CREATE TABLE fulfilment_orders (
    order_code         BIGINT PRIMARY KEY,
    uid                BIGINT NOT NULL,
    parent_order_code  BIGINT,
    warehouse_id       BIGINT NOT NULL,
    -- physical | virtual | service
    kind               TEXT NOT NULL,
    -- Frotel buy_type: 1 COD, 2 online through Frotel's bank, 3 paid to the seller
    buy_type           INT NOT NULL,
    -- awaiting_payment | ready | sending | registered | outcome_unknown | refused | invalid
    state              TEXT NOT NULL,
    -- the order.submit body as received (the Frotel request is rebuilt from it)
    submit             JSONB NOT NULL,
    order_amount       TEXT NOT NULL,
    attempts           INT NOT NULL DEFAULT 0,
    next_attempt_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    sending_since      TIMESTAMPTZ,
    last_error         TEXT,
    -- Frotel factor id: 20 digits, always a string
    factor_id          TEXT UNIQUE,
    factor_total       BIGINT,
    banks              JSONB NOT NULL DEFAULT '[]',
    registered_at      TIMESTAMPTZ,
    -- none | awaiting | failed | paid | escalated (buy_type 2 only)
    payment_state      TEXT NOT NULL DEFAULT 'none',
    payment_deadline_at TIMESTAMPTZ,
    pay_forms          INT NOT NULL DEFAULT 0,
    paid_at            TIMESTAMPTZ,
    payment_tracking_code TEXT,
    -- tracking
    frotel_status      TEXT,
    stage              TEXT,
    barcode            TEXT,
    tracking_done      BOOLEAN NOT NULL DEFAULT false,
    next_poll_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    poll_failures      INT NOT NULL DEFAULT 0,
    shipped_published  BOOLEAN NOT NULL DEFAULT false,
    delivered_published BOOLEAN NOT NULL DEFAULT false,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT fulfilment_orders_kind CHECK (kind IN ('physical', 'virtual', 'service')),
    CONSTRAINT fulfilment_orders_buy_type CHECK (buy_type IN (1, 2, 3)),
    CONSTRAINT fulfilment_orders_state CHECK (state IN ('awaiting_payment', 'ready', 'sending',
        'registered', 'outcome_unknown', 'refused', 'invalid')),
    CONSTRAINT fulfilment_orders_payment_state CHECK (payment_state IN ('none', 'awaiting',
        'failed', 'paid', 'escalated')),
    CONSTRAINT fulfilment_orders_factor_digits CHECK (factor_id IS NULL OR factor_id ~ '^[0-9]+$')
);

CREATE INDEX fulfilment_orders_due ON fulfilment_orders (next_attempt_at) WHERE state = 'ready';
CREATE INDEX fulfilment_orders_parent ON fulfilment_orders (parent_order_code)
    WHERE parent_order_code IS NOT NULL;
CREATE INDEX fulfilment_orders_poll ON fulfilment_orders (next_poll_at)
    WHERE state = 'registered' AND NOT tracking_done;

-- order.payment seen for an order (or a JIT parent) before its order.submit arrived.
CREATE TABLE fulfilment_payments_seen (
    order_code BIGINT PRIMARY KEY,
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Frotel bank callbacks (_i, sb), each verified through checkPay until it answers.
CREATE TABLE fulfilment_callbacks (
    order_code     BIGINT NOT NULL REFERENCES fulfilment_orders (order_code),
    payment_id     TEXT NOT NULL,
    reference      TEXT NOT NULL,
    -- pending | verified | failed | refused
    state          TEXT NOT NULL DEFAULT 'pending',
    attempts       INT NOT NULL DEFAULT 0,
    next_check_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error     TEXT,
    verify_message TEXT,
    tracking_code  TEXT,
    escalated_at   TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    checked_at     TIMESTAMPTZ,
    PRIMARY KEY (order_code, payment_id),
    CONSTRAINT fulfilment_callbacks_state CHECK (state IN ('pending', 'verified', 'failed', 'refused'))
);

CREATE INDEX fulfilment_callbacks_due ON fulfilment_callbacks (next_check_at) WHERE state = 'pending';

-- Download links of virtual goods (shown on the order; never logged in full).
CREATE TABLE fulfilment_download_links (
    order_code BIGINT NOT NULL REFERENCES fulfilment_orders (order_code),
    position   INT NOT NULL,
    name       TEXT NOT NULL,
    size       TEXT NOT NULL,
    mime       TEXT NOT NULL,
    count      TEXT NOT NULL,
    expire     TEXT NOT NULL,
    link       TEXT NOT NULL,
    PRIMARY KEY (order_code, position)
);

-- Every Frotel status change seen by the tracking polls.
CREATE TABLE fulfilment_tracking_events (
    id            BIGSERIAL PRIMARY KEY,
    order_code    BIGINT NOT NULL REFERENCES fulfilment_orders (order_code),
    frotel_status TEXT NOT NULL,
    -- NULL when the status is not in the vocabulary
    stage         TEXT,
    -- advance | same | backwards | after_terminal | flag | unmapped
    progress      TEXT NOT NULL,
    barcode       TEXT NOT NULL,
    observed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX fulfilment_tracking_events_order ON fulfilment_tracking_events (order_code, id);

-- Frotel statuses the vocabulary does not know: recorded and counted, never guessed.
CREATE TABLE fulfilment_unmapped_statuses (
    status          TEXT PRIMARY KEY,
    seen_count      BIGINT NOT NULL DEFAULT 1,
    first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_order_code BIGINT NOT NULL
);
