//! Each method against the simulator, including the bank round trip.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use orderbus_frotel::sim::{status, SimConfig};
use orderbus_frotel::{
    BuyType, CallbackParams, DownloadLinks, Error, FactorId, FrotelClient, PaymentForm,
    PriceRequest, SendType, TrackingBuyType,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::common::{self, client, start, start_with};

#[tokio::test]
async fn get_prices_returns_post_tax_and_fee_per_payment_and_send_type() {
    let env = start().await;
    let c = client(&env.urls);
    let req = PriceRequest {
        des_city: 301,
        price: 670_000,
        weight: 200,
        send_types: vec![SendType::Pishtaz, SendType::Sefareshi],
        buy_types: vec![BuyType::Cod, BuyType::OnlineCash],
    };
    let prices = c.get_prices(&req).await.expect("prices");
    assert_eq!(prices.quotes.len(), 4);
    // Seed 003's numbers, and shown = post + tax + frotel_service.
    for (buy, send, post, tax, shown) in [
        (
            BuyType::OnlineCash,
            SendType::Pishtaz,
            52_000,
            4_680,
            58_680,
        ),
        (
            BuyType::OnlineCash,
            SendType::Sefareshi,
            26_000,
            2_340,
            30_340,
        ),
        (BuyType::Cod, SendType::Pishtaz, 58_000, 5_220, 65_220),
        (BuyType::Cod, SendType::Sefareshi, 36_000, 3_240, 41_240),
    ] {
        let q = prices.get(buy, send).expect("combination quoted");
        assert_eq!(
            (q.post, q.tax, q.frotel_service),
            (post, tax, 2_000),
            "{buy:?}/{send:?}"
        );
        assert_eq!(q.shown_price(), shown);
    }
    // Heavier parcel: two extra 500 g steps of 12 000 on express.
    let heavy = PriceRequest {
        weight: 1_200,
        send_types: vec![SendType::Pishtaz],
        buy_types: vec![BuyType::OnlineCash],
        ..req
    };
    let q = c.get_prices(&heavy).await.expect("prices");
    assert_eq!(q.quotes.len(), 1);
    let q = q.quotes[0];
    assert_eq!((q.post, q.tax, q.shown_price()), (76_000, 6_840, 84_840));
}

#[tokio::test]
async fn register_cod_order_totals_goods_plus_shipping_and_offers_no_banks() {
    let env = start().await;
    let c = client(&env.urls);
    let mut order = common::physical(BuyType::Cod);
    order.shop_barcode = Some("SHOP-1001".into());
    let r = c.register_order(&order).await.expect("registered");
    assert_eq!(r.factor.as_str().len(), 20);
    assert!(r.factor.as_str().starts_with("22"));
    assert_eq!(r.total, 670_000 + 65_220, "goods + COD express shown price");
    assert!(r.banks.is_empty());
    assert_eq!(r.items.len(), 1);
    assert_eq!(r.items[0].pro_code, "mobile888");
    let stored = env.sim.order(r.factor.as_str()).expect("stored");
    assert_eq!(stored.shop_barcode.as_deref(), Some("SHOP-1001"));
    assert_eq!(stored.status, status::PROCESSING);

    let t = c.tracking(&r.factor).await.expect("tracking");
    assert_eq!(t.order.factor, r.factor, "hyphenated on the wire, same id");
    assert_eq!(t.order.buy_type, TrackingBuyType::Cod);
    assert_eq!(t.order.status, "در حال پردازش");
    assert!(t.payment.is_none());
    assert_eq!(t.customer, "علی رضایی");
    assert_eq!(t.order.order_type, 1);
}

#[tokio::test]
async fn free_send_rules_change_the_registered_total() {
    let env = start().await;
    let c = client(&env.urls);
    let shipping = 58_680; // online cash, express
    let mut two = common::physical(BuyType::OnlineCash);
    two.basket.push(common::item());
    two.basket[0].free_send = Some(true);
    let r = c.register_order(&two).await.expect("one free item");
    assert_eq!(
        r.total,
        2 * 670_000 + shipping,
        "one non-free item ⇒ shipping charged"
    );
    two.basket[1].free_send = Some(true);
    let r = c.register_order(&two).await.expect("all free");
    assert_eq!(r.total, 2 * 670_000);
    let mut whole = common::physical(BuyType::OnlineCash);
    whole.free_send = Some(true);
    let r = c.register_order(&whole).await.expect("order free");
    assert_eq!(r.total, 670_000);
    let mut own = common::physical(BuyType::PaidToSeller);
    own.send_type = SendType::SellerFixed;
    own.post_price = Some(40_000);
    let r = c.register_order(&own).await.expect("seller delivery");
    assert_eq!(r.total, 710_000);
    assert!(r.banks.is_empty(), "paid to seller: nothing to pay online");
}

#[tokio::test]
async fn cheetah_orders_register_with_their_conditional_fields() {
    let env = start().await;
    let c = client(&env.urls);
    let mut o = common::physical(BuyType::Cod);
    o.send_type = SendType::Cheetah;
    o.cheetah = Some(orderbus_frotel::CheetahDetails::envelope(905));
    c.register_order(&o).await.expect("envelope");
    o.cheetah = Some(orderbus_frotel::CheetahDetails::parcel(4, 40, 30, 20));
    c.register_order(&o).await.expect("parcel");
    assert_eq!(env.sim.orders().len(), 2);
}

#[tokio::test]
async fn business_errors_surface_code_and_message_without_failover() {
    let env = start_with(SimConfig {
        virtual_without_file: vec!["nofile".into()],
        ..SimConfig::default()
    })
    .await;
    let mut v = common::virtual_order();
    v.basket[0].pro_code = "nofile".into();
    let err = client(&env.urls)
        .register_order_virtual(&v)
        .await
        .expect_err("no file");
    match err {
        Error::Business { code, message } => {
            assert_eq!(code, 10);
            assert!(message.contains("nofile"), "{message}");
        }
        other => panic!("expected Business, got {other:?}"),
    }
    let mut cfg = common::config(&env.urls);
    cfg.api_key = "wrong".into();
    let bad = FrotelClient::new(cfg).expect("client");
    let err = bad
        .tracking(&FactorId::parse("22000000000000000001").expect("id"))
        .await;
    assert!(
        matches!(err, Err(Error::Business { code: 1, .. })),
        "{err:?}"
    );
    assert_eq!(env.sim.hits(0), 2);
    assert_eq!(
        env.sim.hits(1) + env.sim.hits(2),
        0,
        "code != 0 never fails over"
    );
    let err = client(&env.urls)
        .order_pay(&FactorId::parse("22999999999999999999").expect("id"))
        .await;
    assert!(
        matches!(err, Err(Error::Business { code: 6, .. })),
        "{err:?}"
    );
}

type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// A tiny "shop" that records the bank's callback query strings.
async fn shop() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/frotel/callback",
            get(
                |State(seen): State<Seen>, Query(q): Query<HashMap<String, String>>| async move {
                    seen.lock().expect("lock").push(q);
                    "بازگشت از بانک ثبت شد"
                },
            ),
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind shop");
    let url = format!(
        "http://{}/frotel/callback?order=77",
        l.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

/// Play the buyer: submit the bank form, choose the outcome, follow the redirect to the shop.
async fn buyer_at_bank(form: &PaymentForm, outcome: &str) -> CallbackParams {
    let action = form.action_url().expect("form action");
    assert_eq!(form.method(), "post");
    let mut fields = form.fields();
    fields.push(("outcome".into(), outcome.into()));
    let browser = reqwest::Client::new();
    let resp = browser
        .post(&action)
        .form(&fields)
        .send()
        .await
        .expect("bank");
    assert!(
        resp.status().is_success(),
        "shop answered {}",
        resp.status()
    );
    let landed = resp.url().clone();
    assert_eq!(landed.path(), "/frotel/callback");
    assert!(
        landed.query().unwrap_or("").contains("order=77"),
        "shop's own query kept"
    );
    CallbackParams::from_query(landed.query().unwrap_or("")).expect("_i and sb")
}

#[tokio::test]
async fn bank_payment_round_trip_pay_callback_check_pay() {
    let env = start().await;
    let c = client(&env.urls);
    let (callback, seen) = shop().await;
    let r = c
        .register_order(&common::physical(BuyType::OnlineCash))
        .await
        .expect("registered");
    assert_eq!(r.total, 670_000 + 58_680);
    let bank_ids: Vec<i64> = r.banks.iter().map(|b| b.id).collect();
    assert_eq!(bank_ids, [1, 2]);
    assert_eq!(
        env.sim.order(r.factor.as_str()).expect("order").status,
        status::PENDING
    );

    let t = c.tracking(&r.factor).await.expect("tracking");
    assert_eq!(t.order.status, "معلق");
    assert_eq!(t.order.buy_type, TrackingBuyType::Cash);
    let p = t.payment.expect("outstanding payment");
    assert!(p.pay_link.contains(r.factor.as_str()));

    let form = c
        .pay(&r.factor, bank_ids[0], &callback)
        .await
        .expect("pay form");
    assert!(form.html.contains("<form"));
    let cb = buyer_at_bank(&form, "success").await;
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].get("_i"), Some(&cb.payment_id));
        assert_eq!(seen[0].get("sb"), Some(&cb.reference));
    }
    let check = c.check_pay(&r.factor, &cb).await.expect("checkPay");
    assert!(check.verified, "{check:?}");
    assert_eq!(check.payment_id, cb.payment_id);
    let code = check.tracking_code.clone().expect("tracking code");
    assert_eq!(code.len(), 12);
    assert!(check.links.is_none(), "physical order: no download links");

    let after = c.order_pay(&r.factor).await.expect("orderPay");
    assert_eq!((after.remainder_price, after.pay_price), (0, r.total));
    assert!(after.banks.is_empty());
    assert_eq!(after.status, "در حال پردازش");
    // Verifying again is stable.
    let again = c.check_pay(&r.factor, &cb).await.expect("checkPay again");
    assert_eq!(again.tracking_code, Some(code));
    assert!(c
        .tracking(&r.factor)
        .await
        .expect("tracking")
        .payment
        .is_none());
    // And the order moves on.
    assert_eq!(
        env.sim.advance_order(r.factor.as_str()).as_deref(),
        Some(status::SHIPPED)
    );
    let t = c.tracking(&r.factor).await.expect("tracking");
    assert_eq!(t.order.status, "ارسال شده");
    assert_eq!(t.order.barcode.len(), 24);
    assert!(t.seller.as_array().is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn failed_bank_payment_then_order_pay_and_continue_pay() {
    let env = start().await;
    let c = client(&env.urls);
    let (callback, _) = shop().await;
    let r = c
        .register_order_service(&common::service_order())
        .await
        .expect("service order");
    assert_eq!(r.total, 1_000_000);
    let form = c.pay(&r.factor, 2, &callback).await.expect("pay");
    let cb = buyer_at_bank(&form, "fail").await;
    let check = c.check_pay(&r.factor, &cb).await.expect("checkPay");
    assert!(!check.verified);
    assert!(check.tracking_code.is_none());

    let status = c.order_pay(&r.factor).await.expect("orderPay");
    assert_eq!(status.factor, r.factor);
    assert_eq!(status.order_type, "service");
    assert_eq!(status.remainder_price, 1_000_000);
    assert_eq!(status.banks.len(), 2);
    assert!(status.banks[0]
        .icon
        .as_deref()
        .is_some_and(|l| l.ends_with("mellat-logo.png")));

    let form = c
        .continue_pay(&r.factor, status.banks[0].id, &callback)
        .await
        .expect("continuePay");
    let cb2 = buyer_at_bank(&form, "success").await;
    assert_ne!(cb2.payment_id, cb.payment_id);
    let check = c.check_pay(&r.factor, &cb2).await.expect("checkPay");
    assert!(check.verified);
    assert_eq!(
        c.tracking(&r.factor)
            .await
            .expect("tracking")
            .order
            .order_type,
        3
    );

    // A reference that does not belong to the payment is refused.
    let forged = CallbackParams {
        reference: "000000000000".into(),
        ..cb2
    };
    let err = c.check_pay(&r.factor, &forged).await;
    assert!(
        matches!(err, Err(Error::Business { code: 9, .. })),
        "{err:?}"
    );
    // Paying a settled order is refused.
    let err = c.pay(&r.factor, 1, &callback).await;
    assert!(
        matches!(err, Err(Error::Business { code: 7, .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn virtual_order_gets_download_links_after_payment() {
    let env = start().await;
    let c = client(&env.urls);
    let (callback, _) = shop().await;
    let r = c
        .register_order_virtual(&common::virtual_order())
        .await
        .expect("virtual");
    assert_eq!(r.total, 150_000);
    let form = c.pay(&r.factor, 1, &callback).await.expect("pay");
    let cb = buyer_at_bank(&form, "success").await;
    let check = c.check_pay(&r.factor, &cb).await.expect("checkPay");
    assert!(check.verified);
    let Some(DownloadLinks::Ready(links)) = check.links else {
        panic!("expected links, got {:?}", check.links);
    };
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].name, "کتاب الکترونیکی");
    let body = reqwest::get(&links[0].link)
        .await
        .expect("download")
        .text()
        .await
        .expect("body");
    assert!(body.contains("ebook-1"));
}

#[tokio::test]
async fn virtual_link_failure_is_reported_as_failed_links() {
    let env = start_with(SimConfig {
        virtual_links_fail: true,
        ..SimConfig::default()
    })
    .await;
    let c = client(&env.urls);
    let (callback, _) = shop().await;
    let r = c
        .register_order_virtual(&common::virtual_order())
        .await
        .expect("virtual");
    let cb = buyer_at_bank(
        &c.pay(&r.factor, 1, &callback).await.expect("pay"),
        "success",
    )
    .await;
    let check = c.check_pay(&r.factor, &cb).await.expect("checkPay");
    assert!(
        matches!(check.links, Some(DownloadLinks::Failed(ref m)) if !m.is_empty()),
        "{check:?}"
    );
}

#[tokio::test]
async fn cash_order_without_offered_banks_is_settled_later() {
    let env = start_with(SimConfig {
        offer_banks: false,
        ..SimConfig::default()
    })
    .await;
    let r = client(&env.urls)
        .register_order(&common::physical(BuyType::OnlineCash))
        .await
        .expect("registered");
    assert!(r.banks.is_empty());
    assert_eq!(
        env.sim.order(r.factor.as_str()).expect("order").status,
        status::PENDING
    );
}

#[tokio::test]
async fn paths_are_case_insensitive_and_mountable_under_a_prefix() {
    let env = start().await;
    let r = client(&env.urls)
        .register_order(&common::physical(BuyType::Cod))
        .await
        .expect("reg");
    let resp = reqwest::Client::new()
        .post(format!("{}order/orderpay.json", env.urls[0]))
        .form(&[("api", common::KEY), ("factor", r.factor.as_str())])
        .send()
        .await
        .expect("send");
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["code"], 0);
    assert_eq!(v["result"]["factor"], r.factor.hyphenated());

    // Nested under the real path layout: forms and links carry the prefix.
    let app = Router::new().nest("/ws/v1/rest", env.sim.mirror_router(1));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/ws/v1/rest/", l.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(l, app).await });
    let c = client(std::slice::from_ref(&base));
    let form = c
        .pay(
            &FactorId::parse("22000000000000000000").expect("id"),
            1,
            "http://x.test/cb",
        )
        .await;
    assert!(
        matches!(form, Err(Error::Business { code: 6, .. })),
        "{form:?}"
    );
    let (callback, _) = shop().await;
    let r = c
        .register_order(&common::physical(BuyType::OnlineCash))
        .await
        .expect("reg");
    let form = c.pay(&r.factor, 1, &callback).await.expect("pay");
    assert!(form
        .action_url()
        .expect("action")
        .starts_with(&format!("{base}__sim/bank/")));
}

#[tokio::test]
async fn simulator_answers_hostile_input_with_envelopes() {
    let env = start().await;
    let http = reqwest::Client::new();
    let huge = i64::MAX.to_string();
    let bodies: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "order/getPrices.json",
            vec![
                ("api", common::KEY),
                ("des_city", "1"),
                ("price", &huge),
                ("weight", &huge),
                ("send_type[0]", "1"),
                ("buy_type[0]", "1"),
            ],
        ),
        (
            "order/registerOrder.json",
            vec![
                ("api", common::KEY),
                ("name", "a"),
                ("family", "b"),
                ("phone", "1"),
                ("mobile", "2"),
                ("gender", "1"),
                ("address", "x"),
                ("code_posti", "1"),
                ("province", "1"),
                ("city", "1"),
                ("buy_type", "1"),
                ("send_type", "1"),
                ("basket[0][pro_code]", "p"),
                ("basket[0][name]", "n"),
                ("basket[0][price]", &huge),
                ("basket[0][count]", &huge),
                ("basket[0][weight]", &huge),
            ],
        ),
        (
            "order/tracking.json",
            vec![("api", common::KEY), ("factor", "abc")],
        ),
        (
            "payment/checkPay.json",
            vec![("api", common::KEY), ("paymentId", "x")],
        ),
        ("order/nope.json", vec![("api", common::KEY)]),
    ];
    for (path, form) in bodies {
        let resp = http
            .post(format!("{}{path}", env.urls[0]))
            .form(&form)
            .send()
            .await
            .expect("send");
        let v: serde_json::Value = resp.json().await.expect("envelope JSON");
        assert!(v["code"].is_i64(), "{path}: {v}");
    }
    // The sim must survive all of that.
    client(&env.urls)
        .tracking(&FactorId::parse("22000000000000000000").expect("id"))
        .await
        .expect_err("unknown factor");
}
