//! The journal: consumes `ops.journal` (the spec's keys on `amq.topic`) and `ops.unrouted`
//! (everything `amq.topic` could not route) into the `journal` table, in batches: one
//! multi-row INSERT per batch, committed, then one `ack(multiple)` for the batch. A crash
//! between commit and ack redelivers the batch; the unique (routing key, message key) index
//! makes that a no-op. Nothing the journal does can slow a publisher: it has its own queue
//! (drop-head), and falling behind shows as that queue's depth and `ops_journal_lag_seconds`.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use deadpool_lapin::lapin::message::Delivery;
use deadpool_lapin::lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use deadpool_lapin::lapin::types::FieldTable;
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::amqp;
use crate::extract;
use crate::store::{self, NewJournalRow};

/// Where the journal reads from.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub amqp_url: String,
    /// The exchange the journal copies (`amq.topic`).
    pub exchange: String,
    /// The keys bound on it: the spec's 15 (not `#`, see the README: `#` would make every
    /// message routable, so the alternate exchange would never see one).
    pub keys: Vec<String>,
    pub journal_queue: String,
    /// The alternate exchange of `exchange` and the queue behind it.
    pub unrouted_exchange: String,
    pub unrouted_queue: String,
    pub prefetch: u16,
    /// Messages per INSERT.
    pub batch: usize,
    pub db_retry: Duration,
}

/// Which of the two queues a consumer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Journal,
    Unrouted,
}

/// Declares the ops queues and bindings (idempotent).
pub async fn declare(
    ch: &deadpool_lapin::lapin::Channel,
    cfg: &JournalConfig,
) -> anyhow::Result<()> {
    amqp::declare_queue(ch, &amqp::journal_queue(&cfg.journal_queue)).await?;
    for key in &cfg.keys {
        amqp::bind(ch, &cfg.journal_queue, &cfg.exchange, key).await?;
    }
    amqp::declare_fanout(ch, &cfg.unrouted_exchange).await?;
    amqp::declare_queue(ch, &amqp::unrouted_queue(&cfg.unrouted_queue)).await?;
    amqp::bind(ch, &cfg.unrouted_queue, &cfg.unrouted_exchange, "").await?;
    Ok(())
}

/// A delivery as a journal row.
pub fn row(d: &Delivery, via: Via, queue: &str) -> NewJournalRow {
    let p = &d.properties;
    let routing_key = d.routing_key.as_str().to_owned();
    let headers = p
        .headers()
        .as_ref()
        .map(amqp::table_json)
        .unwrap_or_else(|| serde_json::json!({}));
    let message_id = p.message_id().as_ref().map(|s| s.as_str().to_owned());
    let traceparent = amqp::traceparent(&headers);
    let subject = extract::subject(&routing_key, &d.data);
    NewJournalRow {
        via: queue.to_owned(),
        msg_key: extract::msg_key(message_id.as_deref(), &routing_key, &d.data),
        message_id,
        app_id: p.app_id().as_ref().map(|s| s.as_str().to_owned()),
        sent_at: p.timestamp().and_then(timestamp),
        correlation_id: p.correlation_id().as_ref().map(|s| s.as_str().to_owned()),
        trace_id: traceparent.as_deref().and_then(extract::trace_id),
        traceparent,
        headers,
        body_sha256: extract::body_sha256(&d.data),
        body: d.data.clone(),
        decoded: subject.decoded,
        decode_error: subject.decode_error.map(|e| e.replace('\0', "")),
        unrouted: via == Via::Unrouted,
        order_codes: subject.order_codes,
        refs: subject.refs,
        routing_key,
    }
}

/// AMQP timestamps are seconds; some publishers send milliseconds.
fn timestamp(t: u64) -> Option<DateTime<Utc>> {
    let secs = if t > 100_000_000_000 { t / 1000 } else { t };
    Utc.timestamp_opt(i64::try_from(secs).ok()?, 0).single()
}

/// Consumes one of the two queues until `shutdown`; returns an error on any broker failure
/// (the runtime restarts the task; unacked messages are redelivered and deduplicated).
pub async fn run(
    pool: PgPool,
    cfg: JournalConfig,
    via: Via,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let conn = amqp::connect(&cfg.amqp_url, Duration::from_secs(10)).await?;
    let ch = conn.create_channel().await?;
    declare(&ch, &cfg).await?;
    ch.basic_qos(cfg.prefetch, BasicQosOptions::default())
        .await?;
    let queue = match via {
        Via::Journal => cfg.journal_queue.clone(),
        Via::Unrouted => cfg.unrouted_queue.clone(),
    };
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            format!("ops.{}", uuid::Uuid::new_v4().simple())
                .as_str()
                .into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(%queue, "journal consuming");
    let result = loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        let Some(first) = first else {
            break Err(anyhow::anyhow!(
                "consumer of {queue} ended (queue deleted?)"
            ));
        };
        let mut batch = vec![first?];
        while batch.len() < cfg.batch {
            match consumer.next().now_or_never() {
                Some(Some(Ok(d))) => batch.push(d),
                Some(Some(Err(e))) => return Err(e.into()),
                _ => break,
            }
        }
        let span = tracing::info_span!("journal_batch", %queue, messages = batch.len());
        if let Err(e) = store_batch(&pool, &batch, via, &queue, &cfg, &shutdown)
            .instrument(span)
            .await
        {
            break Err(e);
        }
    };
    let _ = ch.close(200, "bye".into()).await;
    let _ = conn.close(200, "bye".into()).await;
    result
}

async fn store_batch(
    pool: &PgPool,
    batch: &[Delivery],
    via: Via,
    queue: &str,
    cfg: &JournalConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let rows: Vec<NewJournalRow> = batch.iter().map(|d| row(d, via, queue)).collect();
    // The database may be away: keep the batch unacked and retry (the broker holds the rest).
    let inserted = loop {
        let attempt = async {
            let mut tx = pool.begin().await?;
            let n = store::insert_journal(&mut tx, &rows).await?;
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(n)
        };
        match attempt.await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, "journal insert failed; retrying the batch");
                metrics::counter!("ops_journal_db_errors_total").increment(1);
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        return Err(anyhow::anyhow!("shutdown while the database was unavailable"));
                    }
                    _ = tokio::time::sleep(cfg.db_retry) => {}
                }
            }
        }
    };
    if let Some(last) = batch.last() {
        last.acker.ack(BasicAckOptions { multiple: true }).await?;
    }
    let via_label = match via {
        Via::Journal => "journal",
        Via::Unrouted => "unrouted",
    };
    metrics::counter!("ops_journal_messages_total", "via" => via_label).increment(inserted);
    let dups = rows.len() as u64 - inserted.min(rows.len() as u64);
    if dups > 0 {
        metrics::counter!("ops_journal_duplicates_total").increment(dups);
    }
    for r in &rows {
        if !r.decoded {
            metrics::counter!("ops_journal_undecodable_total", "via" => via_label).increment(1);
        }
        if via == Via::Unrouted {
            metrics::counter!("ops_unrouted_messages_total").increment(1);
            tracing::warn!(routing_key = %r.routing_key, message_id = ?r.message_id, "unrouted message captured");
        }
    }
    if let Some(sent) = rows.iter().filter_map(|r| r.sent_at).max() {
        let lag = (Utc::now() - sent).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::gauge!("ops_journal_lag_seconds", "via" => via_label).set(lag);
    }
    Ok(())
}

/// Deletes journal rows older than `retention` every `every`, in batches.
pub async fn retention(
    pool: PgPool,
    retention: Duration,
    every: Duration,
    batch: i64,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let before = Utc::now() - chrono::Duration::from_std(retention)?;
        let n = store::prune_journal(&pool, before, batch).await?;
        if n > 0 {
            tracing::info!(deleted = n, "journal retention");
            metrics::counter!("ops_journal_pruned_total").increment(n);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}
