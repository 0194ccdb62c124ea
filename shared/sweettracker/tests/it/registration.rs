//! add_invoice: typed results for every documented e_code, client errors by kind.

use crate::common::*;
use orderbus_sweettracker::{AddInvoice, CallbackType, Carrier, Client, ECode, Error, Faults};

fn req(num: &str, carrier: Carrier, fid: &str) -> AddInvoice {
    AddInvoice {
        num: num.into(),
        carrier,
        fid: fid.into(),
        callback_url: "http://127.0.0.1:9/cb".into(),
        callback_type: CallbackType::Json,
    }
}

fn business_code(r: Result<orderbus_sweettracker::AddInvoiceAck, Error>) -> ECode {
    match r {
        Err(Error::Business { code, message, .. }) => {
            assert!(!message.is_empty());
            code
        }
        other => panic!("expected business error, got {other:?}"),
    }
}

#[tokio::test]
async fn success_normalises_number_and_is_remembered() {
    let mut cfg = fast_config();
    cfg.faults = Faults {
        silence: true,
        ..Faults::default()
    };
    let (sim, base) = start_sim(cfg).await;
    let client = Client::new(client_config(&base)).unwrap();
    let ack = client
        .add_invoice(&req(
            " 6926-3790 8420 ",
            Carrier::CjLogistics,
            "OS02:231108180642UHFS",
        ))
        .await
        .unwrap();
    assert_eq!(ack.num.as_deref(), Some("692637908420"));
    assert_eq!(ack.fid.as_deref(), Some("OS02:231108180642UHFS"));
    let reg = sim.registration("692637908420", "04").unwrap();
    assert_eq!(reg.fid, "OS02:231108180642UHFS");
    assert_eq!(reg.callback_type, CallbackType::Json);
}

#[tokio::test]
async fn every_documented_e_code() {
    let mut cfg = fast_config();
    cfg.faults.silence = true;
    let (sim, base) = start_sim(cfg).await;
    let client = Client::new(client_config(&base)).unwrap();
    let http = reqwest::Client::new();

    // 01: a required parameter missing (raw form without fid).
    let body: serde_json::Value = http
        .post(format!("{base}/add_invoice"))
        .form(&[
            ("num", "1234567890"),
            ("code", "04"),
            ("tier", "testuser"),
            ("key", "testuser"),
            ("callback_url", "http://x/cb"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["e_code"], "01");
    assert!(body["e_message"].as_str().is_some_and(|m| !m.is_empty()));

    // 02: invoice number fails validation.
    let c = business_code(
        client
            .add_invoice(&req("12AB5678901", Carrier::Hanjin, "f2"))
            .await,
    );
    assert_eq!(c, ECode::InvalidInvoiceNumber);
    assert_eq!(c.code(), "02");

    // 03: already registered.
    client
        .add_invoice(&req("1234567890", Carrier::Lotte, "f3"))
        .await
        .unwrap();
    let c = business_code(
        client
            .add_invoice(&req("1234567890", Carrier::Lotte, "f3"))
            .await,
    );
    assert_eq!(c, ECode::AlreadyRegistered);

    // 04: unsupported carrier.
    let c = business_code(
        client
            .add_invoice(&req("1234567891", Carrier::Other("777".into()), "f4"))
            .await,
    );
    assert_eq!(c, ECode::UnsupportedCarrier);

    // 99: system error fault, then off again.
    sim.set_system_error(true);
    let c = business_code(
        client
            .add_invoice(&req("1234567892", Carrier::Logen, "f5"))
            .await,
    );
    assert_eq!(c, ECode::SystemError);
    assert!(c.is_retryable());
    sim.set_system_error(false);
    client
        .add_invoice(&req("1234567892", Carrier::Logen, "f5"))
        .await
        .unwrap();

    // Wrong credentials → 99 ([inferred] choice).
    let mut bad = client_config(&base);
    bad.key = "nope".into();
    let c = business_code(
        Client::new(bad)
            .unwrap()
            .add_invoice(&req("1234567893", Carrier::Logen, "f6"))
            .await,
    );
    assert_eq!(c, ECode::SystemError);
}

#[tokio::test]
async fn simulator_accepts_json_requests_too() {
    let mut cfg = fast_config();
    cfg.faults.silence = true;
    let (sim, base) = start_sim(cfg).await;
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/add_invoice"))
        .json(&serde_json::json!({"num":"5555666677","code":"05","fid":"J1","callback_url":"http://x/cb","callback_type":"map","tier":"testuser","key":"testuser","type":"json"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        serde_json::json!({"success":true,"num":"5555666677","fid":"J1"})
    );
    assert_eq!(
        sim.registration("5555666677", "05").unwrap().callback_type,
        CallbackType::Map
    );
}

/// Posts a raw form registration with the given `callback_type`; returns the JSON reply.
async fn register_raw(base: &str, num: &str, callback_type: &str) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{base}/add_invoice"))
        .form(&[
            ("num", num),
            ("code", "05"),
            ("fid", "F1"),
            ("callback_url", "http://127.0.0.1:9/cb"),
            ("callback_type", callback_type),
            ("tier", "testuser"),
            ("key", "testuser"),
            ("type", "json"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn callback_type_is_case_insensitive() {
    let mut cfg = fast_config();
    cfg.faults.silence = true;
    let (sim, base) = start_sim(cfg).await;
    for (num, value, expected) in [
        ("5555666601", "JSON", CallbackType::Json),
        ("5555666602", "Map", CallbackType::Map),
        ("5555666603", "json", CallbackType::Json),
    ] {
        let reply = register_raw(&base, num, value).await;
        assert_eq!(reply["success"], true, "{value}: {reply}");
        assert_eq!(sim.registration(num, "05").unwrap().callback_type, expected);
    }
}

#[tokio::test]
async fn xml_callbacks_are_refused_saying_xml_is_unsupported() {
    let mut cfg = fast_config();
    cfg.faults.silence = true;
    let (sim, base) = start_sim(cfg).await;
    for value in ["xml", "XML"] {
        let reply = register_raw(&base, "5555666604", value).await;
        assert_eq!(reply["success"], false, "{reply}");
        assert_eq!(reply["e_code"], "01", "{reply}");
        let message = reply["e_message"].as_str().unwrap_or_default();
        assert!(
            message.contains("callback_type") && message.contains("not supported"),
            "{message}"
        );
        assert!(
            !message.contains("누락"),
            "not a missing parameter: {message}"
        );
    }
    assert!(sim.registration("5555666604", "05").is_none());
}

#[tokio::test]
async fn transport_and_protocol_errors_are_distinct() {
    // Transport: nothing listens on the port any more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new(client_config(&format!("http://{addr}"))).unwrap();
    let r = client
        .add_invoice(&req("1234567890", Carrier::CjLogistics, "f"))
        .await;
    assert!(matches!(r, Err(Error::Transport(_))), "{r:?}");

    // Protocol: a server answering HTML.
    let app = axum::Router::new().route(
        "/add_invoice",
        axum::routing::post(|| async {
            (axum::http::StatusCode::BAD_GATEWAY, "<html>oops</html>")
        }),
    );
    let base = serve(app).await;
    let client = Client::new(client_config(&base)).unwrap();
    let r = client
        .add_invoice(&req("1234567890", Carrier::CjLogistics, "f"))
        .await;
    assert!(
        matches!(r, Err(Error::Protocol { status: 502, .. })),
        "{r:?}"
    );

    // Config: not an http URL.
    let mut cfg = client_config("ftp://x");
    cfg.base_url = "ftp://x".into();
    assert!(matches!(Client::new(cfg), Err(Error::Config(_))));
}

#[test]
fn form_fields_are_the_documented_ones() {
    let client = Client::new(client_config("http://127.0.0.1:1")).unwrap();
    let fields = client.form_fields(&req("12-34 56", Carrier::from_code("04"), "OS02:1"));
    let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "num",
            "code",
            "fid",
            "callback_url",
            "callback_type",
            "tier",
            "key",
            "type"
        ]
    );
    assert_eq!(fields[0].1, "123456");
    assert_eq!(fields[1].1, "04");
    assert_eq!(fields[4].1, "json");
    assert_eq!(fields[7].1, "json");
}

#[test]
fn carrier_table() {
    assert_eq!(Carrier::from_code("04"), Carrier::CjLogistics);
    assert_eq!(Carrier::CjLogistics.name(), Some("CJ대한통운"));
    assert_eq!(Carrier::from_code("89").name(), Some("두발히어로"));
    assert_eq!(Carrier::from_code("152"), Carrier::Other("152".into()));
    assert!(!Carrier::from_code("152").is_known());
    assert_eq!(Carrier::Other("152".into()).code(), "152");
    for code in ["01", "05", "06", "08", "99"] {
        assert_eq!(Carrier::from_code(code).code(), code);
        assert!(Carrier::from_code(code).is_known());
    }
}
