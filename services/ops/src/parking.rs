//! Parking across services: every `<service>.parking` queue is taken into the `parked` table
//! (stored, then acked), where it can be selected, grouped, replayed and purged; and the
//! replay engine, which re-sends through the service's own retry path.
//!
//! **Replay path.** A replayed message is published to the service's shortest retry-tier
//! exchange `<service>.retry.<delay>` with the work queue's name as routing key; when its TTL
//! expires the broker dead-letters it into exactly that work queue (the bus's retry
//! mechanism). Never to `amq.topic` (that would reach every subscriber again) and never to
//! the default exchange (the least-privilege users may not write to it). The copy carries the
//! original `message_id`: if the original had been applied after all, the consumer's inbox
//! (consumer, message id) absorbs the copy, so a replay cannot double an effect.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use deadpool_lapin::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use deadpool_lapin::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use deadpool_lapin::lapin::BasicProperties;
use futures::StreamExt;
use orderbus_bus::names::{
    HEADER_ATTEMPT, HEADER_PARKED_AT, HEADER_PARK_ATTEMPTS, HEADER_PARK_QUEUE, HEADER_PARK_REASON,
    HEADER_RETRY_REASON, HEADER_ROUTING_KEY,
};
use orderbus_bus::Publisher;
use orderbus_contracts::RoutingKey;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::amqp;
use crate::extract;
use crate::store::{self, NewParked, PendingItem};

/// Header the ops service adds to a replayed copy: the audit row it belongs to.
pub const HEADER_REPLAY: &str = "x-orderbus-replay";

/// The class of a park reason, for grouping and selecting.
pub fn reason_class(reason: &str, routing_key: &str, dead_lettered: Option<&str>) -> &'static str {
    if let Some(why) = dead_lettered {
        if why == "delivery_limit" {
            return "delivery_limit";
        }
    }
    let r = reason.trim_start();
    if r.starts_with("retries exhausted") {
        "retries_exhausted"
    } else if r.starts_with("inbox:") {
        "inbox"
    } else if r.contains("SQLSTATE") || r.starts_with("database") || r.starts_with("commit:") {
        "database"
    } else if r.contains("panic") {
        "panic"
    } else if !routing_key.is_empty() && r.starts_with(&format!("{routing_key}:"))
        || RoutingKey::from_str(r.split(':').next().unwrap_or_default()).is_ok()
    {
        // The contracts' decode errors read `<routing key>: <field>: <what>`.
        "decode"
    } else {
        "handler"
    }
}

fn death(headers: &Value) -> Option<&Value> {
    headers.get("x-death")?.as_array()?.first()
}

fn death_time(d: &Value) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(d.get("time")?.as_i64()?, 0).single()
}

/// A message received from `<service>.parking` as a `parked` row.
pub fn parked_row(
    service: &str,
    delivery_routing_key: &str,
    props: &BasicProperties,
    body: &[u8],
) -> NewParked {
    let headers = props
        .headers()
        .as_ref()
        .map(amqp::table_json)
        .unwrap_or_else(|| serde_json::json!({}));
    let first_death = death(&headers).cloned();
    let dead_reason = first_death
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let routing_key = amqp::header_text(&headers, HEADER_ROUTING_KEY)
        .or_else(|| {
            first_death
                .as_ref()
                .and_then(|d| d.get("routing-keys"))
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| delivery_routing_key.to_owned());
    let work_queue = amqp::header_text(&headers, HEADER_PARK_QUEUE)
        .or_else(|| {
            first_death
                .as_ref()
                .and_then(|d| d.get("queue"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| orderbus_bus::names::work_queue(service, &routing_key));
    let reason =
        amqp::header_text(&headers, HEADER_PARK_REASON).unwrap_or_else(|| {
            match dead_reason.as_deref() {
                Some("delivery_limit") => format!(
                    "delivery limit exceeded in {work_queue}: redelivered too often (a consumer \
                 crashed or lost its channel while holding it)"
                ),
                Some(other) => format!("dead-lettered from {work_queue}: {other}"),
                None => "no park reason recorded".to_owned(),
            }
        });
    let parked_at_text = amqp::header_text(&headers, HEADER_PARKED_AT);
    let parked_at = parked_at_text
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| first_death.as_ref().and_then(death_time))
        .unwrap_or_else(Utc::now);
    let park_key = parked_at_text.unwrap_or_else(|| {
        first_death
            .as_ref()
            .map(|d| {
                format!(
                    "x-death:{}:{}",
                    d.get("time").and_then(Value::as_i64).unwrap_or_default(),
                    d.get("count").and_then(Value::as_i64).unwrap_or_default()
                )
            })
            .unwrap_or_default()
    });
    let message_id = props.message_id().as_ref().map(|s| s.as_str().to_owned());
    let attempts =
        amqp::header_text(&headers, HEADER_PARK_ATTEMPTS).and_then(|a| a.parse::<i32>().ok());
    let subject = extract::subject(&routing_key, body);
    let class = reason_class(&reason, &routing_key, dead_reason.as_deref());
    NewParked {
        service: service.to_owned(),
        work_queue,
        msg_key: extract::msg_key(message_id.as_deref(), &routing_key, body),
        message_id,
        park_key,
        reason: reason.replace('\0', ""),
        reason_class: class.to_owned(),
        attempts,
        parked_at,
        properties: amqp::properties_json(props),
        trace_id: amqp::traceparent(&headers)
            .as_deref()
            .and_then(extract::trace_id),
        headers,
        body: body.to_vec(),
        order_codes: subject.order_codes,
        routing_key,
    }
}

/// Takes `<service>.parking` into the database until `shutdown`. The queue is the service's
/// (ops may only read it): while it does not exist yet this waits and looks again.
pub async fn intake(
    pool: PgPool,
    amqp_url: String,
    service: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let queue = orderbus_bus::names::parking_queue(&service);
    loop {
        let conn = amqp::connect(&amqp_url, Duration::from_secs(10)).await?;
        let ch = conn.create_channel().await?;
        let exists = ch
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        if exists.is_err() {
            let _ = conn.close(200, "bye".into()).await;
            tracing::debug!(%queue, "parking queue does not exist (yet); looking again later");
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(10)) => continue,
            }
        }
        ch.basic_qos(50, BasicQosOptions::default()).await?;
        let mut consumer = ch
            .basic_consume(
                queue.as_str().into(),
                format!("ops.parking.{}", uuid::Uuid::new_v4().simple())
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(%queue, "taking in parked messages");
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = ch.close(200, "bye".into()).await;
                    let _ = conn.close(200, "bye".into()).await;
                    return Ok(());
                }
                next = consumer.next() => next,
            };
            let Some(d) = next else {
                anyhow::bail!("consumer of {queue} ended");
            };
            let d = d?;
            let row = parked_row(&service, d.routing_key.as_str(), &d.properties, &d.data);
            let span = tracing::info_span!("parked_intake", %queue, routing_key = %row.routing_key, message_id = ?row.message_id);
            let _g = span.enter();
            loop {
                let stored = async {
                    let mut tx = pool.begin().await?;
                    let new = store::insert_parked(&mut tx, &row).await?;
                    tx.commit().await?;
                    Ok::<bool, sqlx::Error>(new)
                }
                .await;
                match stored {
                    Ok(new) => {
                        if new {
                            tracing::info!(reason = %row.reason, class = %row.reason_class, "parked message stored");
                            metrics::counter!("ops_parked_ingested_total", "service" => service.clone(), "class" => row.reason_class.clone()).increment(1);
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "storing a parked message failed; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
            d.acker.ack(BasicAckOptions::default()).await?;
        }
    }
}

/// How replays reach a service's work queue.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub amqp_url: String,
    /// The retry tier used as the way back (`5s` = `<service>.retry.5s`), per service with
    /// a default.
    pub tier: String,
    pub tier_overrides: HashMap<String, String>,
    pub default_rate: f64,
}

impl ReplayConfig {
    pub fn tier_exchange(&self, service: &str) -> String {
        let tier = self.tier_overrides.get(service).unwrap_or(&self.tier);
        format!("{service}.retry.{tier}")
    }
}

/// Bookkeeping headers a replayed copy must not carry.
fn drop_header(name: &str) -> bool {
    name == "x-death"
        || name.starts_with("x-first-death")
        || name.starts_with("x-last-death")
        || name == "x-delivery-count"
        || name.starts_with("x-orderbus-park")
        || name == HEADER_PARKED_AT
        || name == HEADER_RETRY_REASON
        || name == HEADER_ATTEMPT
        || name == HEADER_ROUTING_KEY
        || name == HEADER_REPLAY
}

/// The properties of the copy: the original's, the original message id (the inbox makes a
/// duplicate harmless), attempt 1, the original routing key, and the audit id.
pub fn replay_properties(item: &PendingItem, audit_id: i64, message_id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Value::Object(m) = &item.headers {
        for (k, v) in m {
            if !drop_header(k) && k.len() <= 255 {
                headers.insert(ShortString::from(k.as_str()), amqp::json_value(v));
            }
        }
    }
    let s = |v: &str| AMQPValue::LongString(LongString::from(v));
    headers.insert(ShortString::from(HEADER_ATTEMPT), s("1"));
    headers.insert(ShortString::from(HEADER_ROUTING_KEY), s(&item.routing_key));
    headers.insert(ShortString::from(HEADER_REPLAY), s(&audit_id.to_string()));
    let p = item.properties.clone().unwrap_or(Value::Null);
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(message_id))
        .with_content_type(ShortString::from(
            text("content_type")
                .unwrap_or_else(|| "application/json".into())
                .as_str(),
        ))
        .with_headers(headers);
    if let Some(app) = text("app_id") {
        props = props.with_app_id(ShortString::from(app.as_str()));
    }
    if let Some(c) = text("correlation_id") {
        props = props.with_correlation_id(ShortString::from(c.as_str()));
    }
    if let Some(ts) = p.get("timestamp").and_then(Value::as_u64) {
        props = props.with_timestamp(ts);
    }
    props
}

/// Replays and re-drives running in this process, by audit id (to stop them).
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<HashMap<i64, CancellationToken>>>);

impl Running {
    pub fn start(&self, id: i64, parent: &CancellationToken) -> Option<CancellationToken> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(&id) {
            return None;
        }
        let token = parent.child_token();
        map.insert(id, token.clone());
        Some(token)
    }
    pub fn stop(&self, id: i64) -> bool {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }
    fn finished(&self, id: i64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// Sends the unsent items of audit `audit_id` (a replay from parking or a re-drive from the
/// journal) at `rate` messages per second, each confirmed before it is recorded as sent.
/// Cancelling stops between two messages and leaves the audit `interrupted`; running it again
/// resumes with the first unsent item. A stop between the confirm and the record sends that
/// message once more on resume, with the same message id: the consumer's inbox absorbs it.
pub async fn run_replay(
    pool: &PgPool,
    cfg: &ReplayConfig,
    audit_id: i64,
    rate: f64,
    cancel: CancellationToken,
) -> anyhow::Result<u64> {
    let audit = store::audit(pool, audit_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no audit {audit_id}"))?;
    let redrive = audit.action == "redrive";
    let fresh_ids = audit
        .selector
        .get("fresh_ids")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    store::set_audit_state(pool, audit_id, "running").await?;
    let conn = amqp::connect(&cfg.amqp_url, Duration::from_secs(10)).await?;
    let publisher = Publisher::open(&conn, "ops", Duration::from_secs(10)).await?;
    let period = Duration::from_secs_f64(1.0 / rate.clamp(0.1, 10_000.0));
    let mut tick = tokio::time::interval(period);
    let mut sent = 0u64;
    let outcome: anyhow::Result<()> = async {
        loop {
            let items = if redrive {
                store::pending_redrive_items(pool, audit_id, 100).await?
            } else {
                store::pending_replay_items(pool, audit_id, 100).await?
            };
            if items.is_empty() {
                return Ok(());
            }
            for item in items {
                tokio::select! {
                    _ = cancel.cancelled() => anyhow::bail!("stopped"),
                    _ = tick.tick() => {}
                }
                let exchange = cfg.tier_exchange(&item.service);
                let work_queue = item
                    .work_queue
                    .clone()
                    .unwrap_or_else(|| orderbus_bus::names::work_queue(&item.service, &item.routing_key));
                let message_id = match (&item.message_id, fresh_ids) {
                    (Some(id), false) => id.clone(),
                    _ => uuid::Uuid::new_v4().to_string(),
                };
                let props = replay_properties(&item, audit_id, &message_id);
                publisher
                    .publish_raw(&exchange, &work_queue, &item.body, props)
                    .await
                    .map_err(|e| anyhow::anyhow!("publishing to {exchange} (for {work_queue}): {e}"))?;
                store::mark_item_sent(
                    pool,
                    audit_id,
                    item.seq,
                    &message_id,
                    (!redrive).then_some(item.source_id),
                )
                .await?;
                sent += 1;
                metrics::counter!("ops_replayed_total", "service" => item.service.clone()).increment(1);
                tracing::info!(audit_id, seq = item.seq, service = %item.service, %work_queue, %message_id, "replayed");
            }
        }
    }
    .await;
    publisher.close().await;
    let _ = conn.close(200, "bye".into()).await;
    match outcome {
        Ok(()) => {
            store::set_audit_state(pool, audit_id, "done").await?;
            Ok(sent)
        }
        Err(e) => {
            store::set_audit_state(pool, audit_id, "interrupted").await?;
            tracing::warn!(audit_id, sent, error = %e, "replay interrupted");
            Err(e)
        }
    }
}

/// Runs a replay in the background of the service (one per audit at a time).
pub fn spawn_replay(
    pool: PgPool,
    cfg: ReplayConfig,
    running: Running,
    audit_id: i64,
    rate: f64,
    parent: &CancellationToken,
) -> bool {
    let Some(token) = running.start(audit_id, parent) else {
        return false;
    };
    tokio::spawn(async move {
        let span = tracing::info_span!("replay", audit_id);
        let _ =
            tracing::Instrument::instrument(run_replay(&pool, &cfg, audit_id, rate, token), span)
                .await;
        running.finished(audit_id);
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(
            reason_class("retries exhausted after 3 attempts: x", "k", None),
            "retries_exhausted"
        );
        assert_eq!(
            reason_class(
                "order.erpstatus: status: unknown variant",
                "order.erpstatus",
                None
            ),
            "decode"
        );
        assert_eq!(
            reason_class("database: SQLSTATE 23505 on constraint x", "k", None),
            "database"
        );
        assert_eq!(
            reason_class("whatever", "k", Some("delivery_limit")),
            "delivery_limit"
        );
        assert_eq!(
            reason_class("order 5 unknown", "order.payment", None),
            "handler"
        );
    }
}
