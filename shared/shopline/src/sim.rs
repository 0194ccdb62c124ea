//! SHOPLINE side simulator: posts signed logistics reports to the app's URL, verifies the app's
//! signed reply and re-sends with the same idempotency key until `SUCCESS` or the retry cap.

use crate::signing::{test_keys, PrivateKey, PublicKey, SigningError};
use crate::webhook::{
    default_datetime_offset, format_timestamp, LogisticsReport, Reply, TimestampFormat,
    TrackingInfo, HEADER_IDEMPOTENCY_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_VERSION,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sender configuration. The retry schedule and cap of the real SHOPLINE are \[unknown\]; the
/// defaults: 1 m, 5 m, 15 m, 1 h, 6 h (at most 6 attempts).
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The app's logistics report URL.
    pub target_url: String,
    /// `pay-api-version` to send.
    pub api_version: String,
    /// Form of `pay-api-timestamp`.
    pub timestamp_format: TimestampFormat,
    /// Zone used when `timestamp_format` is `DateTime` (default UTC+8 \[inferred\]).
    pub datetime_offset: FixedOffset,
    /// Whether a retry re-sends the first attempt's timestamp ("same parameters", \[inferred\]
    /// default `true`) or a fresh one.
    pub reuse_timestamp_on_retry: bool,
    /// SHOPLINE's private key (signs requests). Default: the published **test** key.
    pub shopline_private_key: PrivateKey,
    /// The app's public key (verifies replies). Default: the published **test** key.
    pub app_public_key: PublicKey,
    /// Delay before each retry; the number of entries is the retry cap
    /// (total attempts = `retry_delays.len() + 1`).
    pub retry_delays: Vec<Duration>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Pause between the statuses of a waybill scenario.
    pub status_interval: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        // Compile-time constants covered by a unit test, not outside input.
        let shopline_private_key = PrivateKey::from_pkcs8_base64(test_keys::PRIVATE_KEY_PKCS8_B64)
            .expect("embedded SHOPLINE test private key is valid");
        let app_public_key = shopline_private_key.public_key();
        Self {
            target_url: "http://127.0.0.1:8080/shopline/logistics".into(),
            api_version: "1.0.0".into(),
            timestamp_format: TimestampFormat::Micros,
            datetime_offset: default_datetime_offset(),
            reuse_timestamp_on_retry: true,
            shopline_private_key,
            app_public_key,
            retry_delays: [60, 300, 900, 3600, 6 * 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            request_timeout: Duration::from_secs(10),
            status_interval: Duration::from_secs(5),
        }
    }
}

/// What happened to one HTTP attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Verified reply with `returnCode == SUCCESS`.
    Success {
        /// The reply.
        reply: Reply,
    },
    /// Verified reply with another `returnCode`.
    NotSuccess {
        /// The reply.
        reply: Reply,
    },
    /// Connection / timeout error.
    Transport {
        /// Error text.
        error: String,
    },
    /// Non-200 status.
    HttpStatus {
        /// The status.
        status: u16,
    },
    /// 200 but no `pay-api-signature` header.
    MissingSignature,
    /// Signature does not verify with the app's public key.
    BadSignature {
        /// Why.
        error: String,
    },
    /// Signed, but the body is not a reply object.
    BadReplyBody {
        /// Why.
        error: String,
    },
}

/// One attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// 1-based.
    pub number: u32,
    /// `pay-api-timestamp` sent.
    pub timestamp: String,
    /// Result.
    pub outcome: AttemptOutcome,
}

/// Result of sending one report (all attempts).
#[derive(Debug, Clone, Serialize)]
pub struct SendOutcome {
    /// Idempotency key used on every attempt.
    pub idempotency_key: String,
    /// The exact body sent.
    pub body: String,
    /// Every attempt in order.
    pub attempts: Vec<Attempt>,
    /// The verified SUCCESS reply, if any.
    pub reply: Option<Reply>,
}

impl SendOutcome {
    /// True if the app acknowledged with a verified `SUCCESS`.
    pub fn succeeded(&self) -> bool {
        self.reply.is_some()
    }

    /// Why the last attempt failed (None if it succeeded).
    pub fn last_failure(&self) -> Option<&AttemptOutcome> {
        match self.attempts.last() {
            Some(Attempt {
                outcome: AttemptOutcome::Success { .. },
                ..
            }) => None,
            Some(a) => Some(&a.outcome),
            None => None,
        }
    }
}

/// Errors that prevent sending at all.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// HTTP client construction failed.
    #[error("http client: {0}")]
    Client(String),
    /// Serialising or signing the body failed.
    #[error("signing: {0}")]
    Signing(#[from] SigningError),
}

/// A waybill that goes through several logistics statuses over time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaybillScenario {
    /// The app's payment transaction id.
    pub channel_order_transaction_id: String,
    /// Waybill number.
    pub tracking_no: String,
    /// Carrier.
    pub carrier: String,
    /// Logistics website.
    pub site: String,
    /// Handler (optional).
    #[serde(default)]
    pub handler: Option<String>,
    /// Statuses to report in order; default scenario if empty.
    #[serde(default)]
    pub statuses: Vec<String>,
}

/// Statuses used when a scenario gives none. SHOPLINE's status vocabulary is \[unknown\]
/// (free text in the doc); these are illustrative.
pub const DEFAULT_STATUSES: [&str; 4] = ["SHIPPED", "IN_TRANSIT", "OUT_FOR_DELIVERY", "DELIVERED"];

/// Signs and sends logistics reports.
#[derive(Debug, Clone)]
pub struct Sender {
    config: SenderConfig,
    http: reqwest::Client,
}

impl Sender {
    /// Builds the HTTP client.
    pub fn new(config: SenderConfig) -> Result<Self, SenderError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| SenderError::Client(e.to_string()))?;
        Ok(Self { config, http })
    }

    /// The configuration.
    pub fn config(&self) -> &SenderConfig {
        &self.config
    }

    /// Sends one report to the configured URL with a fresh idempotency key.
    pub async fn send_report(&self, report: &LogisticsReport) -> Result<SendOutcome, SenderError> {
        let key = uuid::Uuid::new_v4().to_string();
        self.send_report_to(&self.config.target_url, report, &key)
            .await
    }

    /// Sends one report to `url` with the given idempotency key, retrying per the schedule.
    pub async fn send_report_to(
        &self,
        url: &str,
        report: &LogisticsReport,
        idempotency_key: &str,
    ) -> Result<SendOutcome, SenderError> {
        let body = serde_json::to_vec(report).map_err(|e| SigningError::BadJson(e.to_string()))?;
        self.send_body_to(url, body, idempotency_key).await
    }

    /// Sends an arbitrary JSON body (signed with the configured key), retrying per the schedule.
    pub async fn send_body_to(
        &self,
        url: &str,
        body: Vec<u8>,
        idempotency_key: &str,
    ) -> Result<SendOutcome, SenderError> {
        let signature = self.config.shopline_private_key.sign_body(&body)?;
        let first_ts = self.timestamp_now();
        let mut attempts = Vec::new();
        let max_attempts = self.config.retry_delays.len() + 1;
        for i in 0..max_attempts {
            if i > 0 {
                let delay = self
                    .config
                    .retry_delays
                    .get(i - 1)
                    .copied()
                    .unwrap_or_default();
                tokio::time::sleep(delay).await;
            }
            let ts = if self.config.reuse_timestamp_on_retry {
                first_ts.clone()
            } else {
                self.timestamp_now()
            };
            let outcome = self
                .attempt(url, &body, &signature, idempotency_key, &ts)
                .await;
            tracing::debug!(
                idempotency_key,
                attempt = i + 1,
                ?outcome,
                "shopline sim attempt"
            );
            let done = match &outcome {
                AttemptOutcome::Success { reply } => Some(reply.clone()),
                _ => None,
            };
            attempts.push(Attempt {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                timestamp: ts,
                outcome,
            });
            if let Some(reply) = done {
                return Ok(SendOutcome {
                    idempotency_key: idempotency_key.to_owned(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                    attempts,
                    reply: Some(reply),
                });
            }
        }
        Ok(SendOutcome {
            idempotency_key: idempotency_key.to_owned(),
            body: String::from_utf8_lossy(&body).into_owned(),
            attempts,
            reply: None,
        })
    }

    /// Reports each status of the scenario in turn (one report, one idempotency key each),
    /// pausing `status_interval` between them.
    pub async fn run_waybill(
        &self,
        scenario: &WaybillScenario,
    ) -> Result<Vec<SendOutcome>, SenderError> {
        let statuses: Vec<String> = if scenario.statuses.is_empty() {
            DEFAULT_STATUSES.iter().map(|s| (*s).to_owned()).collect()
        } else {
            scenario.statuses.clone()
        };
        let mut out = Vec::with_capacity(statuses.len());
        for (i, status) in statuses.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(self.config.status_interval).await;
            }
            let report = LogisticsReport {
                channel_order_transaction_id: scenario.channel_order_transaction_id.clone(),
                tracking_list: vec![TrackingInfo {
                    tracking_no: scenario.tracking_no.clone(),
                    site: scenario.site.clone(),
                    handler: scenario.handler.clone(),
                    tracking_status: status.clone(),
                    carrier: scenario.carrier.clone(),
                }],
            };
            out.push(self.send_report(&report).await?);
        }
        Ok(out)
    }

    fn timestamp_now(&self) -> String {
        format_timestamp(
            Utc::now(),
            self.config.timestamp_format,
            self.config.datetime_offset,
        )
    }

    async fn attempt(
        &self,
        url: &str,
        body: &[u8],
        signature: &str,
        key: &str,
        ts: &str,
    ) -> AttemptOutcome {
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_VERSION, &self.config.api_version)
            .header(HEADER_IDEMPOTENCY_KEY, key)
            .header(HEADER_SIGNATURE, signature)
            .header(HEADER_TIMESTAMP, ts)
            .body(body.to_vec())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                return AttemptOutcome::Transport {
                    error: e.to_string(),
                }
            }
        };
        let status = resp.status();
        let sig = resp
            .headers()
            .get(HEADER_SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return AttemptOutcome::Transport {
                    error: e.to_string(),
                }
            }
        };
        if status != reqwest::StatusCode::OK {
            return AttemptOutcome::HttpStatus {
                status: status.as_u16(),
            };
        }
        let Some(sig) = sig else {
            return AttemptOutcome::MissingSignature;
        };
        if let Err(e) = self.config.app_public_key.verify_body(&bytes, &sig) {
            return AttemptOutcome::BadSignature {
                error: e.to_string(),
            };
        }
        match serde_json::from_slice::<Reply>(&bytes) {
            Ok(reply) if reply.is_success() => AttemptOutcome::Success { reply },
            Ok(reply) => AttemptOutcome::NotSuccess { reply },
            Err(e) => AttemptOutcome::BadReplyBody {
                error: e.to_string(),
            },
        }
    }
}

/// Request body of `POST /__sim/send`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    /// Report to send.
    pub report: LogisticsReport,
    /// Override of the configured target URL.
    #[serde(default)]
    pub target_url: Option<String>,
    /// Idempotency key to use (fresh UUID if absent).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Sender plus an admin router; cloneable handle for the sandbox binary.
///
/// Admin routes (sends run in background tasks on the current tokio runtime):
/// * `POST /__sim/send` — body [`SendRequest`] → 202 `{"idempotencyKey": …}`
/// * `POST /__sim/waybill` — body [`WaybillScenario`] → 202
/// * `GET /__sim/history` — every finished [`SendOutcome`]
#[derive(Debug, Clone)]
pub struct Simulator {
    sender: Arc<Sender>,
    history: Arc<Mutex<Vec<SendOutcome>>>,
}

impl Simulator {
    /// New simulator.
    pub fn new(config: SenderConfig) -> Result<Self, SenderError> {
        Ok(Self {
            sender: Arc::new(Sender::new(config)?),
            history: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The underlying sender.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// Finished sends so far.
    pub fn history(&self) -> Vec<SendOutcome> {
        match self.history.lock() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn record(&self, outcome: SendOutcome) {
        match self.history.lock() {
            Ok(mut h) => h.push(outcome),
            Err(p) => p.into_inner().push(outcome),
        }
    }

    /// Admin router (mount at the root; paths start with `/__sim/`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/__sim/send", post(admin_send))
            .route("/__sim/waybill", post(admin_waybill))
            .route("/__sim/history", get(admin_history))
            .with_state(self.clone())
    }
}

async fn admin_send(
    State(sim): State<Simulator>,
    Json(req): Json<SendRequest>,
) -> (StatusCode, Json<serde_json::Value>) {
    let key = req
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let url = req
        .target_url
        .clone()
        .unwrap_or_else(|| sim.sender.config.target_url.clone());
    let key2 = key.clone();
    tokio::spawn(async move {
        match sim.sender.send_report_to(&url, &req.report, &key2).await {
            Ok(outcome) => sim.record(outcome),
            Err(e) => tracing::warn!(error = %e, "shopline sim send failed"),
        }
    });
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "idempotencyKey": key })),
    )
}

async fn admin_waybill(
    State(sim): State<Simulator>,
    Json(scenario): Json<WaybillScenario>,
) -> StatusCode {
    tokio::spawn(async move {
        match sim.sender.run_waybill(&scenario).await {
            Ok(outcomes) => outcomes.into_iter().for_each(|o| sim.record(o)),
            Err(e) => tracing::warn!(error = %e, "shopline sim waybill failed"),
        }
    });
    StatusCode::ACCEPTED
}

async fn admin_history(State(sim): State<Simulator>) -> Json<Vec<SendOutcome>> {
    Json(sim.history())
}
