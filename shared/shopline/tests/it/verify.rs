//! Verify / reject matrix of the receiving side.

use crate::common::*;
use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, TimeZone, Utc};
use orderbus_shopline::webhook::{
    decode_logistics_report, default_datetime_offset, TimestampFormat, HEADER_IDEMPOTENCY_KEY,
    HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_VERSION,
};
use orderbus_shopline::{SigningError, Verifier, VerifierConfig, WebhookError};
use std::time::Duration;

fn now() -> DateTime<Utc> {
    // 2022-10-13T03:45:58.606Z, the documented example instant.
    DateTime::from_timestamp_micros(1_665_632_758_606_000).unwrap()
}

fn headers(sig: &str, ts: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(HEADER_VERSION, HeaderValue::from_static("1.0.0"));
    h.insert(
        HEADER_IDEMPOTENCY_KEY,
        HeaderValue::from_static("TESTKEYKEYKEY"),
    );
    h.insert(HEADER_SIGNATURE, HeaderValue::from_str(sig).unwrap());
    h.insert(HEADER_TIMESTAMP, HeaderValue::from_str(ts).unwrap());
    h
}

fn verifier() -> Verifier {
    let mut cfg = VerifierConfig::new(test_public());
    cfg.tolerance = Some(Duration::from_secs(300));
    Verifier::new(cfg)
}

#[test]
fn accepts_documented_request_and_decodes_body() {
    let h = headers(SEED_004_SIGNATURE, "1665632758606000");
    let v = verifier()
        .verify_at(&h, SEED_004_BODY.as_bytes(), now())
        .unwrap();
    assert_eq!(v.idempotency_key, "TESTKEYKEYKEY");
    assert_eq!(v.version, "1.0.0");
    assert_eq!(v.timestamp, now());
    assert_eq!(v.timestamp_format, TimestampFormat::Micros);
    let report = decode_logistics_report(SEED_004_BODY.as_bytes()).unwrap();
    assert_eq!(report.channel_order_transaction_id, "test_d0e822d9fd27");
    assert_eq!(report.tracking_list.len(), 1);
    let t = &report.tracking_list[0];
    assert_eq!(t.tracking_no, "test_91dd2e1a7af1");
    assert_eq!(t.handler.as_deref(), Some("test_4d545f9d9966"));
    assert_eq!(t.tracking_status, "test_5275b24a93aa");
    assert_eq!(t.carrier, "test_1ed2b4acffcc");
    assert_eq!(t.site, "test_46bec7ce1c23");
}

#[test]
fn each_timestamp_format_is_accepted() {
    let ms = "1665632758606";
    let dt = now()
        .with_timezone(&default_datetime_offset())
        .format("%Y%m%d%H%M%S")
        .to_string();
    assert_eq!(dt, "20221013114558");
    for (ts, fmt) in [
        ("1665632758606000", TimestampFormat::Micros),
        (ms, TimestampFormat::Millis),
        (dt.as_str(), TimestampFormat::DateTime),
    ] {
        let h = headers(SEED_004_SIGNATURE, ts);
        let v = verifier()
            .verify_at(&h, SEED_004_BODY.as_bytes(), now())
            .unwrap_or_else(|e| panic!("{ts}: {e}"));
        assert_eq!(v.timestamp_format, fmt);
        // Second precision for the datetime form.
        assert!((v.timestamp - now()).num_seconds().abs() < 1, "{ts}");
    }
}

#[test]
fn datetime_zone_is_configurable() {
    let mut cfg = VerifierConfig::new(test_public());
    cfg.tolerance = Some(Duration::from_secs(300));
    cfg.datetime_offset = chrono::FixedOffset::east_opt(0).unwrap();
    let h = headers(SEED_004_SIGNATURE, "20221013034558");
    let v = Verifier::new(cfg)
        .verify_at(&h, SEED_004_BODY.as_bytes(), now())
        .unwrap();
    assert_eq!(
        v.timestamp,
        Utc.with_ymd_and_hms(2022, 10, 13, 3, 45, 58).unwrap()
    );
}

#[test]
fn rejects_malformed_timestamps() {
    for ts in [
        "",
        "abc",
        "166563275860600",
        "2022-10-13 03:45",
        "20221399999999",
        "-665632758606",
    ] {
        let mut h = headers(SEED_004_SIGNATURE, "1665632758606000");
        if ts.is_empty() {
            h.remove(HEADER_TIMESTAMP);
        } else {
            h.insert(HEADER_TIMESTAMP, HeaderValue::from_str(ts).unwrap());
        }
        let err = verifier()
            .verify_at(&h, SEED_004_BODY.as_bytes(), now())
            .unwrap_err();
        if ts.is_empty() {
            assert!(
                matches!(err, WebhookError::MissingHeader(HEADER_TIMESTAMP)),
                "{err}"
            );
        } else {
            assert!(matches!(err, WebhookError::BadTimestamp(_)), "{ts}: {err}");
        }
    }
}

#[test]
fn rejects_stale_timestamp_both_directions_and_tolerance_can_be_disabled() {
    let h = headers(SEED_004_SIGNATURE, "1665632758606000");
    let later = now() + chrono::TimeDelta::seconds(301);
    let earlier = now() - chrono::TimeDelta::seconds(301);
    for at in [later, earlier] {
        let err = verifier()
            .verify_at(&h, SEED_004_BODY.as_bytes(), at)
            .unwrap_err();
        assert!(
            matches!(
                err,
                WebhookError::Stale {
                    tolerance_secs: 300,
                    ..
                }
            ),
            "{err}"
        );
    }
    let mut cfg = VerifierConfig::new(test_public());
    cfg.tolerance = None;
    Verifier::new(cfg)
        .verify_at(
            &h,
            SEED_004_BODY.as_bytes(),
            later + chrono::TimeDelta::days(400),
        )
        .unwrap();
}

#[test]
fn rejects_each_missing_header() {
    for name in [
        HEADER_SIGNATURE,
        HEADER_VERSION,
        HEADER_IDEMPOTENCY_KEY,
        HEADER_TIMESTAMP,
    ] {
        let mut h = headers(SEED_004_SIGNATURE, "1665632758606000");
        h.remove(name);
        let err = verifier()
            .verify_at(&h, SEED_004_BODY.as_bytes(), now())
            .unwrap_err();
        assert!(
            matches!(err, WebhookError::MissingHeader(n) if n == name),
            "{name}: {err}"
        );
    }
}

#[test]
fn rejects_byte_flips_in_body_value() {
    let body = SEED_004_BODY.as_bytes();
    let h = headers(SEED_004_SIGNATURE, "1665632758606000");
    // Flip one bit inside every value character: each one changes the canonical string.
    let start = SEED_004_BODY.find("test_d0e822d9fd27").unwrap();
    for i in start..start + "test_d0e822d9fd27".len() {
        let mut b = body.to_vec();
        b[i] ^= 0x01;
        let err = verifier().verify_at(&h, &b, now()).unwrap_err();
        assert!(
            matches!(err, WebhookError::BadSignature(SigningError::Mismatch)),
            "offset {i}: {err}"
        );
    }
}

#[test]
fn rejects_byte_flips_in_signature() {
    let body = SEED_004_BODY.as_bytes();
    let mut sig = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        SEED_004_SIGNATURE,
    )
    .unwrap();
    for i in [0, 100, 255] {
        sig[i] ^= 0x80;
        let s = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &sig);
        sig[i] ^= 0x80;
        let err = verifier()
            .verify_at(&headers(&s, "1665632758606000"), body, now())
            .unwrap_err();
        assert!(matches!(err, WebhookError::BadSignature(_)), "{err}");
    }
    let err = verifier()
        .verify_at(&headers("not base64!", "1665632758606000"), body, now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            WebhookError::BadSignature(SigningError::SignatureEncoding)
        ),
        "{err}"
    );
}

#[test]
fn rejects_signature_from_wrong_key() {
    let body = SEED_004_BODY.as_bytes();
    let sig = other_private().sign_body(body).unwrap();
    let err = verifier()
        .verify_at(&headers(&sig, "1665632758606000"), body, now())
        .unwrap_err();
    assert!(
        matches!(err, WebhookError::BadSignature(SigningError::Mismatch)),
        "{err}"
    );
    // And the other key's own public key accepts it.
    let mut cfg = VerifierConfig::new(other_private().public_key());
    cfg.tolerance = None;
    Verifier::new(cfg)
        .verify_at(&headers(&sig, "1665632758606000"), body, now())
        .unwrap();
}

#[test]
fn extra_unknown_fields_are_signed_and_accepted() {
    let body = br#"{"channelOrderTransactionId":"c1","zzRandom":"x9","trackingList":[{"trackingNo":"T1","site":"s","trackingStatus":"SHIPPED","carrier":"c"}]}"#;
    let sig = test_private().sign_body(body).unwrap();
    verifier()
        .verify_at(&headers(&sig, "1665632758606000"), body, now())
        .unwrap();
    // Dropping the extra field breaks the signature: it really is covered.
    let stripped = br#"{"channelOrderTransactionId":"c1","trackingList":[{"trackingNo":"T1","site":"s","trackingStatus":"SHIPPED","carrier":"c"}]}"#;
    assert!(verifier()
        .verify_at(&headers(&sig, "1665632758606000"), stripped, now())
        .is_err());
    let r = decode_logistics_report(body).unwrap();
    assert_eq!(r.tracking_list[0].handler, None);
}

#[test]
fn rejects_bad_bodies() {
    for body in [
        &b"not json"[..],
        br#"{"trackingList":[]}"#,
        br#"{"channelOrderTransactionId":"","trackingList":[]}"#,
    ] {
        assert!(matches!(
            decode_logistics_report(body),
            Err(WebhookError::BadBody(_))
        ));
    }
    let err = verifier()
        .verify_at(
            &headers(SEED_004_SIGNATURE, "1665632758606000"),
            b"{oops",
            now(),
        )
        .unwrap_err();
    assert!(matches!(err, WebhookError::BadBody(_)), "{err}");
}

#[test]
fn version_allow_list() {
    let mut cfg = VerifierConfig::new(test_public());
    cfg.tolerance = None;
    cfg.accepted_versions = Some(vec!["2.0.0".into()]);
    let err = Verifier::new(cfg)
        .verify_at(
            &headers(SEED_004_SIGNATURE, "1665632758606000"),
            SEED_004_BODY.as_bytes(),
            now(),
        )
        .unwrap_err();
    assert!(matches!(err, WebhookError::UnsupportedVersion(v) if v == "1.0.0"));
}
