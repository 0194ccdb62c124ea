//! A stateful simulator of the bank's Order API, for tests and the sandbox binary.
//!
//! Real crypto both ways, single-use nonces, orders whose `PayStatus` moves on by itself,
//! BackendURL pushes with retries, OrderQuery with the row cap, and fault injection. Mount
//! [`Simulator::router`] at the path that plays the bank's base URL.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::crypto::{self, HashId};
use crate::envelope::{self, ApiService, Envelope};
use crate::notify::Notification;
use crate::types::{
    fmt_minute, parse_minute, trunc_minute, Amount, AtmInfo, CardInfo, OrderCreateResponse,
    OrderCreateWire, OrderPayQueryResponse, OrderPayQueryWire, OrderQueryResponse, OrderQueryWire,
    OrderRecord, PayType, TsResultContent,
};

/// Success description, with the bank's U+2013 dash.
pub const OK_DESCRIPTION: &str = "S0000 – 處理成功";

/// Failure codes the simulator answers with. The real bank's codes for these cases are
/// \[unknown\] except `E0602`; see the crate README.
pub mod codes {
    pub const MALFORMED: &str = "E0100";
    pub const BAD_SIGN: &str = "E0101";
    pub const BAD_NONCE: &str = "E0102";
    pub const DECRYPT: &str = "E0103";
    pub const INVALID_FIELD: &str = "E0104";
    pub const DUPLICATE_ORDER: &str = "E0105";
    pub const NO_CONDITION: &str = "E0106";
    /// Same value as [`crate::client::ROW_LIMIT_CODE`].
    pub const ROW_LIMIT: &str = "E0107";
    pub const NO_SUCH_TOKEN: &str = "E0108";
    pub const UNKNOWN_SHOP: &str = "E0109";
    pub const BAD_KEY_ID: &str = "E0110";
    pub const UNSUPPORTED_SERVICE: &str = "E0111";
    /// Observed on the real sandbox: 收款方式未啟用.
    pub const PAY_TYPE_DISABLED: &str = "E0602";
}

/// One shop the simulated bank knows.
#[derive(Debug, Clone)]
pub struct SimShop {
    pub shop_no: String,
    pub hash_id: HashId,
    /// Expected `X-KeyID` (checked when [`SimConfig::require_key_id`] is set).
    pub key_id: Option<String>,
}

impl SimShop {
    /// The public iThome/SDK demo shop `NA0249_001` (published in the bank's SDK samples).
    pub fn demo() -> SimShop {
        SimShop {
            shop_no: "NA0249_001".to_owned(),
            hash_id: HashId::demo_na0249(),
            key_id: Some("b5e6986d-8636-4aa0-8c93-441ad14b2098".to_owned()),
        }
    }
}

/// What eventually happens to an order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// Paid after this delay (then BackendURL is pushed).
    Pay {
        #[serde(with = "millis")]
        after: Duration,
    },
    /// Stays unpaid forever.
    Never,
    /// Becomes overdue (`PayFlag=O`, `PayStatus 1?410`) after this delay; no push.
    Expire {
        #[serde(with = "millis")]
        after: Duration,
    },
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// What the bank does when an OrderQuery matches more rows than the cap: \[unknown\].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCapBehaviour {
    /// Return the first `row_cap` rows (oldest first) with `Status=S`.
    Truncate,
    /// Refuse with [`codes::ROW_LIMIT`].
    Fail,
}

/// Shape of failure replies: \[unknown\] on the real bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// A normal signed, encrypted envelope whose message has `Status=F` (when the shop is
    /// known; otherwise [`ErrorShape::Plain`]).
    Envelope,
    /// Plain `{"Status":"F","Description":"…"}` without encryption.
    Plain,
}

/// Faults injected into replies to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyFault {
    /// `/Order` replies carry a Sign that does not match their message.
    BadSignature,
    /// `/Nonce` and `/Order` answer HTTP 500.
    ServerError,
    /// `/Nonce` and `/Order` answer HTTP 200 with a non-JSON body.
    Garbage,
}

/// Simulator settings. `Default` is tuned for local development (short delays).
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub shops: Vec<SimShop>,
    /// Require `X-KeyID` to match the shop's `key_id` (when the shop has one).
    pub require_key_id: bool,
    /// Nonce lifetime (\[unknown\] on the bank; default 5 min). Nonces are single use regardless.
    pub nonce_ttl: Duration,
    /// Default outcome of ATM orders: paid after this delay (the sandbox takes ~10 min).
    pub atm_pay_delay: Duration,
    /// Default outcome of card orders: `Some(d)` = the "customer" pays after `d`; `None` =
    /// never (pay through [`Simulator::pay_now`] or `POST /__sim/orders/{no}/pay`).
    pub card_pay_delay: Option<Duration>,
    /// Orders whose OrderNo ends with this character are never paid (mirrors a blog's use of
    /// the sandbox, \[inferred\]).
    pub never_pay_suffix: Option<char>,
    /// Outcome by wire amount (hundredths), overriding the defaults above.
    pub amount_outcomes: HashMap<u64, Outcome>,
    /// Delay between BackendURL attempts (bank: 10 min).
    pub push_retry_interval: Duration,
    /// Retries after the first attempt (bank: "at most 5 times"; \[inferred\] 1 + 5).
    pub push_max_retries: u32,
    /// Per-attempt timeout of a push.
    pub push_timeout: Duration,
    /// Count a push as acknowledged only if the body is `{"Status":"S"}` (\[unknown\]; default
    /// any 2xx).
    pub require_ack_body: bool,
    /// After a card payment, also POST the `{ShopNo, PayToken}` form to ReturnURL once (what the
    /// customer's browser would do).
    pub post_return_url: bool,
    /// Rows per OrderQuery reply (bank: 300).
    pub row_cap: usize,
    pub over_cap: OverCapBehaviour,
    pub error_shape: ErrorShape,
    /// PayTypes accepted by OrderCreate; others fail with [`codes::PAY_TYPE_DISABLED`].
    pub enabled_pay_types: Vec<String>,
    /// Base of the WebATM/OTP/card page URLs put in replies (not served by the simulator).
    pub web_pay_site: String,
    /// The bank's local time offset from UTC, for `yyyyMMddHHmm` fields (Taiwan: +8).
    pub utc_offset_hours: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            shops: vec![SimShop::demo()],
            require_key_id: true,
            nonce_ttl: Duration::from_secs(300),
            atm_pay_delay: Duration::from_secs(10),
            card_pay_delay: Some(Duration::from_secs(5)),
            never_pay_suffix: Some('9'),
            amount_outcomes: HashMap::new(),
            push_retry_interval: Duration::from_secs(600),
            push_max_retries: 5,
            push_timeout: Duration::from_secs(10),
            require_ack_body: false,
            post_return_url: true,
            row_cap: 300,
            over_cap: OverCapBehaviour::Truncate,
            error_shape: ErrorShape::Envelope,
            enabled_pay_types: vec!["A".to_owned(), "C".to_owned()],
            web_pay_site: "https://sandbox.sinopac.com/QPay.WebPaySite".to_owned(),
            utc_offset_hours: 8,
        }
    }
}

/// Payment state of a simulated order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PayState {
    Unpaid,
    Paid { at: String, pay_token: String },
    Expired,
}

/// Result of one BackendURL/ReturnURL delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushOutcome {
    /// The merchant answered 2xx (and the right body, if required).
    Acked,
    /// Non-2xx status or wrong body.
    Rejected(u16),
    /// Connect error or timeout.
    Unreachable,
    /// Suppressed by the drop-notifications fault.
    Dropped,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushRecord {
    /// `backend` or `return`.
    pub target: &'static str,
    /// 0 = first attempt.
    pub attempt: u32,
    pub outcome: PushOutcome,
}

/// An order to insert directly (tests and demos), bypassing OrderCreate.
#[derive(Debug, Clone)]
pub struct SeedOrder {
    /// Defaults to the first configured shop.
    pub shop_no: Option<String>,
    pub order_no: String,
    pub amount: Amount,
    pub pay_type: PayType,
    /// Bank-local creation time (`TSDate`).
    pub created_at: NaiveDateTime,
    /// Bank-local payment time; `None` = unpaid.
    pub paid_at: Option<NaiveDateTime>,
}

/// A read-only view of one order.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub shop_no: String,
    pub order_no: String,
    pub ts_no: String,
    pub state: PayState,
    pub pushes: Vec<PushRecord>,
    pub acked: bool,
}

/// Errors of the simulator's own API (not wire replies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("unknown shop {0}")]
    UnknownShop(String),
    #[error("order {0} already exists")]
    DuplicateOrder(String),
}

struct SimOrder {
    shop_no: String,
    wire: OrderCreateWire,
    ts_no: String,
    created: NaiveDateTime,
    expire: String,
    state: PayState,
    paid_at: Option<NaiveDateTime>,
    atm: Option<AtmInfo>,
    card: Option<CardInfo>,
    pushes: Vec<PushRecord>,
    acked: bool,
}

impl SimOrder {
    fn pay_status(&self) -> String {
        let state = match self.state {
            PayState::Unpaid => "100",
            PayState::Paid { .. } => "400",
            PayState::Expired => "410",
        };
        format!("1{}{}", self.wire.pay_type.as_str(), state)
    }

    fn record(&self) -> OrderRecord {
        OrderRecord {
            order_no: self.wire.order_no.clone(),
            ts_no: self.ts_no.clone(),
            ts_date: fmt_minute(self.created),
            approved_date: match (&self.wire.pay_type, self.paid_at) {
                (PayType::Card, Some(t)) => fmt_minute(t),
                _ => String::new(),
            },
            pay_date: self.paid_at.map(fmt_minute).unwrap_or_default(),
            amount: Some(self.wire.amount),
            pay_type: self.wire.pay_type.clone(),
            pay_status: self.pay_status(),
            expire_date: self.expire.clone(),
            refund_flag: "N".to_owned(),
            refund_status: String::new(),
            refund_date: String::new(),
            refund_amount: Amount::from_hundredths(0).ok(),
            prdt_name: self.wire.prdt_name.clone(),
            memo: self.wire.memo.clone(),
            param1: self.wire.param1.clone(),
            param2: self.wire.param2.clone(),
            param3: self.wire.param3.clone(),
            atm_param: self.atm.clone(),
            card_param: self.card.clone(),
        }
    }

    fn view(&self) -> OrderView {
        OrderView {
            shop_no: self.shop_no.clone(),
            order_no: self.wire.order_no.clone(),
            ts_no: self.ts_no.clone(),
            state: self.state.clone(),
            pushes: self.pushes.clone(),
            acked: self.acked,
        }
    }
}

#[derive(Default)]
struct Faults {
    reply: Option<ReplyFault>,
    drop_notifications: HashSet<String>,
}

#[derive(Default)]
struct SimState {
    nonces: HashMap<String, (String, Instant)>,
    /// Spent nonces (kept for one TTL, to tell "reused" from "unknown").
    used_nonces: HashMap<String, Instant>,
    orders: Vec<SimOrder>,
    by_no: HashMap<(String, String), usize>,
    tokens: HashMap<String, usize>,
    overrides: HashMap<String, Outcome>,
    faults: Faults,
    ts_seq: u64,
}

struct Inner {
    cfg: SimConfig,
    state: Mutex<SimState>,
    http: reqwest::Client,
}

/// The simulated bank. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

type Reply = Response;

fn plain_failure(code: &str, text: &str) -> Reply {
    Json(json!({"Status": "F", "Description": format!("{code} – {text}")})).into_response()
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Self {
        // A client without timeouts never fails to build; the fallback keeps this infallible.
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.push_timeout)
            .timeout(cfg.push_timeout)
            .build()
            .unwrap_or_default();
        Simulator {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(SimState::default()),
                http,
            }),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock cannot leave the state half-written in a way that
        // matters for a simulator; keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Routes relative to the bank's base URL: `POST /Nonce`, `POST /Order`, and the admin API
    /// under `/__sim/`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/Nonce", post(nonce_handler))
            .route("/Order", post(order_handler))
            .route("/__sim/orders", get(admin_orders))
            .route("/__sim/orders/{order_no}/pay", post(admin_pay))
            .route("/__sim/orders/{order_no}/expire", post(admin_expire))
            .route("/__sim/orders/{order_no}/outcome", post(admin_outcome))
            .route(
                "/__sim/faults",
                get(admin_get_faults).post(admin_set_faults),
            )
            .with_state(self.clone())
    }

    // ----- fault and outcome controls -----------------------------------------------------

    /// Sets (or clears with `None`) the reply fault.
    pub fn set_reply_fault(&self, fault: Option<ReplyFault>) {
        self.lock().faults.reply = fault;
    }

    /// Drops (`true`) or restores (`false`) every notification of `order_no`.
    pub fn drop_notifications_for(&self, order_no: &str, drop: bool) {
        let mut st = self.lock();
        if drop {
            st.faults.drop_notifications.insert(order_no.to_owned());
        } else {
            st.faults.drop_notifications.remove(order_no);
        }
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        self.lock().faults = Faults::default();
    }

    /// Forces the outcome of an order, before or after it is created (applies at creation).
    pub fn set_outcome(&self, order_no: &str, outcome: Outcome) {
        self.lock().overrides.insert(order_no.to_owned(), outcome);
    }

    /// Pays an unpaid order now and starts its notifications. `false` if there is no such
    /// unpaid order.
    pub fn pay_now(&self, order_no: &str) -> bool {
        let idx = self.find(order_no);
        idx.is_some_and(|i| self.mark_paid(i))
    }

    /// Makes an unpaid order overdue now.
    pub fn expire_now(&self, order_no: &str) -> bool {
        let Some(i) = self.find(order_no) else {
            return false;
        };
        let mut st = self.lock();
        match st.orders.get_mut(i) {
            Some(o) if o.state == PayState::Unpaid => {
                o.state = PayState::Expired;
                true
            }
            _ => false,
        }
    }

    /// The order with this OrderNo (first shop that has it).
    pub fn order(&self, order_no: &str) -> Option<OrderView> {
        let i = self.find(order_no)?;
        self.lock().orders.get(i).map(SimOrder::view)
    }

    /// All orders, oldest first.
    pub fn orders(&self) -> Vec<OrderView> {
        self.lock().orders.iter().map(SimOrder::view).collect()
    }

    /// Inserts an order directly, with chosen timestamps; no timers, no notifications.
    pub fn seed_order(&self, seed: SeedOrder) -> Result<String, SimError> {
        let shop_no = match seed.shop_no {
            Some(s) => s,
            None => self
                .inner
                .cfg
                .shops
                .first()
                .map(|s| s.shop_no.clone())
                .ok_or_else(|| SimError::UnknownShop(String::new()))?,
        };
        if self.shop(&shop_no).is_none() {
            return Err(SimError::UnknownShop(shop_no));
        }
        let wire = OrderCreateWire {
            shop_no: shop_no.clone(),
            order_no: seed.order_no.clone(),
            amount: seed.amount,
            currency_id: "TWD".to_owned(),
            pay_type: seed.pay_type,
            prdt_name: "seeded".to_owned(),
            ..OrderCreateWire::default()
        };
        let mut st = self.lock();
        let key = (shop_no.clone(), seed.order_no.clone());
        if st.by_no.contains_key(&key) {
            return Err(SimError::DuplicateOrder(seed.order_no));
        }
        let ts_no = next_ts_no(&mut st, &shop_no);
        let state = match seed.paid_at {
            Some(t) => PayState::Paid {
                at: fmt_minute(t),
                pay_token: new_pay_token(),
            },
            None => PayState::Unpaid,
        };
        let (atm, card) = self.payment_info(&wire, &ts_no);
        let order = SimOrder {
            shop_no,
            wire,
            ts_no: ts_no.clone(),
            created: seed.created_at,
            expire: fmt_minute(seed.created_at + chrono::Duration::days(7)),
            state,
            paid_at: seed.paid_at,
            atm,
            card,
            pushes: Vec::new(),
            acked: false,
        };
        let idx = st.orders.len();
        if let PayState::Paid { pay_token, .. } = &order.state {
            st.tokens.insert(pay_token.clone(), idx);
        }
        st.orders.push(order);
        st.by_no.insert(key, idx);
        Ok(ts_no)
    }

    // ----- internals ------------------------------------------------------------------------

    fn find(&self, order_no: &str) -> Option<usize> {
        let st = self.lock();
        st.orders.iter().position(|o| o.wire.order_no == order_no)
    }

    fn shop(&self, shop_no: &str) -> Option<&SimShop> {
        self.inner.cfg.shops.iter().find(|s| s.shop_no == shop_no)
    }

    fn now_local(&self) -> NaiveDateTime {
        chrono::Utc::now().naive_utc() + chrono::Duration::hours(self.inner.cfg.utc_offset_hours)
    }

    fn issue_nonce(&self, shop_no: &str) -> String {
        let n = make_nonce(self.now_local());
        let mut st = self.lock();
        let ttl = self.inner.cfg.nonce_ttl;
        // Forget expired nonces so the map stays small on a long-running sandbox.
        st.nonces.retain(|_, (_, t)| t.elapsed() <= ttl);
        st.used_nonces.retain(|_, t| t.elapsed() <= ttl);
        st.nonces
            .insert(n.clone(), (shop_no.to_owned(), Instant::now()));
        n
    }

    /// Spends a request nonce; `Err` carries the failure description.
    fn consume_nonce(&self, shop_no: &str, nonce: &str) -> Result<(), &'static str> {
        let mut st = self.lock();
        if st.used_nonces.contains_key(nonce) {
            return Err("Nonce 已使用");
        }
        match st.nonces.remove(nonce) {
            Some((shop, issued)) => {
                st.used_nonces.insert(nonce.to_owned(), Instant::now());
                if shop != shop_no {
                    Err("Nonce 不屬於此商店")
                } else if issued.elapsed() > self.inner.cfg.nonce_ttl {
                    Err("Nonce 已逾期")
                } else {
                    Ok(())
                }
            }
            None => Err("Nonce 無效"),
        }
    }

    fn outcome_for(&self, wire: &OrderCreateWire, st: &SimState) -> Outcome {
        let cfg = &self.inner.cfg;
        if let Some(o) = st.overrides.get(&wire.order_no) {
            return *o;
        }
        if let Some(o) = cfg.amount_outcomes.get(&wire.amount.wire_value()) {
            return *o;
        }
        if cfg
            .never_pay_suffix
            .is_some_and(|c| wire.order_no.ends_with(c))
        {
            return Outcome::Never;
        }
        match wire.pay_type {
            PayType::Atm => Outcome::Pay {
                after: cfg.atm_pay_delay,
            },
            _ => match cfg.card_pay_delay {
                Some(after) => Outcome::Pay { after },
                None => Outcome::Never,
            },
        }
    }

    fn payment_info(
        &self,
        wire: &OrderCreateWire,
        ts_no: &str,
    ) -> (Option<AtmInfo>, Option<CardInfo>) {
        let site = self.inner.cfg.web_pay_site.trim_end_matches('/');
        let tk = uuid::Uuid::new_v4();
        match wire.pay_type {
            PayType::Atm => {
                let pay_no: String = (0..14)
                    .map(|i| {
                        if i < 3 {
                            '9'
                        } else {
                            char::from(b'0' + rand::random_range(0..10u8))
                        }
                    })
                    .collect();
                (
                    Some(AtmInfo {
                        atm_pay_no: pay_no,
                        web_atm_url: format!("{site}/Bridge/PayWebATM?TD={ts_no}&TK={tk}"),
                        otp_url: format!("{site}/Bridge/PayOTP?TD={ts_no}&TK={tk}"),
                        bank_no: "807".to_owned(),
                        acct_no: "01700100003411".to_owned(),
                    }),
                    None,
                )
            }
            _ => (
                None,
                Some(CardInfo {
                    card_pay_url: format!("{site}/Bridge/PayCard?TD={ts_no}&TK={tk}"),
                    ..CardInfo::default()
                }),
            ),
        }
    }

    /// Marks an order paid and starts its notifications; `false` unless it was unpaid.
    fn mark_paid(&self, idx: usize) -> bool {
        let now = self.now_local();
        {
            let mut st = self.lock();
            let token = new_pay_token();
            let Some(o) = st.orders.get_mut(idx) else {
                return false;
            };
            if o.state != PayState::Unpaid {
                return false;
            }
            o.state = PayState::Paid {
                at: fmt_minute(now),
                pay_token: token.clone(),
            };
            o.paid_at = Some(now);
            if o.wire.pay_type == PayType::Card {
                o.card = o.card.take().map(|c| CardInfo {
                    left_cc_no: "400361".to_owned(),
                    right_cc_no: "7729".to_owned(),
                    auth_code: "123456".to_owned(),
                    cc_exp_date: "2912".to_owned(),
                    ..c
                });
            }
            st.tokens.insert(token, idx);
        }
        self.spawn_pushes(idx);
        true
    }

    fn spawn_pushes(&self, idx: usize) {
        // Outside a runtime (e.g. a sync caller) there is nowhere to run the pushes: skip them
        // rather than panic; OrderQuery still shows the payment.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: notifications not sent");
            return;
        };
        let sim = self.clone();
        handle.spawn(async move { sim.push_loop(idx).await });
        if self.inner.cfg.post_return_url {
            let sim = self.clone();
            handle.spawn(async move { sim.post_return(idx).await });
        }
    }

    fn notification_of(&self, idx: usize) -> Option<(String, String, Notification, bool)> {
        let st = self.lock();
        let o = st.orders.get(idx)?;
        let PayState::Paid { pay_token, .. } = &o.state else {
            return None;
        };
        let dropped = st.faults.drop_notifications.contains(&o.wire.order_no);
        Some((
            o.wire.backend_url.clone(),
            o.wire.return_url.clone(),
            Notification {
                shop_no: o.shop_no.clone(),
                pay_token: pay_token.clone(),
            },
            dropped,
        ))
    }

    fn record_push(&self, idx: usize, rec: PushRecord) {
        let mut st = self.lock();
        if let Some(o) = st.orders.get_mut(idx) {
            if rec.target == "backend" && rec.outcome == PushOutcome::Acked {
                o.acked = true;
            }
            o.pushes.push(rec);
        }
    }

    async fn push_loop(&self, idx: usize) {
        let cfg = &self.inner.cfg;
        for attempt in 0..=cfg.push_max_retries {
            if attempt > 0 {
                tokio::time::sleep(cfg.push_retry_interval).await;
            }
            let Some((url, _, note, dropped)) = self.notification_of(idx) else {
                return;
            };
            if url.is_empty() {
                return;
            }
            let outcome = if dropped {
                PushOutcome::Dropped
            } else {
                self.deliver_json(&url, &note).await
            };
            let acked = outcome == PushOutcome::Acked;
            tracing::debug!(%url, attempt, ?outcome, "sim: BackendURL push");
            self.record_push(
                idx,
                PushRecord {
                    target: "backend",
                    attempt,
                    outcome,
                },
            );
            if acked {
                return;
            }
        }
    }

    async fn deliver_json(&self, url: &str, note: &Notification) -> PushOutcome {
        match self.inner.http.post(url).json(note).send().await {
            Ok(resp) => {
                let status = resp.status();
                if !status.is_success() {
                    return PushOutcome::Rejected(status.as_u16());
                }
                if self.inner.cfg.require_ack_body {
                    let body = resp.bytes().await.unwrap_or_default();
                    let ok = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .is_some_and(|v| v.get("Status").and_then(Value::as_str) == Some("S"));
                    if !ok {
                        return PushOutcome::Rejected(status.as_u16());
                    }
                }
                PushOutcome::Acked
            }
            Err(_) => PushOutcome::Unreachable,
        }
    }

    async fn post_return(&self, idx: usize) {
        let Some((_, url, note, dropped)) = self.notification_of(idx) else {
            return;
        };
        let is_card = {
            let st = self.lock();
            st.orders
                .get(idx)
                .is_some_and(|o| o.wire.pay_type == PayType::Card)
        };
        if url.is_empty() || !is_card {
            return;
        }
        let outcome = if dropped {
            PushOutcome::Dropped
        } else {
            match self.inner.http.post(&url).form(&note).send().await {
                Ok(r) if r.status().is_success() => PushOutcome::Acked,
                Ok(r) => PushOutcome::Rejected(r.status().as_u16()),
                Err(_) => PushOutcome::Unreachable,
            }
        };
        self.record_push(
            idx,
            PushRecord {
                target: "return",
                attempt: 0,
                outcome,
            },
        );
    }

    fn schedule(&self, idx: usize, outcome: Outcome) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sim = self.clone();
        match outcome {
            Outcome::Never => {}
            Outcome::Pay { after } => {
                handle.spawn(async move {
                    tokio::time::sleep(after).await;
                    sim.mark_paid(idx);
                });
            }
            Outcome::Expire { after } => {
                handle.spawn(async move {
                    tokio::time::sleep(after).await;
                    let mut st = sim.lock();
                    if let Some(o) = st.orders.get_mut(idx) {
                        if o.state == PayState::Unpaid {
                            o.state = PayState::Expired;
                        }
                    }
                });
            }
        }
    }

    // ----- wire replies ---------------------------------------------------------------------

    fn failure(
        &self,
        shop: Option<&SimShop>,
        service: ApiService,
        code: &str,
        text: &str,
    ) -> Reply {
        match (self.inner.cfg.error_shape, shop) {
            (ErrorShape::Envelope, Some(shop)) => {
                let mut m = Map::new();
                m.insert("ShopNo".into(), Value::String(shop.shop_no.clone()));
                m.insert("Status".into(), Value::String("F".into()));
                m.insert(
                    "Description".into(),
                    Value::String(format!("{code} – {text}")),
                );
                self.sealed(shop, service, &m)
            }
            _ => plain_failure(code, text),
        }
    }

    fn sealed(&self, shop: &SimShop, service: ApiService, msg: &Map<String, Value>) -> Reply {
        // The reply nonce is fresh and only serves as IV/Sign salt; it is not redeemable.
        let nonce = make_nonce(self.now_local());
        let mut env = envelope::seal(service, &shop.shop_no, &shop.hash_id, &nonce, msg);
        if self.lock().faults.reply == Some(ReplyFault::BadSignature) {
            env.sign = crypto::sign(msg, "tampered", &shop.hash_id);
        }
        Json(env).into_response()
    }

    fn transport_fault(&self) -> Option<Reply> {
        match self.lock().faults.reply {
            Some(ReplyFault::ServerError) => {
                Some((StatusCode::INTERNAL_SERVER_ERROR, "simulated server error").into_response())
            }
            Some(ReplyFault::Garbage) => {
                Some((StatusCode::OK, "<html>\u{0}garbage{").into_response())
            }
            _ => None,
        }
    }

    fn check_key_id(&self, shop: &SimShop, headers: &HeaderMap) -> bool {
        if !self.inner.cfg.require_key_id {
            return true;
        }
        match &shop.key_id {
            None => true,
            Some(expected) => headers
                .get("X-KeyID")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected)),
        }
    }

    fn handle_order(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        let Ok(env) = serde_json::from_slice::<Envelope>(body) else {
            return plain_failure(codes::MALFORMED, "格式錯誤");
        };
        let Some(shop) = self.shop(&env.shop_no).cloned() else {
            return plain_failure(codes::UNKNOWN_SHOP, "商店代號錯誤");
        };
        let Some(service) = ApiService::parse(&env.api_service) else {
            return plain_failure(codes::UNSUPPORTED_SERVICE, "APIService 錯誤");
        };
        if !self.check_key_id(&shop, headers) {
            return self.failure(Some(&shop), service, codes::BAD_KEY_ID, "X-KeyID 錯誤");
        }
        if env.version != envelope::VERSION {
            return self.failure(Some(&shop), service, codes::MALFORMED, "Version 錯誤");
        }
        if let Err(text) = self.consume_nonce(&shop.shop_no, &env.nonce) {
            return self.failure(Some(&shop), service, codes::BAD_NONCE, text);
        }
        let msg = match envelope::open(&env, &shop.hash_id) {
            Ok(m) => m,
            Err(crate::error::ProtocolError::BadSignature) => {
                return self.failure(Some(&shop), service, codes::BAD_SIGN, "簽章驗證失敗")
            }
            Err(_) => return self.failure(Some(&shop), service, codes::DECRYPT, "解密失敗"),
        };
        if msg.get("ShopNo").and_then(Value::as_str) != Some(shop.shop_no.as_str()) {
            return self.failure(Some(&shop), service, codes::INVALID_FIELD, "ShopNo 不一致");
        }
        let result = match service {
            ApiService::OrderCreate => self.svc_order_create(&shop, msg),
            ApiService::OrderPayQuery => self.svc_order_pay_query(&shop, msg),
            ApiService::OrderQuery => self.svc_order_query(&shop, msg),
            _ => Err((codes::UNSUPPORTED_SERVICE, "模擬器未支援此服務".to_owned())),
        };
        match result {
            Ok(reply) => self.sealed(&shop, service, &reply),
            Err((code, text)) => self.failure(Some(&shop), service, code, &text),
        }
    }

    fn svc_order_create(&self, shop: &SimShop, msg: Map<String, Value>) -> SvcResult {
        let wire: OrderCreateWire = serde_json::from_value(Value::Object(msg))
            .map_err(|e| (codes::INVALID_FIELD, format!("參數錯誤: {e}")))?;
        let invalid = |t: &str| Err((codes::INVALID_FIELD, format!("參數錯誤: {t}")));
        let n = wire.order_no.chars().count();
        if n == 0 || n > 50 || wire.order_no.contains(['\'', '"', '%']) {
            return invalid("OrderNo");
        }
        if wire.amount.wire_value() == 0 {
            return invalid("Amount");
        }
        if wire.currency_id != "TWD" {
            return invalid("CurrencyID");
        }
        if wire.prdt_name.trim().is_empty() || wire.prdt_name.chars().count() > 60 {
            return invalid("PrdtName");
        }
        if !self
            .inner
            .cfg
            .enabled_pay_types
            .iter()
            .any(|p| p == wire.pay_type.as_str())
        {
            return Err((codes::PAY_TYPE_DISABLED, "收款方式未啟用".to_owned()));
        }
        let now = self.now_local();
        let expire = match wire.pay_type {
            PayType::Atm => {
                let Some(d) = wire
                    .atm_param
                    .as_ref()
                    .and_then(|a| NaiveDate::parse_from_str(&a.expire_date, "%Y%m%d").ok())
                else {
                    return invalid("ATMParam.ExpireDate");
                };
                format!("{}2359", d.format("%Y%m%d"))
            }
            PayType::Card => {
                let Some(c) = wire.card_param.as_ref() else {
                    return invalid("CardParam");
                };
                match c.auto_billing.as_str() {
                    "Y" => {}
                    "N" if c.exp_billing_days.is_some_and(|d| (1..=7).contains(&d)) => {}
                    _ => return invalid("CardParam.AutoBilling/ExpBillingDays"),
                }
                if c.exp_minutes.is_some_and(|m| !(1..=30).contains(&m)) {
                    return invalid("CardParam.ExpMinutes");
                }
                let mins = i64::from(c.exp_minutes.unwrap_or(10));
                fmt_minute(now + chrono::Duration::minutes(mins))
            }
            PayType::Other(_) => return invalid("PayType"),
        };
        let (idx, outcome, reply) = {
            let mut st = self.lock();
            let key = (shop.shop_no.clone(), wire.order_no.clone());
            if st.by_no.contains_key(&key) {
                return Err((codes::DUPLICATE_ORDER, "訂單編號重複".to_owned()));
            }
            let ts_no = next_ts_no(&mut st, &shop.shop_no);
            let (atm, card) = self.payment_info(&wire, &ts_no);
            let reply = OrderCreateResponse {
                order_no: wire.order_no.clone(),
                shop_no: shop.shop_no.clone(),
                ts_no: ts_no.clone(),
                amount: Some(wire.amount),
                status: "S".to_owned(),
                description: OK_DESCRIPTION.to_owned(),
                param1: wire.param1.clone(),
                param2: wire.param2.clone(),
                param3: wire.param3.clone(),
                pay_type: wire.pay_type.clone(),
                // The create reply has only the payment links, not BankNo/AcctNo.
                atm_param: atm.as_ref().map(|a| AtmInfo {
                    bank_no: String::new(),
                    acct_no: String::new(),
                    ..a.clone()
                }),
                card_param: card.clone(),
            };
            let outcome = self.outcome_for(&wire, &st);
            let idx = st.orders.len();
            st.orders.push(SimOrder {
                shop_no: shop.shop_no.clone(),
                wire,
                ts_no,
                created: now,
                expire,
                state: PayState::Unpaid,
                paid_at: None,
                atm,
                card,
                pushes: Vec::new(),
                acked: false,
            });
            st.by_no.insert(key, idx);
            (idx, outcome, reply)
        };
        self.schedule(idx, outcome);
        to_obj(&reply)
    }

    fn svc_order_pay_query(&self, shop: &SimShop, msg: Map<String, Value>) -> SvcResult {
        let q: OrderPayQueryWire = serde_json::from_value(Value::Object(msg))
            .map_err(|e| (codes::INVALID_FIELD, format!("參數錯誤: {e}")))?;
        let st = self.lock();
        let order = st
            .tokens
            .get(&q.pay_token)
            .and_then(|i| st.orders.get(*i))
            .filter(|o| o.shop_no == shop.shop_no);
        let Some(o) = order else {
            return Err((codes::NO_SUCH_TOKEN, "查無資料".to_owned()));
        };
        let card = o.card.clone().unwrap_or_default();
        let reply = OrderPayQueryResponse {
            shop_no: shop.shop_no.clone(),
            pay_token: q.pay_token.clone(),
            date: fmt_minute(self.now_local()),
            status: "S".to_owned(),
            description: OK_DESCRIPTION.to_owned(),
            ts_result_content: Some(TsResultContent {
                ap_type: "PayOut".to_owned(),
                ts_no: o.ts_no.clone(),
                order_no: o.wire.order_no.clone(),
                shop_no: shop.shop_no.clone(),
                pay_type: o.wire.pay_type.clone(),
                amount: Some(o.wire.amount),
                status: "S".to_owned(),
                description: OK_DESCRIPTION.to_owned(),
                param1: o.wire.param1.clone(),
                param2: o.wire.param2.clone(),
                param3: o.wire.param3.clone(),
                pay_date: o.paid_at.map(fmt_minute).unwrap_or_default(),
                left_cc_no: card.left_cc_no,
                right_cc_no: card.right_cc_no,
                cc_exp_date: card.cc_exp_date,
                cc_token: card.cc_token,
                auth_code: card.auth_code,
            }),
        };
        to_obj(&reply)
    }

    fn svc_order_query(&self, shop: &SimShop, msg: Map<String, Value>) -> SvcResult {
        let q: OrderQueryWire = serde_json::from_value(Value::Object(msg))
            .map_err(|e| (codes::INVALID_FIELD, format!("參數錯誤: {e}")))?;
        let window =
            |s: &str,
             e: &str,
             name: &str|
             -> Result<Option<(NaiveDateTime, NaiveDateTime)>, (&'static str, String)> {
                match (s.trim().is_empty(), e.trim().is_empty()) {
                    (true, true) => Ok(None),
                    (false, false) => match (parse_minute(s), parse_minute(e)) {
                        (Some(a), Some(b)) => Ok(Some((a, b))),
                        _ => Err((codes::INVALID_FIELD, format!("參數錯誤: {name}"))),
                    },
                    _ => Err((codes::INVALID_FIELD, format!("參數錯誤: {name} 起迄需成對"))),
                }
            };
        let order_w = window(&q.order_date_time_s, &q.order_date_time_e, "OrderDateTime")?;
        let pay_w = window(&q.pay_date_time_s, &q.pay_date_time_e, "PayDateTime")?;
        let order_no = q.order_no.trim();
        let pay_type = q.pay_type.trim();
        let pay_flag = q.pay_flag.trim();
        if order_no.is_empty()
            && pay_type.is_empty()
            && pay_flag.is_empty()
            && order_w.is_none()
            && pay_w.is_none()
        {
            return Err((codes::NO_CONDITION, "查詢條件至少需選擇一項".to_owned()));
        }
        if !matches!(pay_flag, "" | "Y" | "N" | "O") {
            return Err((codes::INVALID_FIELD, "參數錯誤: PayFlag".to_owned()));
        }
        let in_w = |t: NaiveDateTime, w: (NaiveDateTime, NaiveDateTime)| {
            let t = trunc_minute(t);
            w.0 <= t && t <= w.1
        };
        let st = self.lock();
        let mut rows: Vec<&SimOrder> = st
            .orders
            .iter()
            .filter(|o| o.shop_no == shop.shop_no)
            .filter(|o| order_no.is_empty() || o.wire.order_no == order_no)
            .filter(|o| pay_type.is_empty() || o.wire.pay_type.as_str() == pay_type)
            .filter(|o| order_w.is_none_or(|w| in_w(o.created, w)))
            .filter(|o| pay_w.is_none_or(|w| o.paid_at.is_some_and(|p| in_w(p, w))))
            .filter(|o| match pay_flag {
                "Y" => matches!(o.state, PayState::Paid { .. }),
                "N" => o.state == PayState::Unpaid,
                "O" => o.state == PayState::Expired,
                _ => true,
            })
            .collect();
        rows.sort_by_key(|o| o.created);
        let cap = self.inner.cfg.row_cap;
        if rows.len() > cap {
            if self.inner.cfg.over_cap == OverCapBehaviour::Fail {
                return Err((codes::ROW_LIMIT, "查詢筆數超過上限".to_owned()));
            }
            rows.truncate(cap);
        }
        let reply = OrderQueryResponse {
            shop_no: shop.shop_no.clone(),
            date: fmt_minute(self.now_local()),
            status: "S".to_owned(),
            description: OK_DESCRIPTION.to_owned(),
            order_list: rows.into_iter().map(SimOrder::record).collect(),
        };
        to_obj(&reply)
    }
}

type SvcResult = Result<Map<String, Value>, (&'static str, String)>;

fn to_obj(v: &impl Serialize) -> SvcResult {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err((codes::MALFORMED, "內部錯誤".to_owned())),
    }
}

fn next_ts_no(st: &mut SimState, shop_no: &str) -> String {
    st.ts_seq += 1;
    let prefix: String = shop_no.split('_').next().unwrap_or(shop_no).to_owned();
    format!("{prefix}{:08}", st.ts_seq)
}

fn new_pay_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A nonce in the bank's observed shape: base64 of `<ms since 0001-01-01>.<frac>:<64 hex>`.
fn make_nonce(now_local: NaiveDateTime) -> String {
    const EPOCH_OFFSET_MS: i64 = 62_135_596_800_000;
    let ms = now_local.and_utc().timestamp_millis() + EPOCH_OFFSET_MS;
    let frac = rand::random_range(0..10u8);
    let raw = format!("{ms}.{frac}:{}", hex::encode(rand::random::<[u8; 32]>()));
    base64::engine::general_purpose::STANDARD.encode(raw)
}

// ----- handlers ----------------------------------------------------------------------------------

async fn nonce_handler(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Reply {
    if let Some(r) = sim.transport_fault() {
        return r;
    }
    let shop_no = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("ShopNo").and_then(Value::as_str).map(str::to_owned));
    let Some(shop) = shop_no.and_then(|s| sim.shop(&s).cloned()) else {
        return plain_failure(codes::UNKNOWN_SHOP, "商店代號錯誤");
    };
    if !sim.check_key_id(&shop, &headers) {
        return plain_failure(codes::BAD_KEY_ID, "X-KeyID 錯誤");
    }
    Json(json!({ "Nonce": sim.issue_nonce(&shop.shop_no) })).into_response()
}

async fn order_handler(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Reply {
    if let Some(r) = sim.transport_fault() {
        return r;
    }
    sim.handle_order(&headers, &body)
}

async fn admin_orders(State(sim): State<Simulator>) -> Reply {
    Json(sim.orders()).into_response()
}

async fn admin_pay(State(sim): State<Simulator>, Path(order_no): Path<String>) -> Reply {
    if sim.pay_now(&order_no) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::CONFLICT, "no such unpaid order").into_response()
    }
}

async fn admin_expire(State(sim): State<Simulator>, Path(order_no): Path<String>) -> Reply {
    if sim.expire_now(&order_no) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::CONFLICT, "no such unpaid order").into_response()
    }
}

async fn admin_outcome(
    State(sim): State<Simulator>,
    Path(order_no): Path<String>,
    body: Bytes,
) -> Reply {
    match serde_json::from_slice::<Outcome>(&body) {
        Ok(o) => {
            sim.set_outcome(&order_no, o);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// Body of `GET/POST /__sim/faults`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FaultSettings {
    #[serde(default)]
    pub reply: Option<ReplyFault>,
    #[serde(default)]
    pub drop_notifications_for: Vec<String>,
}

async fn admin_get_faults(State(sim): State<Simulator>) -> Reply {
    let st = sim.lock();
    let mut drop: Vec<String> = st.faults.drop_notifications.iter().cloned().collect();
    drop.sort();
    Json(FaultSettings {
        reply: st.faults.reply,
        drop_notifications_for: drop,
    })
    .into_response()
}

async fn admin_set_faults(State(sim): State<Simulator>, body: Bytes) -> Reply {
    match serde_json::from_slice::<FaultSettings>(&body) {
        Ok(f) => {
            let mut st = sim.lock();
            st.faults.reply = f.reply;
            st.faults.drop_notifications = f.drop_notifications_for.into_iter().collect();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}
