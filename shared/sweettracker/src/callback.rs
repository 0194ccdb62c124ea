//! Push callbacks SweetTracker → `callback_url`: decoding (form `map` and JSON) and the reply.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format of `time_trans` / `time_sweet` (no zone; KST \[inferred\]).
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Delivery stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// 1 배송준비: label printed / info received.
    Preparing,
    /// 2 집화완료: picked up.
    PickedUp,
    /// 3 배송진행: in transit (may repeat).
    InTransit,
    /// 4 지점도착: arrived at delivery branch.
    AtBranch,
    /// 5 배송출발: out for delivery.
    OutForDelivery,
    /// 6 배송완료: delivered (terminal).
    Delivered,
    /// -99 배송 스캔 오류: scan error.
    ScanError,
}

impl Level {
    /// Wire number.
    pub fn as_i64(self) -> i64 {
        match self {
            Level::Preparing => 1,
            Level::PickedUp => 2,
            Level::InTransit => 3,
            Level::AtBranch => 4,
            Level::OutForDelivery => 5,
            Level::Delivered => 6,
            Level::ScanError => -99,
        }
    }

    /// From the wire number.
    pub fn from_i64(n: i64) -> Option<Self> {
        Some(match n {
            1 => Level::Preparing,
            2 => Level::PickedUp,
            3 => Level::InTransit,
            4 => Level::AtBranch,
            5 => Level::OutForDelivery,
            6 => Level::Delivered,
            -99 => Level::ScanError,
            _ => return None,
        })
    }

    /// Parses `"3"`, `" 3 "`, `"-99"`.
    pub fn parse(text: &str) -> Option<Self> {
        text.trim().parse::<i64>().ok().and_then(Self::from_i64)
    }

    /// Korean doc label.
    pub fn label(self) -> &'static str {
        match self {
            Level::Preparing => "배송준비",
            Level::PickedUp => "집화완료",
            Level::InTransit => "배송진행중",
            Level::AtBranch => "지점도착",
            Level::OutForDelivery => "배송출발",
            Level::Delivered => "배송완료",
            Level::ScanError => "배송 스캔 오류",
        }
    }
}

/// Why a callback body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// Form body did not parse.
    #[error("invalid form body: {0}")]
    Form(String),
    /// JSON body did not parse or is not an object.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// A required field (`fid`, `invoice_no`, `level`) is missing or empty.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// `level` is not 1..6 or -99.
    #[error("invalid level {0:?}")]
    BadLevel(String),
}

/// One tracking event as pushed by SweetTracker. Only `fid`, `invoice_no` and `level` are
/// required; every other field is optional text exactly as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// "auth key — currently unused" (doc).
    pub secret_value: Option<String>,
    /// Our correlation id from `add_invoice`.
    pub fid: String,
    /// Carrier code (v0.3 example form).
    pub courier_code: Option<String>,
    /// Invoice number.
    pub invoice_no: String,
    /// Delivery stage.
    pub level: Level,
    /// Carrier processing time, `yyyy-MM-dd HH:mm:ss`.
    pub time_trans: Option<String>,
    /// SweetTracker registration time, same format.
    pub time_sweet: Option<String>,
    /// Location / branch (`where` on the wire).
    pub location: Option<String>,
    /// Branch phone.
    pub telno_office: Option<String>,
    /// Driver phone.
    pub telno_man: Option<String>,
    /// Event description.
    pub details: Option<String>,
    /// Recipient address (masked).
    pub recv_addr: Option<String>,
    /// Recipient name (masked).
    pub recv_name: Option<String>,
    /// Sender name (masked).
    pub send_name: Option<String>,
    /// Driver name.
    pub man: Option<String>,
    /// v1.x estimated delivery time (wire spelling `estmate`).
    pub estmate: Option<String>,
    /// v1.x carrier code.
    pub comcode: Option<String>,
}

/// Wire names of the optional text fields, in doc order (used by both encoders).
const OPTIONAL_FIELDS: [&str; 14] = [
    "secret_value",
    "courier_code",
    "time_trans",
    "time_sweet",
    "where",
    "telno_office",
    "telno_man",
    "details",
    "recv_addr",
    "recv_name",
    "send_name",
    "man",
    "estmate",
    "comcode",
];

impl Callback {
    /// Builds from a flat name→text map (shared by both decoders).
    pub fn from_fields(fields: &BTreeMap<String, String>) -> Result<Self, CallbackError> {
        let req = |name: &'static str| -> Result<String, CallbackError> {
            match fields.get(name) {
                Some(v) if !v.trim().is_empty() => Ok(v.clone()),
                _ => Err(CallbackError::Missing(name)),
            }
        };
        let opt = |name: &str| fields.get(name).cloned();
        let level_text = req("level")?;
        let level = Level::parse(&level_text)
            .ok_or_else(|| CallbackError::BadLevel(level_text.chars().take(32).collect()))?;
        Ok(Self {
            secret_value: opt("secret_value"),
            fid: req("fid")?,
            courier_code: opt("courier_code"),
            invoice_no: req("invoice_no")?,
            level,
            time_trans: opt("time_trans"),
            time_sweet: opt("time_sweet"),
            location: opt("where"),
            telno_office: opt("telno_office"),
            telno_man: opt("telno_man"),
            details: opt("details"),
            recv_addr: opt("recv_addr"),
            recv_name: opt("recv_name"),
            send_name: opt("send_name"),
            man: opt("man"),
            estmate: opt("estmate"),
            comcode: opt("comcode"),
        })
    }

    fn optional(&self, name: &str) -> Option<&String> {
        match name {
            "secret_value" => self.secret_value.as_ref(),
            "courier_code" => self.courier_code.as_ref(),
            "time_trans" => self.time_trans.as_ref(),
            "time_sweet" => self.time_sweet.as_ref(),
            "where" => self.location.as_ref(),
            "telno_office" => self.telno_office.as_ref(),
            "telno_man" => self.telno_man.as_ref(),
            "details" => self.details.as_ref(),
            "recv_addr" => self.recv_addr.as_ref(),
            "recv_name" => self.recv_name.as_ref(),
            "send_name" => self.send_name.as_ref(),
            "man" => self.man.as_ref(),
            "estmate" => self.estmate.as_ref(),
            "comcode" => self.comcode.as_ref(),
            _ => None,
        }
    }

    /// `(name, value)` pairs in wire order; absent optional fields are left out.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("fid".to_owned(), self.fid.clone()),
            ("invoice_no".to_owned(), self.invoice_no.clone()),
            ("level".to_owned(), self.level.as_i64().to_string()),
        ];
        for name in OPTIONAL_FIELDS {
            if let Some(v) = self.optional(name) {
                out.push((name.to_owned(), v.clone()));
            }
        }
        out
    }

    /// `application/x-www-form-urlencoded` body (`callback_type=map`).
    pub fn to_form(&self) -> String {
        serde_urlencoded::to_string(self.to_pairs()).unwrap_or_default()
    }

    /// Flat JSON object (`callback_type=json`). `level_as_string` reproduces the observed
    /// `"level":"2"` form; otherwise `level` is a JSON number.
    pub fn to_json(&self, level_as_string: bool) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (k, v) in self.to_pairs() {
            if k == "level" && !level_as_string {
                map.insert(k, serde_json::Value::from(self.level.as_i64()));
            } else {
                map.insert(k, serde_json::Value::String(v));
            }
        }
        serde_json::Value::Object(map)
    }

    /// `time_trans` parsed (naive, KST \[inferred\]).
    pub fn time_trans_parsed(&self) -> Option<NaiveDateTime> {
        self.time_trans
            .as_deref()
            .and_then(|t| NaiveDateTime::parse_from_str(t.trim(), TIME_FORMAT).ok())
    }

    /// `time_sweet` parsed.
    pub fn time_sweet_parsed(&self) -> Option<NaiveDateTime> {
        self.time_sweet
            .as_deref()
            .and_then(|t| NaiveDateTime::parse_from_str(t.trim(), TIME_FORMAT).ok())
    }

    /// `courier_code`, falling back to `comcode`.
    pub fn carrier_code(&self) -> Option<&str> {
        self.courier_code.as_deref().or(self.comcode.as_deref())
    }
}

/// Decodes a `callback_type=map` (form) body. Repeated names: the last one wins.
pub fn decode_form(body: &[u8]) -> Result<Callback, CallbackError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| CallbackError::Form(e.to_string()))?;
    let fields: BTreeMap<String, String> = pairs.into_iter().collect();
    Callback::from_fields(&fields)
}

/// Decodes a `callback_type=json` body: a flat object whose values may be strings or numbers
/// (`level` observed both as `2` and `"2"`). `null` = absent; nested values are rejected for
/// the required fields and ignored otherwise.
pub fn decode_json(body: &[u8]) -> Result<Callback, CallbackError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| CallbackError::Json(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(CallbackError::Json("body is not a JSON object".into()));
    };
    let mut fields = BTreeMap::new();
    for (k, v) in map {
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null
            | serde_json::Value::Array(_)
            | serde_json::Value::Object(_) => continue,
        };
        fields.insert(k, text);
    }
    Callback::from_fields(&fields)
}

/// Decodes by `Content-Type` (JSON if it mentions `json`, form if it mentions `form`), otherwise
/// by sniffing: a body starting with `{` is JSON.
pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Callback, CallbackError> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.contains("json") {
        decode_json(body)
    } else if ct.contains("form") {
        decode_form(body)
    } else if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        decode_json(body)
    } else {
        decode_form(body)
    }
}

/// What our endpoint answers: `{"code":true,"message":"success"}` or `{"code":false,…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackReply {
    /// JSON boolean: accepted or not.
    pub code: bool,
    /// Free text.
    pub message: String,
}

impl CallbackReply {
    /// `{"code":true,"message":"success"}`.
    pub fn success() -> Self {
        Self {
            code: true,
            message: "success".into(),
        }
    }

    /// `{"code":false,"message":"fail - …"}`.
    pub fn failure(reason: impl AsRef<str>) -> Self {
        Self {
            code: false,
            message: format!("fail - {}", reason.as_ref()),
        }
    }

    /// Parses a reply body (simulator side).
    pub fn parse(body: &[u8]) -> Result<Self, CallbackError> {
        serde_json::from_slice(body).map_err(|e| CallbackError::Json(e.to_string()))
    }
}
