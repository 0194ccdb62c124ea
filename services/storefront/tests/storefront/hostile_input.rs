//! Hostile input on the HTTP API: amounts past `numeric(14,2)`, NUL in any text field,
//! duplicate JSON keys, errors that must be JSON on every route, the Idempotency-Key hash over
//! a canonical body.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Value};

use crate::common::*;

async fn post_raw(h: &Harness, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    let r = h
        .http
        .post(h.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

fn with_items(items: Value, shipping: &str) -> Value {
    let mut body = order_body(3, &[1]);
    body["items"] = items;
    body["shipping_cost"] = json!(shipping);
    body
}

fn item(warehouse: i64, quantity: i64, unit_price: &str) -> Value {
    json!({ "product_sku": 1 + warehouse, "product_skn": 1, "warehouse_id": warehouse,
            "quantity": quantity, "unit_price": unit_price })
}

#[tokio::test]
async fn amounts_past_the_column_limit_are_400_naming_the_field() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let cases = [
        // The unchecked-add panic of the goods total + shipping.
        (
            with_items(json!([item(1, 1, "92233720368547758.07")]), "0.00"),
            "items[0].unit_price",
        ),
        (
            with_items(json!([item(1, 1, "999999999999.99")]), "10.00"),
            "shipping_cost",
        ),
        (
            with_items(json!([item(1, 1, "1.00")]), "90000000000000000.00"),
            "shipping_cost",
        ),
        (
            with_items(json!([item(1, 10000, "999999999999.99")]), "0.00"),
            "items[0]",
        ),
        // Split: each child fits, the parent does not.
        (
            with_items(
                json!([item(1, 1, "999999999999.99"), item(2, 1, "999999999999.99")]),
                "0.00",
            ),
            "items",
        ),
    ];
    for (body, field) in cases {
        let (s, v) = h.post("/orders", &body).await?;
        assert_eq!((s, v["field"].clone()), (400, json!(field)), "{body} → {v}");
        assert_eq!(v["error"], "invalid_request");
    }
    assert_eq!(h.outbox_count("order.submit").await?, 0, "nothing created");

    // Exactly at the limit is accepted and stored as written.
    let body = with_items(
        json!([item(1, 1, "999999999889.99"), item(2, 1, "100.00")]),
        "10.00",
    );
    let (s, v) = h.post("/orders", &body).await?;
    assert_eq!(s, 201, "{v}");
    let order = h
        .order(v["order_code"].as_i64().unwrap_or_default())
        .await?;
    assert_eq!(order["order_amount"], "999999999999.99");
    h.stop().await
}

/// Every text field of every request body, as (path, JSON pointer, valid body).
fn text_fields() -> Vec<(&'static str, String, Value)> {
    let address_fields = [
        "user_name",
        "mobile",
        "phone",
        "province",
        "city",
        "district",
        "address",
        "zip_code",
        "area_code",
        "email",
    ];
    let order = order_body(4, &[1]);
    let address = order["delivery_address"].clone();
    let mut fields: Vec<(&'static str, String, Value)> = Vec::new();
    for f in ["remark", "shipping_cost", "items[0].unit_price"] {
        fields.push(("/orders", f.to_owned(), order.clone()));
    }
    for f in address_fields {
        fields.push(("/orders", format!("delivery_address.{f}"), order.clone()));
        fields.push((
            "/orders/1/address",
            format!("delivery_address.{f}"),
            json!({ "delivery_address": address }),
        ));
    }
    fields.push(("/orders/1/cancel", "remark".into(), json!({ "remark": "" })));
    fields.push((
        "/orders/1/confirm-receipt",
        "remark".into(),
        json!({ "remark": "" }),
    ));
    let exchange = json!({
        "goods": [{ "product_sku": 1, "product_skc": 1, "new_product_sku": 2, "new_product_skc": 2,
                    "new_goods_id": 2, "exchange_reason": "size", "goods_type": "1", "remark": "" }],
        "receipt_time": "", "remark": "", "address": address,
    });
    for f in [
        "goods[0].exchange_reason",
        "goods[0].goods_type",
        "goods[0].remark",
        "receipt_time",
        "remark",
    ] {
        fields.push(("/orders/1/exchanges", f.to_owned(), exchange.clone()));
    }
    for f in address_fields {
        fields.push((
            "/orders/1/exchanges",
            format!("address.{f}"),
            exchange.clone(),
        ));
    }
    let ret = json!({
        "goods": [{ "product_sku": 1, "returned_reason": "broken", "goods_type": "1",
                    "remark": "", "evidence_images": "" }],
        "return_amount_mode": "2", "payee_name": "Kim", "bank_id": "", "bank_name": "",
        "head_bank_name": "", "bank_card": "1234", "alipay_account": "", "alipay_name": "",
        "area_code": "", "province": "", "city": "", "county": "", "remark": "",
    });
    for f in [
        "goods[0].returned_reason",
        "goods[0].goods_type",
        "goods[0].remark",
        "goods[0].evidence_images",
        "return_amount_mode",
        "payee_name",
        "bank_id",
        "bank_name",
        "head_bank_name",
        "bank_card",
        "alipay_account",
        "alipay_name",
        "area_code",
        "province",
        "city",
        "county",
        "remark",
    ] {
        fields.push(("/orders/1/returns", f.to_owned(), ret.clone()));
    }
    let waybill = json!({ "express_id": 1, "express_name": "CJ", "express_number": "123" });
    for path in ["/exchanges/1/waybill", "/returns/1/waybill"] {
        for f in ["express_name", "express_number"] {
            fields.push((path, f.to_owned(), waybill.clone()));
        }
    }
    fields
}

/// The value at a dotted path with `[i]` indexes (`goods[0].remark`).
fn at<'a>(body: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut v = body;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        // Optional fields absent from the template are added.
        v = v.as_object_mut()?.entry(name).or_insert(Value::Null);
        if let Some(i) = index {
            v = v.get_mut(i)?;
        }
    }
    Some(v)
}

/// Any text field of any body with a NUL somewhere in it: a 400 naming that field (it used to
/// reach PostgreSQL and answer 500).
#[test]
fn nul_in_any_text_field_is_400_naming_the_field() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let h = rt.block_on(Harness::start())?;
    let fields = text_fields();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (0..fields.len(), "[a-z0-9 ]{0,8}", "[a-z0-9 ]{0,8}");
    let result = runner.run(&strategy, |(i, before, after)| {
        let (path, field, template) = &fields[i];
        let mut body = template.clone();
        let text = format!("{before}\u{0}{after}");
        match at(&mut body, field) {
            Some(slot) => *slot = json!(text),
            None => return Err(TestCaseError::fail(format!("{field} not in {template}"))),
        }
        let (s, v) = rt
            .block_on(h.post(path, &body))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            (s, v["field"].clone()),
            (400, json!(field)),
            "{} {} → {}",
            path,
            field,
            v
        );
        Ok(())
    });
    rt.block_on(h.stop())?;
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

#[tokio::test]
async fn a_key_repeated_in_one_object_is_400_naming_it() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let body = order_body(1, &[1]).to_string();
    // The last "uid" used to win: the order was created for 999.
    let open = body.strip_suffix('}').unwrap_or(&body);
    let smuggled = format!("{open},\"uid\":999}}");
    let (s, v) = post_raw(&h, "/orders", &smuggled).await?;
    assert_eq!((s, v["field"].clone()), (400, json!("uid")), "{v}");
    assert!(v["message"]
        .as_str()
        .unwrap_or_default()
        .contains("duplicate"));
    let nested = body.replacen("\"city\":", "\"city\":\"x\",\"city\":", 1);
    let (s, v) = post_raw(&h, "/orders", &nested).await?;
    assert_eq!(
        (s, v["field"].clone()),
        (400, json!("delivery_address.city")),
        "{v}"
    );
    assert_eq!(h.outbox_count("order.submit").await?, 0);
    h.stop().await
}

async fn send(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
) -> anyhow::Result<(u16, String, Value)> {
    let r = h.http.request(method, h.url(path)).send().await?;
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok((status, content_type, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn every_error_is_the_json_error_body() -> anyhow::Result<()> {
    use reqwest::Method;
    let h = Harness::start().await?;
    let cases = [
        (Method::GET, "/orders/%FF", 400, Some("order_code")),
        (Method::POST, "/orders/%FF/cancel", 400, Some("order_code")),
        (Method::POST, "/exchanges/%FF/cancel", 400, Some("id")),
        (Method::POST, "/returns/%C3%28/waybill", 400, Some("id")),
        (Method::GET, "/orders/0", 400, Some("order_code")),
        (Method::GET, "/nowhere", 404, None),
        (Method::GET, "/orders/", 404, None),
        (Method::POST, "/orders/1/cancel/", 404, None),
        (Method::DELETE, "/orders", 405, None),
        (Method::GET, "/orders/1/cancel", 405, None),
    ];
    for (method, path, status, field) in cases {
        let (s, content_type, v) = send(&h, method.clone(), path).await?;
        assert_eq!(s, status, "{method} {path}: {v}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {content_type}"
        );
        assert!(
            v["error"].is_string() && v["message"].is_string(),
            "{method} {path}: {v}"
        );
        if let Some(field) = field {
            assert_eq!(v["field"], field, "{method} {path}");
        }
    }
    h.stop().await
}

/// The raw response to a request with a control character in its `Content-Type` (no HTTP
/// client sends one, so it goes over a plain socket).
async fn raw_control_char_content_type(h: &Harness) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!(
        "POST /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n",
        h.api_key
    )
    .into_bytes();
    request.extend_from_slice(b"Content-Type: application/\x01json\r\nContent-Length: 2\r\n\r\n{}");
    stream.write_all(&request).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// The runtime's server drops a header line hyper cannot parse (`ignore_invalid_headers`), so
/// the request arrives without a content type and the extractor answers the JSON 415.
#[tokio::test]
async fn a_control_character_in_content_type_is_a_json_415() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let response = raw_control_char_content_type(&h).await?;
    assert!(response.starts_with("HTTP/1.1 415"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{response}"
    );
    assert!(
        response.contains("\"unsupported_media_type\""),
        "{response}"
    );
    h.stop().await
}

#[tokio::test]
async fn the_idempotency_hash_ignores_key_order_and_whitespace() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let body = order_body(21, &[1]);
    let r = h
        .http
        .post(h.url("/orders"))
        .header("Idempotency-Key", "canonical")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 201);
    let first: Value = r.json().await?;
    // The same document: keys reversed at every level, pretty-printed.
    fn reversed(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), reversed(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
            other => other.clone(),
        }
    }
    let reordered = serde_json::to_string_pretty(&reversed(&body))?;
    assert_ne!(reordered, body.to_string());
    let r = h
        .http
        .post(h.url("/orders"))
        .header("Idempotency-Key", "canonical")
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 201, "a replay, not 422");
    assert_eq!(
        r.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(r.json::<Value>().await?, first);
    assert_eq!(h.outbox_count("order.submit").await?, 1);
    h.stop().await
}
