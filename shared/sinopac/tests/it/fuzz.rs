//! Property tests: decoders never panic on arbitrary input, and sealing round-trips.

use orderbus_sinopac::crypto::{self, HashId};
use orderbus_sinopac::envelope::{self, ApiService};
use orderbus_sinopac::notify::decode_notification;
use orderbus_sinopac::Amount;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn hash() -> HashId {
    HashId::demo_na0249()
}

proptest! {
    #[test]
    fn response_decoder_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = envelope::decode_response(&body, &hash(), ApiService::OrderCreate);
    }

    #[test]
    fn response_decoder_never_panics_on_envelopes(
        version in ".{0,8}",
        service in prop_oneof![Just("OrderCreate".to_owned()), ".{0,12}"],
        sign in "[0-9A-Fa-f]{0,70}",
        nonce in ".{0,120}",
        message in prop_oneof!["[0-9A-F]{0,256}", ".{0,64}"],
        status in proptest::option::of(".{0,3}"),
    ) {
        let mut env = json!({
            "Version": version, "APIService": service, "Sign": sign, "Nonce": nonce,
            "Message": message, "ShopNo": "NA0249_001",
        });
        if let Some(s) = status {
            env["Status"] = Value::String(s);
        }
        let body = env.to_string();
        let _ = envelope::decode_response(body.as_bytes(), &hash(), ApiService::OrderCreate);
    }

    #[test]
    fn response_decoder_never_panics_on_arbitrary_signed_messages(
        fields in proptest::collection::btree_map("[A-Za-z]{1,12}", prop_oneof![
            ".{0,20}".prop_map(Value::String),
            any::<i64>().prop_map(|n| json!(n)),
            // Binary fractions only: serde_json's default float parser is not always
            // correctly rounded, so arbitrary floats may not re-sign identically (see README).
            any::<i32>().prop_map(|n| json!(f64::from(n) / 4.0)),
            Just(Value::Null),
            Just(json!({"CardPayURL": 5})),
            Just(json!([1, "x"])),
        ], 0..10),
        nonce in "[A-Za-z0-9=]{1,120}",
    ) {
        // Validly signed and encrypted, but with arbitrary content: must decode without
        // panicking, and the typed layer must not panic either.
        let msg: Map<String, Value> = fields.into_iter().collect();
        let env = envelope::seal(ApiService::OrderQuery, "NA0249_001", &hash(), &nonce, &msg);
        let body = serde_json::to_vec(&env).expect("serialize");
        let decoded = envelope::decode_response(&body, &hash(), ApiService::OrderQuery);
        prop_assert_eq!(decoded.as_ref().ok(), Some(&msg));
        if let Ok(m) = decoded {
            let _ = envelope::check_status(&m);
            let _ = serde_json::from_value::<orderbus_sinopac::types::OrderQueryResponse>(Value::Object(m));
        }
    }

    #[test]
    fn decrypt_never_panics(hex_ct in "[0-9a-fA-F]{0,200}", junk in ".{0,40}", nonce in ".{0,40}") {
        let _ = crypto::decrypt_message(&hash(), &nonce, &hex_ct);
        let _ = crypto::decrypt_message(&hash(), &nonce, &junk);
    }

    #[test]
    fn seal_open_round_trip(
        fields in proptest::collection::btree_map("[A-Za-z]{1,10}", ".{0,30}", 0..8),
        nonce in "[A-Za-z0-9+/=]{1,108}",
    ) {
        let msg: Map<String, Value> = fields.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        let env = envelope::seal(ApiService::OrderPayQuery, "NA0249_001", &hash(), &nonce, &msg);
        prop_assert_eq!(env.message.clone(), env.message.to_uppercase());
        prop_assert_eq!(envelope::open(&env, &hash()), Ok(msg));
    }

    #[test]
    fn notification_decoder_never_panics(
        ct in proptest::option::of(prop_oneof![
            Just("application/json".to_owned()),
            Just("application/x-www-form-urlencoded".to_owned()),
            ".{0,30}",
        ]),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = decode_notification(ct.as_deref(), &body);
    }

    #[test]
    fn notification_decoder_never_panics_on_near_valid_bodies(
        shop in ".{0,30}", token in ".{0,120}", as_form in any::<bool>(),
    ) {
        let body = if as_form {
            serde_urlencoded::to_string([("ShopNo", &shop), ("PayToken", &token)]).expect("form")
        } else {
            json!({"ShopNo": shop, "PayToken": token}).to_string()
        };
        if let Ok(n) = decode_notification(None, body.as_bytes()) {
            prop_assert_eq!(n.shop_no, shop.trim());
            prop_assert_eq!(n.pay_token, token.trim());
        }
    }

    #[test]
    fn amount_from_twd_is_times_100(d in 0u64..10_000_000) {
        prop_assert_eq!(Amount::from_twd(d).map(Amount::wire_value), Ok(d * 100));
    }
}
