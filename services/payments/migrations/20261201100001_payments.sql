-- The payments service: one row per order that needs paying, its attempts at the bank, and
-- what the bank reported (settlements). Amounts are integer hundredths (Sinopac's wire value:
-- NT$799 -> 79900), never floats.

CREATE TABLE payments (
    order_code        bigint PRIMARY KEY,
    uid               bigint NOT NULL,
    amount_cents      bigint NOT NULL CHECK (amount_cents > 0),
    -- order.submit's create_time (the storefront's auto-cancel clock starts here)
    order_created_at  timestamptz NOT NULL,
    status            text NOT NULL CHECK (status IN ('awaiting_method', 'awaiting_payment', 'paid',
                          'expired', 'failed', 'cancelled', 'refund_needed')),
    -- why ops should look: amount_mismatch, duplicate_payment, stuck
    flag              text,
    flag_detail       text,
    settled_via       text CHECK (settled_via IN ('backend_url', 'return_url', 'sweep')),
    settled_at        timestamptz,
    cancelled_at      timestamptz,
    -- reconciliation sweep bookkeeping
    sweep_attempts    integer NOT NULL DEFAULT 0,
    next_sweep_at     timestamptz,
    escalated_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payments_sweep_due ON payments (next_sweep_at)
    WHERE status = 'awaiting_payment' AND escalated_at IS NULL;

-- One OrderCreate at the bank (the customer picked a method). `order_no` is our Sinopac OrderNo.
CREATE TABLE payment_attempts (
    id              bigserial PRIMARY KEY,
    order_code      bigint NOT NULL REFERENCES payments (order_code),
    order_no        text NOT NULL UNIQUE,
    pay_type        text NOT NULL CHECK (pay_type IN ('A', 'C')),
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    ts_no           text,
    bank_code       text,
    atm_account     text,
    web_atm_url     text,
    card_pay_url    text,
    -- ATM: the end of ExpireDate (23:59:59 bank time); card: the card page's end
    expires_at      timestamptz NOT NULL,
    expire_date     text,
    -- the bank's verified OrderCreate reply (decrypted, Sign checked)
    bank_reply      jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'paid', 'failed', 'expired')),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payment_attempts_order ON payment_attempts (order_code, id);

-- What the bank said about an attempt's payment, whoever learned it first. One row per
-- attempt (the primary key) and at most one published `order.payment` per order (the partial
-- unique index): both are checked by PostgreSQL in the transaction that writes the outbox row.
CREATE TABLE payment_settlements (
    attempt_id      bigint PRIMARY KEY REFERENCES payment_attempts (id),
    order_code      bigint NOT NULL REFERENCES payments (order_code),
    via             text NOT NULL CHECK (via IN ('backend_url', 'return_url', 'sweep')),
    outcome         text NOT NULL CHECK (outcome IN ('paid', 'refund_needed', 'duplicate_payment',
                        'amount_mismatch', 'failed')),
    published       boolean NOT NULL,
    ts_no           text NOT NULL,
    pay_token       text,
    bank_amount_cents bigint,
    bank_paid_at    timestamptz,
    settled_at      timestamptz NOT NULL DEFAULT now(),
    lag_ms          bigint,
    bank_answer     jsonb NOT NULL,
    outbox_message_id uuid
);

CREATE UNIQUE INDEX payment_settlements_one_publish ON payment_settlements (order_code) WHERE published;
CREATE INDEX payment_settlements_order ON payment_settlements (order_code);

-- Every PayToken a notification brought, with what came of it (forged tokens included).
CREATE TABLE payment_tokens (
    pay_token       text NOT NULL,
    via             text NOT NULL,
    order_code      bigint,
    result          text NOT NULL,
    seen_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pay_token, via)
);
