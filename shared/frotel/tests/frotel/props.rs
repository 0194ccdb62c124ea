//! Decoders never panic, whatever a mirror sends.

use orderbus_frotel::form::{decode, encode, FormTree, FormValue};
use orderbus_frotel::response::{
    decode_check, decode_envelope, decode_form, decode_order_pay, decode_prices, decode_registered,
    decode_tracking,
};
use orderbus_frotel::{CallbackParams, FactorId};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[0-9]{0,22}".prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
    ];
    let keys = prop_oneof![
        Just("code".to_owned()),
        Just("message".to_owned()),
        Just("result".to_owned()),
        Just("naghdi".to_owned()),
        Just("posti".to_owned()),
        Just("1".to_owned()),
        Just("post".to_owned()),
        Just("tax".to_owned()),
        Just("frotel_service".to_owned()),
        Just("factor".to_owned()),
        Just("id".to_owned()),
        Just("total".to_owned()),
        Just("banks".to_owned()),
        Just("items".to_owned()),
        Just("verify".to_owned()),
        Just("links".to_owned()),
        Just("error".to_owned()),
        Just("order".to_owned()),
        Just("buy_type".to_owned()),
        Just("price".to_owned()),
        Just("payment".to_owned()),
        Just("remainder_price".to_owned()),
        Just("pay_price".to_owned()),
        Just("num".to_owned()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn envelope_decoder_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_envelope(&body);
    }

    #[test]
    fn decoders_never_panic_on_json(v in json_value()) {
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        if let Ok(env) = decode_envelope(&bytes) {
            let _ = decode_prices(&env.result);
        }
        let _ = decode_prices(&v);
        let _ = decode_registered(&v);
        let _ = decode_form(&v);
        let _ = decode_check(&v);
        let _ = decode_order_pay(&v);
        let _ = decode_tracking(&v);
    }

    #[test]
    fn form_and_callback_parsers_never_panic(s in ".{0,200}") {
        let _ = decode(s.as_bytes());
        let _ = CallbackParams::from_query(&s);
        let _ = FactorId::parse(&s);
        let tree = decode(s.as_bytes());
        let _ = tree.items();
    }

    #[test]
    fn encode_decode_round_trip(vals in prop::collection::vec(".{0,20}", 1..6)) {
        let fields = vec![(
            "basket".to_owned(),
            FormValue::List(vals.iter().map(|v| FormValue::Map(vec![("name".into(), v.clone().into())])).collect()),
        )];
        let tree = decode(encode(&fields).as_bytes());
        let back: Vec<String> = tree.get("basket").map(|b| b.items()).unwrap_or_default()
            .into_iter().filter_map(|i| i.get("name").and_then(FormTree::as_str).map(str::to_owned)).collect();
        prop_assert_eq!(back, vals);
    }
}
