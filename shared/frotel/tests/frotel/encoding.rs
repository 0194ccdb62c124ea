//! The PHP `http_build_query` encoder and its decoder, byte for byte.

use orderbus_frotel::form::{decode, encode, php_urlencode, FormTree, FormValue};
use orderbus_frotel::{BuyType, CheetahDetails, PriceRequest, SendType};

use crate::common;

#[test]
fn php_urlencode_matches_php() {
    // PHP: urlencode("a b&c=d/é~*-_.") === "a+b%26c%3Dd%2F%C3%A9%7E%2A-_."
    assert_eq!(
        php_urlencode("a b&c=d/é~*-_."),
        "a+b%26c%3Dd%2F%C3%A9%7E%2A-_."
    );
    assert_eq!(php_urlencode("[0]"), "%5B0%5D");
}

#[test]
fn get_prices_body_is_the_reference_sample_byte_for_byte() {
    let req = PriceRequest {
        des_city: 301,
        price: 670_000,
        weight: 200,
        send_types: vec![SendType::Pishtaz, SendType::Sefareshi],
        buy_types: vec![BuyType::Cod, BuyType::OnlineCash],
    };
    let mut fields = req.to_form();
    fields.push(("api".into(), "KEY".into()));
    assert_eq!(
        encode(&fields),
        "des_city=301&price=670000&weight=200&buy_type%5B0%5D=1&buy_type%5B1%5D=2\
         &send_type%5B0%5D=1&send_type%5B1%5D=2&api=KEY"
    );
}

#[test]
fn nested_arrays_booleans_floats_and_empty_lists() {
    let fields = vec![
        (
            "basket".to_owned(),
            FormValue::List(vec![FormValue::Map(vec![
                ("pro_code".into(), "a b".into()),
                ("discount".into(), FormValue::Float(2.5)),
                ("tax".into(), FormValue::Float(9.0)),
                ("free_send".into(), FormValue::Bool(true)),
            ])]),
        ),
        ("empty".to_owned(), FormValue::List(vec![])),
        ("flag".to_owned(), FormValue::Bool(false)),
    ];
    assert_eq!(
        encode(&fields),
        "basket%5B0%5D%5Bpro_code%5D=a+b&basket%5B0%5D%5Bdiscount%5D=2.5\
         &basket%5B0%5D%5Btax%5D=9&basket%5B0%5D%5Bfree_send%5D=1&flag=0"
    );
}

#[test]
fn register_order_fields_use_the_seed_names() {
    let mut order = common::physical(BuyType::OnlineCash);
    order.send_type = SendType::Cheetah;
    order.cheetah = Some(CheetahDetails::parcel(2, 30, 20, 10));
    order.coupon = Some("OFF10".into());
    order.free_send = Some(false);
    order.basket[0].free_send = Some(true);
    let body = encode(&order.to_form());
    for part in [
        "name=%D8%B9%D9%84%DB%8C",
        "gender=1",
        "code_posti=1234567890",
        "buy_type=2",
        "send_type=11",
        "basket%5B0%5D%5Bpro_code%5D=mobile888",
        "basket%5B0%5D%5Bcount%5D=1",
        "basket%5B0%5D%5Bfree_send%5D=1",
        "free_send=0",
        "Coupon=OFF10",
        "cheeta_package_type=1",
        "category_section=2",
        "cheeta_length=30",
        "cheeta_width=20",
        "cheeta_height=10",
    ] {
        assert!(
            body.split('&').any(|p| p == part),
            "missing `{part}` in {body}"
        );
    }
    assert!(!body.contains("cheeta_envelopes_type"));
    assert!(
        !body.contains("api="),
        "the client appends api, not the model"
    );
}

#[test]
fn decode_rebuilds_php_arrays() {
    let body = "basket%5B1%5D%5Bname%5D=b&basket%5B0%5D%5Bname%5D=a&send_type%5B%5D=1&send_type%5B%5D=2&x=1+2";
    let tree = decode(body.as_bytes());
    let names: Vec<&str> = tree
        .get("basket")
        .map(|b| b.items())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.get("name").and_then(FormTree::as_str))
        .collect();
    assert_eq!(names, ["a", "b"]);
    let sends: Vec<&str> = tree
        .get("send_type")
        .map(|b| b.items())
        .unwrap_or_default()
        .into_iter()
        .filter_map(FormTree::as_str)
        .collect();
    assert_eq!(sends, ["1", "2"]);
    assert_eq!(tree.get("x").and_then(FormTree::as_str), Some("1 2"));
}

#[test]
fn encode_then_decode_round_trips_a_basket() {
    let order = common::physical(BuyType::Cod);
    let tree = decode(encode(&order.to_form()).as_bytes());
    let item = tree.get("basket").map(|b| b.items()).unwrap_or_default();
    assert_eq!(item.len(), 1);
    assert_eq!(
        item[0].get("name").and_then(FormTree::as_str),
        Some("موبایل اسمبلی")
    );
    assert_eq!(
        item[0].get("price").and_then(FormTree::as_str),
        Some("670000")
    );
    assert_eq!(
        tree.get("address").and_then(FormTree::as_str),
        Some("تهران، خیابان آزادی، پلاک ۱")
    );
}
