//! BackendURL / ReturnURL notifications: `{ShopNo, PayToken}` as JSON or
//! as a form. They carry no signature: the receiver must call OrderPayQuery with the token and
//! trust only that (signed) reply.

use serde::{Deserialize, Serialize};

/// A payment notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    #[serde(rename = "ShopNo")]
    pub shop_no: String,
    #[serde(rename = "PayToken")]
    pub pay_token: String,
}

/// Why a notification body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("body is neither a JSON object nor a form: {0}")]
    Malformed(String),
    #[error("notification lacks {0}")]
    MissingField(&'static str),
    #[error("field {0} is too long")]
    TooLong(&'static str),
}

/// The acknowledgement body the bank's own sample handler returns (`{"Status":"S"}`).
pub const ACK_BODY: &str = r#"{"Status":"S"}"#;

#[derive(Deserialize)]
struct Loose {
    #[serde(rename = "ShopNo", default)]
    shop_no: Option<String>,
    #[serde(rename = "PayToken", default)]
    pay_token: Option<String>,
}

/// Decodes a notification body. JSON is tried when the content type says so or the body looks
/// like an object; otherwise `application/x-www-form-urlencoded`. Never panics.
pub fn decode_notification(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Notification, NotificationError> {
    let is_json_ct = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    let looks_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let loose: Loose = if is_json_ct || looks_json {
        serde_json::from_slice(body).map_err(|e| NotificationError::Malformed(e.to_string()))?
    } else {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| NotificationError::Malformed(e.to_string()))?
    };
    let shop_no = loose
        .shop_no
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or(NotificationError::MissingField("ShopNo"))?;
    let pay_token = loose
        .pay_token
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or(NotificationError::MissingField("PayToken"))?;
    // Spec limits: ShopNo <= 20, PayToken <= 100 characters.
    if shop_no.chars().count() > 20 {
        return Err(NotificationError::TooLong("ShopNo"));
    }
    if pay_token.chars().count() > 100 {
        return Err(NotificationError::TooLong("PayToken"));
    }
    Ok(Notification { shop_no, pay_token })
}
