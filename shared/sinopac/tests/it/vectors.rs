//! Every published Sinopac test vector (demo shop keys, HashID, IV, Sign, Message), bit-exact.

use orderbus_sinopac::crypto::{self, HashId};
use orderbus_sinopac::envelope::{self, ApiService, Envelope};
use orderbus_sinopac::types::OrderCreateResponse;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

const SPEC_HASH_ID: &str = "17D8E6558DC60E702A6B57E1B9B7060D";
const SPEC_NONCE: &str = "NjM2NjA0MzI4ODIyODguMzo3NzI0ZDg4ZmI5Nzc2YzQ1MTNhYzg2MTk3NDBlYTRhNGU0N2IxM2Q2M2JkMTIwOGU5YzZhMGFmNGY5MjA5YzVm";
const SPEC_PLAINTEXT: &str = r#"{"ShopNo":"BA0026_001","OrderNo":"A201804270001","Amount":50000,"CurrencyID":"TWD","PayType":"A","ATMParam":{"ExpireDate":"20180502"},"CardParam":{},"PrdtName":"虛擬帳號訂單","ReturnURL":"http://10.11.22.113:8803/QPay.ApiClient/Store/Return","BackendURL":"http://10.11.22.113:8803/QPay.ApiClient/AutoPush/PushSuccess"}"#;
const SPEC_SIGN: &str = "A3EAEE3B361B7E7E9B0F6422B954ECA5D54CEC6EAB0880CB484AA6FDA4154331";
const SPEC_MESSAGE_A: &str = "2C236A4E91DB2F7670E79BBCE3A626EB728916919012681FF92BE0B4BBF57F5519AF1A469A1D8710B202CB2C2F3C12A770788D825AD0F0A22AED518545A0D244AD0F9C37C7C693EFFABE78B606BCDAED6284902F7F522BBA85D9BE7EFEF46C6793FB6A5D6624C2642A74EB312034BEA931EE3A5F3C660F3ABAA9032949AE86DEFEB452545807561D282C7B7C8E9102CED1404B8B542BC09CE12FA38F335BE7F027AE74BDDBADDB1790B172EFBF1FD25524E2BB64A626EA44643D4BD490E348E926BB7A48D5FA939EEC5BE681009E7AC7FED1C8475B715891321406960675B5A216032CF8657A3CB2B2D0C7FF85027D70E1F2B5DD414373912E97FA6FB85E9AB89B118BC545583CC9AC503F8BAD73C185CB97B28313618021F9217A30278043EF728BB5C49D231C4A22279864F68194254BC624789F36CCDEE75861CFC667CD8E9E89F1DB04ABA0D26FEF24BFE0470488";
const SPEC_MESSAGE_B: &str = "2C236A4E91DB2F7670E79BBCE3A626EB728916919012681FF92BE0B4BBF57F5519AF1A469A1D8710B202CB2C2F3C12A770788D825AD0F0A22AED518545A0D244AD0F9C37C7C693EFFABE78B606BCDAED6284902F7F522BBA85D9BE7EFEF46C6793FB6A5D6624C2642A74EB312034BEA931EE3A5F3C660F3ABAA9032949AE86DEFEB452545807561D282C7B7C8E9102CE134639CF8172577B4250CD4BF4AC30589A4B34BBDF0A2DF8F908E9FA42E22DA13C5294C5E6C48DE6662B145CAE29249203343D53C35F76C21FFA492DB33E12E14B731956ABD92D40B6C9D12F122132A84FE39D0D213486037EC4923F689BF0805D38EEF06B8D5E8C441CF8AD76A29E0CEF9E06715E608095CE6B0A86F3DD702795B0C1C9E488C61F6D07F9FCD84EE7D1508523E8365B44EFC9B99A4BF3FD42D13B9742F48E055602D55736F083F5367FC05378430FA56D28BFF12660636EC32FE054987DAB24F51D1341D9514A1BFBC64C8917DBEE6D19D351803088A7963F1346223F968A237B29AF19BE98EED176A5";

const DEMO_HASH_ID: &str = "87282A2FA0E209EBE1B3713AB56A06C2";
const DAY7_NONCE: &str = "NjM3Njc0NzY1MDExMjc6MjVmMDE2NDUyYThjNDE4ODY1MmI4Mzk0OGM3YWY1Mjg0M2Y4NDdlMjAyMTk0YWM3MGFhZGZmNDcyMGQ5ZjhjNw==";
const DAY7_SIGN: &str = "FBF41F9BFA5607F5141D508DA6B914DCAB97CE7CDE22EE636C9FDD81A9AC3277";
const DAY7_MESSAGE: &str = "FAE9E297DB4D0B16D3E5A56561B28DDC41CD135B23D5309F971091033425405BA96669FE5A27B1D42DC4EB9636EBB0D9D9D618BC2B3969124A4F73CBB760CB83084623E1C2DED846BB46525E1B74F187EEF42A0F483AC49B0A12268D28452F44D268D38BDB91C464B74B1BB80D6DFC372622D8006005B0ABF5637287CB587FCE6ABB9D2BA377A29EC2E7E696CFDE2E305739CF2E6CBC1F2B71741064CA21CE3A6C6BFBAD663140A4CCC5AB24BE77569A26E1EA3A71EC2BC7AFC6E0F43ED537E42CDF535E910E25413BF4BC649D800F592FEA277BA18BF312EDD9A062D7F24A6405AC01EEF3F7F55EBC5978EEFC7AB097A802A1D05B675CC08E5ABD3FD9106EE0C624839EB0451EBE0F10E85C6DFCE4C9E0D29B3E633928F1A73102C04FA9DB91D7391D8917DC263437DBC50A7ACAF2CA06F8114669F783EF5189925B61EC9D7ECC3C504D09996665BC7CD3C3725F5D778F1D843FC42183153E565BF06307405F30401BA7E83EFAC91B54612D92E284F3BCFE324E26F8E7BFB1AE6326D96E2513D53A4D25DC1C1C24437A403A5BF281DA95A4EE018D6224F18128EB5FBFF3EF73EEE19E0EFD9429AB2976AB70C8DB050EFD81DB591831FD820157ACC4B60F101ABEF75AAA420EFF4C6FD7495226872B410CB87E958E7C92BFF3E3D35B4367B927F167A30F495876E82428ACC0D51BD61C7D30DB0A5FAEA26CDA24F79EA132000FFCF9C2E6EBCA124C6D8F546DF954C333";
const DAY4_SIGN_FIELDS: &str = "Amount=40400&BackendURL=https://0.0.0.0/bakcend&CurrencyID=TWD&OrderNo=2021091500002&PayType=C&PrdtName=IPhone 13 Pro Max 256g&ReturnURL=https://0.0.0.0/store/Return&ShopNo=NA0249_001";
const SIM_REPLY_PLAINTEXT: &str = r#"{"OrderNo":"2021091500002","ShopNo":"NA0249_001","TSNo":"NA024900000173","Amount":40400,"Status":"S","Description":"S0000 – 處理成功","Param1":"","Param2":"","Param3":"","PayType":"C","CardParam":{"CardPayURL":"https://sandbox.sinopac.com/QPay.WebPaySite/Bridge/PayCard?TD=NA024900000173&TK=a135ccb2-2e4c-4af4-b4ef-dfece6367731"}}"#;
const SIM_REPLY_SIGN: &str = "01180CC21553AFF86B0B2A443A419BC30DD53407D93AF2720316C4C6602116FD";
const SIM_REPLY_MESSAGE: &str = "25861114C1218F14923F9B6C1E67BBFF6EF15059356835B5966CFE6EAF3593AB6BBCE7FF842DA1F6E9666DF2026BAC6EA7ABD43154E9A1E09D1D19E3E116F4A42284EDB37148767D6C9E76AB431444DA6F640E17F523BA33CC8338C9663D7CC1A4B913AA61132B19A2B3F95BDD9E715E17E9D25E44408C35BC52DA54C0A623ED5CD3D27C0785C22FAE9F931D21296D86B308042C0EC3181135A088252D80F8AFB0E96731AEE5F97E39551B297EFB0A92EF5982D0872B84ED96DD0854EE84DFD8FD7356F47F1296DB234F089E5CBF7970EEEB895DC55B91A76A2479299CB6815FB3E2A9CAC671FA0DFD65BD42212B272F23802D188F629F96A23053BCBC551D9D79EBEA30E3A9C59409BEA3B6A3DEFBDAE4061B84ECF3C35127B5B10F9DF6E55A3DB33096ED276BB5992AC6D5D50976E736F8F817057FF56949DD18840D74AA3FCE97F55FD413EE9622870702248E9CB804854A29CDE669C12A760F50058C3D5E";

fn spec_hash() -> HashId {
    HashId::from_hash_id(SPEC_HASH_ID).expect("hash id")
}

fn demo_hash() -> HashId {
    HashId::from_hash_id(DEMO_HASH_ID).expect("hash id")
}

fn obj(json: &str) -> Map<String, Value> {
    match serde_json::from_str(json).expect("json") {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn hash_id_spec_example() {
    let h = HashId::from_keys(
        "4D9709D699CA40EE",
        "5A4FEF83140C4E9E",
        "BC74301945134CB4",
        "961F67F8FCA44AB9",
    )
    .expect("keys");
    assert_eq!(h.as_str(), SPEC_HASH_ID);
    // Lower-case keys derive the same HashID.
    let lower = HashId::from_keys(
        "4d9709d699ca40ee",
        "5a4fef83140c4e9e",
        "bc74301945134cb4",
        "961f67f8fca44ab9",
    )
    .expect("keys");
    assert_eq!(lower, h);
}

#[test]
fn hash_id_demo_keys_and_zero_padding() {
    let h = HashId::from_keys(
        "86D50DEF3EB7400E",
        "01FD27C09E5549E5",
        "9E004965F4244953",
        "7FB3385F414E4F91",
    )
    .expect("keys");
    assert_eq!(h.as_str(), DEMO_HASH_ID);
    assert_eq!(h, HashId::demo_na0249());
    // Equal keys XOR to zero bytes, which must still be two digits each.
    let z = HashId::from_keys(
        "0102030405060708",
        "0102030405060708",
        "00000000000000FF",
        "0000000000000000",
    )
    .expect("keys");
    assert_eq!(z.as_str(), "000000000000000000000000000000FF");
}

#[test]
fn hash_id_rejects_bad_keys() {
    assert!(HashId::from_keys(
        "XYZ",
        "5A4FEF83140C4E9E",
        "BC74301945134CB4",
        "961F67F8FCA44AB9"
    )
    .is_err());
    assert!(HashId::from_keys(
        "4D9709D699CA40EG",
        "5A4FEF83140C4E9E",
        "BC74301945134CB4",
        "961F67F8FCA44AB9"
    )
    .is_err());
    assert!(HashId::from_hash_id("short").is_err());
}

#[test]
fn iv_vectors() {
    assert_eq!(
        hex::encode_upper(Sha256::digest(SPEC_NONCE.as_bytes())),
        "B04E63304BA13F5986B7855706A57B1F18B46FEDE0122D7FCB6FA68E42B655AB"
    );
    assert_eq!(&crypto::iv_from_nonce(SPEC_NONCE), b"CB6FA68E42B655AB");
    assert_eq!(
        &crypto::iv_from_nonce("NjM3NjczODg3Mjc5MTYuNjo1ZDI5ZTQ3YjBlNzY2NTc4ODI3YzM0ZjdiMjlmYjg0MWQ3Y2NlYzI5NmM0NjI2MzA3NWRkYTNlNzQ1NzdhMWY4"),
        b"2D3E2EA879B80C63"
    );
    assert_eq!(
        &crypto::iv_from_nonce("NjM3Njc0MDQxODY5OTYuNDowNDIxNTg3ODM5MDFhNTU1ZjYwYzMzMzg0NDEyMzUxNmQ5OTBlZWU1NDY2NjY2NDkyZjE5YTc3OTE2ZDExNjNh"),
        b"3C7B67201DC59932"
    );
    assert_eq!(&crypto::iv_from_nonce(DAY7_NONCE), b"15FE64E9D28D8934");
}

#[test]
fn sign_spec_example() {
    let msg = obj(SPEC_PLAINTEXT);
    assert_eq!(
        crypto::sign_fields(&msg),
        "Amount=50000&BackendURL=http://10.11.22.113:8803/QPay.ApiClient/AutoPush/PushSuccess&CurrencyID=TWD&OrderNo=A201804270001&PayType=A&PrdtName=虛擬帳號訂單&ReturnURL=http://10.11.22.113:8803/QPay.ApiClient/Store/Return&ShopNo=BA0026_001"
    );
    assert_eq!(crypto::sign(&msg, SPEC_NONCE, &spec_hash()), SPEC_SIGN);
    assert!(crypto::verify_sign(
        &msg,
        SPEC_NONCE,
        &spec_hash(),
        SPEC_SIGN
    ));
    assert!(crypto::verify_sign(
        &msg,
        SPEC_NONCE,
        &spec_hash(),
        &SPEC_SIGN.to_lowercase()
    ));
    let mut wrong = SPEC_SIGN.to_owned();
    wrong.replace_range(0..1, "B");
    assert!(!crypto::verify_sign(&msg, SPEC_NONCE, &spec_hash(), &wrong));
    assert!(!crypto::verify_sign(&msg, SPEC_NONCE, &spec_hash(), ""));
}

#[test]
fn sign_drops_empty_values_and_sorts_case_insensitively() {
    let msg =
        obj(r#"{"b":"2","A":"1","Memo":"","Param1":"   ","X":null,"o":{"k":"v"},"l":[1],"c":0}"#);
    // `0` is kept (C# rule), blank/null/objects/arrays dropped, "A" < "b" < "c" ignoring case.
    assert_eq!(crypto::sign_fields(&msg), "A=1&b=2&c=0");
}

#[test]
fn sign_day4_vector() {
    let msg = obj(
        r#"{"ShopNo":"NA0249_001","OrderNo":"2021091500002","Amount":40400,"CurrencyID":"TWD","PrdtName":"IPhone 13 Pro Max 256g","ReturnURL":"https://0.0.0.0/store/Return","BackendURL":"https://0.0.0.0/bakcend","PayType":"C","Memo":"","Param1":"","ATMParam":{},"CardParam":{"AutoBilling":"Y"}}"#,
    );
    assert_eq!(crypto::sign_fields(&msg), DAY4_SIGN_FIELDS);
    assert_eq!(
        crypto::sign(
            &msg,
            "NjM3NjczMjQwNzM1NTAuOTo5ZWE1MmFhYzk0NDgwMzljY2RiNjhjOGU0MGU3ODc0NzFiMTIwNmNkMTViZWU4MzUwZDU3Zjg1M2VhNjIwODRj",
            &spec_hash()
        ),
        "3C883D53F7732EC7C3F8C9D0232691545855B60507B199094A4CDE71C911F522"
    );
}

#[test]
fn message_spec_example_encrypt_and_decrypt() {
    assert_eq!(SPEC_PLAINTEXT.len(), 324);
    let ct = crypto::encrypt_message(&spec_hash(), SPEC_NONCE, SPEC_PLAINTEXT.as_bytes());
    assert_eq!(ct.len(), 672);
    assert_eq!(ct, SPEC_MESSAGE_A);
    let pt = crypto::decrypt_message(&spec_hash(), SPEC_NONCE, SPEC_MESSAGE_A).expect("decrypt");
    assert_eq!(pt, SPEC_PLAINTEXT.as_bytes());
    // Hex is parsed case-insensitively.
    let pt = crypto::decrypt_message(&spec_hash(), SPEC_NONCE, &SPEC_MESSAGE_A.to_lowercase())
        .expect("decrypt lower");
    assert_eq!(pt, SPEC_PLAINTEXT.as_bytes());
}

#[test]
fn message_spec_example_php_serialization() {
    // The PHP-escaped serialization decrypts to the same object (modulo `[]` for `{}`), has the
    // same Sign, and re-encrypts to the same 768 hex characters.
    let pt = crypto::decrypt_message(&spec_hash(), SPEC_NONCE, SPEC_MESSAGE_B).expect("decrypt");
    assert_eq!(pt[..145], SPEC_PLAINTEXT.as_bytes()[..145]);
    let text = std::str::from_utf8(&pt).expect("utf8");
    assert!(
        text.contains(r"\u865b") && text.contains(r"http:\/\/"),
        "{text}"
    );
    let msg = obj(text);
    assert_eq!(msg["PrdtName"], "虛擬帳號訂單");
    assert_eq!(crypto::sign(&msg, SPEC_NONCE, &spec_hash()), SPEC_SIGN);
    assert_eq!(
        crypto::encrypt_message(&spec_hash(), SPEC_NONCE, &pt),
        SPEC_MESSAGE_B
    );
    assert_eq!(SPEC_MESSAGE_B.len(), 768);
}

#[test]
fn spec_example_envelope_opens() {
    let env = Envelope {
        version: "1.0.0".into(),
        shop_no: "BA0026_001".into(),
        api_service: "OrderCreate".into(),
        sign: SPEC_SIGN.into(),
        nonce: SPEC_NONCE.into(),
        message: SPEC_MESSAGE_A.into(),
    };
    let msg = envelope::open(&env, &spec_hash()).expect("open");
    assert_eq!(msg, obj(SPEC_PLAINTEXT));
    // The same envelope sealed by us is byte-identical.
    let sealed = envelope::seal(
        ApiService::OrderCreate,
        "BA0026_001",
        &spec_hash(),
        SPEC_NONCE,
        &msg,
    );
    assert_eq!(sealed, env);
}

#[test]
fn day7_envelope_decrypts_and_verifies() {
    let pt = crypto::decrypt_message(&demo_hash(), DAY7_NONCE, DAY7_MESSAGE).expect("decrypt");
    assert_eq!(DAY7_MESSAGE.len(), 1056);
    assert_eq!(pt.len(), 521);
    assert_eq!(
        hex::encode(Sha256::digest(&pt)),
        "d248e10d969c54a51c42f73fdd7ee01bcb532d5cf6102544985cc39e21387e27"
    );
    assert_eq!(
        crypto::encrypt_message(&demo_hash(), DAY7_NONCE, &pt),
        DAY7_MESSAGE
    );
    let env = Envelope {
        version: "1.0.0".into(),
        shop_no: "NA0249_001".into(),
        api_service: "OrderCreate".into(),
        sign: DAY7_SIGN.into(),
        nonce: DAY7_NONCE.into(),
        message: DAY7_MESSAGE.into(),
    };
    let msg = envelope::open(&env, &demo_hash()).expect("open");
    assert_eq!(crypto::sign_fields(&msg), DAY4_SIGN_FIELDS);
}

#[test]
fn simulator_side_reply_vector() {
    let msg = obj(SIM_REPLY_PLAINTEXT);
    assert_eq!(
        crypto::sign_fields(&msg),
        "Amount=40400&Description=S0000 – 處理成功&OrderNo=2021091500002&PayType=C&ShopNo=NA0249_001&Status=S&TSNo=NA024900000173"
    );
    assert_eq!(crypto::sign(&msg, DAY7_NONCE, &demo_hash()), SIM_REPLY_SIGN);
    let ct = crypto::encrypt_message(&demo_hash(), DAY7_NONCE, SIM_REPLY_PLAINTEXT.as_bytes());
    assert_eq!(ct.len(), 704);
    assert_eq!(ct, SIM_REPLY_MESSAGE);

    // And the client-side decoder accepts it as a whole reply body.
    let body = serde_json::json!({
        "Version": "1.0.0", "ShopNo": "NA0249_001", "APIService": "OrderCreate",
        "Sign": SIM_REPLY_SIGN, "Nonce": DAY7_NONCE, "Message": SIM_REPLY_MESSAGE,
    })
    .to_string();
    let reply = envelope::decode_response(body.as_bytes(), &demo_hash(), ApiService::OrderCreate)
        .expect("decode");
    let typed: OrderCreateResponse = serde_json::from_value(Value::Object(reply)).expect("typed");
    assert_eq!(typed.ts_no, "NA024900000173");
    assert_eq!(typed.amount.map(|a| a.wire_value()), Some(40400));
    assert!(typed
        .card_param
        .expect("card")
        .card_pay_url
        .contains("TD=NA024900000173"));
}
