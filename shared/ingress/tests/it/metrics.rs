//! Metrics per partner: requests by verdict and outcome, duplicates, latency.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::CompositeKey;
use orderbus_ingress::{metrics as names, IngressConfig};

use crate::common::{hmac_app, post_signed};

/// The value of the metric `name` whose labels include all of `labels`.
fn value<'a, U, D>(
    snapshot: &'a [(CompositeKey, U, D, DebugValue)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(key, _, _, _)| {
            let key = key.key();
            key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(_, _, _, v)| v)
}

#[tokio::test]
async fn requests_verdicts_duplicates_and_latency_are_counted_per_partner() -> anyhow::Result<()> {
    // This test binary's only recorder; nextest runs every test in its own process.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .map_err(|_| anyhow::anyhow!("a metrics recorder is already installed"))?;
    let app = hmac_app(IngressConfig::default()).await?;
    let body = br#"{"order":"OB-M"}"#;
    post_signed(&app, body, Some("evt-m")).await?;
    post_signed(&app, body, Some("evt-m")).await?;
    app.http
        .post(app.url("/webhooks/acme"))
        .body(body.to_vec())
        .send()
        .await?;
    let snapshot = snapshotter.snapshot().into_vec();
    let acme = ("partner", "acme");
    assert_eq!(
        value(
            &snapshot,
            names::REQUESTS,
            &[acme, ("verification", "passed"), ("outcome", "accepted")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value(
            &snapshot,
            names::REQUESTS,
            &[acme, ("verification", "passed"), ("outcome", "replayed")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value(
            &snapshot,
            names::REQUESTS,
            &[acme, ("verification", "missing"), ("outcome", "rejected")]
        ),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value(&snapshot, names::DUPLICATES, &[acme]),
        Some(&DebugValue::Counter(1))
    );
    match value(&snapshot, names::DURATION, &[acme, ("outcome", "accepted")]) {
        Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 1),
        other => anyhow::bail!("no latency histogram: {other:?}"),
    }
    Ok(())
}
