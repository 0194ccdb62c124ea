//! `orderbus-ops queues`: every queue of every service with its purpose (RabbitMQ 3.10 has no
//! queue descriptions; the purpose follows from the naming convention), depth, consumers and
//! rates from the management API, flagging queues without a consumer and parking that grows.

use std::str::FromStr;

use orderbus_contracts::RoutingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One queue as the management API reports it, with our reading of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueueView {
    pub name: String,
    pub purpose: String,
    pub messages: i64,
    pub consumers: i64,
    pub publish_rate: f64,
    pub deliver_rate: f64,
    pub flags: Vec<String>,
}

/// What a queue is for, from its name.
pub fn purpose(name: &str) -> String {
    match name {
        "ops.journal" => return "ops journal: copy of every spec message on amq.topic".into(),
        "ops.unrouted" => {
            return "messages amq.topic could not route (alternate exchange), journalled by ops"
                .into()
        }
        _ => {}
    }
    let Some((service, rest)) = name.split_once('.') else {
        return "not an orderbus queue".into();
    };
    if rest == "parking" {
        return format!("{service}: parked messages (poison, exhausted retries); see `orderbus-ops parking list --service {service}`");
    }
    if let Some(delay) = rest.strip_prefix("retry.") {
        return format!("{service}: retry delay tier {delay}, dead-letters back to the work queue");
    }
    match RoutingKey::from_str(rest) {
        Ok(k) => format!("{service} consumes {k}: {}", k.summary()),
        Err(_) => format!("{service}: {rest}"),
    }
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return 0.0,
        }
    }
    cur.as_f64().unwrap_or(0.0)
}

/// Reads `/api/queues/{vhost}` of the management API at `base` (e.g.
/// `http://guest:guest@127.0.0.1:15672`).
pub async fn list(base: &str, vhost: &str) -> anyhow::Result<Vec<QueueView>> {
    let url = reqwest::Url::parse(base)?;
    let user = url.username().to_owned();
    let pass = url.password().map(str::to_owned);
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    let vhost_enc: String = vhost
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let endpoint = format!(
        "{}/api/queues/{vhost_enc}",
        clean.as_str().trim_end_matches('/')
    );
    let mut req = reqwest::Client::new()
        .get(&endpoint)
        .timeout(std::time::Duration::from_secs(10));
    if !user.is_empty() {
        req = req.basic_auth(user, pass);
    }
    let resp = req.send().await?;
    if !resp.status().is_success() {
        anyhow::bail!("management API {endpoint}: HTTP {}", resp.status());
    }
    let queues: Vec<Value> = resp.json().await?;
    let mut out: Vec<QueueView> = queues.iter().map(view).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One management API queue object as a view with flags.
pub fn view(q: &Value) -> QueueView {
    let name = q
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let messages = num(q, &["messages"]) as i64;
    let consumers = num(q, &["consumers"]) as i64;
    let publish_rate = num(q, &["message_stats", "publish_details", "rate"]);
    let deliver_rate = num(q, &["message_stats", "deliver_get_details", "rate"]);
    let mut flags = Vec::new();
    let is_tier = name.contains(".retry.");
    let is_parking = name.ends_with(".parking");
    if consumers == 0 && !is_tier && !is_parking && !name.starts_with("test") {
        flags.push("NO CONSUMER".to_owned());
    }
    if is_parking && messages > 0 {
        flags.push(if publish_rate > 0.0 {
            "PARKING GROWING".to_owned()
        } else {
            "parking not taken in by ops".to_owned()
        });
    }
    QueueView {
        purpose: purpose(&name),
        name,
        messages,
        consumers,
        publish_rate,
        deliver_rate,
        flags,
    }
}

/// A plain-text table.
pub fn render(queues: &[QueueView]) -> String {
    let mut out = format!(
        "{:<48} {:>9} {:>4} {:>8} {:>8}  {}\n",
        "QUEUE", "MESSAGES", "CONS", "IN/s", "OUT/s", "PURPOSE / FLAGS"
    );
    for q in queues {
        let flags = if q.flags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", q.flags.join(", "))
        };
        out.push_str(&format!(
            "{:<48} {:>9} {:>4} {:>8.1} {:>8.1}  {}{}\n",
            q.name, q.messages, q.consumers, q.publish_rate, q.deliver_rate, q.purpose, flags
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn purposes_and_flags() {
        assert!(
            purpose("storefront.order.erpstatus").contains("storefront consumes order.erpstatus")
        );
        assert!(purpose("storefront.retry.5s").contains("retry delay tier 5s"));
        assert!(purpose("payments.parking").contains("parked messages"));
        let v = view(&json!({"name": "storefront.order.payment", "messages": 3, "consumers": 0}));
        assert_eq!(v.flags, vec!["NO CONSUMER"]);
        let p = view(
            &json!({"name": "storefront.parking", "messages": 2, "consumers": 0,
            "message_stats": {"publish_details": {"rate": 0.4}}}),
        );
        assert_eq!(p.flags, vec!["PARKING GROWING"]);
    }
}
