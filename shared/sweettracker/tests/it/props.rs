//! The callback decoders never panic on arbitrary input.

use orderbus_sweettracker::{decode, decode_form, decode_json, Callback, Level};
use proptest::prelude::*;

fn arb_level() -> impl Strategy<Value = Level> {
    prop_oneof![
        Just(Level::Preparing),
        Just(Level::PickedUp),
        Just(Level::InTransit),
        Just(Level::AtBranch),
        Just(Level::OutForDelivery),
        Just(Level::Delivered),
        Just(Level::ScanError),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512), ct in ".{0,40}") {
        let _ = decode_form(&bytes);
        let _ = decode_json(&bytes);
        let _ = decode(Some(&ct), &bytes);
        let _ = decode(None, &bytes);
    }

    #[test]
    fn decoders_never_panic_on_near_valid_input(
        fields in prop::collection::btree_map(
            prop_oneof![Just("fid".to_string()), Just("invoice_no".to_string()), Just("level".to_string()), ".{0,6}"],
            prop_oneof![".{0,20}".prop_map(serde_json::Value::from), any::<i64>().prop_map(serde_json::Value::from), any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from), Just(serde_json::Value::Null)],
            0..8,
        )
    ) {
        let obj = serde_json::Value::Object(fields.clone().into_iter().collect());
        let _ = decode_json(obj.to_string().as_bytes());
        let pairs: Vec<(String, String)> = fields.into_iter().map(|(k, v)| (k, v.to_string())).collect();
        if let Ok(form) = serde_urlencoded::to_string(&pairs) {
            let _ = decode_form(form.as_bytes());
        }
    }

    #[test]
    fn encode_decode_roundtrip(fid in "[^\\s]{1,30}", num in "[0-9]{9,15}", level in arb_level(), details in proptest::option::of(".{0,30}"), as_string in any::<bool>()) {
        let cb = Callback {
            secret_value: None, fid, courier_code: Some("04".into()), invoice_no: num, level,
            time_trans: Some("2024-05-05 09:00:00".into()), time_sweet: None, location: None,
            telno_office: None, telno_man: None, details, recv_addr: None, recv_name: None,
            send_name: None, man: None, estmate: None, comcode: None,
        };
        prop_assert_eq!(decode_form(cb.to_form().as_bytes()).unwrap(), cb.clone());
        prop_assert_eq!(decode_json(cb.to_json(as_string).to_string().as_bytes()).unwrap(), cb);
    }
}
