//! Every JSON sample of the MQ spec is a golden fixture: it decodes into its type and re-encodes
//! to the same JSON value. Mutated variants of each decode to an error naming the field.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use orderbus_contracts::{BusMessage, DecodeError, RoutingKey};
use serde_json::Value;

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// `(routing key, file, parsed JSON)` for every fixture under `tests/fixtures/{mq-spec,orderbus}`.
fn fixtures() -> Vec<(RoutingKey, PathBuf, Value)> {
    let mut out = Vec::new();
    for set in ["mq-spec", "orderbus"] {
        let dir = fixtures_root().join(set);
        let mut keys: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        keys.sort();
        for key_dir in keys {
            let name = key_dir
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name");
            let key = RoutingKey::from_str(name).unwrap_or_else(|e| panic!("fixture dir: {e}"));
            let mut files: Vec<_> = std::fs::read_dir(&key_dir)
                .expect("read")
                .map(|e| e.expect("entry").path())
                .collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file).expect("read fixture");
                let value: Value = serde_json::from_str(&text).expect("fixture is JSON");
                out.push((key, file, value));
            }
        }
    }
    out
}

fn decode(key: RoutingKey, value: &Value) -> Result<BusMessage, DecodeError> {
    BusMessage::decode(key, value.to_string().as_bytes())
}

#[test]
fn every_fixture_round_trips_to_the_same_json_value() {
    let all = fixtures();
    assert_eq!(
        all.iter()
            .filter(|(_, f, _)| f.to_string_lossy().contains("mq-spec"))
            .count(),
        29,
        "the spec has 29 samples"
    );
    for (key, file, value) in &all {
        let message = decode(*key, value).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(message.routing_key(), *key);
        let again = message.to_json().expect("encode");
        assert_eq!(
            &again,
            value,
            "{} does not re-encode to the same JSON",
            file.display()
        );
    }
}

#[test]
fn every_routing_key_has_a_fixture() {
    let all = fixtures();
    for key in RoutingKey::ALL {
        assert!(
            all.iter().any(|(k, _, _)| *k == key),
            "no fixture for {key}"
        );
    }
}

/// Every leaf of `value` with its path in the decoder's notation (`data.express_id`, `goods[0].remark`).
fn leaves(
    value: &Value,
    path: String,
    out: &mut Vec<(String, Vec<PathStep>)>,
    steps: Vec<PathStep>,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let mut s = steps.clone();
                s.push(PathStep::Key(k.clone()));
                leaves(v, p, out, s);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let mut s = steps.clone();
                s.push(PathStep::Index(i));
                leaves(v, p, out, s);
            }
        }
        _ => out.push((path, steps)),
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn replaced(value: &Value, steps: &[PathStep], with: Value) -> Value {
    let mut copy = value.clone();
    let mut cursor = &mut copy;
    for step in steps {
        cursor = match step {
            PathStep::Key(k) => cursor.get_mut(k.as_str()).expect("path exists"),
            PathStep::Index(i) => cursor.get_mut(*i).expect("path exists"),
        };
    }
    *cursor = with;
    copy
}

#[test]
fn a_wrong_typed_field_is_an_error_naming_that_field() {
    for (key, file, value) in fixtures() {
        let mut paths = Vec::new();
        leaves(&value, String::new(), &mut paths, Vec::new());
        for (path, steps) in paths {
            // The tag of after-sale messages selects the shape; it is checked separately below.
            if path.ends_with("type")
                && matches!(value.get("type"), Some(Value::String(_)))
                && steps.len() == 1
            {
                continue;
            }
            for wrong in [
                Value::Bool(true),
                serde_json::json!({ "nested": 1 }),
                serde_json::json!([1]),
            ] {
                let mutated = replaced(&value, &steps, wrong.clone());
                match decode(key, &mutated) {
                    Ok(m) => panic!("{} with {path} = {wrong} decoded as {m:?}", file.display()),
                    Err(e) => assert_eq!(
                        e.path,
                        path,
                        "{}: {path} = {wrong}: error {e} names the wrong field",
                        file.display()
                    ),
                }
            }
        }
    }
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    for (key, file, value) in fixtures() {
        let text = value.to_string();
        for cut in [1, text.len() / 2, text.len() - 1] {
            let err = BusMessage::decode(key, &text.as_bytes()[..cut])
                .expect_err("truncated JSON must fail");
            assert!(
                err.to_string().contains("malformed JSON"),
                "{}: {err}",
                file.display()
            );
        }
        assert!(BusMessage::decode(key, b"").is_err());
        assert!(BusMessage::decode(key, b"\xff\xfe").is_err());
        assert!(BusMessage::decode(key, b"null").is_err());
    }
}

#[test]
fn unknown_status_codes_are_typed_errors() {
    let cases = [
        (
            RoutingKey::OrderErpStatus,
            r#"{"uid":1,"order_code":2,"status":650}"#,
            "status",
            "unknown order.erpstatus status code 650",
        ),
        (
            RoutingKey::OrderStatus,
            r#"{"orderCode":2,"status":901}"#,
            "status",
            "unknown order.orderStatus status code 901",
        ),
        (
            RoutingKey::ErpUpdateChangeRefundOrderStatus,
            r#"{"id":1,"status":20,"type":"change"}"#,
            "status",
            "unknown exchange status code 20",
        ),
        (
            RoutingKey::ErpUpdateChangeRefundOrderStatus,
            r#"{"id":1,"status":50,"type":"refund"}"#,
            "status",
            "unknown return status code 50",
        ),
        (
            RoutingKey::ErpUpdateInvoicePdfUrl,
            r#"{"uid":1,"orderCode":2,"pdfUrl":"u","invoiceType":"2"}"#,
            "invoiceType",
            "unknown invoice type code 2",
        ),
        (
            RoutingKey::OrderChangeRefundCancel,
            r#"{"id":1,"status":900,"type":3}"#,
            "type",
            "unknown after-sale type code 3",
        ),
        (
            RoutingKey::ErpCreateRefundOrder,
            r#"{"code":404,"message":"x","data":{"id":1,"returned_id":1,"returned_status":10}}"#,
            "code",
            "unknown ERP result code 404",
        ),
    ];
    for (key, body, path, text) in cases {
        let err = BusMessage::decode(key, body.as_bytes()).expect_err(body);
        assert_eq!(err.path, path, "{err}");
        assert!(err.message.contains(text), "{err}");
    }
}

#[test]
fn spec_inconsistencies_accept_both_forms_and_emit_the_spec_form() {
    // order_code as a string where the spec sends a number, and vice versa.
    let m = BusMessage::decode(
        RoutingKey::OrderErpStatus,
        br#"{"uid":"111111","order_code":"100000","status":"100"}"#,
    )
    .expect("lenient");
    assert_eq!(
        m.to_json().expect("encode"),
        serde_json::json!({"uid":111111,"order_code":100000,"status":100})
    );
    let refund = r#"{"uid":3342109,"alipay_account":"","alipay_name":"","area_code":"","bank_card":"","bank_id":"5","head_bank_name":"","bank_name":"","city":"","county":"","order_code":308545172,"payee_name":"","province":"","remark":"","return_amount_mode":"2","order_returned_id":"123","returned_goods_list":[{"product_sku":383669,"goods_type":"1","last_price":334,"returned_reason":"1","remark":"","evidence_images":""}]}"#;
    let m =
        BusMessage::decode(RoutingKey::OrderCreateRefundOrder, refund.as_bytes()).expect("lenient");
    let v = m.to_json().expect("encode");
    assert_eq!(v["uid"], "3342109");
    assert_eq!(v["order_code"], "308545172");
    assert_eq!(v["order_returned_id"], 123);
    assert_eq!(v["returned_goods_list"][0]["product_sku"], "383669");
    assert_eq!(v["returned_goods_list"][0]["last_price"], "334");
    // `type` spelled as in the other after-sale messages.
    let m = BusMessage::decode(
        RoutingKey::OrderChangeRefundCancel,
        br#"{"id":1,"status":900,"type":"change"}"#,
    )
    .expect("lenient");
    assert_eq!(m.to_json().expect("encode")["type"], 2);
    // A number with a fraction is not an integer.
    assert!(BusMessage::decode(
        RoutingKey::OrderErpStatus,
        br#"{"uid":1.5,"order_code":1,"status":100}"#
    )
    .is_err());
}

#[test]
fn missing_fields_and_cross_field_rules_are_named() {
    let err = BusMessage::decode(RoutingKey::OrderErpStatus, br#"{"uid":1,"status":100}"#)
        .expect_err("missing");
    assert!(err.message.contains("missing field `order_code`"), "{err}");
    let err = BusMessage::decode(
        RoutingKey::OrderErpStatus,
        br#"{"uid":1,"order_code":2,"status":600}"#,
    )
    .expect_err("600 needs data");
    assert_eq!(err.path, "data", "{err}");
    let err = BusMessage::decode(RoutingKey::OrderDeliveryAddress, b"[]").expect_err("empty list");
    assert!(err.message.contains("empty"), "{err}");
    let err = BusMessage::decode(
        RoutingKey::ErpUpdateChangeRefundOrderStatus,
        br#"{"id":1,"status":10}"#,
    )
    .expect_err("no type");
    assert!(err.message.contains("type"), "{err}");
    let err = BusMessage::decode(
        RoutingKey::ErpUpdateChangeRefundOrderStatus,
        br#"{"id":1,"status":10,"type":"swap"}"#,
    )
    .expect_err("bad type");
    assert!(err.message.contains("swap"), "{err}");
}

#[test]
fn duplicate_keys_are_refused_naming_the_object_and_the_key() {
    let err = BusMessage::decode(
        RoutingKey::OrderErpStatus,
        br#"{"uid":1,"order_code":2,"status":100,"status":700}"#,
    )
    .expect_err("a repeated status must not be applied");
    assert_eq!(err.path, "", "{err}");
    assert_eq!(
        err.to_string(),
        r#"order.erpstatus: body: duplicate key "status""#
    );
    let err = BusMessage::decode(
        RoutingKey::OrderErpStatus,
        br#"{"uid":1,"order_code":2,"status":600,"data":{"express_id":23,"express_number":"1","express_number":"2"}}"#,
    )
    .expect_err("nested duplicate");
    assert_eq!(err.path, "data", "{err}");
    assert!(err.message.contains("express_number"), "{err}");
}

#[test]
fn nul_in_any_string_is_refused_naming_the_field() {
    let err = BusMessage::decode(
        RoutingKey::ErpUpdateInvoicePdfUrl,
        br#"{"uid":1,"orderCode":2,"pdfUrl":"https://example.com/a\u0000.pdf","invoiceType":"0"}"#,
    )
    .expect_err("NUL");
    assert_eq!(err.path, "pdfUrl", "{err}");
    assert!(err.message.contains("U+0000"), "{err}");
}
