//! Fault injection and protocol violations: how the client classifies each failure.

use std::time::Duration;

use orderbus_sinopac::envelope::{self, ApiService};
use orderbus_sinopac::sim::{ErrorShape, ReplyFault, SimConfig};
use orderbus_sinopac::{
    Client, ClientConfig, Error, HashId, OrderQuery, ProtocolError, TransportError,
};
use serde_json::{Map, Value};

use crate::common::{manual_config, serve, setup, KEY_ID, SHOP};
use crate::services::{atm_order, card_order};

fn by_order(no: &str) -> OrderQuery {
    OrderQuery {
        order_no: Some(no.into()),
        ..OrderQuery::default()
    }
}

fn business_code(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Business { code, .. }) => code,
        other => panic!("expected a business error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_signature_on_reply_is_a_protocol_error() {
    let (sim, _base, client) = setup(manual_config()).await;
    sim.set_reply_fault(Some(ReplyFault::BadSignature));
    let r = client.order_create(&atm_order("F0001", 10)).await;
    assert!(
        matches!(r, Err(Error::Protocol(ProtocolError::BadSignature))),
        "{r:?}"
    );
    let r = client.order_query(&by_order("F0001")).await;
    assert!(
        matches!(r, Err(Error::Protocol(ProtocolError::BadSignature))),
        "{r:?}"
    );
    sim.clear_faults();
    client
        .order_query(&by_order("F0001"))
        .await
        .expect("healthy again");
}

#[tokio::test]
async fn server_error_is_a_transient_transport_error() {
    let (sim, _base, client) = setup(manual_config()).await;
    sim.set_reply_fault(Some(ReplyFault::ServerError));
    let r = client.order_create(&atm_order("F0002", 10)).await;
    match &r {
        Err(e @ Error::Transport(TransportError::ServerStatus(500))) => assert!(e.is_transient()),
        other => panic!("expected 5xx transport error, got {other:?}"),
    }
    assert!(sim.order("F0002").is_none());
    sim.set_reply_fault(None);
    client
        .order_create(&atm_order("F0002", 10))
        .await
        .expect("retry succeeds");
}

#[tokio::test]
async fn garbage_body_is_a_protocol_error() {
    let (sim, _base, client) = setup(manual_config()).await;
    sim.set_reply_fault(Some(ReplyFault::Garbage));
    let r = client.order_query(&by_order("x")).await;
    match &r {
        Err(e @ Error::Protocol(ProtocolError::BadJson(_))) => assert!(!e.is_transient()),
        other => panic!("expected protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn business_failures_carry_the_bank_code() {
    let cfg = SimConfig {
        enabled_pay_types: vec!["A".into()],
        ..manual_config()
    };
    let (_sim, _base, client) = setup(cfg).await;
    client
        .order_create(&atm_order("F0003", 10))
        .await
        .expect("create");
    // Duplicate OrderNo.
    assert_eq!(
        business_code(client.order_create(&atm_order("F0003", 10)).await),
        "E0105"
    );
    // Card not enabled for this shop: the code seen on the real sandbox.
    match client.order_create(&card_order("F0004", 10)).await {
        Err(Error::Business { code, message }) => {
            assert_eq!(code, "E0602");
            assert_eq!(message, "收款方式未啟用");
        }
        other => panic!("expected business error, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_error_shape_is_still_a_business_error() {
    let cfg = SimConfig {
        error_shape: ErrorShape::Plain,
        ..manual_config()
    };
    let (_sim, _base, client) = setup(cfg).await;
    client
        .order_create(&atm_order("F0005", 10))
        .await
        .expect("create");
    assert_eq!(
        business_code(client.order_create(&atm_order("F0005", 10)).await),
        "E0105"
    );
}

#[tokio::test]
async fn unknown_shop_is_a_business_error() {
    let (_sim, base, _client) = setup(manual_config()).await;
    let cfg = ClientConfig::new(&base, "ZZ9999_001", HashId::demo_na0249()).with_key_id(KEY_ID);
    let client = Client::new(cfg).expect("client");
    assert_eq!(business_code(client.nonce().await), "E0109");
}

#[tokio::test]
async fn wrong_hash_id_fails_both_ways() {
    // The bank cannot decrypt the request; its (correctly keyed) reply cannot be verified by a
    // client holding the wrong key either: either way nothing is believed.
    let (_sim, base, _client) = setup(manual_config()).await;
    let wrong = HashId::from_hash_id("00000000000000000000000000000000").expect("hash");
    let client =
        Client::new(ClientConfig::new(&base, SHOP, wrong).with_key_id(KEY_ID)).expect("client");
    let r = client.order_query(&by_order("x")).await;
    // A wrong key almost always breaks the padding; rarely the padding survives and the JSON does not.
    assert!(
        matches!(
            r,
            Err(Error::Protocol(
                ProtocolError::Decrypt(_) | ProtocolError::BadMessage(_)
            ))
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // Bind then drop to get a port with nobody listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client = crate::common::client_for(&format!("http://127.0.0.1:{port}/api"));
    let r = client.nonce().await;
    assert!(
        matches!(r, Err(Error::Transport(TransportError::Connect(_)))),
        "{r:?}"
    );
}

#[tokio::test]
async fn silent_server_hits_the_read_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock); // accept and never answer
        }
    });
    let mut cfg = ClientConfig::new(format!("http://{addr}/api"), SHOP, HashId::demo_na0249());
    cfg.read_timeout = Duration::from_millis(200);
    let client = Client::new(cfg).expect("client");
    let r = client.nonce().await;
    assert!(
        matches!(r, Err(Error::Transport(TransportError::Timeout(_)))),
        "{r:?}"
    );
}

#[tokio::test]
async fn non_200_client_error_is_a_protocol_error() {
    let base = serve(axum::Router::new()).await; // every route 404
    let client = crate::common::client_for(&base);
    let r = client.nonce().await;
    assert!(
        matches!(r, Err(Error::Protocol(ProtocolError::HttpStatus(404)))),
        "{r:?}"
    );
}

fn query_message() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ShopNo".into(), Value::String(SHOP.into()));
    m.insert("OrderNo".into(), Value::String("N0001".into()));
    m
}

async fn post_envelope(base: &str, env: &envelope::Envelope) -> Vec<u8> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/Order"))
        .header("X-KeyID", KEY_ID)
        .json(env)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body").to_vec()
}

fn decode(body: &[u8]) -> Result<Map<String, Value>, Error> {
    let m = envelope::decode_response(body, &HashId::demo_na0249(), ApiService::OrderQuery)?;
    envelope::check_status(&m)?;
    Ok(m)
}

#[tokio::test]
async fn reused_nonce_is_rejected() {
    let (_sim, base, client) = setup(manual_config()).await;
    let nonce = client.nonce().await.expect("nonce");
    let env = envelope::seal(
        ApiService::OrderQuery,
        SHOP,
        &HashId::demo_na0249(),
        &nonce,
        &query_message(),
    );
    let first = decode(&post_envelope(&base, &env).await).expect("first use succeeds");
    assert_eq!(first["Status"], "S");
    let second = decode(&post_envelope(&base, &env).await);
    assert_eq!(business_code(second), "E0102");
}

#[tokio::test]
async fn unissued_nonce_is_rejected() {
    let (_sim, base, _client) = setup(manual_config()).await;
    let env = envelope::seal(
        ApiService::OrderQuery,
        SHOP,
        &HashId::demo_na0249(),
        "bm90LWlzc3VlZA==",
        &query_message(),
    );
    assert_eq!(
        business_code(decode(&post_envelope(&base, &env).await)),
        "E0102"
    );
}

#[tokio::test]
async fn expired_nonce_is_rejected() {
    let cfg = SimConfig {
        nonce_ttl: Duration::ZERO,
        ..manual_config()
    };
    let (_sim, base, client) = setup(cfg).await;
    let nonce = client.nonce().await.expect("nonce");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let env = envelope::seal(
        ApiService::OrderQuery,
        SHOP,
        &HashId::demo_na0249(),
        &nonce,
        &query_message(),
    );
    assert_eq!(
        business_code(decode(&post_envelope(&base, &env).await)),
        "E0102"
    );
}

#[tokio::test]
async fn tampered_request_sign_is_rejected() {
    let (_sim, base, client) = setup(manual_config()).await;
    let nonce = client.nonce().await.expect("nonce");
    let mut env = envelope::seal(
        ApiService::OrderQuery,
        SHOP,
        &HashId::demo_na0249(),
        &nonce,
        &query_message(),
    );
    env.sign = "0".repeat(64);
    assert_eq!(
        business_code(decode(&post_envelope(&base, &env).await)),
        "E0101"
    );
}

#[tokio::test]
async fn admin_route_toggles_faults_over_http() {
    let (sim, base, client) = setup(manual_config()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/__sim/faults"))
        .json(&serde_json::json!({"reply": "server_error", "drop_notifications_for": ["X1"]}))
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status(), 204);
    let faults: Value = http
        .get(format!("{base}/__sim/faults"))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(faults["reply"], "server_error");
    assert_eq!(faults["drop_notifications_for"][0], "X1");
    assert!(client.nonce().await.expect_err("5xx").is_transient());

    let r = http
        .post(format!("{base}/__sim/faults"))
        .json(&serde_json::json!({"reply": null}))
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status(), 204);
    client
        .order_create(&atm_order("F0100", 10))
        .await
        .expect("create");
    let r = http
        .post(format!("{base}/__sim/orders/F0100/pay"))
        .send()
        .await
        .expect("admin pay");
    assert_eq!(r.status(), 204);
    let orders: Value = http
        .get(format!("{base}/__sim/orders"))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(orders[0]["order_no"], "F0100");
    assert_eq!(orders[0]["state"]["state"], "paid");
    assert!(sim.order("F0100").is_some());
}

#[test]
fn unsigned_success_is_never_accepted() {
    let body = br#"{"Status":"S","Description":"S0000 - ok"}"#;
    let r = envelope::decode_response(body, &HashId::demo_na0249(), ApiService::OrderQuery);
    assert!(
        matches!(
            r,
            Err(Error::Protocol(ProtocolError::MissingField("Message")))
        ),
        "{r:?}"
    );
    // An unsigned refusal is reported as the business failure it claims to be.
    let body = "{\"Status\":\"F\",\"Description\":\"E0602 – 收款方式未啟用\"}";
    let r = envelope::decode_response(
        body.as_bytes(),
        &HashId::demo_na0249(),
        ApiService::OrderQuery,
    );
    assert!(
        matches!(&r, Err(Error::Business { code, .. }) if code == "E0602"),
        "{r:?}"
    );
}

#[test]
fn reply_for_another_service_is_rejected() {
    let env = envelope::seal(
        ApiService::OrderCreate,
        SHOP,
        &HashId::demo_na0249(),
        "bm9uY2U=",
        &query_message(),
    );
    let body = serde_json::to_vec(&env).expect("json");
    let r = envelope::decode_response(&body, &HashId::demo_na0249(), ApiService::OrderQuery);
    assert!(
        matches!(
            r,
            Err(Error::Protocol(ProtocolError::ServiceMismatch { .. }))
        ),
        "{r:?}"
    );
}

#[test]
fn reply_with_tampered_message_is_rejected() {
    let mut env = envelope::seal(
        ApiService::OrderQuery,
        SHOP,
        &HashId::demo_na0249(),
        "bm9uY2U=",
        &query_message(),
    );
    // Flip the last block: padding or content breaks, never a panic or a silent success.
    let last = env.message.pop().expect("hex");
    env.message.push(if last == '0' { '1' } else { '0' });
    let body = serde_json::to_vec(&env).expect("json");
    let r = envelope::decode_response(&body, &HashId::demo_na0249(), ApiService::OrderQuery);
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
}
