//! A stateful simulator of Frotel's three mirrors (axum 0.8): one shared state, one router per
//! mirror, a fault switch per mirror, a fake bank gateway, download links and Persian tracking
//! statuses. Mount [`Simulator::mirror_router`] under each mirror's base path, or let
//! [`Simulator::serve_mirror`] / [`Simulator::spawn_local`] serve it (only those can make a
//! mirror truly refuse connections for [`Fault::Down`]).

mod api;
mod jalali;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use jalali::gregorian_to_jalali;

/// Fault injected on one mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Serve normally.
    #[default]
    None,
    /// Refuse connections (the listening socket is closed while down — only when served by
    /// [`Simulator::serve_mirror`]); a request that still arrives (router mounted elsewhere) is
    /// aborted without being processed.
    Down,
    /// HTTP 500 with an HTML page, request not processed.
    ServerError,
    /// HTTP 200 with a non-JSON body, request not processed.
    Garbage,
    /// Wait, then process and answer normally.
    Slow(Duration),
    /// Process the request (state changes!), then answer HTTP 500.
    ServerErrorAfterProcessing,
    /// Process the request (state changes!), then drop the connection without an answer.
    DropAfterProcessing,
    /// Process the request (state changes!), then wait before answering.
    SlowAfterProcessing(Duration),
}

/// `send_type` tariff: postage for the first 500 g, per extra 500 g, and the COD surcharge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    /// `send_type` code.
    pub send_type: i64,
    /// Postage (Rial) up to 500 g.
    pub first_500g: i64,
    /// Postage (Rial) per started additional 500 g.
    pub per_extra_500g: i64,
    /// Added for pay-on-delivery (`posti`).
    pub cod_extra: i64,
}

/// A bank gateway the simulator offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimBank {
    /// Gateway id.
    pub id: i64,
    /// Name as shown in registerOrder (`"ملت"`).
    pub name: String,
    /// Name as shown in orderPay (`"بانك ملت"`).
    pub long_name: String,
    /// Logo URL.
    pub logo: String,
}

/// Business error codes. Frotel publishes no table (`[unknown]`); these are the simulator's
/// choice and can be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCodes {
    /// Wrong or missing `api`.
    pub api_key: i64,
    /// A required field is missing.
    pub required: i64,
    /// A field has an invalid value (enum, range, type).
    pub invalid: i64,
    /// A Cheetah conditional field is missing or invalid.
    pub cheetah: i64,
    /// Basket empty or an item invalid.
    pub basket: i64,
    /// Factor (or payment) not found.
    pub not_found: i64,
    /// The order cannot be paid in its state (COD, already paid).
    pub payment_state: i64,
    /// Unknown bank id.
    pub bank: i64,
    /// checkPay parameters do not match the payment.
    pub payment_mismatch: i64,
    /// A virtual product has no uploaded file.
    pub no_file: i64,
    /// Unknown method path.
    pub unknown_method: i64,
}

impl Default for ErrorCodes {
    fn default() -> Self {
        ErrorCodes {
            api_key: 1,
            required: 2,
            invalid: 3,
            cheetah: 4,
            basket: 5,
            not_found: 6,
            payment_state: 7,
            bank: 8,
            payment_mismatch: 9,
            no_file: 10,
            unknown_method: 11,
        }
    }
}

/// Simulator settings. Every `[inferred]`/`[unknown]` choice of the reference is a field here.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Accepted `api` key.
    pub api_key: String,
    /// Number of mirrors (routers) sharing the state.
    pub mirrors: usize,
    /// Tariffs per send type (defaults reproduce the web service documentation's example numbers for a 200 g parcel).
    pub rates: Vec<Rate>,
    /// Tax on postage in percent (seed: 4680 on 52000 → 9 %).
    pub tax_percent: i64,
    /// Frotel service fee in Rial (seed: 2000).
    pub frotel_service: i64,
    /// Gateways offered for cash orders.
    pub banks: Vec<SimBank>,
    /// false: cash orders are registered with an empty bank list (the seller arranges payment
    /// later, the documented second case).
    pub offer_banks: bool,
    /// Virtual `pro_code`s that have no uploaded file (registerOrderVirtual refuses them).
    pub virtual_without_file: Vec<String>,
    /// true: checkPay of a virtual order answers `links.error = 1`.
    pub virtual_links_fail: bool,
    /// Match method paths case-insensitively (the official PrestaShop module calls
    /// `order/orderpay.json`) `[inferred]`.
    pub case_insensitive_paths: bool,
    /// Show factor ids hyphenated (`22-000000-000000-000000`) in orderPay/tracking.
    pub hyphenate_factor: bool,
    /// First two digits of factor ids.
    pub factor_prefix: String,
    /// Public base URL of the simulator (for bank forms, pay links, download links). When
    /// `None` it is derived from the request's `Host` header and mount path.
    pub public_base_url: Option<String>,
    /// Send `Connection: close` on API answers, so fault switches take effect on the next call
    /// instead of hiding behind pooled keep-alive connections.
    pub close_connections: bool,
    /// Business error codes.
    pub codes: ErrorCodes,
}

impl Default for SimConfig {
    fn default() -> Self {
        let logo =
            |n: &str| format!("http://fpanel.ir/themes/frotel/images/logo/bank/{n}-logo.png");
        SimConfig {
            api_key: "sim-api-key".into(),
            mirrors: 3,
            rates: vec![
                Rate {
                    send_type: 1,
                    first_500g: 52_000,
                    per_extra_500g: 12_000,
                    cod_extra: 6_000,
                },
                Rate {
                    send_type: 2,
                    first_500g: 26_000,
                    per_extra_500g: 7_000,
                    cod_extra: 10_000,
                },
                Rate {
                    send_type: 3,
                    first_500g: 18_000,
                    per_extra_500g: 5_000,
                    cod_extra: 8_000,
                },
                Rate {
                    send_type: 4,
                    first_500g: 60_000,
                    per_extra_500g: 0,
                    cod_extra: 10_000,
                },
                Rate {
                    send_type: 11,
                    first_500g: 80_000,
                    per_extra_500g: 10_000,
                    cod_extra: 10_000,
                },
            ],
            tax_percent: 9,
            frotel_service: 2_000,
            banks: vec![
                SimBank {
                    id: 1,
                    name: "ملت".into(),
                    long_name: "بانك ملت".into(),
                    logo: logo("mellat"),
                },
                SimBank {
                    id: 2,
                    name: "ملی".into(),
                    long_name: "بانك ملي".into(),
                    logo: logo("melli"),
                },
            ],
            offer_banks: true,
            virtual_without_file: Vec::new(),
            virtual_links_fail: false,
            case_insensitive_paths: true,
            hyphenate_factor: true,
            factor_prefix: "22".into(),
            public_base_url: None,
            close_connections: true,
            codes: ErrorCodes::default(),
        }
    }
}

/// Kind of a registered order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    /// registerOrder.
    Product,
    /// registerOrderVirtual.
    Virtual,
    /// registerOrderService.
    Service,
}

/// Snapshot of an order held by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOrder {
    /// 20-digit factor id.
    pub factor: String,
    /// Which register method created it.
    pub kind: OrderKind,
    /// registerOrder's buy_type (virtual/service: 2).
    pub buy_type: i64,
    /// send_type (0 for virtual/service).
    pub send_type: i64,
    /// `name family`.
    pub customer: String,
    /// Seller's `shop_barcode`, if sent.
    pub shop_barcode: Option<String>,
    /// Total in Rial.
    pub total: i64,
    /// Shipping part of the total (0 when free).
    pub shipping: i64,
    /// Paid so far.
    pub paid: i64,
    /// Persian status text.
    pub status: String,
    /// Post barcode once shipped.
    pub barcode: String,
    /// Registration time (Jalali text).
    pub date: String,
    /// Last change (Jalali text).
    pub change_date: String,
    /// Lines: (pro_code, name, unit price, count, unit weight).
    pub items: Vec<(String, String, i64, i64, i64)>,
}

/// Status vocabulary (`[inferred]` apart from `معلق`).
pub mod status {
    /// Waiting for payment / suspended (documented).
    pub const PENDING: &str = "معلق";
    /// Accepted and being prepared.
    pub const PROCESSING: &str = "در حال پردازش";
    /// Handed to the carrier.
    pub const SHIPPED: &str = "ارسال شده";
    /// Delivered.
    pub const DELIVERED: &str = "تحویل شده";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PaymentState {
    /// Form issued, buyer not back from the bank.
    Pending,
    /// Bank says paid; not yet verified by checkPay.
    BankOk,
    /// Bank says failed.
    BankFailed,
    /// checkPay confirmed it.
    Verified,
}

#[derive(Debug, Clone)]
struct Payment {
    factor: String,
    bank: i64,
    callback: String,
    reference: String,
    amount: i64,
    state: PaymentState,
    tracking_code: Option<String>,
    links: Vec<serde_json::Value>,
}

#[derive(Debug, Default)]
struct Data {
    orders: BTreeMap<String, SimOrder>,
    payments: HashMap<i64, Payment>,
    downloads: HashMap<String, (String, String)>,
    next_factor: u64,
    next_payment: i64,
    /// Per mirror: lower-cased method path → hits.
    hits: Vec<BTreeMap<String, u64>>,
}

#[derive(Debug)]
struct Shared {
    cfg: SimConfig,
    faults: Vec<watch::Sender<Fault>>,
    data: Mutex<Data>,
}

/// The simulator: cheap to clone, all clones share the same state.
#[derive(Clone, Debug)]
pub struct Simulator {
    inner: Arc<Shared>,
}

#[derive(Clone)]
struct MirrorCtx {
    sim: Simulator,
    index: usize,
}

impl Simulator {
    /// A fresh simulator.
    pub fn new(cfg: SimConfig) -> Self {
        let n = cfg.mirrors.max(1);
        let faults = (0..n).map(|_| watch::channel(Fault::None).0).collect();
        let data = Data {
            // Start somewhere random so two simulators do not hand out the same factor ids.
            next_factor: rand::random_range(1_000_000_000u64..9_000_000_000u64) * 1000,
            next_payment: rand::random_range(10_000i64..90_000i64),
            hits: vec![BTreeMap::new(); n],
            ..Default::default()
        };
        Simulator {
            inner: Arc::new(Shared {
                cfg,
                faults,
                data: Mutex::new(data),
            }),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    /// Number of mirrors.
    pub fn mirror_count(&self) -> usize {
        self.inner.faults.len()
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        match self.inner.data.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Set the fault of one mirror (out-of-range indices are ignored).
    pub fn set_fault(&self, index: usize, fault: Fault) {
        if let Some(tx) = self.inner.faults.get(index) {
            tx.send_replace(fault);
        }
    }

    /// Current fault of one mirror.
    pub fn fault(&self, index: usize) -> Fault {
        self.inner
            .faults
            .get(index)
            .map(|tx| *tx.borrow())
            .unwrap_or_default()
    }

    /// Clear every fault.
    pub fn clear_faults(&self) {
        for i in 0..self.mirror_count() {
            self.set_fault(i, Fault::None);
        }
    }

    /// API requests received by one mirror (all methods; admin/bank routes not counted).
    pub fn hits(&self, index: usize) -> u64 {
        self.data().hits.get(index).map_or(0, |m| m.values().sum())
    }

    /// API requests received by one mirror for one method path (e.g. `order/registerOrder.json`,
    /// compared case-insensitively).
    pub fn method_hits(&self, index: usize, method: &str) -> u64 {
        let key = method.trim_start_matches('/').to_ascii_lowercase();
        self.data()
            .hits
            .get(index)
            .and_then(|m| m.get(&key).copied())
            .unwrap_or(0)
    }

    /// API requests received by all mirrors.
    pub fn total_hits(&self) -> u64 {
        (0..self.mirror_count()).map(|i| self.hits(i)).sum()
    }

    /// Every registered order.
    pub fn orders(&self) -> Vec<SimOrder> {
        self.data().orders.values().cloned().collect()
    }

    /// One order by factor id (hyphens ignored).
    pub fn order(&self, factor: &str) -> Option<SimOrder> {
        let key: String = factor.chars().filter(char::is_ascii_digit).collect();
        self.data().orders.get(&key).cloned()
    }

    /// Move an order one step along `در حال پردازش → ارسال شده → تحویل شده` (an unpaid cash
    /// order stays `معلق`). Returns the new status.
    pub fn advance_order(&self, factor: &str) -> Option<String> {
        let key: String = factor.chars().filter(char::is_ascii_digit).collect();
        let mut data = self.data();
        let order = data.orders.get_mut(&key)?;
        let next = match order.status.as_str() {
            status::PROCESSING => status::SHIPPED,
            status::SHIPPED | status::DELIVERED => status::DELIVERED,
            _ => return Some(order.status.clone()),
        };
        if next == status::SHIPPED && order.barcode.is_empty() {
            order.barcode = format!("{:024}", rand::random_range(10u128.pow(22)..10u128.pow(23)));
        }
        order.status = next.to_owned();
        order.change_date = jalali::now_text();
        Some(order.status.clone())
    }

    /// Set an order's status text (and barcode, if given) directly: any Persian string, known or
    /// not, as Frotel's free-text statuses may be. Returns false for an unknown factor.
    pub fn set_status(&self, factor: &str, status: &str, barcode: Option<&str>) -> bool {
        let key: String = factor.chars().filter(char::is_ascii_digit).collect();
        let mut data = self.data();
        let Some(order) = data.orders.get_mut(&key) else {
            return false;
        };
        order.status = status.to_owned();
        if let Some(b) = barcode {
            order.barcode = b.to_owned();
        }
        order.change_date = jalali::now_text();
        true
    }

    /// The router of one mirror. Routes are relative to the mirror's base URL
    /// (`order/getPrices.json`, …) plus `__sim/…` (admin, bank gateway, downloads).
    pub fn mirror_router(&self, index: usize) -> Router {
        let ctx = MirrorCtx {
            sim: self.clone(),
            index,
        };
        Router::new()
            .route("/__sim/fault", post(admin_fault))
            .route("/__sim/state", get(admin_state))
            .route("/__sim/orders/{factor}/advance", post(admin_advance))
            .route("/__sim/bank/{payment}", get(bank_page).post(bank_submit))
            .route("/__sim/download/{token}", get(download))
            // The documented `pay_link` form (`…/payment/ContinuePay?factor=…`).
            .route("/payment/ContinuePay", get(continue_page))
            .fallback(api::handle)
            .with_state(ctx)
    }

    /// Serve one mirror on `listener` until the future is dropped. While the mirror's fault is
    /// [`Fault::Down`] the listening socket is closed (connections are refused) and re-bound on
    /// the same address when it comes back.
    pub async fn serve_mirror(&self, index: usize, listener: TcpListener) -> io::Result<()> {
        let rx = self
            .inner
            .faults
            .get(index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such mirror"))?
            .subscribe();
        let addr = listener.local_addr()?;
        let listener = FaultyListener {
            addr,
            inner: Some(listener),
            faults: rx,
        };
        axum::serve(listener, self.mirror_router(index)).await
    }

    /// Bind every mirror on `127.0.0.1:0`, serve them in background tasks, and return their base
    /// URLs (`http://127.0.0.1:PORT/`). The tasks run for the life of the runtime.
    pub async fn spawn_local(&self) -> io::Result<Vec<String>> {
        let mut urls = Vec::new();
        for i in 0..self.mirror_count() {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            urls.push(format!("http://{}/", l.local_addr()?));
            let sim = self.clone();
            tokio::spawn(async move {
                if let Err(e) = sim.serve_mirror(i, l).await {
                    tracing::error!(mirror = i, error = %e, "frotel simulator mirror stopped");
                }
            });
        }
        Ok(urls)
    }
}

/// A listener whose socket is closed while the mirror is down.
struct FaultyListener {
    addr: SocketAddr,
    inner: Option<TcpListener>,
    faults: watch::Receiver<Fault>,
}

impl axum::serve::Listener for FaultyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let down = *self.faults.borrow_and_update() == Fault::Down;
            if down {
                self.inner = None;
                if self.faults.changed().await.is_err() {
                    // The simulator is gone; nothing will ever change again.
                    std::future::pending::<()>().await;
                }
                continue;
            }
            if self.inner.is_none() {
                match TcpListener::bind(self.addr).await {
                    Ok(l) => self.inner = Some(l),
                    Err(e) => {
                        tracing::warn!(addr = %self.addr, error = %e, "simulator rebind failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
            let Some(listener) = self.inner.as_ref() else {
                continue;
            };
            tokio::select! {
                r = listener.accept() => match r {
                    // Went down between readiness and accept: close without serving.
                    Ok(_) if *self.faults.borrow() == Fault::Down => continue,
                    Ok(pair) => return pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                ch = self.faults.changed() => {
                    if ch.is_err() {
                        // No more fault changes can come; just keep accepting.
                        if let Ok(pair) = listener.accept().await {
                            return pair;
                        }
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

// ---------------------------------------------------------------------------------------------
// Admin, bank and download routes.

#[derive(Deserialize)]
struct FaultBody {
    mirror: usize,
    fault: String,
    #[serde(default)]
    delay_ms: u64,
}

/// Parse an admin fault name.
pub fn parse_fault(name: &str, delay: Duration) -> Option<Fault> {
    Some(match name {
        "none" => Fault::None,
        "down" => Fault::Down,
        "server_error" | "5xx" => Fault::ServerError,
        "garbage" => Fault::Garbage,
        "slow" => Fault::Slow(delay),
        "server_error_after" => Fault::ServerErrorAfterProcessing,
        "drop_after" => Fault::DropAfterProcessing,
        "slow_after" => Fault::SlowAfterProcessing(delay),
        _ => return None,
    })
}

async fn admin_fault(State(ctx): State<MirrorCtx>, Json(b): Json<FaultBody>) -> Response {
    let Some(f) = parse_fault(&b.fault, Duration::from_millis(b.delay_ms)) else {
        return (StatusCode::BAD_REQUEST, "unknown fault; use none|down|server_error|garbage|slow|server_error_after|drop_after|slow_after").into_response();
    };
    if b.mirror >= ctx.sim.mirror_count() {
        return (StatusCode::BAD_REQUEST, "no such mirror").into_response();
    }
    ctx.sim.set_fault(b.mirror, f);
    Json(json!({"mirror": b.mirror, "fault": format!("{f:?}")})).into_response()
}

async fn admin_state(State(ctx): State<MirrorCtx>) -> Json<serde_json::Value> {
    let sim = &ctx.sim;
    let faults: Vec<String> = (0..sim.mirror_count())
        .map(|i| format!("{:?}", sim.fault(i)))
        .collect();
    let data = sim.data();
    let orders: Vec<serde_json::Value> = data
        .orders
        .values()
        .map(|o| {
            json!({"factor": o.factor, "kind": format!("{:?}", o.kind), "status": o.status,
                   "total": o.total, "paid": o.paid, "barcode": o.barcode})
        })
        .collect();
    Json(json!({"faults": faults, "hits": data.hits, "orders": orders}))
}

async fn admin_advance(State(ctx): State<MirrorCtx>, Path(factor): Path<String>) -> Response {
    match ctx.sim.advance_order(&factor) {
        Some(s) => Json(json!({"factor": factor, "status": s})).into_response(),
        None => (StatusCode::NOT_FOUND, "no such factor").into_response(),
    }
}

async fn bank_page(State(ctx): State<MirrorCtx>, Path(payment): Path<i64>) -> Response {
    let data = ctx.sim.data();
    let Some(p) = data.payments.get(&payment) else {
        return (StatusCode::NOT_FOUND, "unknown payment").into_response();
    };
    Html(format!(
        "<html><body dir=\"rtl\"><h1>درگاه آزمایشی بانک {bank}</h1><p>مبلغ: {amount} ریال</p>\
         <form method=\"post\"><button name=\"outcome\" value=\"success\">پرداخت</button>\
         <button name=\"outcome\" value=\"fail\">انصراف</button></form></body></html>",
        bank = p.bank,
        amount = p.amount
    ))
    .into_response()
}

#[derive(Deserialize)]
struct BankSubmit {
    #[serde(default)]
    outcome: Option<String>,
}

async fn bank_submit(
    State(ctx): State<MirrorCtx>,
    Path(payment): Path<i64>,
    Form(b): Form<BankSubmit>,
) -> Response {
    let mut data = ctx.sim.data();
    let Some(p) = data.payments.get_mut(&payment) else {
        return (StatusCode::NOT_FOUND, "unknown payment").into_response();
    };
    if matches!(p.state, PaymentState::Pending) {
        p.state = if b.outcome.as_deref() == Some("fail") {
            PaymentState::BankFailed
        } else {
            PaymentState::BankOk
        };
    }
    let sep = if p.callback.contains('?') { '&' } else { '?' };
    let location = format!(
        "{}{sep}_i={payment}&sb={}",
        p.callback,
        crate::form::php_urlencode(&p.reference)
    );
    Redirect::to(&location).into_response()
}

async fn download(State(ctx): State<MirrorCtx>, Path(token): Path<String>) -> Response {
    let data = ctx.sim.data();
    match data.downloads.get(&token) {
        Some((name, content)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            Body::from(content.clone()),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "unknown or expired link").into_response(),
    }
}

#[derive(Deserialize)]
struct ContinueQuery {
    factor: String,
}

async fn continue_page(State(ctx): State<MirrorCtx>, Query(q): Query<ContinueQuery>) -> Response {
    match ctx.sim.order(&q.factor) {
        Some(o) => Html(format!(
            "<html><body dir=\"rtl\"><p>ادامه پرداخت سفارش {}</p><p>مبلغ باقیمانده: {} ریال</p></body></html>",
            o.factor,
            o.total.saturating_sub(o.paid)
        ))
        .into_response(),
        None => (StatusCode::NOT_FOUND, "unknown factor").into_response(),
    }
}
