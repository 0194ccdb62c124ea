//! Status classification over every status code, for each provider's status-carrying errors.

use orderbus_partner::{ClassifyError, ErrorClass};
use proptest::prelude::*;

fn expected(status: u16) -> ErrorClass {
    if (500..600).contains(&status) {
        ErrorClass::Http5xx
    } else if (400..500).contains(&status) {
        ErrorClass::Http4xx
    } else {
        ErrorClass::Protocol
    }
}

proptest! {
    #[test]
    fn statuses_classify_the_same_for_every_provider(status in 100u16..1000) {
        prop_assert_eq!(ErrorClass::from_status(status), expected(status));
        let sinopac = orderbus_sinopac::Error::Protocol(orderbus_sinopac::ProtocolError::HttpStatus(status));
        prop_assert_eq!(sinopac.error_class(), expected(status));
        prop_assert_eq!(sinopac.http_status(), Some(status));
        let sweettracker = orderbus_sweettracker::Error::Protocol { status, detail: String::new() };
        let class = sweettracker.error_class();
        if status >= 400 {
            prop_assert_eq!(class, expected(status));
        } else {
            // A non-error status with an undocumented body is a decoding failure.
            prop_assert_eq!(class, ErrorClass::Decode);
        }
        prop_assert_eq!(sweettracker.http_status(), Some(status));
    }
}

#[test]
fn business_refusals_are_rejected_and_local_refusals_invalid() {
    let frotel = orderbus_frotel::Error::Business {
        code: 3,
        message: "x".into(),
    };
    assert_eq!(frotel.error_class(), ErrorClass::Rejected);
    assert_eq!(
        orderbus_frotel::Error::Config("x".into()).error_class(),
        ErrorClass::Invalid
    );
    assert_eq!(
        orderbus_sinopac::Error::business("E0602 – 收款方式未啟用").error_class(),
        ErrorClass::Rejected
    );
    assert_eq!(
        orderbus_sinopac::Error::InvalidRequest("x".into()).error_class(),
        ErrorClass::Invalid
    );
    assert_eq!(
        orderbus_shopline::SigningError::Mismatch.error_class(),
        ErrorClass::Protocol
    );
}
