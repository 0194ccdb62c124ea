//! The client against the simulator, one service at a time.

use std::time::Duration;

use chrono::{Duration as ChronoDuration, NaiveDate};
use orderbus_sinopac::envelope::ApiService;
use orderbus_sinopac::sim::{Outcome, PayState, SimConfig};
use orderbus_sinopac::types::TsResultContent;
use orderbus_sinopac::{
    Amount, CardOptions, DateField, DateWindow, Error, OrderCreateRequest, OrderQuery, PayFlag,
    PayType, PaymentMethod,
};
use serde_json::{json, Map, Value};

use crate::common::{client_for, manual_config, setup, wait_for, SHOP};

pub fn atm_order(order_no: &str, twd: u64) -> OrderCreateRequest {
    OrderCreateRequest {
        order_no: order_no.to_owned(),
        amount: Amount::from_twd(twd).expect("amount"),
        method: PaymentMethod::Atm {
            expire_date: NaiveDate::from_ymd_opt(2030, 5, 2).expect("date"),
        },
        prdt_name: "虛擬帳號訂單".to_owned(),
        memo: None,
        param1: Some("p1".to_owned()),
        param2: None,
        param3: None,
        return_url: None,
        backend_url: None,
    }
}

pub fn card_order(order_no: &str, twd: u64) -> OrderCreateRequest {
    OrderCreateRequest {
        method: PaymentMethod::Card(CardOptions::default()),
        prdt_name: "IPhone 13 Pro Max 256g".to_owned(),
        ..atm_order(order_no, twd)
    }
}

#[test]
fn amount_has_two_implied_decimals() {
    let a = Amount::from_twd(500).expect("amount");
    assert_eq!(a.wire_value(), 50000);
    assert_eq!(serde_json::to_value(a).expect("json"), json!(50000));
    assert_eq!(a.to_string(), "NT$500.00");
    assert_eq!(Amount::from_hundredths(40400).expect("a").whole_twd(), 404);
    assert!(
        Amount::from_twd(10_000_000).is_err(),
        "more than 9 wire digits"
    );
    assert!(Amount::from_hundredths(1_000_000_000).is_err());
    // TSResultContent sends the amount as a string.
    let t: TsResultContent = serde_json::from_value(json!({"Amount": "9440300"})).expect("ts");
    assert_eq!(t.amount.map(Amount::wire_value), Some(9_440_300));
    assert_eq!(
        serde_json::to_value(&t).expect("json")["Amount"],
        json!("9440300")
    );
}

#[tokio::test]
async fn nonce_is_issued_in_the_bank_shape() {
    let (_sim, _base, client) = setup(manual_config()).await;
    let n1 = client.nonce().await.expect("nonce");
    let n2 = client.nonce().await.expect("nonce");
    assert_ne!(n1, n2);
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&n1)
        .expect("base64");
    let raw = String::from_utf8(raw).expect("utf8");
    let (_, hexpart) = raw.split_once(':').expect("colon");
    assert_eq!(hexpart.len(), 64);
}

#[tokio::test]
async fn order_create_atm() {
    let (sim, _base, client) = setup(manual_config()).await;
    let resp = client
        .order_create(&atm_order("A0001", 500))
        .await
        .expect("create");
    assert_eq!(resp.status, "S");
    assert_eq!(resp.description, "S0000 – 處理成功");
    assert_eq!(resp.shop_no, SHOP);
    assert_eq!(resp.pay_type, PayType::Atm);
    assert_eq!(resp.amount.map(Amount::wire_value), Some(50000));
    assert_eq!(resp.param1, "p1");
    assert!(resp.ts_no.starts_with("NA0249"));
    let atm = resp.atm_param.expect("ATMParam");
    assert_eq!(atm.atm_pay_no.len(), 14);
    assert!(atm.web_atm_url.contains("/Bridge/PayWebATM?TD="));
    assert!(resp.card_param.is_none());
    let view = sim.order("A0001").expect("order");
    assert_eq!(view.state, PayState::Unpaid);
}

#[tokio::test]
async fn order_create_card() {
    let (_sim, _base, client) = setup(manual_config()).await;
    let mut req = card_order("C0001", 404);
    req.method = PaymentMethod::Card(CardOptions {
        auto_billing: false,
        exp_billing_days: Some(7),
        exp_minutes: Some(30),
        pay_type_sub: "ONE".to_owned(),
    });
    let resp = client.order_create(&req).await.expect("create");
    assert_eq!(resp.pay_type, PayType::Card);
    assert!(resp
        .card_param
        .expect("CardParam")
        .card_pay_url
        .contains("/Bridge/PayCard?TD="));
}

#[tokio::test]
async fn order_create_is_validated_locally() {
    let (_sim, _base, client) = setup(manual_config()).await;
    let mut bad = card_order("C'1", 1);
    assert!(matches!(
        client.order_create(&bad).await,
        Err(Error::InvalidRequest(_))
    ));
    bad.order_no = "C1".into();
    bad.method = PaymentMethod::Card(CardOptions {
        auto_billing: false,
        exp_billing_days: None,
        ..CardOptions::default()
    });
    assert!(matches!(
        client.order_create(&bad).await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn order_pay_query_after_payment() {
    let (sim, _base, client) = setup(manual_config()).await;
    client
        .order_create(&card_order("C0002", 404))
        .await
        .expect("create");
    assert!(sim.pay_now("C0002"));
    let token = match sim.order("C0002").expect("order").state {
        PayState::Paid { pay_token, .. } => pay_token,
        other => panic!("not paid: {other:?}"),
    };
    let resp = client.order_pay_query(&token).await.expect("pay query");
    assert_eq!(resp.pay_token, token);
    let ts = resp.ts_result_content.expect("TSResultContent");
    assert!(ts.is_paid());
    assert_eq!(ts.ap_type, "PayOut");
    assert_eq!(ts.order_no, "C0002");
    assert_eq!(ts.amount.map(Amount::wire_value), Some(40400));
    assert_eq!(ts.right_cc_no.len(), 4);
    assert_eq!(ts.pay_date.len(), 12);

    // An unknown token is a business failure with the simulator's code.
    match client.order_pay_query(&"0".repeat(64)).await {
        Err(Error::Business { code, .. }) => assert_eq!(code, "E0108"),
        other => panic!("expected business error, got {other:?}"),
    }
}

#[tokio::test]
async fn order_query_by_order_no_and_flags() {
    let (sim, _base, client) = setup(manual_config()).await;
    client
        .order_create(&atm_order("A0010", 799))
        .await
        .expect("create");
    client
        .order_create(&atm_order("A0011", 100))
        .await
        .expect("create");
    client
        .order_create(&card_order("C0012", 100))
        .await
        .expect("create");
    assert!(sim.pay_now("A0010"));
    assert!(sim.expire_now("A0011"));

    let one = client
        .order_query(&OrderQuery {
            order_no: Some("A0010".into()),
            ..OrderQuery::default()
        })
        .await
        .expect("query");
    assert_eq!(one.status, "S");
    assert_eq!(one.order_list.len(), 1);
    let row = &one.order_list[0];
    assert_eq!(row.pay_status, "1A400");
    assert!(row.is_paid());
    assert_eq!(row.amount.map(Amount::wire_value), Some(79900));
    assert_eq!(row.atm_param.as_ref().expect("atm").bank_no, "807");

    let q = |flag| OrderQuery {
        pay_flag: Some(flag),
        ..OrderQuery::default()
    };
    let paid = client.order_query(&q(PayFlag::Paid)).await.expect("paid");
    assert_eq!(names(&paid.order_list), ["A0010"]);
    let overdue = client
        .order_query(&q(PayFlag::Overdue))
        .await
        .expect("overdue");
    assert_eq!(names(&overdue.order_list), ["A0011"]);
    assert_eq!(overdue.order_list[0].pay_status, "1A410");
    let unpaid = client
        .order_query(&q(PayFlag::Unpaid))
        .await
        .expect("unpaid");
    assert_eq!(names(&unpaid.order_list), ["C0012"]);
    assert_eq!(unpaid.order_list[0].pay_status, "1C100");

    let cards = client
        .order_query(&OrderQuery {
            pay_type: Some(PayType::Card),
            ..OrderQuery::default()
        })
        .await
        .expect("cards");
    assert_eq!(names(&cards.order_list), ["C0012"]);

    // Pay-date window: only the paid order has a PayDate.
    let now = chrono::Utc::now().naive_utc() + ChronoDuration::hours(8);
    let by_pay = client
        .order_query(&OrderQuery {
            pay_date: Some(DateWindow {
                start: now - ChronoDuration::hours(1),
                end: now + ChronoDuration::hours(1),
            }),
            ..OrderQuery::default()
        })
        .await
        .expect("by pay date");
    assert_eq!(names(&by_pay.order_list), ["A0010"]);

    // Window helper over order dates returns all three.
    let all = client
        .order_query_window(
            DateField::Order,
            DateWindow {
                start: now - ChronoDuration::hours(1),
                end: now + ChronoDuration::hours(1),
            },
            &OrderQuery::default(),
        )
        .await
        .expect("window");
    assert_eq!(all.len(), 3);
}

pub fn names(rows: &[orderbus_sinopac::types::OrderRecord]) -> Vec<&str> {
    rows.iter().map(|r| r.order_no.as_str()).collect()
}

#[tokio::test]
async fn order_query_needs_a_condition() {
    let (_sim, _base, client) = setup(manual_config()).await;
    // Refused locally...
    assert!(matches!(
        client.order_query(&OrderQuery::default()).await,
        Err(Error::InvalidRequest(_))
    ));
    // ...and by the simulated bank when sent anyway.
    let mut msg = Map::new();
    msg.insert("ShopNo".into(), Value::String(SHOP.into()));
    msg.insert("OrderNo".into(), Value::String(String::new()));
    match client.call(ApiService::OrderQuery, &msg).await {
        Err(Error::Business { code, message }) => {
            assert_eq!(code, "E0106");
            assert!(!message.is_empty());
        }
        other => panic!("expected business error, got {other:?}"),
    }
}

#[tokio::test]
async fn automatic_outcomes_paid_never_expired() {
    let cfg = SimConfig {
        atm_pay_delay: Duration::from_millis(20),
        ..manual_config()
    };
    let (sim, _base, client) = setup(cfg).await;
    sim.set_outcome(
        "A0103",
        Outcome::Expire {
            after: Duration::from_millis(20),
        },
    );
    client
        .order_create(&atm_order("A0101", 10))
        .await
        .expect("create");
    // OrderNo ending in 9: never paid (no timer is even started).
    client
        .order_create(&atm_order("A0109", 10))
        .await
        .expect("create");
    client
        .order_create(&atm_order("A0103", 10))
        .await
        .expect("create");
    wait_for("A0101 paid", || async {
        matches!(sim.order("A0101")?.state, PayState::Paid { .. }).then_some(())
    })
    .await;
    wait_for("A0103 expired", || async {
        (sim.order("A0103")?.state == PayState::Expired).then_some(())
    })
    .await;
    assert_eq!(sim.order("A0109").expect("order").state, PayState::Unpaid);
}

#[tokio::test]
async fn outcome_by_amount() {
    let mut cfg = manual_config();
    cfg.atm_pay_delay = Duration::from_millis(10);
    cfg.amount_outcomes.insert(123_400, Outcome::Never);
    cfg.amount_outcomes.insert(
        555_500,
        Outcome::Expire {
            after: Duration::from_millis(10),
        },
    );
    let (sim, _base, client) = setup(cfg).await;
    client
        .order_create(&atm_order("A0201", 1234))
        .await
        .expect("create");
    client
        .order_create(&atm_order("A0202", 5555))
        .await
        .expect("create");
    wait_for("A0202 expired", || async {
        (sim.order("A0202")?.state == PayState::Expired).then_some(())
    })
    .await;
    assert_eq!(sim.order("A0201").expect("order").state, PayState::Unpaid);
}

#[tokio::test]
async fn missing_key_id_is_refused() {
    let (_sim, base, _client) = setup(manual_config()).await;
    let cfg =
        orderbus_sinopac::ClientConfig::new(&base, SHOP, orderbus_sinopac::HashId::demo_na0249());
    let no_key = orderbus_sinopac::Client::new(cfg).expect("client");
    match no_key.nonce().await {
        Err(Error::Business { code, .. }) => assert_eq!(code, "E0110"),
        other => panic!("expected business error, got {other:?}"),
    }
    // With the key it works.
    client_for(&base).nonce().await.expect("nonce");
}
