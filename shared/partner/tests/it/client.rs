//! The shared reqwest client: user agent, no redirects, and reqwest errors classified.

use orderbus_partner::{http_client, HttpClientConfig};

use crate::common::{call_log, stub};

#[tokio::test]
async fn client_sends_the_orderbus_user_agent() -> anyhow::Result<()> {
    let stub = stub().await?;
    let http = http_client(&HttpClientConfig::new("svc-test"))?;
    let ua = http.get(stub.url("/ua")).send().await?.text().await?;
    assert_eq!(
        ua,
        format!("orderbus/{} (svc-test)", env!("CARGO_PKG_VERSION"))
    );
    Ok(())
}

#[tokio::test]
async fn client_does_not_follow_redirects() -> anyhow::Result<()> {
    let stub = stub().await?;
    let http = http_client(&HttpClientConfig::new("svc-test"))?;
    let resp = http.get(stub.url("/redirect")).send().await?;
    assert_eq!(resp.status().as_u16(), 307);
    Ok(())
}

#[tokio::test]
async fn raw_reqwest_calls_are_classified_too() -> anyhow::Result<()> {
    let stub = stub().await?;
    let (_db, calls) = call_log().await?;
    let http = http_client(&HttpClientConfig::new("svc-test"))?;
    let url = stub.url("/broken/add_invoice");
    let result = calls
        .record("stub", "post", Some("OB-R"), || async {
            http.post(&url).send().await?.error_for_status()
        })
        .await;
    assert!(result.is_err());
    let rows = calls.for_order("OB-R").await?;
    assert_eq!(rows[0].error_class.as_deref(), Some("http_5xx"));
    assert_eq!(rows[0].http_status, Some(500));
    Ok(())
}
