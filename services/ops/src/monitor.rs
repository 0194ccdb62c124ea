//! The MQ spec's monitoring intake, `POST /erp/order/publishRabbitmqSentEvent` (seed 002
//! "发布消息到监控系统"): a sender reports that it published `body` on `topic`. Each report is
//! recorded with a verdict (the topic is one of the 15 keys, the body decodes as that key's
//! contract), answered at once, and reconciled against the journal: a report whose message is
//! not seen on the bus within the window is `missing`.

use std::str::FromStr;
use std::time::Duration;

use orderbus_contracts::{BusMessage, RoutingKey};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::extract;
use crate::store::{self, NewReport};

/// The longest report body kept.
pub const REPORT_LIMIT: usize = 256 * 1024;

/// Parses a report (JSON `{"topic","body"}` or a form `topic=…&body=…`) and judges it.
pub fn judge(sender: &str, content_type: Option<&str>, raw: &[u8]) -> NewReport {
    let mut r = NewReport {
        sender: sender.to_owned(),
        content_type: content_type.map(|c| c.replace('\0', "")),
        raw: raw.to_vec(),
        topic: None,
        body: None,
        verdict: "malformed".into(),
        verdict_detail: None,
        body_sha256: None,
        order_codes: Vec::new(),
        state: "invalid".into(),
    };
    let is_form = content_type
        .map(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    let fields: Result<(Option<String>, Option<String>), String> = if is_form {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(raw)
            .map(|pairs| {
                let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                (get("topic"), get("body"))
            })
            .map_err(|e| format!("form: {e}"))
    } else {
        serde_json::from_slice::<Value>(raw)
            .map_err(|e| format!("json: {e}"))
            .and_then(|v| match v {
                Value::Object(m) => {
                    let body = match m.get("body") {
                        Some(Value::String(s)) => Some(s.clone()),
                        // Tolerated: the body sent as JSON instead of a string (recorded so).
                        Some(other @ (Value::Object(_) | Value::Array(_))) => {
                            Some(other.to_string())
                        }
                        _ => None,
                    };
                    let topic = m.get("topic").and_then(Value::as_str).map(str::to_owned);
                    Ok((topic, body))
                }
                _ => Err("json: not an object with topic and body".into()),
            })
    };
    let (topic, body) = match fields {
        Ok(f) => f,
        Err(e) => {
            r.verdict_detail = Some(e);
            return r;
        }
    };
    r.topic = topic.map(|t| t.replace('\0', ""));
    r.body = body.clone().map(|b| b.replace('\0', "\\u0000"));
    let (Some(topic), Some(body)) = (r.topic.clone(), body) else {
        r.verdict_detail = Some("topic and body are required".into());
        return r;
    };
    r.body_sha256 = Some(extract::body_sha256(body.as_bytes()));
    r.order_codes = extract::subject(&topic, body.as_bytes()).order_codes;
    let key = match RoutingKey::from_str(&topic) {
        Ok(k) => k,
        Err(e) => {
            r.verdict = "unknown_topic".into();
            r.verdict_detail = Some(e.to_string());
            // Still reconciled: the message may be on the bus (and then also unrouted).
            r.state = "pending".into();
            return r;
        }
    };
    match BusMessage::decode(key, body.as_bytes()) {
        Ok(_) => {
            r.verdict = "ok".into();
        }
        Err(e) => {
            r.verdict = "undecodable".into();
            r.verdict_detail = Some(e.to_string().replace('\0', ""));
        }
    }
    r.state = "pending".into();
    r
}

/// Matches reports with the journal and marks the overdue ones missing, every `every`.
pub async fn reconcile(
    pool: PgPool,
    window: Duration,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        reconcile_once(&pool, window).await?;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One reconciliation round: returns (matched, newly missing).
pub async fn reconcile_once(pool: &PgPool, window: Duration) -> anyhow::Result<(u64, u64)> {
    let secs = window.as_secs_f64();
    let matched = store::match_reports(pool, secs).await?;
    let missing = store::mark_missing(pool, secs).await?;
    if matched > 0 {
        metrics::counter!("ops_monitor_matched_total").increment(matched);
    }
    if missing > 0 {
        metrics::counter!("ops_monitor_missing_total").increment(missing);
        tracing::warn!(
            missing,
            "reported messages not seen on the bus within the window"
        );
    }
    for (state, n) in store::report_counts(pool).await? {
        metrics::gauge!("ops_monitor_reports", "state" => state).set(n as f64);
    }
    for (service, n) in store::parked_open_counts(pool).await? {
        metrics::gauge!("ops_parked_open", "service" => service).set(n as f64);
    }
    Ok((matched, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let ok = judge(
            "erp",
            Some("application/json"),
            br#"{"topic":"order.erpstatus","body":"{\"uid\":1111,\"order_code\":111111,\"status\":901}"}"#,
        );
        assert_eq!(ok.verdict, "ok");
        assert_eq!(ok.order_codes, vec![111111]);
        let form = judge(
            "erp",
            Some("application/x-www-form-urlencoded"),
            b"topic=order.erpstatus&body=%7B%22uid%22%3A1%2C%22order_code%22%3A5%2C%22status%22%3A100%7D",
        );
        assert_eq!(form.verdict, "ok", "{form:?}");
        let unknown = judge("erp", None, br#"{"topic":"order.nope","body":"{}"}"#);
        assert_eq!(unknown.verdict, "unknown_topic");
        let bad = judge(
            "erp",
            None,
            br#"{"topic":"order.erpstatus","body":"{\"status\":1}"}"#,
        );
        assert_eq!(bad.verdict, "undecodable");
        let junk = judge("erp", None, b"\xff\xfe");
        assert_eq!(junk.verdict, "malformed");
        assert_eq!(junk.state, "invalid");
    }
}
