//! Every client-side rule refuses the request before anything reaches a mirror.

use orderbus_frotel::{
    BuyType, CheetahDetails, Error, FactorId, Gender, PhysicalOrder, PriceRequest, SendType,
};

use crate::common::{self, client, start};

fn field_of(e: &Error) -> String {
    match e {
        Error::Validation { field, .. } => field.clone(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn cheetah(details: Option<CheetahDetails>) -> PhysicalOrder {
    let mut o = common::physical(BuyType::Cod);
    o.send_type = SendType::Cheetah;
    o.cheetah = details;
    o
}

#[tokio::test]
async fn physical_order_rules_are_enforced_before_sending() {
    let env = start().await;
    let c = client(&env.urls);
    let parcel = CheetahDetails::parcel(1, 30, 20, 10);
    let mut cases: Vec<(&str, PhysicalOrder, &str)> = vec![
        (
            "cheetah without details",
            cheetah(None),
            "cheeta_package_type",
        ),
        (
            "cheetah without package type",
            cheetah(Some(CheetahDetails::default())),
            "cheeta_package_type",
        ),
        (
            "cheetah package type 3",
            cheetah(Some(CheetahDetails {
                package_type: Some(3),
                ..parcel.clone()
            })),
            "cheeta_package_type",
        ),
        (
            "envelope without envelope type",
            cheetah(Some(CheetahDetails {
                package_type: Some(2),
                ..Default::default()
            })),
            "cheeta_envelopes_type",
        ),
        (
            "envelope type 912",
            cheetah(Some(CheetahDetails::envelope(912))),
            "cheeta_envelopes_type",
        ),
        (
            "envelope type 900",
            cheetah(Some(CheetahDetails::envelope(900))),
            "cheeta_envelopes_type",
        ),
        (
            "envelope with parcel dimensions",
            cheetah(Some(CheetahDetails {
                length: Some(10),
                ..CheetahDetails::envelope(905)
            })),
            "cheeta_length",
        ),
        (
            "parcel without category",
            cheetah(Some(CheetahDetails {
                category_section: None,
                ..parcel.clone()
            })),
            "category_section",
        ),
        (
            "parcel category 7",
            cheetah(Some(CheetahDetails::parcel(7, 1, 1, 1))),
            "category_section",
        ),
        (
            "parcel without length",
            cheetah(Some(CheetahDetails {
                length: None,
                ..parcel.clone()
            })),
            "cheeta_length",
        ),
        (
            "parcel zero width",
            cheetah(Some(CheetahDetails::parcel(1, 10, 0, 10))),
            "cheeta_width",
        ),
        (
            "parcel without height",
            cheetah(Some(CheetahDetails {
                height: None,
                ..parcel.clone()
            })),
            "cheeta_height",
        ),
        (
            "parcel with an envelope type",
            cheetah(Some(CheetahDetails {
                envelopes_type: Some(901),
                ..parcel.clone()
            })),
            "cheeta_envelopes_type",
        ),
    ];
    let mut push = |name: &'static str, f: &dyn Fn(&mut PhysicalOrder), field: &'static str| {
        let mut o = common::physical(BuyType::Cod);
        f(&mut o);
        cases.push((name, o, field));
    };
    push(
        "cheetah fields on send_type 1",
        &|o| o.cheetah = Some(CheetahDetails::parcel(1, 1, 1, 1)),
        "cheeta_package_type",
    );
    push(
        "send_type 3 not registrable",
        &|o| o.send_type = SendType::Matbooat,
        "send_type",
    );
    push(
        "send_type 4 not registrable",
        &|o| o.send_type = SendType::CityCourier,
        "send_type",
    );
    push(
        "seller delivery without post_price",
        &|o| o.send_type = SendType::SellerFixed,
        "post_price",
    );
    push(
        "negative post_price",
        &|o| {
            o.send_type = SendType::SellerFixed;
            o.post_price = Some(-1);
        },
        "post_price",
    );
    push(
        "post_price with Frotel delivery",
        &|o| o.post_price = Some(10_000),
        "post_price",
    );
    push(
        "whole-order free_send with a post_price",
        &|o| {
            o.send_type = SendType::SellerFixed;
            o.post_price = Some(10_000);
            o.free_send = Some(true);
        },
        "free_send",
    );
    push("empty basket", &|o| o.basket.clear(), "basket");
    push("zero count", &|o| o.basket[0].count = 0, "basket[0][count]");
    push(
        "negative price",
        &|o| o.basket[0].price = -5,
        "basket[0][price]",
    );
    push(
        "weightless physical item",
        &|o| o.basket[0].weight = 0,
        "basket[0][weight]",
    );
    push(
        "empty pro_code",
        &|o| o.basket[0].pro_code = " ".into(),
        "basket[0][pro_code]",
    );
    push(
        "discount over 100 %",
        &|o| o.basket[0].discount = Some(150.0),
        "basket[0][discount]",
    );
    push(
        "NaN tax",
        &|o| o.basket[0].tax = Some(f64::NAN),
        "basket[0][tax]",
    );
    push("empty name", &|o| o.buyer.name.clear(), "name");
    push("empty family", &|o| o.buyer.family.clear(), "family");
    push("empty mobile", &|o| o.buyer.mobile.clear(), "mobile");
    push(
        "bad email",
        &|o| o.buyer.email = Some("nope".into()),
        "email",
    );
    push("empty address", &|o| o.address.address.clear(), "address");
    push(
        "empty postal code",
        &|o| o.address.code_posti.clear(),
        "code_posti",
    );
    push("province 0", &|o| o.address.province = 0, "province");
    push(
        "order discount above goods",
        &|o| o.discount = Some(1_000_000),
        "discount",
    );
    push(
        "warehouse with auto-select",
        &|o| {
            o.auto_select_warehouse = Some(true);
            o.warehouse = Some(3);
        },
        "warehouse",
    );

    for (name, order, field) in &cases {
        let err = c.register_order(order).await.expect_err(name);
        assert_eq!(field_of(&err), *field, "case `{name}`: {err}");
    }
    assert_eq!(env.sim.total_hits(), 0, "nothing may reach a mirror");
    assert!(env.sim.orders().is_empty());
}

#[tokio::test]
async fn virtual_service_and_price_rules_are_enforced_before_sending() {
    let env = start().await;
    let c = client(&env.urls);

    let mut v = common::virtual_order();
    v.ip.clear();
    assert_eq!(
        field_of(&c.register_order_virtual(&v).await.expect_err("ip")),
        "ip"
    );
    let mut v = common::virtual_order();
    v.basket[0].free_send = Some(true);
    assert_eq!(
        field_of(&c.register_order_virtual(&v).await.expect_err("free_send")),
        "basket[0][free_send]"
    );
    let mut s = common::service_order();
    s.basket[0].free_send = Some(false);
    assert_eq!(
        field_of(&c.register_order_service(&s).await.expect_err("free_send")),
        "basket[0][free_send]"
    );
    let mut s = common::service_order();
    s.address.city = -1;
    assert_eq!(
        field_of(&c.register_order_service(&s).await.expect_err("city")),
        "city"
    );

    let ok = PriceRequest {
        des_city: 301,
        price: 670_000,
        weight: 200,
        send_types: vec![SendType::Pishtaz],
        buy_types: vec![BuyType::Cod],
    };
    let cases: Vec<(PriceRequest, &str)> = vec![
        (
            PriceRequest {
                buy_types: vec![BuyType::PaidToSeller],
                ..ok.clone()
            },
            "buy_type",
        ),
        (
            PriceRequest {
                buy_types: vec![],
                ..ok.clone()
            },
            "buy_type",
        ),
        (
            PriceRequest {
                send_types: vec![SendType::Cheetah],
                ..ok.clone()
            },
            "send_type",
        ),
        (
            PriceRequest {
                send_types: vec![],
                ..ok.clone()
            },
            "send_type",
        ),
        (
            PriceRequest {
                des_city: 0,
                ..ok.clone()
            },
            "des_city",
        ),
        (
            PriceRequest {
                weight: -1,
                ..ok.clone()
            },
            "weight",
        ),
    ];
    for (req, field) in &cases {
        assert_eq!(field_of(&c.get_prices(req).await.expect_err(field)), *field);
    }

    let factor = FactorId::parse("22000000000000000001").expect("factor");
    let e = c
        .pay(&factor, 0, "http://shop.example/cb")
        .await
        .expect_err("bank");
    assert_eq!(field_of(&e), "bank");
    let e = c.pay(&factor, 1, "not a url").await.expect_err("callback");
    assert_eq!(field_of(&e), "callback");
    let e = c
        .continue_pay(&factor, 1, "ftp://shop.example/cb")
        .await
        .expect_err("callback");
    assert_eq!(field_of(&e), "callback");

    assert_eq!(env.sim.total_hits(), 0, "nothing may reach a mirror");
}

#[test]
fn wire_codes_outside_the_enums_are_refused() {
    assert_eq!(Gender::try_from(0).ok(), Some(Gender::Female));
    assert_eq!(Gender::try_from(1).ok(), Some(Gender::Male));
    assert_eq!(
        field_of(&Gender::try_from(2).expect_err("gender 2")),
        "gender"
    );
    assert_eq!(
        field_of(&BuyType::try_from(4).expect_err("buy 4")),
        "buy_type"
    );
    assert_eq!(
        field_of(&BuyType::try_from(0).expect_err("buy 0")),
        "buy_type"
    );
    assert_eq!(BuyType::try_from(3).ok(), Some(BuyType::PaidToSeller));
    assert_eq!(
        field_of(&SendType::try_from(5).expect_err("send 5")),
        "send_type"
    );
    assert_eq!(SendType::try_from(11).ok(), Some(SendType::Cheetah));
    assert_eq!(SendType::try_from(20).ok(), Some(SendType::SellerFixed));
}

#[test]
fn factor_ids_are_twenty_digit_strings_without_hyphens() {
    let f = FactorId::parse("22-000000-000000-000123").expect("hyphenated");
    assert_eq!(f.as_str(), "22000000000000000123");
    assert_eq!(f.hyphenated(), "22-000000-000000-000123");
    assert_eq!(f.to_string(), "22000000000000000123");
    for bad in [
        "",
        "2200000000000000000",
        "220000000000000000000",
        "22x00000000000000000",
    ] {
        assert_eq!(field_of(&FactorId::parse(bad).expect_err(bad)), "factor");
    }
}

#[test]
fn free_send_per_item_and_whole_order() {
    let mut o = common::physical(BuyType::Cod);
    o.basket.push(common::item());
    assert!(!o.ships_free());
    o.basket[0].free_send = Some(true);
    assert!(
        !o.ships_free(),
        "one non-free item cancels per-item free shipping"
    );
    o.basket[1].free_send = Some(true);
    assert!(o.ships_free(), "every item free ⇒ parcel free");
    o.basket[1].free_send = Some(false);
    o.free_send = Some(true);
    assert!(o.ships_free(), "whole-order free_send wins");
}
