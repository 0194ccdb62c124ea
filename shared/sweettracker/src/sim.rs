//! Local SweetTracker stand-in: `POST /add_invoice` plus push callbacks driven through levels
//! 1→6, with fault injection. Background delivery tasks run on the current tokio runtime.

use crate::callback::{Callback, CallbackReply, Level, TIME_FORMAT};
use crate::carrier::Carrier;
use crate::client::{AddInvoiceResponse, CallbackType, ECode};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDateTime, TimeDelta, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Simulator settings. Every behaviour SweetTracker does not document is a knob here.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Accepted `tier`.
    pub tier: String,
    /// Accepted `key`.
    pub key: String,
    /// Whether wrong `tier`/`key` are refused (with e_code `99`, \[inferred\]: no code is
    /// documented for bad credentials).
    pub check_credentials: bool,
    /// Real time between two callbacks of one invoice ("speed").
    pub step_interval: Duration,
    /// Number of level-3 (hub scan) events, at least 1.
    pub in_transit_scans: usize,
    /// Simulated carrier time between two events, picked uniformly in this range (minutes).
    pub simulated_gap_minutes: (i64, i64),
    /// Delays before each retry of a failed callback; its length is the retry cap. Real policy
    /// \[unknown\]; default 1 min / 10 min / 60 min.
    pub retry_delays: Vec<Duration>,
    /// Timeout of one callback POST.
    pub callback_timeout: Duration,
    /// In `json` callbacks send `level` as a string (`"2"`, observed) instead of a number.
    pub json_level_as_string: bool,
    /// HTTP status of a refused `add_invoice` (\[unknown\]; default 200 with `success:false`).
    pub failure_http_status: u16,
    /// Allowed invoice-number length after validation as digits-only (\[inferred\]; carrier
    /// check digits are not simulated).
    pub invoice_len: (usize, usize),
    /// Accept carrier codes outside the known table (otherwise e_code `04`).
    pub accept_unknown_carriers: bool,
    /// Simulated clock start (the first event comes one gap after it); `None` = the history ends
    /// at the registration time in KST (UTC+9), so every event lies in the past or present.
    pub start_time: Option<NaiveDateTime>,
    /// Faults active from the start.
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tier: "testuser".into(),
            key: "testuser".into(),
            check_credentials: true,
            step_interval: Duration::from_secs(5),
            in_transit_scans: 2,
            simulated_gap_minutes: (30, 240),
            retry_delays: vec![
                Duration::from_secs(60),
                Duration::from_secs(600),
                Duration::from_secs(3600),
            ],
            callback_timeout: Duration::from_secs(10),
            json_level_as_string: true,
            failure_http_status: 200,
            invoice_len: (9, 15),
            accept_unknown_carriers: false,
            start_time: None,
            faults: Faults::default(),
        }
    }
}

/// Fault modes, read when an invoice is registered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Every callback is delivered twice.
    pub duplicates: bool,
    /// Pairs of events are swapped in delivery order (2↔first 3, 4↔5); timestamps stay with
    /// their events.
    pub out_of_order: bool,
    /// A `-99` scan-error event is injected after the first level-3 event.
    pub scan_error: bool,
    /// Registrations succeed but no callback is ever sent.
    pub silence: bool,
    /// `add_invoice` answers e_code `99`.
    pub system_error: bool,
}

/// Outcome of delivering one event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivery {
    /// Level sent.
    pub level: i64,
    /// `time_trans` sent.
    pub time_trans: String,
    /// HTTP attempts made (including retries).
    pub attempts: usize,
    /// Whether the receiver acknowledged with `{"code":true}`.
    pub acknowledged: bool,
    /// True for the extra copy sent by the duplicates fault.
    pub duplicate: bool,
    /// Last failure reason, if any.
    pub last_error: Option<String>,
}

/// A remembered registration and its delivery log.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// Invoice number.
    pub num: String,
    /// Carrier code.
    pub code: String,
    /// fid.
    pub fid: String,
    /// Callback URL.
    pub callback_url: String,
    /// `map` or `json`.
    pub callback_type: CallbackType,
    /// Faults in force for this invoice.
    pub faults: Faults,
    /// Events planned for delivery (0 when silenced).
    pub planned_events: usize,
    /// Deliveries so far.
    pub deliveries: Vec<Delivery>,
    /// All planned events have been processed.
    pub finished: bool,
}

struct Inner {
    config: SimConfig,
    faults: Mutex<Faults>,
    registrations: Mutex<HashMap<(String, String), Registration>>,
    http: reqwest::Client,
}

/// Cloneable simulator handle.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking holder cannot leave these maps inconsistent; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Simulator {
    /// New simulator. The callback HTTP client is built with `callback_timeout`; if that fails
    /// (never in practice) a default client is used.
    pub fn new(config: SimConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(config.callback_timeout)
            .timeout(config.callback_timeout)
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                faults: Mutex::new(config.faults),
                config,
                registrations: Mutex::new(HashMap::new()),
                http,
            }),
        }
    }

    /// `POST /add_invoice` plus admin routes `GET /__sim/registrations`, `GET /__sim/faults`,
    /// `PUT /__sim/faults` (JSON [`Faults`]).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/add_invoice", post(add_invoice))
            .route("/__sim/registrations", get(admin_registrations))
            .route("/__sim/faults", get(admin_get_faults).put(admin_put_faults))
            .with_state(self.clone())
    }

    /// Current faults.
    pub fn faults(&self) -> Faults {
        *lock(&self.inner.faults)
    }

    /// Replaces all faults (applies to invoices registered afterwards).
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.inner.faults) = faults;
    }

    /// Toggle duplicate delivery.
    pub fn set_duplicates(&self, on: bool) {
        lock(&self.inner.faults).duplicates = on;
    }

    /// Toggle out-of-order delivery.
    pub fn set_out_of_order(&self, on: bool) {
        lock(&self.inner.faults).out_of_order = on;
    }

    /// Toggle `-99` scan-error injection.
    pub fn set_scan_error(&self, on: bool) {
        lock(&self.inner.faults).scan_error = on;
    }

    /// Toggle silence (no callbacks).
    pub fn set_silence(&self, on: bool) {
        lock(&self.inner.faults).silence = on;
    }

    /// Toggle e_code `99` on every registration.
    pub fn set_system_error(&self, on: bool) {
        lock(&self.inner.faults).system_error = on;
    }

    /// Snapshot of all registrations.
    pub fn registrations(&self) -> Vec<Registration> {
        let mut v: Vec<Registration> = lock(&self.inner.registrations).values().cloned().collect();
        v.sort_by(|a, b| (&a.num, &a.code).cmp(&(&b.num, &b.code)));
        v
    }

    /// Snapshot of one registration.
    pub fn registration(&self, num: &str, code: &str) -> Option<Registration> {
        lock(&self.inner.registrations)
            .get(&(num.to_owned(), code.to_owned()))
            .cloned()
    }

    fn validate(&self, fields: &BTreeMap<String, String>) -> Result<Registration, Refusal> {
        let cfg = &self.inner.config;
        let get = |k: &str| fields.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let (Some(num), Some(code), Some(fid), Some(callback_url), Some(tier), Some(key)) = (
            get("num"),
            get("code"),
            get("fid"),
            get("callback_url"),
            get("tier"),
            get("key"),
        ) else {
            return Err(ECode::MissingParameter.into());
        };
        let faults = self.faults();
        if faults.system_error {
            return Err(ECode::SystemError.into());
        }
        if cfg.check_credentials && (tier != cfg.tier || key != cfg.key) {
            return Err(ECode::SystemError.into());
        }
        let callback_type = match get("callback_type")
            .unwrap_or("map")
            .to_ascii_lowercase()
            .as_str()
        {
            "map" => CallbackType::Map,
            "json" => CallbackType::Json,
            // The xml push body is not specified, so it cannot be simulated; say so rather than
            // claim a parameter is missing. 01 is the documented code for an unusable parameter.
            other => return Err(Refusal {
                code: ECode::MissingParameter,
                message: format!(
                    "callback_type {other:?} is not supported by this simulator; use map or json"
                ),
            }),
        };
        if !(callback_url.starts_with("http://") || callback_url.starts_with("https://")) {
            return Err(ECode::MissingParameter.into());
        }
        if !cfg.accept_unknown_carriers && !Carrier::from_code(code).is_known() {
            return Err(ECode::UnsupportedCarrier.into());
        }
        let len_ok = (cfg.invoice_len.0..=cfg.invoice_len.1).contains(&num.len());
        if !len_ok || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ECode::InvalidInvoiceNumber.into());
        }
        Ok(Registration {
            num: num.to_owned(),
            code: code.to_owned(),
            fid: fid.to_owned(),
            callback_url: callback_url.to_owned(),
            callback_type,
            faults,
            planned_events: 0,
            deliveries: Vec::new(),
            finished: false,
        })
    }

    /// The events for one invoice, in delivery order, faults applied.
    fn plan(&self, reg: &Registration) -> Vec<(Callback, bool)> {
        let cfg = &self.inner.config;
        let mut rng = rand::rng();
        let (lo, hi) = cfg.simulated_gap_minutes;
        let (lo, hi) = (lo.max(1), hi.max(lo.max(1)));
        let mut levels = vec![Level::Preparing, Level::PickedUp];
        levels.extend(std::iter::repeat_n(
            Level::InTransit,
            cfg.in_transit_scans.max(1),
        ));
        if reg.faults.scan_error {
            levels.insert(3, Level::ScanError);
        }
        levels.extend([Level::AtBranch, Level::OutForDelivery, Level::Delivered]);
        let hubs = ["곤지암Hub", "대전Hub", "옥천Hub", "청원Sub"];
        let mut hub_i = 0;
        // Gap before each scan and SweetTracker's lag in receiving it. A lag never exceeds the
        // next gap, so every `time_sweet` is at most the next `time_trans`.
        let timing: Vec<(i64, i64)> = levels
            .iter()
            .map(|_| {
                (
                    rng.random_range(lo..=hi),
                    rng.random_range(1..=lo.clamp(1, 20)),
                )
            })
            .collect();
        let mut t = match cfg.start_time {
            Some(start) => start,
            // A carrier reports scans that happened: the history ends now, the last scan's
            // `time_sweet` being the present, and the earlier ones lie before it.
            None => {
                let span: i64 = timing.iter().map(|(gap, _)| gap).sum::<i64>()
                    + timing.last().map_or(0, |(_, lag)| *lag);
                (Utc::now() + TimeDelta::hours(9)).naive_utc() - TimeDelta::minutes(span)
            }
        };
        let mut events: Vec<Callback> = Vec::new();
        for (level, (gap, lag)) in levels.into_iter().zip(timing) {
            t += TimeDelta::minutes(gap);
            let sweet = t + TimeDelta::minutes(lag);
            let (place, details) = match level {
                Level::Preparing => ("서울강남", "집화예정"),
                Level::PickedUp => ("서울강남", "집화처리"),
                Level::InTransit => {
                    hub_i += 1;
                    (hubs[(hub_i - 1) % hubs.len()], "간선상차")
                }
                Level::ScanError => (hubs[hub_i.saturating_sub(1) % hubs.len()], "스캔오류"),
                Level::AtBranch => ("충남천안청당", "배달지점 도착"),
                Level::OutForDelivery => ("충남천안청당", "배달출발"),
                Level::Delivered => ("충남천안청당", "배달완료"),
            };
            events.push(Callback {
                secret_value: Some("simulated".into()),
                fid: reg.fid.clone(),
                courier_code: Some(reg.code.clone()),
                invoice_no: reg.num.clone(),
                level,
                time_trans: Some(t.format(TIME_FORMAT).to_string()),
                time_sweet: Some(sweet.format(TIME_FORMAT).to_string()),
                location: Some(place.into()),
                telno_office: Some("041-584-8502".into()),
                telno_man: Some("01077417325".into()),
                details: Some(details.into()),
                recv_addr: Some("서울시 중구 ***".into()),
                recv_name: Some("장영*".into()),
                send_name: Some("홍길*".into()),
                man: Some("배달원".into()),
                estmate: None,
                comcode: Some(reg.code.clone()),
            });
        }
        if reg.faults.out_of_order && events.len() >= 6 {
            events.swap(1, 2);
            let n = events.len();
            events.swap(n - 3, n - 2);
        }
        let mut out = Vec::new();
        for e in events {
            if reg.faults.duplicates {
                out.push((e.clone(), false));
                out.push((e, true));
            } else {
                out.push((e, false));
            }
        }
        out
    }

    async fn deliver_once(&self, url: &str, ty: CallbackType, cb: &Callback) -> Result<(), String> {
        let req = self.inner.http.post(url);
        let req = match ty {
            CallbackType::Map => req
                .header(
                    header::CONTENT_TYPE.as_str(),
                    "application/x-www-form-urlencoded",
                )
                .body(cb.to_form()),
            CallbackType::Json => req
                .header(header::CONTENT_TYPE.as_str(), "application/json")
                .body(
                    cb.to_json(self.inner.config.json_level_as_string)
                        .to_string(),
                ),
        };
        let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("transport: {e}"))?;
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        match CallbackReply::parse(&body) {
            Ok(r) if r.code => Ok(()),
            Ok(r) => Err(format!("code=false: {}", r.message)),
            Err(e) => Err(format!("reply: {e}")),
        }
    }

    async fn drive(self, key: (String, String), reg: Registration, plan: Vec<(Callback, bool)>) {
        let cfg = self.inner.config.clone();
        for (cb, duplicate) in plan {
            tokio::time::sleep(cfg.step_interval).await;
            let mut attempts = 0;
            let last_error = loop {
                attempts += 1;
                match self
                    .deliver_once(&reg.callback_url, reg.callback_type, &cb)
                    .await
                {
                    Ok(()) => break None,
                    Err(e) => {
                        tracing::debug!(num = %reg.num, level = cb.level.as_i64(), error = %e, "callback failed");
                        match cfg.retry_delays.get(attempts - 1) {
                            Some(d) => tokio::time::sleep(*d).await,
                            None => break Some(e),
                        }
                    }
                }
            };
            let acknowledged = last_error.is_none();
            let d = Delivery {
                level: cb.level.as_i64(),
                time_trans: cb.time_trans.clone().unwrap_or_default(),
                attempts,
                acknowledged,
                duplicate,
                last_error,
            };
            if let Some(r) = lock(&self.inner.registrations).get_mut(&key) {
                r.deliveries.push(d);
            }
        }
        if let Some(r) = lock(&self.inner.registrations).get_mut(&key) {
            r.finished = true;
        }
    }

    fn register(&self, fields: &BTreeMap<String, String>) -> AddInvoiceResponse {
        let num = fields.get("num").cloned();
        let fid = fields.get("fid").cloned();
        let refuse = |refusal: Refusal| AddInvoiceResponse {
            success: false,
            num: num.clone(),
            fid: fid.clone(),
            e_message: Some(refusal.message),
            e_code: Some(refusal.code.code().to_owned()),
        };
        let mut reg = match self.validate(fields) {
            Ok(r) => r,
            Err(refusal) => return refuse(refusal),
        };
        let key = (reg.num.clone(), reg.code.clone());
        let plan = if reg.faults.silence {
            Vec::new()
        } else {
            self.plan(&reg)
        };
        reg.planned_events = plan.len();
        reg.finished = plan.is_empty();
        {
            let mut regs = lock(&self.inner.registrations);
            if regs.contains_key(&key) {
                return refuse(ECode::AlreadyRegistered.into());
            }
            regs.insert(key.clone(), reg.clone());
        }
        if !plan.is_empty() {
            tokio::spawn(self.clone().drive(key, reg.clone(), plan));
        }
        AddInvoiceResponse {
            success: true,
            num: Some(reg.num),
            fid: Some(reg.fid),
            e_code: None,
            e_message: None,
        }
    }
}

/// Why a registration is refused: the `e_code` and the `e_message` sent with it.
struct Refusal {
    code: ECode,
    message: String,
}

impl From<ECode> for Refusal {
    fn from(code: ECode) -> Self {
        let message = code.korean_message().to_owned();
        Refusal { code, message }
    }
}

/// Parses an `add_invoice` body: JSON object if the content type says so (or it looks like one),
/// form fields otherwise. Unparseable bodies yield no fields (→ e_code 01).
fn request_fields(headers: &HeaderMap, body: &[u8]) -> BTreeMap<String, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let looks_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if ct.contains("json") || (!ct.contains("form") && looks_json) {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(map)) => map
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, s)),
                    serde_json::Value::Number(n) => Some((k, n.to_string())),
                    _ => None,
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    } else {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(|v| v.into_iter().collect())
            .unwrap_or_default()
    }
}

async fn add_invoice(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<AddInvoiceResponse>) {
    let fields = request_fields(&headers, &body);
    let resp = sim.register(&fields);
    let status = if resp.success {
        StatusCode::OK
    } else {
        StatusCode::from_u16(sim.inner.config.failure_http_status).unwrap_or(StatusCode::OK)
    };
    (status, Json(resp))
}

async fn admin_registrations(State(sim): State<Simulator>) -> Json<Vec<Registration>> {
    Json(sim.registrations())
}

async fn admin_get_faults(State(sim): State<Simulator>) -> Json<Faults> {
    Json(sim.faults())
}

async fn admin_put_faults(State(sim): State<Simulator>, Json(f): Json<Faults>) -> Json<Faults> {
    sim.set_faults(f);
    Json(f)
}
