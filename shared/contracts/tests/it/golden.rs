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
            r#"{"uid":1,"orderCode":2,"pdfUrl":"https://example.com/i.pdf","invoiceType":"2"}"#,
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

#[test]
fn payment_amounts_must_be_positive_and_fit_numeric_14_2() {
    let payment = |amount: &str| {
        format!(
            r#"{{"uid":1,"order_code":2,"amount":{amount},"pay_type":1,"payment_gateway":"sinopac_qpay","gateway_trade_no":"LA1","paid_time":1}}"#
        )
    };
    assert!(BusMessage::decode(RoutingKey::OrderPayment, payment(r#""0.01""#).as_bytes()).is_ok());
    for bad in [
        r#""0.00""#,
        r#""0""#,
        "0",
        r#""-5.00""#,
        r#""1.005""#,
        r#""1000000000000.00""#,
    ] {
        let err =
            BusMessage::decode(RoutingKey::OrderPayment, payment(bad).as_bytes()).expect_err(bad);
        assert_eq!(err.path, "amount", "{bad}: {err}");
    }
}

#[test]
fn invoice_urls_must_be_http_or_https() {
    let invoice = |url: &str| serde_json::json!({ "uid": 1, "orderCode": 2, "pdfUrl": url, "invoiceType": "0" });
    for ok in [
        "https://invoice.example.com/a.pdf",
        "http://example.com/a",
        "www.baidu.com/url",
    ] {
        decode(RoutingKey::ErpUpdateInvoicePdfUrl, &invoice(ok))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "",
        "javascript:alert(1)",
        "data:text/html,x",
        "ftp://example.com/a",
        "/a.pdf",
    ] {
        let err = decode(RoutingKey::ErpUpdateInvoicePdfUrl, &invoice(bad)).expect_err(bad);
        assert_eq!(err.path, "pdfUrl", "{bad}: {err}");
    }
}

/// Fields that identify something or are required text: an empty value is refused.
const REQUIRED_TEXT: &[&str] = &[
    "user_name",
    "mobile",
    "province",
    "city",
    "address",
    "consignee_name",
    "payment_gateway",
    "gateway_trade_no",
    "express_number",
    "express_name",
    "exchange_reason",
    "returned_reason",
    "goods_type",
    "return_amount_mode",
    "uniqueKey",
    "waybillCode",
    "pdfUrl",
];

/// Whether the field at `path` of `key` must not be empty. A return order's refund address
/// (`city`, `province`) is optional: the refund may go to a card or an Alipay account.
fn is_required_text(key: RoutingKey, path: &str) -> bool {
    let name = field_name(path);
    let optional_here =
        key == RoutingKey::OrderCreateRefundOrder && matches!(name, "city" | "province");
    REQUIRED_TEXT.contains(&name) && !optional_here
}

/// A string field of a fixture: `(routing key, file, fixture, field path, route to the field)`.
type StringLeaf = (RoutingKey, PathBuf, Value, String, Vec<PathStep>);

/// Every string leaf of every fixture with its path and route.
fn string_leaves() -> Vec<StringLeaf> {
    let mut out = Vec::new();
    for (key, file, value) in fixtures() {
        let mut paths = Vec::new();
        leaves(&value, String::new(), &mut paths, Vec::new());
        for (path, steps) in paths {
            let leaf = steps.iter().fold(&value, |v, s| match s {
                PathStep::Key(k) => &v[k.as_str()],
                PathStep::Index(i) => &v[*i],
            });
            // The after-sale tag selects the shape; it is not a field.
            let is_tag = path == "type" && leaf.is_string();
            if leaf.is_string() && !is_tag {
                out.push((key, file.clone(), value.clone(), path, steps));
            }
        }
    }
    out
}

/// The field name at the end of a path (`goods[0].remark` → `remark`).
fn field_name(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

#[test]
fn every_string_field_refuses_nul_over_long_and_required_empty_naming_it() {
    let all = string_leaves();
    assert!(all.len() > 100, "only {} string fields", all.len());
    for (key, file, value, path, steps) in all {
        let long = "a".repeat(2049);
        let mut cases = vec![
            ("NUL", Value::from("a\u{0}b")),
            ("over-long", Value::from(long)),
        ];
        if is_required_text(key, &path) {
            cases.push(("empty", Value::from("")));
            cases.push(("blank", Value::from("  ")));
        }
        for (what, bad) in cases {
            let err = decode(key, &replaced(&value, &steps, bad))
                .err()
                .unwrap_or_else(|| panic!("{}: {what} {path} was accepted", file.display()));
            assert_eq!(err.path, path, "{}: {what}: {err}", file.display());
        }
    }
}

mod generated {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::LazyLock;

    static LEAVES: LazyLock<Vec<StringLeaf>> = LazyLock::new(string_leaves);

    static VALIDATORS: LazyLock<HashMap<RoutingKey, jsonschema::Validator>> = LazyLock::new(|| {
        RoutingKey::ALL
            .iter()
            .map(|k| (*k, validator(*k)))
            .collect()
    });

    fn validator(key: RoutingKey) -> jsonschema::Validator {
        let file = fixtures_root()
            .join("../../schemas")
            .join(orderbus_contracts::schema::schema_file_name(key));
        let text = std::fs::read_to_string(&file).expect("committed schema");
        let schema: Value = serde_json::from_str(&text).expect("schema JSON");
        jsonschema::validator_for(&schema).expect("valid schema")
    }

    /// Strings around the limits: a short random head and a run of one character whose length
    /// lands near 18, 100, 500 or 2048.
    fn text() -> impl Strategy<Value = String> {
        let run = prop_oneof![
            0usize..4,
            14usize..22,
            95usize..105,
            495usize..505,
            2044usize..2052
        ];
        (
            "[a-z0-9 中\\-.:/]{0,8}",
            run,
            prop_oneof![Just('a'), Just('字'), Just(' '), Just('7')],
        )
            .prop_map(|(head, n, c)| head + &c.to_string().repeat(n))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// For any replacement of any string field, the decoder and the committed JSON Schema
        /// agree, and a refusal names that field.
        #[test]
        fn decoder_and_schema_agree_on_every_string_field(
            which in any::<prop::sample::Index>(),
            text in text(),
        ) {
            let (key, file, value, path, steps) = &LEAVES[which.index(LEAVES.len())];
            let mutated = replaced(value, steps, Value::from(text.clone()));
            let decoded = decode(*key, &mutated);
            let schema_ok = VALIDATORS[key].is_valid(&mutated);
            prop_assert_eq!(decoded.is_ok(), schema_ok, "{}: {} = {:?}: {:?}", file.display(), path, text, decoded.err());
            if let Err(e) = decoded {
                prop_assert_eq!(&e.path, path, "{}", e);
            }
        }
    }
}
