//! Metrics per partner and operation: calls by outcome and class, duration histogram.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use orderbus_partner::{http_client, metrics as names, HttpClientConfig};

use crate::common::{call_log, stub};

#[tokio::test]
async fn calls_are_counted_by_outcome_and_class_with_a_duration() -> anyhow::Result<()> {
    // This test binary's only recorder; nextest runs every test in its own process.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .map_err(|_| anyhow::anyhow!("a metrics recorder is already installed"))?;
    let stub = stub().await?;
    let (_db, calls) = call_log().await?;
    let http = http_client(&HttpClientConfig::new("svc-test"))?;
    for path in ["/ua", "/broken/add_invoice"] {
        let url = stub.url(path);
        let _ = calls
            .record("stub", "fetch", Some("OB-M"), || async {
                http.get(&url).send().await?.error_for_status()
            })
            .await;
    }
    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str, labels: &[(&str, &str)]| {
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
    };
    let base = [("partner", "stub"), ("operation", "fetch")];
    assert_eq!(
        find(
            names::CALLS,
            &[base[0], base[1], ("outcome", "ok"), ("class", "none")]
        ),
        Some(&DebugValue::Counter(1))
    );
    // GET on a POST-only route: 405, a 4xx.
    assert_eq!(
        find(
            names::CALLS,
            &[
                base[0],
                base[1],
                ("outcome", "error"),
                ("class", "http_4xx")
            ]
        ),
        Some(&DebugValue::Counter(1))
    );
    match find(names::DURATION, &base) {
        Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 2),
        other => anyhow::bail!("no duration histogram: {other:?}"),
    }
    Ok(())
}
