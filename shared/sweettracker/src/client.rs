//! `POST {host}/add_invoice` client.

use crate::carrier::Carrier;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// v1.5 dev host (tier/key `testuser`).
pub const DEV_HOST: &str = "http://trace-api-dev.sweettracker.net:8102";
/// v1.5 prod host (as SweetTracker gives it, with its trailing slash).
pub const PROD_HOST: &str = "http://trace-api.sweettracker.net/";

/// Strips spaces and `-` from an invoice number, as SweetTracker requires.
pub fn normalize_invoice_number(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

/// Body format of the pushes (`callback_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CallbackType {
    /// Form fields (the doc's default).
    #[default]
    Map,
    /// Flat JSON object (what orderbus registers with).
    Json,
}

impl CallbackType {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackType::Map => "map",
            CallbackType::Json => "json",
        }
    }
}

/// `e_code` of a refused registration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ECode {
    /// `01` a required parameter is empty or missing.
    MissingParameter,
    /// `02` invoice number failed validation.
    InvalidInvoiceNumber,
    /// `03` invoice number already registered.
    AlreadyRegistered,
    /// `04` unsupported carrier code.
    UnsupportedCarrier,
    /// `99` system error.
    SystemError,
    /// Anything else, verbatim (empty if the server sent none).
    Other(String),
}

impl ECode {
    /// From the wire code.
    pub fn from_code(code: &str) -> Self {
        match code.trim() {
            "01" => Self::MissingParameter,
            "02" => Self::InvalidInvoiceNumber,
            "03" => Self::AlreadyRegistered,
            "04" => Self::UnsupportedCarrier,
            "99" => Self::SystemError,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Wire code.
    pub fn code(&self) -> &str {
        match self {
            Self::MissingParameter => "01",
            Self::InvalidInvoiceNumber => "02",
            Self::AlreadyRegistered => "03",
            Self::UnsupportedCarrier => "04",
            Self::SystemError => "99",
            Self::Other(c) => c,
        }
    }

    /// Documented meaning (English).
    pub fn meaning(&self) -> &'static str {
        match self {
            Self::MissingParameter => "a required parameter is empty or missing",
            Self::InvalidInvoiceNumber => "invoice number failed validation",
            Self::AlreadyRegistered => "invoice number already registered",
            Self::UnsupportedCarrier => "unsupported carrier code",
            Self::SystemError => "system error",
            Self::Other(_) => "undocumented error code",
        }
    }

    /// Korean message the simulator sends with this code (\[inferred\] except 02, quoted in the doc).
    pub fn korean_message(&self) -> &'static str {
        match self {
            Self::MissingParameter => "필수 파라미터가 누락되었습니다.",
            Self::InvalidInvoiceNumber => "송장번호 규칙에 어긋납니다.",
            Self::AlreadyRegistered => "이미 등록된 송장번호입니다.",
            Self::UnsupportedCarrier => "지원하지 않는 택배사 코드입니다.",
            Self::SystemError => "시스템 오류입니다.",
            Self::Other(_) => "알 수 없는 오류입니다.",
        }
    }

    /// Whether the same request may succeed later (only `99`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::SystemError)
    }
}

impl fmt::Display for ECode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.meaning())
    }
}

/// Client errors: transport vs protocol vs business refusal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connect/read timeout, DNS, TLS, connection reset, …
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// The server answered something that is not the documented shape.
    #[error("protocol error (HTTP {status}): {detail}")]
    Protocol {
        /// HTTP status received.
        status: u16,
        /// What was wrong.
        detail: String,
    },
    /// `success:false` with an `e_code`.
    #[error("add_invoice refused: e_code {code}: {message}")]
    Business {
        /// The typed code.
        code: ECode,
        /// `e_message` (Korean text) or the documented meaning if absent.
        message: String,
        /// Echoed `num`.
        num: Option<String>,
        /// Echoed `fid`.
        fid: Option<String>,
    },
    /// Invalid configuration (bad base URL, client build failure).
    #[error("configuration error: {0}")]
    Config(String),
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. [`DEV_HOST`]; a trailing `/` is fine.
    pub base_url: String,
    /// Issued tier id.
    pub tier: String,
    /// Issued key.
    pub key: String,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout (per read, not whole request).
    pub read_timeout: Duration,
}

impl ClientConfig {
    /// Dev host with the public `testuser` credentials.
    pub fn dev() -> Self {
        Self {
            base_url: DEV_HOST.into(),
            tier: "testuser".into(),
            key: "testuser".into(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(15),
        }
    }
}

/// One registration.
#[derive(Debug, Clone)]
pub struct AddInvoice {
    /// Invoice number (normalised by the client before sending).
    pub num: String,
    /// Carrier.
    pub carrier: Carrier,
    /// Our correlation id (≤ 30 chars per v0.3), echoed in every callback.
    pub fid: String,
    /// Where SweetTracker pushes events.
    pub callback_url: String,
    /// Push body format.
    pub callback_type: CallbackType,
}

/// A successful registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddInvoiceAck {
    /// Echoed invoice number.
    pub num: Option<String>,
    /// Echoed fid.
    pub fid: Option<String>,
}

/// Wire shape of the `add_invoice` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddInvoiceResponse {
    /// Accepted or not.
    pub success: bool,
    /// Echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num: Option<String>,
    /// Echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fid: Option<String>,
    /// Error code on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_code: Option<String>,
    /// Error text on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_message: Option<String>,
}

impl AddInvoiceResponse {
    /// Interprets the response as a typed result.
    pub fn into_result(self) -> Result<AddInvoiceAck, Error> {
        if self.success {
            return Ok(AddInvoiceAck {
                num: self.num,
                fid: self.fid,
            });
        }
        let code = ECode::from_code(self.e_code.as_deref().unwrap_or(""));
        let message = self.e_message.unwrap_or_else(|| code.meaning().to_owned());
        Err(Error::Business {
            code,
            message,
            num: self.num,
            fid: self.fid,
        })
    }
}

/// Parses an `add_invoice` response body. Non-JSON / wrong shape → [`Error::Protocol`].
pub fn parse_add_invoice_response(status: u16, body: &[u8]) -> Result<AddInvoiceAck, Error> {
    let snippet = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    match serde_json::from_slice::<AddInvoiceResponse>(body) {
        Ok(resp) => resp.into_result(),
        Err(e) => Err(Error::Protocol {
            status,
            detail: format!("unexpected body ({e}): {}", snippet()),
        }),
    }
}

/// SweetTracker Trace API client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
    add_invoice_url: String,
}

impl Client {
    /// Builds the HTTP client.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!(
                "base_url must be http(s): {:?}",
                config.base_url
            )));
        }
        let add_invoice_url = format!("{base}/add_invoice");
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self {
            http,
            config,
            add_invoice_url,
        })
    }

    /// The form fields that would be sent (exposed for logging and tests).
    pub fn form_fields(&self, req: &AddInvoice) -> Vec<(&'static str, String)> {
        vec![
            ("num", normalize_invoice_number(&req.num)),
            ("code", req.carrier.code().to_owned()),
            ("fid", req.fid.clone()),
            ("callback_url", req.callback_url.clone()),
            ("callback_type", req.callback_type.as_str().to_owned()),
            ("tier", self.config.tier.clone()),
            ("key", self.config.key.clone()),
            ("type", "json".to_owned()),
        ]
    }

    /// Registers an invoice for push tracking.
    pub async fn add_invoice(&self, req: &AddInvoice) -> Result<AddInvoiceAck, Error> {
        let resp = self
            .http
            .post(&self.add_invoice_url)
            .form(&self.form_fields(req))
            .send()
            .await
            .map_err(Error::Transport)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(Error::Transport)?;
        parse_add_invoice_response(status, &body)
    }
}
