//! Ingest throughput (a measurement, run on demand: `cargo nextest run -p orderbus-ingress
//! --run-ignored only throughput`). It prints requests per second for distinct signed
//! webhooks, each applied (business row + outbox row + dedupe row + log row) and answered.

use std::time::Instant;

use futures::stream::{self, StreamExt};
use orderbus_ingress::IngressConfig;

use crate::common::{hmac_app, post_signed};

const REQUESTS: usize = 1000;
const CONCURRENCY: usize = 16;

#[tokio::test]
#[ignore = "a measurement, not a check; run on demand"]
async fn throughput_of_distinct_signed_webhooks() -> anyhow::Result<()> {
    let app = hmac_app(IngressConfig::default()).await?;
    let started = Instant::now();
    let statuses: Vec<u16> = stream::iter(0..REQUESTS)
        .map(|i| {
            let app = &app;
            async move {
                let body = format!(r#"{{"order":"OB-T{i}"}}"#);
                let resp = post_signed(app, body.as_bytes(), Some(&format!("evt-t{i}"))).await?;
                anyhow::Ok(resp.status().as_u16())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let took = started.elapsed();
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(app.effects().await?, REQUESTS as i64);
    assert_eq!(app.log_rows().await?, REQUESTS as i64);
    println!(
        "{REQUESTS} webhooks, {CONCURRENCY} concurrent: {:.0} requests/s ({:.1} ms each on average)",
        REQUESTS as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / REQUESTS as f64 * CONCURRENCY as f64
    );
    Ok(())
}
