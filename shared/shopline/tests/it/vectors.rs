//! SHOPLINE's published canonical-string and signature examples, bit-exact.

use crate::common::*;
use orderbus_shopline::signing::canonical_string_from_bytes;
use orderbus_shopline::webhook::{
    default_datetime_offset, parse_timestamp, Reply, TimestampFormat,
};

#[test]
fn canonical_new_doc_example() {
    let body = br#"{"normalKey":"normalValue","emptyKey":"","nullKey":null,"list":["elem1","elem2"],"listObject":[{"elemKey":"elem1"},{"elemKey":"elem2"}],"obj":{"emptyObjectKey":"","objectKey":"objectValue"}}"#;
    assert_eq!(
        canonical_string_from_bytes(body).unwrap(),
        "emptyKey=&list=elem1,elem2&elemKey=elem1&elemKey=elem2&normalKey=normalValue&emptyObjectKey=&objectKey=objectValue"
    );
}

#[test]
fn canonical_old_doc_example_with_newer_ampersand_rule() {
    let body = br#"{"simple":1,"listSimple":["1","2"],"object":{"okey1":"value1","okey2":"value2 "},"listObject":[{"lokey1":"1value1","lokey2":"1value2 "},{"lokey1":"2value1","lokey2":"2value2 "}]}"#;
    assert_eq!(
        canonical_string_from_bytes(body).unwrap(),
        "lokey1=1value1&lokey2=1value2 &lokey1=2value1&lokey2=2value2 &listSimple=1,2&okey1=value1&okey2=value2 &simple=1"
    );
}

const SEED_CANONICAL: &str = "channelOrderTransactionId=test_d0e822d9fd27&carrier=test_1ed2b4acffcc&handler=test_4d545f9d9966&site=test_46bec7ce1c23&trackingNo=test_91dd2e1a7af1&trackingStatus=test_5275b24a93aa";
const REPLY_BODY: &str = r#"{"returnCode":"SUCCESS","returnMessage":null,"returnMessageId":"9f1c2d3e-0000-4000-8000-000000000001"}"#;
const REPLY_CANONICAL: &str =
    "returnCode=SUCCESS&returnMessageId=9f1c2d3e-0000-4000-8000-000000000001";
const REPLY_SIGNATURE: &str = "MwZProX4UYvT8y7SEHZvCxXL2oThTUJ7IliWCu/+gYJX0n4BZ8khyU3zMDooXK0hdq36dj1jGqhm0lJy0oS93x9PrYDda6dgX2jbH96cL0YZEdCeF1xuNPHK1xaMLFb1bTmUmQLQ7We84YMgcTbZrSq4km5iy7LHeJPUCab9MsAnB28buxoMrTxBqc1629p+J5S1AC7tMLiCHfvEaU5JTZZgsbpp3vBK4xOLKYSm70NYFr26p8F3Fy7osSeHrApfCcUujkrcPOshFEe8oQL7VMkjuIfV9VB47uL2sTW8ifN0n/KgoW89Jgr7jWxu3N9HTS/ARIMaiMPt2jTplQB5/A==";

#[test]
fn canonical_seed_004_logistics_body() {
    assert_eq!(
        canonical_string_from_bytes(SEED_004_BODY.as_bytes()).unwrap(),
        SEED_CANONICAL
    );
}

#[test]
fn canonical_reply_skips_null() {
    assert_eq!(
        canonical_string_from_bytes(REPLY_BODY.as_bytes()).unwrap(),
        REPLY_CANONICAL
    );
}

#[test]
fn signature_of_seed_004_body_is_bit_exact_and_verifies() {
    let key = test_private();
    assert_eq!(
        key.sign_canonical(SEED_CANONICAL).unwrap(),
        SEED_004_SIGNATURE
    );
    assert_eq!(
        key.sign_body(SEED_004_BODY.as_bytes()).unwrap(),
        SEED_004_SIGNATURE
    );
    test_public()
        .verify_body(SEED_004_BODY.as_bytes(), SEED_004_SIGNATURE)
        .unwrap();
}

#[test]
fn signature_of_reply_is_bit_exact_and_our_reply_builder_matches() {
    let key = test_private();
    assert_eq!(
        key.sign_canonical(REPLY_CANONICAL).unwrap(),
        REPLY_SIGNATURE
    );
    let reply = Reply::success("9f1c2d3e-0000-4000-8000-000000000001");
    let signed = reply.sign(&key).unwrap();
    assert_eq!(signed.signature, REPLY_SIGNATURE);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&signed.body).unwrap(),
        serde_json::from_str::<serde_json::Value>(REPLY_BODY).unwrap()
    );
    test_public()
        .verify_body(&signed.body, REPLY_SIGNATURE)
        .unwrap();
}

#[test]
fn public_key_derived_from_private_matches_published_one() {
    assert_eq!(test_private().public_key(), test_public());
}

#[test]
fn timestamp_vector_micros() {
    let (t, f) = parse_timestamp("1665632758606000", default_datetime_offset()).unwrap();
    assert_eq!(f, TimestampFormat::Micros);
    assert_eq!(
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "2022-10-13T03:45:58.606Z"
    );
}

#[test]
fn numbers_are_canonicalised_exactly_as_written() {
    let body = br#"{"amount":1.50,"big":123456789012345678901234567890,"e":1E+2,"neg":-0.0,"s":"\u00e9\n","b":false}"#;
    assert_eq!(
        canonical_string_from_bytes(body).unwrap(),
        "amount=1.50&b=false&big=123456789012345678901234567890&e=1E+2&neg=-0.0&s=\u{e9}\n"
    );
}

#[test]
fn raw_parser_rejects_invalid_json() {
    for bad in [
        &b"{"[..],
        b"[1,]",
        b"01",
        b"{\"a\" 1}",
        b"\"\\x\"",
        b"1 2",
        b"nul",
        b"-",
        b"1.",
        b"1e",
    ] {
        assert!(
            canonical_string_from_bytes(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let deep = "[".repeat(10_000);
    assert!(canonical_string_from_bytes(deep.as_bytes()).is_err());
}
