//! Generated inputs: the streaming limit, the HMAC check, and arbitrary signed bodies against
//! the running server (never a 5xx, always a JSON reply).

use bytes::Bytes;
use orderbus_ingress::body::{collect_limited, BodyError};
use orderbus_ingress::{HmacSha256Verifier, IngressConfig, SignatureEncoding};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{hmac_app, post_signed};

proptest! {
    #[test]
    fn streamed_limit_accepts_exactly_the_bodies_within_it(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..20),
        limit in 0usize..700,
    ) {
        let total: Vec<u8> = chunks.concat();
        let stream = futures::stream::iter(
            chunks.iter().cloned().map(|c| Ok::<_, axum::Error>(Bytes::from(c))),
        );
        match futures::executor::block_on(collect_limited(stream, limit)) {
            Ok(body) => {
                prop_assert!(total.len() <= limit);
                prop_assert_eq!(&body[..], &total[..]);
            }
            Err(BodyError::TooLarge { seen, head, .. }) => {
                prop_assert!(total.len() > limit);
                // Reading stopped at the first chunk past the limit.
                prop_assert!(head.len() > limit && head.len() < limit + 64);
                prop_assert_eq!(seen as usize, head.len());
                prop_assert_eq!(&head[..], &total[..head.len()]);
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn hmac_accepts_its_own_signature_and_nothing_else(
        secret in prop::collection::vec(any::<u8>(), 0..80),
        body in prop::collection::vec(any::<u8>(), 0..200),
        flip in any::<prop::sample::Index>(),
        garbage in ".{0,100}",
        base64 in any::<bool>(),
    ) {
        let verifier = HmacSha256Verifier::new("x-sig", secret).encoding(if base64 {
            SignatureEncoding::Base64
        } else {
            SignatureEncoding::Hex
        });
        let signature = verifier.sign(&body);
        prop_assert!(verifier.check(&signature, &body).is_ok());
        if !body.is_empty() {
            let mut tampered = body.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= 0x01;
            prop_assert!(verifier.check(&signature, &tampered).is_err());
        }
        if garbage != signature {
            prop_assert!(verifier.check(&garbage, &body).is_err());
        }
    }
}

#[test]
fn arbitrary_signed_bodies_never_cause_a_5xx() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let app = rt.block_on(hmac_app(IngressConfig::default()))?;
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let bodies = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        ("[a-zA-Z0-9 -]{0,40}", any::<bool>(), 0u64..3).prop_map(|(order, refuse, hold)| {
            serde_json::to_vec(
                &serde_json::json!({"order": order, "refuse": refuse, "hold_ms": hold}),
            )
            .unwrap_or_default()
        }),
    ];
    runner
        .run(&bodies, |body| {
            let (status, reply) = rt
                .block_on(async {
                    let resp = post_signed(&app, &body, None).await?;
                    let status = resp.status().as_u16();
                    let bytes = resp.bytes().await?;
                    anyhow::Ok((status, serde_json::from_slice::<serde_json::Value>(&bytes)))
                })
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(status == 200 || status == 400, "status {status}");
            prop_assert!(reply.is_ok(), "reply is not JSON");
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Dropping the app needs the runtime for the server task.
    rt.block_on(async { drop(app) });
    Ok(())
}
