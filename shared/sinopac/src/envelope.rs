//! The `POST {base}/Order` envelope, both directions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::crypto::{self, HashId};
use crate::error::{Error, ProtocolError};

/// Fixed `Version` of the envelope.
pub const VERSION: &str = "1.0.0";

/// `APIService` names (from the bank's C# sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiService {
    OrderCreate,
    OrderQuery,
    OrderPayQuery,
    OrderUnCapturedQuery,
    OrderMaintain,
    BillQuery,
    AllotQuery,
}

impl ApiService {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiService::OrderCreate => "OrderCreate",
            ApiService::OrderQuery => "OrderQuery",
            ApiService::OrderPayQuery => "OrderPayQuery",
            ApiService::OrderUnCapturedQuery => "OrderUnCapturedQuery",
            ApiService::OrderMaintain => "OrderMaintain",
            ApiService::BillQuery => "BillQuery",
            ApiService::AllotQuery => "AllotQuery",
        }
    }

    pub fn parse(s: &str) -> Option<ApiService> {
        Some(match s {
            "OrderCreate" => ApiService::OrderCreate,
            "OrderQuery" => ApiService::OrderQuery,
            "OrderPayQuery" => ApiService::OrderPayQuery,
            "OrderUnCapturedQuery" => ApiService::OrderUnCapturedQuery,
            "OrderMaintain" => ApiService::OrderMaintain,
            "BillQuery" => ApiService::BillQuery,
            "AllotQuery" => ApiService::AllotQuery,
            _ => return None,
        })
    }
}

/// The six-field envelope used by requests and replies alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "Version", default)]
    pub version: String,
    #[serde(rename = "ShopNo", default)]
    pub shop_no: String,
    #[serde(rename = "APIService", default)]
    pub api_service: String,
    #[serde(rename = "Sign", default)]
    pub sign: String,
    #[serde(rename = "Nonce", default)]
    pub nonce: String,
    #[serde(rename = "Message", default)]
    pub message: String,
}

/// Signs and encrypts `message` with `nonce` (the request's nonce, or a fresh one for a reply).
pub fn seal(
    service: ApiService,
    shop_no: &str,
    hash_id: &HashId,
    nonce: &str,
    message: &Map<String, Value>,
) -> Envelope {
    // Serializing a Map of serde_json values cannot fail; fall back to "{}" rather than panic.
    let plaintext = serde_json::to_vec(message).unwrap_or_else(|_| b"{}".to_vec());
    Envelope {
        version: VERSION.to_owned(),
        shop_no: shop_no.to_owned(),
        api_service: service.as_str().to_owned(),
        sign: crypto::sign(message, nonce, hash_id),
        nonce: nonce.to_owned(),
        message: crypto::encrypt_message(hash_id, nonce, &plaintext),
    }
}

/// Decrypts an envelope's `Message` and checks its `Sign`; returns the message object.
pub fn open(env: &Envelope, hash_id: &HashId) -> Result<Map<String, Value>, ProtocolError> {
    if env.nonce.is_empty() {
        return Err(ProtocolError::MissingField("Nonce"));
    }
    if env.message.is_empty() {
        return Err(ProtocolError::MissingField("Message"));
    }
    if env.sign.is_empty() {
        return Err(ProtocolError::MissingField("Sign"));
    }
    let plain = crypto::decrypt_message(hash_id, &env.nonce, &env.message)?;
    let value: Value = serde_json::from_slice(&plain)
        .map_err(|e| ProtocolError::BadMessage(format!("not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ProtocolError::BadMessage("not a JSON object".to_owned()));
    };
    if !crypto::verify_sign(&map, &env.nonce, hash_id, &env.sign) {
        return Err(ProtocolError::BadSignature);
    }
    Ok(map)
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// Decodes a reply body from `POST /Order`: parse, decrypt, verify, check the service.
///
/// A body without `Message` but with `Status`/`Description` (the bank's error shape when it
/// cannot or will not encrypt, \[unknown\] on the real bank) becomes [`Error::Business`] when
/// `Status` is not `S`; an unsigned reply is never accepted as a success.
pub fn decode_response(
    body: &[u8],
    hash_id: &HashId,
    expected: ApiService,
) -> Result<Map<String, Value>, Error> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ProtocolError::BadJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(ProtocolError::NotAnObject.into());
    };
    let has_message = str_field(&obj, "Message").is_some_and(|m| !m.is_empty());
    if !has_message {
        if let Some(status) = str_field(&obj, "Status") {
            if status != "S" {
                return Err(Error::business(
                    str_field(&obj, "Description").unwrap_or(""),
                ));
            }
        }
        return Err(ProtocolError::MissingField("Message").into());
    }
    let env: Envelope = serde_json::from_value(Value::Object(obj))
        .map_err(|e| ProtocolError::BadJson(e.to_string()))?;
    if !env.api_service.is_empty() && env.api_service != expected.as_str() {
        return Err(ProtocolError::ServiceMismatch {
            expected: expected.as_str().to_owned(),
            got: env.api_service,
        }
        .into());
    }
    Ok(open(&env, hash_id)?)
}

/// Checks `Status`/`Description` of a decrypted reply: `S` passes, anything else is
/// [`Error::Business`], a missing `Status` is a protocol error.
pub fn check_status(msg: &Map<String, Value>) -> Result<(), Error> {
    let status = str_field(msg, "Status").ok_or(ProtocolError::MissingField("Status"))?;
    if status == "S" {
        Ok(())
    } else {
        Err(Error::business(str_field(msg, "Description").unwrap_or("")))
    }
}
