//! The seed's documented result samples (and PHP quirks) decode into the typed results.

use orderbus_frotel::response::{
    decode_check, decode_envelope, decode_order_pay, decode_prices, decode_registered,
    decode_tracking,
};
use orderbus_frotel::{BuyType, DownloadLinks, SendType, TrackingBuyType};
use serde_json::json;

#[test]
fn seed_get_prices_sample() {
    let body = br#"{"code":0,"message":"","result":{"naghdi":{"1":{"post":52000,"tax":4680,"frotel_service":2000},"2":{"post":26000,"tax":2340,"frotel_service":2000}},"posti":{"1":{"post":58000,"tax":5220,"frotel_service":2000},"2":{"post":"36000","tax":"3240","frotel_service":"2000"}}}}"#;
    let env = decode_envelope(body).expect("envelope");
    assert_eq!((env.code, env.message.as_str()), (0, ""));
    let p = decode_prices(&env.result).expect("prices");
    assert_eq!(p.quotes.len(), 4);
    let q = p
        .get(BuyType::Cod, SendType::Sefareshi)
        .expect("posti/2 with string numbers");
    assert_eq!(q.shown_price(), 41_240);
    assert!(decode_prices(&json!({"naghdi": [], "posti": []}))
        .expect("PHP empty")
        .quotes
        .is_empty());
}

#[test]
fn seed_register_order_samples_cod_and_cash() {
    let cod = json!({"factor": {"id": "22000000000000000000", "view": "", "total": 748300},
        "items": [{"name": "موبایل اسمبلی", "num": 1, "price": 670000, "pro_code": "mobile888",
                   "weight": 200, "option": ""}]});
    let r = decode_registered(&cod).expect("cod");
    assert_eq!(r.factor.as_str(), "22000000000000000000");
    assert_eq!(r.total, 748_300);
    assert!(r.banks.is_empty());
    assert_eq!(r.items[0].num, 1);
    let mut cash = cod.clone();
    cash["factor"]["banks"] =
        json!([{"id": 1, "name": "ملت", "icon": "http://fpanel.ir/banks/mellat.png"}]);
    let r = decode_registered(&cash).expect("cash");
    assert_eq!(
        r.banks[0].icon.as_deref(),
        Some("http://fpanel.ir/banks/mellat.png")
    );
    // A factor id as a JSON number has already lost precision: refused.
    let mut numeric = cod;
    numeric["factor"]["id"] = json!(22000000000000000000.0);
    assert!(decode_registered(&numeric).is_err());
}

#[test]
fn seed_check_pay_samples() {
    let physical = json!({"id": "00000", "verify": 1, "message": "تراکنش باموفقیت انجام شد",
                          "code": "109314767064"});
    let c = decode_check(&physical).expect("physical");
    assert!(c.verified);
    assert_eq!(c.tracking_code.as_deref(), Some("109314767064"));
    let virt = json!({"id": "14116", "verify": 1, "message": "تراکنش باموفقیت انجام شد",
        "code": "109314767064", "links": {"error": 0, "message": [{"name": "file name",
        "size": "200 KB", "mime": "pdf", "count": "بدونمحدودیت", "expire": "1394/04/24 10:25:00",
        "link": "http://DOWNLOAD_LINK"}]}});
    let c = decode_check(&virt).expect("virtual");
    assert!(
        matches!(c.links, Some(DownloadLinks::Ready(ref l)) if l[0].link == "http://DOWNLOAD_LINK")
    );
    assert!(
        decode_check(&json!({"id": "1", "verify": 2})).is_err(),
        "verify must be 0/1"
    );
}

#[test]
fn seed_order_pay_and_tracking_samples() {
    let op = json!({"vaziat": "معلق", "factor": "22-00000-000000-000000", "barcode": "",
        "order_type": "product", "price": 886970, "remainder_price": 886970, "pay_price": 0,
        "banks": [{"id": 1, "name": "بانك ملت", "logo": "http://fpanel.ir/themes/frotel/images/logo/bank/mellat-logo.png"},
                  {"id": 2, "name": "بانك ملي", "logo": "http://fpanel.ir/themes/frotel/images/logo/bank/melli-logo.png"}]});
    let s = decode_order_pay(&op).expect("orderPay");
    assert_eq!(
        s.factor.as_str(),
        "2200000000000000000",
        "the doc's 19-digit sample is kept as is"
    );
    assert_eq!(s.banks.len(), 2);
    assert!(s.banks[1]
        .icon
        .as_deref()
        .is_some_and(|l| l.contains("melli")));

    let tr = json!({"customer": "تست اپراتورفروتل", "order": {"factor": "22-000000-000000-000000",
        "barcode": "", "status": "معلق", "date": "1394/05/03 - 10:57",
        "change_date": "1394/05/03 - 10:57", "price": 906590, "buy_type": 1, "desc": "", "type": 1},
        "seller": [], "payment": {"message": "پرداخت شماانجام نشده است.",
        "pay_link": "http://byst.ir/payment/ContinuePay?factor=22000000000000000000"}});
    let t = decode_tracking(&tr).expect("tracking");
    assert_eq!(t.order.factor.as_str(), "22000000000000000000");
    assert_eq!(t.order.buy_type, TrackingBuyType::Cash);
    assert!(t
        .payment
        .is_some_and(|p| p.pay_link.ends_with("factor=22000000000000000000")));
}

#[test]
fn envelope_requires_all_three_keys() {
    assert!(decode_envelope(br#"{"code":0,"message":""}"#).is_err());
    assert!(decode_envelope(br#"{"code":"x","message":"","result":1}"#).is_err());
    assert!(decode_envelope(b"<html>").is_err());
    let e = decode_envelope(br#"{"code":"3","message":null,"result":null}"#).expect("lenient");
    assert_eq!((e.code, e.message.as_str()), (3, ""));
}
