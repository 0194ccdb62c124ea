use orderbus_shopline::signing::test_keys;
use orderbus_shopline::{PrivateKey, PublicKey};

pub const SEED_004_BODY: &str = r#"{
"channelOrderTransactionId": "test_d0e822d9fd27",
"trackingList": [
{
"trackingNo": "test_91dd2e1a7af1",
"site": "test_46bec7ce1c23",
"handler": "test_4d545f9d9966",
"trackingStatus": "test_5275b24a93aa",
"carrier": "test_1ed2b4acffcc"
}
]
}"#;

pub const SEED_004_SIGNATURE: &str = "O9nPosB4O7UbIJd2RCZ3Lv/kUoXRGTbmL4k7bidpFE3lpXPg4lKUmMO3xlQOn/qf6NEFAqOV1KZuuv2EEoFR/PGYjMYdFOGNXHpyTc4n/7kkSVfMGmBsBHbz2DL7Ie4+V/jxSWb3LdJ7Z8L3L0Z1hJNLUAfG8PMg9uIx65b74uFoPVvA8UoluYBBEDR9yeBuCjgNycfm3fjf38GatObo+Ww8sTBtR5U/KiK2VJtjUpDoeaZn4y3mfmQy13W61Z8B6PhwuWFKAjt2l9AVe//thFvyzz6SfTbUaS3K1NTXAqhqcbpssTSuEJsMQI6UVaQZ6OHPTxuKfqX/UTv1k19vfg==";

pub fn test_private() -> PrivateKey {
    PrivateKey::from_pkcs8_base64(test_keys::PRIVATE_KEY_PKCS8_B64).expect("test key")
}

pub fn test_public() -> PublicKey {
    PublicKey::from_spki_base64(test_keys::PUBLIC_KEY_SPKI_B64).expect("test key")
}

/// A second, unrelated key pair (PEM fixture) for "wrong key" cases.
pub fn other_private() -> PrivateKey {
    PrivateKey::from_pkcs8_base64(include_str!("../fixtures/other_private_pkcs8.pem"))
        .expect("fixture key")
}
