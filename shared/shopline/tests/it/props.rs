//! The canonicaliser, verifier and body decoder never panic on arbitrary input.

use crate::common::*;
use axum::http::{HeaderMap, HeaderValue};
use orderbus_shopline::signing::{canonical_string, canonical_string_from_bytes};
use orderbus_shopline::webhook::{
    decode_logistics_report, default_datetime_offset, parse_timestamp,
};
use orderbus_shopline::{Verifier, VerifierConfig};
use proptest::prelude::*;
use serde_json::Value;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn canonicaliser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = canonical_string_from_bytes(&bytes);
        let _ = decode_logistics_report(&bytes);
    }

    #[test]
    fn canonicaliser_never_panics_on_json_and_is_stable(v in arb_json()) {
        let a = canonical_string(&v);
        // Reparsing the serialised value gives the same canonical string.
        let bytes = serde_json::to_vec(&v).unwrap();
        prop_assert_eq!(canonical_string_from_bytes(&bytes).unwrap(), a);
    }

    #[test]
    fn verifier_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..256),
        sig in ".{0,400}",
        ts in "[0-9]{0,20}|.{0,20}",
        version in "[ -~]{0,10}",
    ) {
        let verifier = Verifier::new(VerifierConfig::new(test_public()));
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("pay-api-signature", sig.as_str()),
            ("pay-api-timestamp", ts.as_str()),
            ("pay-api-version", version.as_str()),
            ("pay-api-idempotency-key", "k"),
        ] {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        }
        let _ = verifier.verify(&h, &body);
        let _ = parse_timestamp(&ts, default_datetime_offset());
    }

}

proptest! {
    // RSA signing is slow in debug builds: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn signed_arbitrary_json_verifies(v in arb_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        let sig = test_private().sign_body(&body).unwrap();
        prop_assert!(test_public().verify_body(&body, &sig).is_ok());
    }
}
