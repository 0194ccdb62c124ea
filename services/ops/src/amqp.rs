//! AMQP helpers: connecting, the ops queues, and headers/properties to and from JSON.

use std::time::Duration;

use deadpool_lapin::lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use deadpool_lapin::lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use deadpool_lapin::lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use serde_json::{json, Map, Value};

/// Opens a connection with `heartbeat=10` unless the URL sets one.
pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Connection> {
    let url = if url.contains("heartbeat=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&heartbeat=10")
    } else {
        format!("{url}?heartbeat=10")
    };
    let conn = tokio::time::timeout(
        timeout,
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("AMQP connect timed out after {timeout:?}"))??;
    Ok(conn)
}

/// A queue of the ops service with its arguments (declared at start, exported for deploy).
#[derive(Clone, Debug, PartialEq)]
pub struct OpsQueue {
    pub name: String,
    pub arguments: Vec<(&'static str, AMQPValue)>,
    pub description: String,
}

/// `x-max-length` of the journal queue: what the journal may fall behind by before the
/// broker drops its oldest messages (drop-head: a full journal never refuses a publisher).
pub const JOURNAL_MAX_LENGTH: i64 = 5_000_000;
/// `x-max-length` of the unrouted queue (as generated in deploy/).
pub const UNROUTED_MAX_LENGTH: i64 = 1_000_000;

/// The journal queue: quorum, drop-head on overflow. A `reject-publish` journal that filled up
/// would nack our relays' publishes (confirms cover every queue a message is routed to) and so
/// stall every service's outbox: the journal must never slow the business.
pub fn journal_queue(name: &str) -> OpsQueue {
    OpsQueue {
        name: name.to_owned(),
        arguments: vec![
            ("x-queue-type", AMQPValue::LongString("quorum".into())),
            ("x-max-length", AMQPValue::LongLongInt(JOURNAL_MAX_LENGTH)),
            ("x-overflow", AMQPValue::LongString("drop-head".into())),
        ],
        description: "ops journal: a copy of every message on the spec's 15 routing keys of \
                      amq.topic, consumed into the ops database (depth = journal lag)"
            .into(),
    }
}

/// The unrouted queue behind the alternate exchange of `amq.topic`.
pub fn unrouted_queue(name: &str) -> OpsQueue {
    OpsQueue {
        name: name.to_owned(),
        arguments: vec![
            ("x-queue-type", AMQPValue::LongString("quorum".into())),
            ("x-max-length", AMQPValue::LongLongInt(UNROUTED_MAX_LENGTH)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
        ],
        description: "every message amq.topic could not route (alternate exchange); consumed \
                      into the ops journal, marked unrouted"
            .into(),
    }
}

fn table(args: &[(&'static str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in args {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// Declares a durable queue with its arguments.
pub async fn declare_queue(ch: &Channel, q: &OpsQueue) -> anyhow::Result<()> {
    ch.queue_declare(
        ShortString::from(q.name.as_str()),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        table(&q.arguments),
    )
    .await?;
    Ok(())
}

/// Declares a durable fanout exchange.
pub async fn declare_fanout(ch: &Channel, name: &str) -> anyhow::Result<()> {
    ch.exchange_declare(
        ShortString::from(name),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> anyhow::Result<()> {
    ch.queue_bind(
        ShortString::from(queue),
        ShortString::from(exchange),
        ShortString::from(key),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

fn text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// An AMQP value as JSON (strings lossily as UTF-8, timestamps as seconds).
pub fn value_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(i) => json!(i),
        AMQPValue::ShortShortUInt(i) => json!(i),
        AMQPValue::ShortInt(i) => json!(i),
        AMQPValue::ShortUInt(i) => json!(i),
        AMQPValue::LongInt(i) => json!(i),
        AMQPValue::LongUInt(i) => json!(i),
        AMQPValue::LongLongInt(i) => json!(i),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => text(s.as_bytes()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::ByteArray(b) => text(b.as_slice()),
        AMQPValue::Void => Value::Null,
    }
}

/// A header table as a JSON object. NUL characters are dropped (JSONB refuses them).
pub fn table_json(t: &FieldTable) -> Value {
    let mut m = Map::new();
    for (k, v) in t.inner() {
        m.insert(k.as_str().replace('\0', ""), scrub(value_json(v)));
    }
    Value::Object(m)
}

fn scrub(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "")),
        Value::Array(a) => Value::Array(a.into_iter().map(scrub).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k.replace('\0', ""), scrub(v)))
                .collect(),
        ),
        other => other,
    }
}

/// JSON back to an AMQP value (for re-sending a stored message's headers).
pub fn json_value(v: &Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(a) => AMQPValue::FieldArray(FieldArray::from(
            a.iter().map(json_value).collect::<Vec<_>>(),
        )),
        Value::Object(_) => AMQPValue::FieldTable(json_table(v)),
    }
}

/// A JSON object as a header table (anything else: empty).
pub fn json_table(v: &Value) -> FieldTable {
    let mut t = FieldTable::default();
    if let Value::Object(m) = v {
        for (k, x) in m {
            if k.len() <= 255 {
                t.insert(ShortString::from(k.as_str()), json_value(x));
            }
        }
    }
    t
}

/// The properties the journal and parking keep, as JSON.
pub fn properties_json(p: &BasicProperties) -> Value {
    json!({
        "message_id": p.message_id().as_ref().map(|s| s.as_str().to_owned()),
        "app_id": p.app_id().as_ref().map(|s| s.as_str().to_owned()),
        "correlation_id": p.correlation_id().as_ref().map(|s| s.as_str().to_owned()),
        "content_type": p.content_type().as_ref().map(|s| s.as_str().to_owned()),
        "timestamp": p.timestamp(),
        "delivery_mode": p.delivery_mode(),
        "type": p.kind().as_ref().map(|s| s.as_str().to_owned()),
    })
}

/// A header as text (strings, numbers).
pub fn header_text(headers: &Value, name: &str) -> Option<String> {
    match headers.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `traceparent` header of a stored header object.
pub fn traceparent(headers: &Value) -> Option<String> {
    header_text(headers, "traceparent")
}
