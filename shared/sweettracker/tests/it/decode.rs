//! Decoder and reply against SweetTracker's documented example payloads.

use orderbus_sweettracker::{
    decode, decode_form, decode_json, CallbackError, CallbackReply, Level,
};

const DOC_FORM: &str = "secret_value=yqzaciv0zlw5rtjt&fid=10000000507577001&courier_code=04&invoice_no=692637908420&level=6&time_trans=2016-05-05 20:59:45&time_sweet=2016-05-05 21:46:54&where=충남천안청당&telno_office=041-584-8502&telno_man=01077417325&details=배달완료&recv_addr=서울시 중구 ***&recv_name=장영*&send_name=홍길*&man=배달원";

fn url_encode(form: &str) -> String {
    let pairs: Vec<(&str, &str)> = form
        .split('&')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    serde_urlencoded::to_string(pairs).unwrap()
}

#[test]
fn documented_form_callback_decodes() {
    let cb = decode_form(url_encode(DOC_FORM).as_bytes()).unwrap();
    assert_eq!(cb.fid, "10000000507577001");
    assert_eq!(cb.invoice_no, "692637908420");
    assert_eq!(cb.level, Level::Delivered);
    assert_eq!(cb.courier_code.as_deref(), Some("04"));
    assert_eq!(cb.secret_value.as_deref(), Some("yqzaciv0zlw5rtjt"));
    assert_eq!(cb.time_trans.as_deref(), Some("2016-05-05 20:59:45"));
    assert_eq!(cb.time_sweet.as_deref(), Some("2016-05-05 21:46:54"));
    assert_eq!(cb.location.as_deref(), Some("충남천안청당"));
    assert_eq!(cb.telno_office.as_deref(), Some("041-584-8502"));
    assert_eq!(cb.telno_man.as_deref(), Some("01077417325"));
    assert_eq!(cb.details.as_deref(), Some("배달완료"));
    assert_eq!(cb.recv_addr.as_deref(), Some("서울시 중구 ***"));
    assert_eq!(cb.recv_name.as_deref(), Some("장영*"));
    assert_eq!(cb.send_name.as_deref(), Some("홍길*"));
    assert_eq!(cb.man.as_deref(), Some("배달원"));
    assert!(cb.time_trans_parsed().is_some());
    // Same via the content-type dispatcher, and via JSON with string and numeric levels.
    assert_eq!(
        decode(
            Some("application/x-www-form-urlencoded"),
            url_encode(DOC_FORM).as_bytes()
        )
        .unwrap(),
        cb
    );
    assert_eq!(
        decode_json(cb.to_json(true).to_string().as_bytes()).unwrap(),
        cb
    );
    assert_eq!(
        decode_json(cb.to_json(false).to_string().as_bytes()).unwrap(),
        cb
    );
    assert_eq!(
        decode(None, cb.to_json(false).to_string().as_bytes()).unwrap(),
        cb
    );
}

#[test]
fn json_extras_and_levels() {
    let body = br#"{"fid":"OS02:1","invoice_no":"1","level":"-99","estmate":"2024-05-06 18:00","comcode":"05","extra":{"x":1},"details":null}"#;
    let cb = decode_json(body).unwrap();
    assert_eq!(cb.level, Level::ScanError);
    assert_eq!(cb.estmate.as_deref(), Some("2024-05-06 18:00"));
    assert_eq!(cb.carrier_code(), Some("05"));
    assert_eq!(cb.details, None);
    for (lvl, expect) in [("1", Level::Preparing), (" 5 ", Level::OutForDelivery)] {
        let b = format!(r#"{{"fid":"f","invoice_no":"1","level":"{lvl}"}}"#);
        assert_eq!(decode_json(b.as_bytes()).unwrap().level, expect);
    }
}

#[test]
fn decode_errors_are_typed() {
    assert!(matches!(decode_json(b"[]"), Err(CallbackError::Json(_))));
    assert!(matches!(decode_json(b"{"), Err(CallbackError::Json(_))));
    assert_eq!(
        decode_json(br#"{"invoice_no":"1","level":1}"#),
        Err(CallbackError::Missing("fid"))
    );
    assert_eq!(
        decode_form(b"fid=a&level=2"),
        Err(CallbackError::Missing("invoice_no"))
    );
    assert!(matches!(
        decode_form(b"fid=a&invoice_no=1&level=7"),
        Err(CallbackError::BadLevel(_))
    ));
    assert!(matches!(
        decode_json(br#"{"fid":"a","invoice_no":"1","level":2.5}"#),
        Err(CallbackError::BadLevel(_))
    ));
}

#[test]
fn reply_wire_shapes() {
    assert_eq!(
        serde_json::to_string(&CallbackReply::success()).unwrap(),
        r#"{"code":true,"message":"success"}"#
    );
    let f = serde_json::to_value(CallbackReply::failure("invalid fid")).unwrap();
    assert_eq!(
        f,
        serde_json::json!({"code": false, "message": "fail - invalid fid"})
    );
    assert!(
        CallbackReply::parse(br#"{"code":true,"message":"success"}"#)
            .unwrap()
            .code
    );
}
