//! What a message is about: the orders and exchange/return ids it names, decoded through the
//! contracts, with a lenient fallback for bodies that do not decode (hostile or malformed
//! bodies are journalled too, attributed to whatever order code they carry).

use std::str::FromStr;

use orderbus_contracts::messages::{AfterSaleExpressInfo, AfterSaleStatusUpdate};
use orderbus_contracts::{AfterSaleKind, BusMessage, RoutingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What the journal records about a body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The body decodes as its routing key's contract.
    pub decoded: bool,
    /// Why not (the contract's error, naming the field), or `unknown routing key`.
    pub decode_error: Option<String>,
    pub order_codes: Vec<i64>,
    /// `exchange:<id>` (storefront exchange id), `erp-exchange:<id>`, `return:<id>`,
    /// `erp-return:<id>`.
    pub refs: Vec<String>,
}

fn push(codes: &mut Vec<i64>, code: i64) {
    if code > 0 && !codes.contains(&code) {
        codes.push(code);
    }
}

/// Decodes `body` as `routing_key`'s contract and lists what it names.
pub fn subject(routing_key: &str, body: &[u8]) -> Subject {
    let key = match RoutingKey::from_str(routing_key) {
        Ok(k) => k,
        Err(_) => {
            return Subject {
                decoded: false,
                decode_error: Some(format!("unknown routing key {routing_key:?}")),
                order_codes: lenient_order_codes(body),
                refs: Vec::new(),
            }
        }
    };
    match BusMessage::decode(key, body) {
        Ok(m) => {
            let mut s = Subject {
                decoded: true,
                ..Subject::default()
            };
            names(&m, &mut s);
            s
        }
        Err(e) => Subject {
            decoded: false,
            decode_error: Some(e.to_string()),
            order_codes: lenient_order_codes(body),
            refs: Vec::new(),
        },
    }
}

fn names(m: &BusMessage, s: &mut Subject) {
    let c = &mut s.order_codes;
    let r = &mut s.refs;
    match m {
        BusMessage::OrderSubmit(m) => {
            push(c, m.order_code);
            if let Some(p) = m.parent_order_code {
                push(c, p);
            }
        }
        BusMessage::OrderPayment(m) => push(c, m.order_code),
        BusMessage::OrderStatus(m) => push(c, m.order_code),
        BusMessage::OrderErpStatus(m) => push(c, m.order_code),
        BusMessage::OrderCreateChangeOrder(m) => {
            push(c, m.order_code);
            push(c, m.init_order_code);
            push(c, m.source_order_code);
            r.push(format!("exchange:{}", m.id));
        }
        BusMessage::ErpCreateChangeOrder(m) => {
            push(c, m.data.source_order_code);
            push(c, m.data.init_order_code);
            push(c, m.data.new_order_code);
            r.push(format!("exchange:{}", m.data.id));
            r.push(format!("erp-exchange:{}", m.data.exchange_id));
            r.push(format!("erp-return:{}", m.data.returned_id));
        }
        BusMessage::OrderUpdateChangeRefundOrderExpressInfo(m) => match m {
            AfterSaleExpressInfo::Change(x) => {
                r.push(format!("exchange:{}", x.id));
                r.push(format!("erp-exchange:{}", x.apply_id));
            }
            AfterSaleExpressInfo::Refund(x) => {
                r.push(format!("return:{}", x.order_returned_id));
                r.push(format!("erp-return:{}", x.apply_id));
            }
        },
        BusMessage::ErpUpdateChangeRefundOrderStatus(m) => match m {
            AfterSaleStatusUpdate::Change(x) => r.push(format!("erp-exchange:{}", x.id)),
            AfterSaleStatusUpdate::Refund(x) => r.push(format!("erp-return:{}", x.id)),
        },
        BusMessage::OrderCreateRefundOrder(m) => {
            push(c, m.order_code);
            r.push(format!("return:{}", m.order_returned_id));
        }
        BusMessage::ErpCreateRefundOrder(m) => {
            r.push(format!("return:{}", m.data.id));
            r.push(format!("erp-return:{}", m.data.returned_id));
        }
        BusMessage::OrderChangeRefundCancel(m) => match m.kind {
            AfterSaleKind::Refund => r.push(format!("erp-return:{}", m.id)),
            AfterSaleKind::Change => r.push(format!("erp-exchange:{}", m.id)),
        },
        BusMessage::OrderDeliveryAddress(m) => {
            for a in &m.0 {
                push(c, a.order_code);
                push(c, a.parent_order_code);
            }
        }
        BusMessage::ErpDeliveryAddressUpdate(m) => {
            for a in &m.0 {
                push(c, a.order_code);
                push(c, a.parent_order_code);
            }
        }
        BusMessage::ErpUpdateInvoicePdfUrl(m) => push(c, m.order_code),
        BusMessage::OrderUpdateExpressInfo(m) => push(c, m.order_code),
    }
}

const ORDER_FIELDS: [&str; 6] = [
    "order_code",
    "orderCode",
    "parent_order_code",
    "source_order_code",
    "init_order_code",
    "new_order_code",
];

/// Order codes of a body that does not decode: the known field names (as numbers or digit
/// strings) at the top level, under `data`, and in the elements of a top-level array.
pub fn lenient_order_codes(body: &[u8]) -> Vec<i64> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut scan = |o: &Value| {
        if let Value::Object(map) = o {
            for f in ORDER_FIELDS {
                let code = match map.get(f) {
                    Some(Value::Number(n)) => n.as_i64(),
                    Some(Value::String(s)) if s.len() <= 19 => s.parse::<i64>().ok(),
                    _ => None,
                };
                if let Some(code) = code {
                    push(&mut out, code);
                }
            }
        }
    };
    match &v {
        Value::Array(items) => items.iter().take(100).for_each(&mut scan),
        other => {
            scan(other);
            if let Some(d) = other.get("data") {
                scan(d);
            }
        }
    }
    out
}

/// The key the consumers' inbox uses for a message: its `message_id`, else `sha256:` of the
/// routing key and body.
pub fn msg_key(message_id: Option<&str>, routing_key: &str, body: &[u8]) -> String {
    match message_id {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => {
            let mut h = Sha256::new();
            h.update(routing_key.as_bytes());
            h.update([0u8]);
            h.update(body);
            format!("sha256:{}", hex::encode(h.finalize()))
        }
    }
}

/// SHA-256 of the body's canonical JSON (object keys sorted, no whitespace), so a report that
/// re-serialised the JSON still matches the bus message; of the bytes when it is not JSON.
pub fn body_sha256(body: &[u8]) -> String {
    let bytes = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let mut s = String::new();
            canonical(&v, &mut s);
            s.into_bytes()
        }
        Err(_) => body.to_vec(),
    };
    hex::encode(Sha256::digest(&bytes))
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(x) = map.get(*k) {
                    canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The trace id (32 hex digits) of a W3C `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let _version = parts.next()?;
    let id = parts.next()?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_samples_name_their_orders() {
        let s = subject(
            "order.erpstatus",
            br#"{"uid":111111,"order_code":100000,"status":100}"#,
        );
        assert!(s.decoded, "{s:?}");
        assert_eq!(s.order_codes, vec![100000]);
        let s = subject(
            "erp.updateInvoicePdfUrl",
            br#"{"uid":8050310,"orderCode":1607578151,"pdfUrl":"www.baidu.com/url","invoiceType":"1"}"#,
        );
        assert_eq!(s.order_codes, vec![1607578151]);
        let s = subject(
            "erp.updateChangeRefundOrderStatus",
            br#"{"id":1,"status":10,"type":"change"}"#,
        );
        assert_eq!(s.refs, vec!["erp-exchange:1"]);
    }

    #[test]
    fn hostile_bodies_are_attributed_leniently() {
        let s = subject("order.erpstatus", br#"{"order_code":"77","status":"x"}"#);
        assert!(!s.decoded);
        assert!(s.decode_error.is_some());
        assert_eq!(s.order_codes, vec![77]);
        let s = subject("order.erpstatus", b"\xff\x00not json");
        assert!(!s.decoded);
        assert!(s.order_codes.is_empty());
        let s = subject("no.such.key", br#"[{"order_code":5}]"#);
        assert_eq!(s.order_codes, vec![5]);
    }

    #[test]
    fn canonical_hash_ignores_key_order_and_spaces() {
        assert_eq!(
            body_sha256(br#"{"a":1,"b":[1,2]}"#),
            body_sha256(b"{ \"b\": [1, 2], \"a\": 1 }")
        );
        assert_ne!(body_sha256(br#"{"a":1}"#), body_sha256(br#"{"a":2}"#));
    }

    #[test]
    fn keys_and_traces() {
        assert_eq!(msg_key(Some("m1"), "k", b"x"), "m1");
        assert!(msg_key(None, "k", b"x").starts_with("sha256:"));
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("garbage"), None);
    }
}
