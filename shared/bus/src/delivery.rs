//! What a handler sees of a delivery, read from the AMQP message.

use deadpool_lapin::lapin::{
    message::Delivery as RawDelivery,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::HandlerError;
use crate::names::{BUS_HEADER_PREFIX, DEFAULT_EXCHANGE, HEADER_ATTEMPT, HEADER_ROUTING_KEY};
use crate::publish::OutgoingMessage;
use crate::trace::{TraceContext, TRACEPARENT};

/// What a handler sees of a delivery.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The original routing key (also for retried messages).
    pub routing_key: String,
    /// The work queue it was consumed from.
    pub queue: String,
    pub body: Vec<u8>,
    /// AMQP `message_id`, or `sha256:<hex>` of routing key + body when the publisher set none.
    pub message_id: String,
    pub redelivered: bool,
    /// 1 for the first delivery, n + 1 after n retries.
    pub attempt: u32,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    pub(crate) headers: FieldTable,
    /// This message's place in its trace: a child of the incoming `traceparent`, or a new root.
    trace: TraceContext,
}

impl Delivery {
    /// Builds a delivery for tests or for custom adapters.
    pub fn new(routing_key: impl Into<String>, queue: impl Into<String>, body: Vec<u8>) -> Self {
        let routing_key = routing_key.into();
        let message_id = hash_id(&routing_key, &body);
        Self {
            routing_key,
            queue: queue.into(),
            body,
            message_id,
            redelivered: false,
            attempt: 1,
            correlation_id: None,
            traceparent: None,
            headers: FieldTable::default(),
            trace: TraceContext::new_root(),
        }
    }

    /// Reads a delivery from `queue`. The bus's own `x-orderbus-*` headers (attempt, original
    /// routing key, reasons) are kept only when the message came back from one of
    /// `retry_tiers` (the tier queue names); on anything else — above all a message a
    /// publisher sent to `amq.topic` — they are dropped, so a publisher can neither skip the
    /// retry tiers (`x-orderbus-attempt: 4`) nor make a handler see another routing key.
    ///
    /// A shard queue (`sharded`) also trusts what came through its own fanout exchange, named
    /// like the queue: only the service's sequencer publishes there, after dropping the
    /// publisher's `x-orderbus-*` headers and recording the original routing key.
    pub(crate) fn from_raw(
        raw: &RawDelivery,
        queue: &str,
        retry_tiers: &[String],
        sharded: bool,
    ) -> Self {
        let mut headers = raw.properties.headers().clone().unwrap_or_default();
        let from_sequencer = sharded && raw.exchange.as_str() == queue;
        if !from_sequencer && !returned_from_retry_tier(raw, &headers, retry_tiers) {
            let (kept, dropped) = without_bus_headers(&headers);
            if dropped > 0 {
                tracing::debug!(queue, exchange = %raw.exchange, dropped, "ignored x-orderbus-* headers set by a publisher");
                metrics::counter!("orderbus_untrusted_headers_ignored_total", "queue" => queue.to_owned())
                    .increment(1);
            }
            headers = kept;
        }
        let routing_key = header_string(&headers, HEADER_ROUTING_KEY)
            .unwrap_or_else(|| raw.routing_key.as_str().to_owned());
        let message_id = raw
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| hash_id(&routing_key, &raw.data));
        let traceparent = header_string(&headers, TRACEPARENT);
        let trace = traceparent
            .as_deref()
            .and_then(TraceContext::from_traceparent)
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        let attempt = header_string(&headers, HEADER_ATTEMPT)
            .and_then(|a| a.parse::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        Self {
            routing_key,
            queue: queue.to_owned(),
            body: raw.data.clone(),
            message_id,
            redelivered: raw.redelivered,
            attempt,
            correlation_id: raw
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            traceparent,
            headers,
            trace,
        }
    }

    /// The trace context the handler runs in (same trace id as the incoming `traceparent`).
    pub fn trace_context(&self) -> &TraceContext {
        &self.trace
    }

    /// The span every log line about this message is in: `message` with `trace_id`,
    /// `routing_key`, `message_id`, `queue` and `attempt`.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "message",
            trace_id = %self.trace.trace_id(),
            routing_key = %self.routing_key,
            message_id = %self.message_id,
            queue = %self.queue,
            attempt = self.attempt,
        )
    }

    /// A header as a string (string and integer values).
    pub fn header(&self, name: &str) -> Option<String> {
        header_string(&self.headers, name)
    }

    /// Decodes the body as JSON; a failure parks with serde's message.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        orderbus_contracts::strict::from_slice(&self.body)
            .map_err(|e| HandlerError::park("undecodable JSON").with_source(e))
    }

    /// An outgoing message that continues this delivery's trace and correlation id.
    pub fn follow_up(&self, routing_key: impl Into<String>, body: Vec<u8>) -> OutgoingMessage {
        OutgoingMessage::new(routing_key, body)
            .child_of(self.traceparent.as_deref())
            .correlation_id(self.correlation_id.clone())
    }
}

/// Whether `raw` came back from one of this service's retry tiers — the only path on which the
/// `x-orderbus-*` headers were written by the bus: the tier queue dead-letters the expired copy
/// through the default exchange, and RabbitMQ puts the `x-death` entry of that tier queue
/// (reason `expired`) first. A message published to `amq.topic` never qualifies, nor does a
/// direct default-exchange publish without such an entry (and least-privilege permissions
/// deny publishers the default exchange, so they cannot add one).
fn returned_from_retry_tier(
    raw: &RawDelivery,
    headers: &FieldTable,
    retry_tiers: &[String],
) -> bool {
    if raw.exchange.as_str() != DEFAULT_EXCHANGE {
        return false;
    }
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        return false;
    };
    let Some(AMQPValue::FieldTable(latest)) = deaths.as_slice().first() else {
        return false;
    };
    header_string(latest, "reason").as_deref() == Some("expired")
        && header_string(latest, "queue").is_some_and(|q| retry_tiers.contains(&q))
}

/// `headers` without the bus's own ones, and how many were dropped.
fn without_bus_headers(headers: &FieldTable) -> (FieldTable, usize) {
    let mut kept = FieldTable::default();
    let mut dropped = 0;
    for (name, value) in headers.inner() {
        if name.as_str().starts_with(BUS_HEADER_PREFIX) {
            dropped += 1;
        } else {
            kept.insert(name.clone(), value.clone());
        }
    }
    (kept, dropped)
}

fn hash_id(routing_key: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(routing_key.as_bytes());
    h.update(b"\n");
    h.update(body);
    format!("sha256:{}", hex::encode(h.finalize()))
}

pub(crate) fn header_string(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongLongInt(i) => Some(i.to_string()),
        AMQPValue::LongInt(i) => Some(i.to_string()),
        AMQPValue::LongUInt(i) => Some(i.to_string()),
        AMQPValue::ShortInt(i) => Some(i.to_string()),
        AMQPValue::ShortUInt(i) => Some(i.to_string()),
        AMQPValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Sets a string header.
pub(crate) fn put(headers: &mut FieldTable, name: &str, value: impl Into<String>) {
    let v: String = value.into();
    headers.insert(
        ShortString::from(name),
        AMQPValue::LongString(LongString::from(v.as_str())),
    );
}
