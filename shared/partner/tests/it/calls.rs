//! The call log with the SweetTracker client: success, business refusal, timeout, connection
//! refused, 5xx, 4xx; the trace id; retention.

use std::time::Duration;

use orderbus_bus::trace::in_context;
use orderbus_bus::TraceContext;
use orderbus_partner::{prune_calls, CallRecord};
use orderbus_sweettracker::{
    AddInvoice, CallbackType, Carrier, Client, ClientConfig, Faults, SimConfig, Simulator,
};

use crate::common::{call_log, closed_port, serve, stub};

fn client(base_url: String) -> anyhow::Result<Client> {
    Ok(Client::new(ClientConfig {
        base_url,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(300),
        ..ClientConfig::dev()
    })?)
}

fn invoice(num: &str) -> AddInvoice {
    AddInvoice {
        num: num.into(),
        carrier: Carrier::CjLogistics,
        fid: "OS02:OB-1".into(),
        callback_url: "http://127.0.0.1:9/unused".into(),
        callback_type: CallbackType::Json,
    }
}

/// Registers `num` at `base_url` for order `order` through the recorder; returns the stored row.
async fn register(base_url: String, num: &str, order: &str) -> anyhow::Result<CallRecord> {
    let (_db, calls) = call_log().await?;
    let client = client(base_url)?;
    let req = invoice(num);
    let _ = calls
        .record("sweettracker", "add_invoice", Some(order), || {
            client.add_invoice(&req)
        })
        .await;
    let mut rows = calls.for_order(order).await?;
    anyhow::ensure!(rows.len() == 1, "one row expected, got {rows:?}");
    Ok(rows.remove(0))
}

async fn simulator() -> anyhow::Result<crate::common::Server> {
    let sim = Simulator::new(SimConfig {
        faults: Faults {
            silence: true,
            ..Faults::default()
        },
        ..SimConfig::default()
    });
    serve(sim.router()).await
}

#[tokio::test]
async fn successful_call_is_recorded_for_its_order_with_the_trace_id() -> anyhow::Result<()> {
    let sim = simulator().await?;
    let (_db, calls) = call_log().await?;
    let client = client(sim.url("/"))?;
    let trace = TraceContext::new_root();
    let req = invoice("1000000001");
    let ack = in_context(
        trace.clone(),
        calls.record("sweettracker", "add_invoice", Some("OB-1"), || {
            client.add_invoice(&req)
        }),
    )
    .await?;
    assert_eq!(ack.num.as_deref(), Some("1000000001"));
    let rows = calls.for_order("OB-1").await?;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.partner, "sweettracker");
    assert_eq!(row.operation, "add_invoice");
    assert_eq!(row.outcome, "ok");
    assert_eq!(row.error_class, None);
    assert_eq!(row.error, None);
    assert_eq!(row.trace_id.as_deref(), Some(trace.trace_id()));
    assert!(row.started_at <= chrono::Utc::now());
    Ok(())
}

#[tokio::test]
async fn business_refusal_is_recorded_as_rejected() -> anyhow::Result<()> {
    let sim = simulator().await?;
    let row = register(sim.url("/"), "12", "OB-2").await?;
    assert_eq!(row.outcome, "error");
    assert_eq!(row.error_class.as_deref(), Some("rejected"));
    assert!(row.error.as_deref().unwrap_or("").contains("02"));
    Ok(())
}

#[tokio::test]
async fn timeout_is_recorded_as_timeout() -> anyhow::Result<()> {
    let stub = stub().await?;
    let row = register(stub.url("/slow"), "1000000001", "OB-3").await?;
    assert_eq!(row.error_class.as_deref(), Some("timeout"), "{row:?}");
    assert!(row.duration >= Duration::from_millis(300));
    Ok(())
}

#[tokio::test]
async fn refused_connection_is_recorded_as_connect() -> anyhow::Result<()> {
    let addr = closed_port().await?;
    let row = register(format!("http://{addr}/"), "1000000001", "OB-4").await?;
    assert_eq!(row.error_class.as_deref(), Some("connect"), "{row:?}");
    assert_eq!(row.http_status, None);
    Ok(())
}

#[tokio::test]
async fn server_error_is_recorded_as_http_5xx_with_its_status() -> anyhow::Result<()> {
    let stub = stub().await?;
    let row = register(stub.url("/broken"), "1000000001", "OB-5").await?;
    assert_eq!(row.error_class.as_deref(), Some("http_5xx"), "{row:?}");
    assert_eq!(row.http_status, Some(500));
    Ok(())
}

#[tokio::test]
async fn missing_route_is_recorded_as_http_4xx() -> anyhow::Result<()> {
    let stub = stub().await?;
    let row = register(stub.url("/nowhere"), "1000000001", "OB-6").await?;
    assert_eq!(row.error_class.as_deref(), Some("http_4xx"), "{row:?}");
    assert_eq!(row.http_status, Some(404));
    Ok(())
}

#[tokio::test]
async fn retention_prunes_old_calls_in_batches() -> anyhow::Result<()> {
    let sim = simulator().await?;
    let (db, calls) = call_log().await?;
    let client = client(sim.url("/"))?;
    for i in 0..5 {
        let req = invoice(&format!("100000000{i}"));
        calls
            .record("sweettracker", "add_invoice", Some("OB-7"), || {
                client.add_invoice(&req)
            })
            .await?;
    }
    sqlx::query(
        "UPDATE partner_calls SET started_at = now() - interval '100 days' \
         WHERE id IN (SELECT id FROM partner_calls ORDER BY id LIMIT 3)",
    )
    .execute(db.pool())
    .await?;
    let ninety_days = Duration::from_secs(90 * 24 * 3600);
    assert_eq!(prune_calls(db.pool(), ninety_days, 2).await?, 3);
    assert_eq!(calls.for_order("OB-7").await?.len(), 2);
    assert_eq!(prune_calls(db.pool(), ninety_days, 2).await?, 0);
    Ok(())
}
