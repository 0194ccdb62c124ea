//! Trace context: the handler runs in the incoming message's trace, so every outbox row it
//! writes continues that trace.

use std::sync::Arc;
use std::time::Duration;

use deadpool_lapin::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use orderbus_bus::{Delivery, Handler, HandlerFuture, Outbox, TraceContext, TRACEPARENT};
use orderbus_testkit::{amqp_url, erp_properties, ErpPublisher};
use sqlx::PgConnection;

use crate::common::*;

/// Enqueues one follow-up per message with `Outbox::enqueue`, which takes no trace argument:
/// the trace can only come from the context the consumer runs the handler in.
struct Forwards {
    out_key: String,
}

impl Handler for Forwards {
    fn handle<'a>(&'a self, d: &'a Delivery, conn: &'a mut PgConnection) -> HandlerFuture<'a> {
        Box::pin(async move {
            let msg: TestMsg = d.json()?;
            Outbox::new().enqueue(conn, &self.out_key, &msg).await?;
            Ok(())
        })
    }
}

async fn outbox_traceparents(world: &World) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT convert_from(body, 'UTF8')::jsonb->>'key', headers->>'traceparent' \
         FROM orderbus_outbox ORDER BY id",
    )
    .fetch_all(world.pool())
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_continue_the_incoming_trace() -> TestResult {
    let world = World::new().await?;
    let key = world.key("traced");
    let handler = Forwards {
        out_key: world.key("traced.out"),
    };
    let topo = topology(&world, &key, |s| s.batch(5), Arc::new(handler));
    let _cleanup = Cleanup::of(&topo);
    let running = spawn_consumers(topo, world.pool().clone(), &amqp_url());
    running.wait_ready(Duration::from_secs(10)).await?;

    let incoming = TraceContext::new_root();
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from(TRACEPARENT),
        AMQPValue::LongString(LongString::from(incoming.traceparent().as_str())),
    );
    let erp = ErpPublisher::connect().await?;
    erp.publish_with(
        &key,
        &body("with-trace"),
        erp_properties().with_headers(headers),
    )
    .await?;
    erp.publish(&key, &body("without-trace-1")).await?;
    erp.publish(&key, &body("without-trace-2")).await?;
    let rows = wait_until(Duration::from_secs(15), || async {
        let rows = outbox_traceparents(&world).await.ok()?;
        (rows.len() >= 3).then_some(rows)
    })
    .await
    .ok_or("the handler wrote no outbox rows")?;
    running.stop().await;

    let trace_of = |wanted: &str| -> Result<TraceContext, String> {
        let (_, tp) = rows
            .iter()
            .find(|(k, _)| k == wanted)
            .ok_or_else(|| format!("no row for {wanted}: {rows:?}"))?;
        TraceContext::from_traceparent(tp).ok_or_else(|| format!("invalid traceparent {tp}"))
    };
    let continued = trace_of("with-trace")?;
    assert_eq!(continued.trace_id(), incoming.trace_id(), "same trace");
    assert_ne!(continued.span_id(), incoming.span_id(), "a new span in it");
    // Without an incoming traceparent each message starts its own trace.
    let (a, b) = (trace_of("without-trace-1")?, trace_of("without-trace-2")?);
    assert_ne!(a.trace_id(), b.trace_id());
    assert_ne!(a.trace_id(), incoming.trace_id());
    Ok(())
}
